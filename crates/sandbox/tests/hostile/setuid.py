# Becoming root: setuid/setgid/setgroups/capset are refused.
class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


hdr = CapHeader(0x20080522, 0)
data = (CapData * 2)(CapData(0xFFFFFFFF, 0xFFFFFFFF, 0), CapData(0xFFFFFFFF, 0xFFFFFFFF, 0))
PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_SYS_ADMIN = 47, 2, 21
emit(
    setuid=oserr(os.setuid, 0),
    seteuid=oserr(os.seteuid, 0),
    setresuid=oserr(os.setresuid, 0, 0, 0),
    setgid=oserr(os.setgid, 0),
    setgroups=oserr(os.setgroups, [0]),
    capset=sysc(126, ctypes.byref(hdr), ctypes.byref(data)),
    ambient_raise=call(libc.prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_SYS_ADMIN, 0, 0),
    uid_after=list(os.getresuid()),
)
