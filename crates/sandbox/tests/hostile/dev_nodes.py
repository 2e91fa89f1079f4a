# Host devices are absent from the sandbox's /dev; a TUN device, where the runtime has one of
# its own, cannot make an interface.
import fcntl
import struct


def tun_setiff():
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR)
    except OSError as e:
        return e.errno
    try:
        # TUNSETIFF with IFF_TUN | IFF_NO_PI
        fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH22x", b"assay0", 0x0001 | 0x1000))
        return 0
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)


DEVICES = ["/dev/mem", "/dev/kmem", "/dev/port", "/dev/sda", "/dev/vda", "/dev/nvme0n1",
           "/dev/kmsg", "/dev/fuse", "/dev/net/tun", "/dev/kvm", "/dev/loop0", "/dev/loop-control",
           "/dev/cpu/0/msr", "/dev/vhost-vsock", "/dev/autofs", "/dev/btrfs-control", "/dev/hwrng",
           "/dev/tty0", "/dev/console"]
emit(
    listing=sorted(os.listdir("/dev")),
    open={d: open_close(d, os.O_RDONLY) for d in DEVICES},
    tun_setiff=tun_setiff(),
    null_ok=open_close("/dev/null", os.O_RDWR),
    urandom_ok=open_close("/dev/urandom", os.O_RDONLY),
)
