# A real fork bomb (every child forks forever) that never ends by itself: forks fail with
# EAGAIN and the run ends at its wall-time limit, with every process killed.
import time

if os.fork() == 0:
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.001)
time.sleep(0.5)
errs = set()
for _ in range(50):
    try:
        p = os.fork()
    except OSError as e:
        errs.add(e.errno)
        continue
    if p == 0:
        os._exit(0)
    os.waitpid(p, 0)
emit(errnos=sorted(errs))
time.sleep(60)
