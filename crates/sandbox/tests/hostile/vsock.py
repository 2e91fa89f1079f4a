# AF_VSOCK (the way out to a hypervisor host): refused by seccomp.
def sock(fam, typ, proto):
    fd, err = sysc_ret(41, fam, typ, proto)
    if fd >= 0:
        os.close(fd)
    return err


emit(
    stream=sock(40, socket.SOCK_STREAM, 0),
    dgram=sock(40, socket.SOCK_DGRAM, 0),
    seqpacket=sock(40, socket.SOCK_SEQPACKET, 0),
    dev_vsock=open_close("/dev/vsock", os.O_RDWR),
)
