# TCP egress to the internet, a private network and the cloud metadata address: no route.
def connect(family, addr):
    try:
        s = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        return e.errno
    s.settimeout(3)
    try:
        s.connect(addr)
        return 0
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return e.errno
    finally:
        s.close()


emit(
    public=connect(socket.AF_INET, ("1.1.1.1", 80)),
    private=connect(socket.AF_INET, ("10.0.0.1", 80)),
    metadata=connect(socket.AF_INET, ("169.254.169.254", 80)),
    dns_over_tcp=connect(socket.AF_INET, ("8.8.8.8", 53)),
    ipv6_public=connect(socket.AF_INET6, ("2606:4700:4700::1111", 80)),
)
