# RLIMIT_NOFILE: opening files stops with EMFILE below the limit.
fds = []
err = None
while len(fds) < 100000:
    try:
        fds.append(os.open("/dev/null", os.O_RDONLY))
    except OSError as e:
        err = e.errno
        break
emit(opened=len(fds), highest_fd=max(fds), errno=err)
