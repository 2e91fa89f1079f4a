# The root, the environment, /etc, /code and the init are read-only: every write fails.
W = os.O_WRONLY | os.O_CREAT
emit(
    create={p: open_close(p, W) for p in
            ["/x", "/usr/x", "/usr/bin/x", "/usr/lib/x", "/bin/x", "/lib/x", "/sbin/x", "/etc/x",
             "/code/x", "/.assay/x"]},
    proc_create=open_close("/proc/x", W),
    overwrite={p: open_close(p, os.O_WRONLY) for p in
               ["/code/main.py", "/.assay/init", "/usr/bin/python3", "/etc/passwd"]},
    exe={p: open_close(p, os.O_WRONLY) for p in ["/proc/self/exe", "/proc/1/exe"]},
    mkdir=oserr(os.mkdir, "/newdir"),
    mkdir_usr=oserr(os.mkdir, "/usr/newdir"),
    symlink=oserr(os.symlink, "/tmp", "/evil"),
    unlink=oserr(os.unlink, "/code/main.py"),
    rename=oserr(os.rename, "/code/main.py", "/code/other.py"),
    chmod=oserr(os.chmod, "/code/main.py", 0o777),
    chmod_init=oserr(os.chmod, "/.assay/init", 0o4777),
    utime=oserr(os.utime, "/usr/bin/python3", (0, 0)),
)
