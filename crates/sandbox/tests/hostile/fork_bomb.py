# Forking until it fails: the pids limit stops it with EAGAIN.
import time

forked = 0
err = None
while forked < 10000:
    try:
        pid = os.fork()
    except OSError as e:
        err = e.errno
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    forked += 1
emit(forked=forked, errno=err)
