# RLIMIT_FSIZE: writes stop at the limit with EFBIG (Python ignores SIGXFSZ), and so do
# truncate and writes at an offset beyond it.
written, err = fill("/tmp/big", chunk=64 << 10)
fd = os.open("/tmp/sparse", os.O_WRONLY | os.O_CREAT, 0o600)
emit(
    written=written,
    errno=err,
    truncate=oserr(os.ftruncate, fd, 8 << 20),
    pwrite_beyond=oserr(os.pwrite, fd, b"x", 8 << 20),
)
