# New namespaces (a user namespace first of all) and joining namespaces: refused by seccomp.
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x4000000, 0x8000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP = 0x10000000, 0x20000000, 0x40000000, 0x2000000
fd = os.open("/proc/self/ns/net", os.O_RDONLY)
emit(
    user=call(libc.unshare, CLONE_NEWUSER),
    user_and_mount=call(libc.unshare, CLONE_NEWUSER | CLONE_NEWNS),
    mount=call(libc.unshare, CLONE_NEWNS),
    net=call(libc.unshare, CLONE_NEWNET),
    pid=call(libc.unshare, CLONE_NEWPID),
    cgroup=call(libc.unshare, CLONE_NEWCGROUP),
    uts=call(libc.unshare, CLONE_NEWUTS),
    ipc=call(libc.unshare, CLONE_NEWIPC),
    setns=sysc(308, fd, 0),
)
