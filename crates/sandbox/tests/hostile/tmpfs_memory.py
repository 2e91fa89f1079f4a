# Filling a /dev/shm bigger than the memory limit: tmpfs pages are charged to the run's memory,
# so the run cannot hold more than its memory limit there.
written, err = fill("/dev/shm/fill", chunk=4 << 20)
emit(written=written, errno=err)
