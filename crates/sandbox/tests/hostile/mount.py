# mount(2) and the new mount API: refused by seccomp (EPERM).
c_char_p, c_ulong, c_void_p, c_int = ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_int
libc.mount.argtypes = [c_char_p, c_char_p, c_char_p, c_ulong, c_void_p]
libc.umount2.argtypes = [c_char_p, c_int]
MS_BIND, MS_REMOUNT, MS_REC, MNT_DETACH = 4096, 32, 16384, 2
AT_FDCWD, OPEN_TREE_CLONE = -100, 1
emit(
    tmpfs=call(libc.mount, b"none", b"/tmp", b"tmpfs", 0, None),
    proc=call(libc.mount, b"proc", b"/tmp", b"proc", 0, None),
    bind_root=call(libc.mount, b"/", b"/tmp", None, MS_BIND | MS_REC, None),
    remount_rw=call(libc.mount, None, b"/usr", None, MS_REMOUNT | MS_BIND, None),
    umount_proc=call(libc.umount2, b"/proc", MNT_DETACH),
    fsopen=sysc(430, b"tmpfs", 0),
    open_tree=sysc(428, AT_FDCWD, b"/", OPEN_TREE_CLONE),
    fspick=sysc(433, AT_FDCWD, b"/", 0),
    mount_setattr=sysc(442, AT_FDCWD, b"/", 0, 0, 0),
    fsconfig=sysc(431, 0, 0, None, None, 0),
    fsmount=sysc(432, 0, 0, 0),
    move_mount=sysc(429, AT_FDCWD, b"/tmp", AT_FDCWD, b"/usr", 0),
    pivot_root=sysc(155, b"/tmp", b"/tmp"),
)
