# Kernel-wide operations: reboot, kernel log, modules, kexec, swap, accounting, clock, I/O ports,
# file handles (the "shocker" escape), pidfd_getfd, kcmp, personality, fanotify, modify_ldt. All
# refused by seccomp with EPERM.
import time


class Timespec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]


child = os.fork()
if child == 0:
    time.sleep(30)
    os._exit(0)
pidfd, _ = sysc_ret(434, child, 0)
buf = ctypes.create_string_buffer(8192)
handle = ctypes.create_string_buffer(136)
ctypes.memmove(handle, (ctypes.c_uint32 * 1)(128), 4)
mount_id = ctypes.c_int()
now = Timespec(int(time.time()), 0)
res = {
    "reboot": sysc(169, 0xFEE1DEAD, 672274793, 0, None),
    "syslog_read_all": sysc(103, 3, buf, 8192),
    "init_module": sysc(175, buf, 16, b""),
    "finit_module": sysc(313, 0, b"", 0),
    "delete_module": sysc(176, b"assay_nonexistent", 0),
    "kexec_load": sysc(246, 0, 0, None, 0),
    "kexec_file_load": sysc(320, -1, -1, 0, b"", 0),
    "swapon": sysc(167, b"/tmp/swap", 0),
    "swapoff": sysc(168, b"/tmp/swap"),
    "acct": sysc(163, b"/tmp/acct"),
    "settimeofday": sysc(164, None, None),
    "clock_settime": sysc(227, 0, ctypes.byref(now)),
    "iopl": sysc(172, 3),
    "ioperm": sysc(173, 0, 1024, 1),
    "vhangup": sysc(153),
    "name_to_handle_at": sysc(303, -100, b"/etc/passwd", handle, ctypes.byref(mount_id), 0),
    "open_by_handle_at": sysc(304, -100, handle, 0),
    # (without pidfd_open, fd 0 stands in: seccomp refuses before looking at the arguments)
    "pidfd_getfd": sysc(438, pidfd if pidfd >= 0 else 0, 0, 0),
    "kcmp": sysc(312, os.getpid(), child, 0, 0, 0),
    "personality_read_implies_exec": sysc(135, 0x0400000),
    "fanotify_init": sysc(300, 0, 0),
    "quotactl": sysc(179, 0x800007, b"/tmp", 0, buf),
    "uselib": sysc(134, b"/usr/bin/python3"),
    "modify_ldt_read": sysc(154, 0, buf, 16),
}
os.kill(child, 9)
os.waitpid(child, 0)
emit(**res)
