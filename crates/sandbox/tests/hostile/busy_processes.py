# Control: a benign program with four processes busy at once for a moment works under the
# default limits (the pids limit leaves room for the runtime itself).
import time


def busy(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


children = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        busy(0.3)
        os._exit(0)
    children.append(pid)
busy(0.3)
codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in children]
emit(children_exit_codes=codes)
