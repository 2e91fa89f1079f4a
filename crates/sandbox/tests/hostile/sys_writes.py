# /sys is not there at all: no cgroupfs to escape through, no uevent helper, no power state.
def write(path, data):
    try:
        with open(path, "w") as f:
            f.write(data)
        return 0
    except OSError as e:
        return e.errno


emit(
    cgroup_procs=write("/sys/fs/cgroup/cgroup.procs", "1"),
    pids_max=write("/sys/fs/cgroup/pids/pids.max", "max"),
    memory_limit=write("/sys/fs/cgroup/memory/memory.limit_in_bytes", "-1"),
    release_agent=write("/sys/fs/cgroup/memory/release_agent", "/tmp/x"),
    uevent_helper=write("/sys/kernel/uevent_helper", "/tmp/x"),
    power_state=write("/sys/power/state", "mem"),
    mkdir_cgroup=oserr(os.mkdir, "/sys/fs/cgroup/evil"),
    mkdir_sys=oserr(os.mkdir, "/sys"),
)
