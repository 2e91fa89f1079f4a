# The host's processes (and the host's PID 1 and its environ) are invisible: /proc shows only
# the sandbox's init and this program.
procs = {}
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                procs[p] = [a.decode() for a in f.read().split(b"\0") if a]
        except OSError as e:
            procs[p] = e.errno
try:
    with open("/proc/1/environ", "rb") as f:
        init_environ = sorted(kv.split(b"=", 1)[0].decode() for kv in f.read().split(b"\0") if kv)
except OSError as e:
    init_environ = e.errno
emit(pid=os.getpid(), ppid=os.getppid(), procs=procs, init_environ=init_environ)
