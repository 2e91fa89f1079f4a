# Prepended by tests/security.rs to every program in this directory (it is not a program itself).
# Each program tries one attack and prints ONE JSON line describing what it observed: errno
# values (0 meaning the attempt succeeded), or values read. The Rust side asserts exact values.
import ctypes
import errno
import json
import os
import socket
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def _arg(a):
    return ctypes.c_long(a) if isinstance(a, int) else a


def sysc_ret(nr, *args):
    """A raw syscall: (return value, errno), errno 0 when it succeeded."""
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[_arg(a) for a in args])
    return r, (ctypes.get_errno() if r == -1 else 0)


def sysc(nr, *args):
    """A raw syscall's errno, 0 when it succeeded (an attack that worked)."""
    return sysc_ret(nr, *args)[1]


def call(fn, *args):
    """A libc function returning -1 on error: its errno, 0 when it succeeded."""
    ctypes.set_errno(0)
    r = fn(*args)
    return ctypes.get_errno() if r == -1 else 0


def oserr(fn, *args, **kw):
    """Runs fn: the errno of the OSError it raised, 0 when it succeeded."""
    try:
        fn(*args, **kw)
        return 0
    except OSError as e:
        return e.errno if e.errno is not None else -1


def open_close(path, flags, mode=0o644):
    """Opens and closes path: errno, 0 when the open succeeded."""
    try:
        os.close(os.open(path, flags, mode))
        return 0
    except OSError as e:
        return e.errno


def status_fields(path="/proc/self/status"):
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def fill(path, chunk=1 << 20, cap=1 << 31):
    """Writes to path until an error: (bytes written, errno or None)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    buf = b"\xab" * chunk
    written = 0
    try:
        while written < cap:
            written += os.write(fd, buf)
    except OSError as e:
        return written, e.errno
    finally:
        os.close(fd)
    return written, None


def emit(**kw):
    sys.stdout.write(json.dumps(kw, sort_keys=True) + "\n")
    sys.stdout.flush()

