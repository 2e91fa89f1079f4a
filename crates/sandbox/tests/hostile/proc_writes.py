# Writes to kernel knobs under /proc: /proc/sys and /proc/sysrq-trigger are read-only, and the
# sandbox user may not lower its OOM score.
def write(path, data):
    try:
        with open(path, "w") as f:
            f.write(data)
        return 0
    except OSError as e:
        return e.errno


emit(
    sysrq_trigger=write("/proc/sysrq-trigger", "h"),
    hostname=write("/proc/sys/kernel/hostname", "pwned"),
    core_pattern=write("/proc/sys/kernel/core_pattern", "|/tmp/x"),
    modprobe=write("/proc/sys/kernel/modprobe", "/tmp/x"),
    drop_caches=write("/proc/sys/vm/drop_caches", "3"),
    ip_forward=write("/proc/sys/net/ipv4/ip_forward", "1"),
    oom_score_adj=write("/proc/self/oom_score_adj", "-1000"),
    oom_score_adj_value=open("/proc/self/oom_score_adj").read().strip(),
)
