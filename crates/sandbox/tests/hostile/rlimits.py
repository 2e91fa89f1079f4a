# The run's rlimits are in force and cannot be raised.
import resource


class Rlimit(ctypes.Structure):
    _fields_ = [("cur", ctypes.c_ulong), ("max", ctypes.c_ulong)]


def raise_to(res, value):
    return call(libc.setrlimit, res, ctypes.byref(Rlimit(value, value)))


INF = 2**64 - 1
names = ["RLIMIT_NOFILE", "RLIMIT_FSIZE", "RLIMIT_CORE", "RLIMIT_CPU"]
current = {n: list(resource.getrlimit(getattr(resource, n))) for n in names}
emit(
    current={n: [v if v != resource.RLIM_INFINITY else -1 for v in lim] for n, lim in current.items()},
    raise_nofile=raise_to(resource.RLIMIT_NOFILE, current["RLIMIT_NOFILE"][1] * 2),
    raise_fsize=raise_to(resource.RLIMIT_FSIZE, INF),
    raise_cpu=raise_to(resource.RLIMIT_CPU, INF),
    raise_core=raise_to(resource.RLIMIT_CORE, INF),
    prlimit_init=sysc(302, 1, resource.RLIMIT_FSIZE, ctypes.byref(Rlimit(INF, INF)), None),
)
