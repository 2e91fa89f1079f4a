# Creating empty files without end in /tmp: empty files take no tmpfs blocks, but their inodes
# are kernel memory charged to the run, so the run ends at its memory limit (or the tmpfs runs
# out of inodes first).
import time

n = 0
err = None
try:
    while True:
        os.close(os.open(f"/tmp/f{n}", os.O_CREAT | os.O_WRONLY, 0o600))
        n += 1
except OSError as e:
    err = e.errno
emit(files=n, errno=err)
