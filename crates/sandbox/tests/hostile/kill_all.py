# kill(-1, SIGKILL) and a SIGKILL aimed at a host process's PID (argv[1]): only the sandbox's
# own processes can be reached.
import signal
import time

host_pid = int(sys.argv[1])
child = os.fork()
if child == 0:
    time.sleep(60)
    os._exit(0)
direct = oserr(os.kill, host_pid, signal.SIGKILL)
everyone = oserr(os.kill, -1, signal.SIGKILL)
_, st = os.waitpid(child, 0)
emit(
    direct=direct,
    kill_all=everyone,
    child_killed_by=os.WTERMSIG(st) if os.WIFSIGNALED(st) else None,
)
