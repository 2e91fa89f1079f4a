# clone(2) with namespace flags: refused by seccomp; clone3 says ENOSYS (so that its flags,
# which seccomp cannot see, are never used); a plain fork still works.
import signal

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000


def clone(flags):
    r, err = sysc_ret(56, flags | signal.SIGCHLD, 0, 0, 0, 0)
    if r == 0:
        os._exit(0)  # the child of a clone that should not have worked
    if r > 0:
        os.waitpid(r, 0)
    return err


args = (ctypes.c_uint64 * 11)(CLONE_NEWUSER, 0, 0, 0, signal.SIGCHLD, 0, 0, 0, 0, 0, 0)
r3, err3 = sysc_ret(435, ctypes.byref(args), 88)
if r3 == 0:
    os._exit(0)
pid = os.fork()
if pid == 0:
    os._exit(7)
_, st = os.waitpid(pid, 0)
emit(
    newns=clone(CLONE_NEWNS),
    newuser=clone(CLONE_NEWUSER),
    newpid=clone(CLONE_NEWPID),
    newnet=clone(CLONE_NEWNET),
    newuser_newns=clone(CLONE_NEWUSER | CLONE_NEWNS),
    clone3=err3,
    fork_exit_code=os.WEXITSTATUS(st),
)
