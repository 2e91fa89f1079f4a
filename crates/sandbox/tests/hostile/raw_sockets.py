# Raw and packet sockets: AF_PACKET is refused by seccomp, SOCK_RAW by the missing CAP_NET_RAW.
def sock(fam, typ, proto):
    fd, err = sysc_ret(41, fam, typ, proto)
    if fd >= 0:
        os.close(fd)
    return err


ETH_P_ALL_BE = 0x0300
# An ICMP "ping" socket may be allowed by the kernel; it must still reach nothing.
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    try:
        s.sendto(b"\x08\x00\x00\x00\x00\x00\x00\x00", ("1.1.1.1", 0))
        ping = {"send": 0}
    except OSError as e:
        ping = {"send": e.errno}
except OSError as e:
    ping = {"create": e.errno}
emit(
    packet_raw=sock(17, socket.SOCK_RAW, ETH_P_ALL_BE),
    packet_dgram=sock(17, socket.SOCK_DGRAM, ETH_P_ALL_BE),
    inet_raw_icmp=sock(2, socket.SOCK_RAW, 1),
    inet_raw_tcp=sock(2, socket.SOCK_RAW, 6),
    inet_raw_raw=sock(2, socket.SOCK_RAW, 255),
    inet6_raw=sock(10, socket.SOCK_RAW, 58),
    ping=ping,
)
