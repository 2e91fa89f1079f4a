# AF_NETLINK (routing, audit, uevents, netfilter, sock_diag): refused by seccomp.
def sock(fam, typ, proto):
    fd, err = sysc_ret(41, fam, typ, proto)
    if fd >= 0:
        os.close(fd)
    return err


emit(
    route=sock(16, socket.SOCK_RAW, 0),
    route_dgram=sock(16, socket.SOCK_DGRAM, 0),
    sock_diag=sock(16, socket.SOCK_RAW, 4),
    audit=sock(16, socket.SOCK_RAW, 9),
    netfilter=sock(16, socket.SOCK_RAW, 12),
    uevent=sock(16, socket.SOCK_RAW, 15),
    generic=sock(16, socket.SOCK_RAW, 16),
)
