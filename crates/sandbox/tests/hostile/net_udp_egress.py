# UDP egress (unicast, broadcast, multicast): sendto fails, nothing leaves.
def send(addr, broadcast=False):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if broadcast:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    try:
        s.sendto(b"x", addr)
        return 0
    except OSError as e:
        return e.errno
    finally:
        s.close()


emit(
    public=send(("1.1.1.1", 53)),
    private=send(("10.0.0.1", 9)),
    broadcast=send(("255.255.255.255", 9), broadcast=True),
    multicast=send(("224.0.0.1", 9)),
)
