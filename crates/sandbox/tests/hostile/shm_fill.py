# Filling /dev/shm: ENOSPC at the tmpfs size.
written, err = fill("/dev/shm/fill")
emit(written=written, errno=err)
