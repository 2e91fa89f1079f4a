# Device nodes cannot be made: mknod is refused by seccomp (and /tmp is nodev).
import stat
emit(
    block_sda=oserr(os.mknod, "/tmp/sda", stat.S_IFBLK | 0o666, os.makedev(8, 0)),
    char_mem=oserr(os.mknod, "/tmp/mem", stat.S_IFCHR | 0o666, os.makedev(1, 1)),
    char_kmsg_shm=oserr(os.mknod, "/dev/shm/kmsg", stat.S_IFCHR | 0o666, os.makedev(1, 11)),
    mknodat=sysc(259, -100, b"/tmp/port", stat.S_IFCHR | 0o666, os.makedev(1, 4)),
    created=sorted(os.listdir("/tmp")),
)
