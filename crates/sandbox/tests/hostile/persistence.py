# Run 1 ("write") leaves files in /tmp and /dev/shm and a SysV shared memory segment; run 2
# ("check") must see none of them.
KEY = 0x41535359
IPC_CREAT = 0o1000
if sys.argv[1] == "write":
    for d in ("/tmp", "/dev/shm"):
        with open(f"{d}/assay-persist", "w") as f:
            f.write("secret of run 1")
    os.mkdir("/tmp/assay-dir")
    ctypes.set_errno(0)
    shm = libc.shmget(KEY, 4096, IPC_CREAT | 0o666)
    emit(shm_errno=ctypes.get_errno() if shm == -1 else 0, tmp=sorted(os.listdir("/tmp")),
         shm_dir=sorted(os.listdir("/dev/shm")))
else:
    ctypes.set_errno(0)
    shm = libc.shmget(KEY, 0, 0)
    emit(tmp=sorted(os.listdir("/tmp")), shm_dir=sorted(os.listdir("/dev/shm")),
         sysv=ctypes.get_errno() if shm == -1 else 0)
