# userfaultfd (a classic exploit helper): the syscall is refused and /dev/userfaultfd is absent.
O_CLOEXEC, UFFD_USER_MODE_ONLY = 0o2000000, 1
emit(
    syscall=sysc(323, O_CLOEXEC),
    user_mode_only=sysc(323, O_CLOEXEC | UFFD_USER_MODE_ONLY),
    dev=open_close("/dev/userfaultfd", os.O_RDWR),
)
