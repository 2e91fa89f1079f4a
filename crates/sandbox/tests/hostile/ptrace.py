# ptrace: TRACEME, attaching to the init and seizing an own child are refused by seccomp.
import time

PTRACE_TRACEME, PTRACE_ATTACH, PTRACE_SEIZE = 0, 16, 0x4206
child = os.fork()
if child == 0:
    time.sleep(30)
    os._exit(0)
res = dict(
    traceme=sysc(101, PTRACE_TRACEME, 0, 0, 0),
    attach_init=sysc(101, PTRACE_ATTACH, 1, 0, 0),
    attach_child=sysc(101, PTRACE_ATTACH, child, 0, 0),
    seize_child=sysc(101, PTRACE_SEIZE, child, 0, 0),
)
os.kill(child, 9)
os.waitpid(child, 0)
emit(**res)
