# Masked /proc entries (kcore, keys, timer_list, ...) read as empty or are absent; root-only
# kernel files (kmsg, slabinfo, vmallocinfo) cannot be read.
def probe(path):
    try:
        if os.path.isdir(path):
            return {"entries": len(os.listdir(path))}
        with open(path, "rb") as f:
            return {"bytes": len(f.read(65536))}
    except OSError as e:
        return {"errno": e.errno}


emit(**{p.replace("/proc/", ""): probe(p) for p in [
    "/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats",
    "/proc/interrupts", "/proc/acpi", "/proc/scsi", "/proc/asound", "/proc/timer_stats",
    "/proc/kmsg", "/proc/slabinfo", "/proc/vmallocinfo", "/proc/pagetypeinfo"]})
