# Filling /tmp: ENOSPC at the tmpfs size.
written, err = fill("/tmp/fill")
emit(written=written, errno=err)
