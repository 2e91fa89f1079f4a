# No host file descriptor leaks into the sandbox (a leaked directory fd is a way out, as in
# runc's CVE-2024-21626): the program and the init hold only stdin, stdout and stderr, and the
# working directory and root are the sandbox's own.
def fds(pid):
    out = {}
    d = f"/proc/{pid}/fd"
    for name in os.listdir(d):
        try:
            out[name] = os.readlink(f"{d}/{name}")
        except FileNotFoundError:
            continue  # the directory fd of the listing itself, closed by now
        except OSError as e:
            out[name] = f"errno {e.errno}"
    return out


def or_errno(fn, *args):
    try:
        return fn(*args)
    except OSError as e:
        return e.errno


mine = fds("self")
emit(
    self_fds=sorted(mine, key=int),
    stdio_kinds=[mine.get(str(i), "").split(":")[0] for i in range(3)],
    init_fds=or_errno(lambda: sorted(fds(1), key=int)),
    cwd=os.readlink("/proc/self/cwd"),
    root=os.readlink("/proc/self/root"),
    init_cwd=or_errno(os.readlink, "/proc/1/cwd"),
)
