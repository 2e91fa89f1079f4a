# chroot: refused by seccomp (and it would need CAP_SYS_CHROOT).
emit(
    libc=call(libc.chroot, b"/tmp"),
    os=oserr(os.chroot, "/tmp"),
)
