# socketpair() creates sockets too: other families than AF_UNIX must be refused there as well
# (the kernel runs the family's create function before finding it has no socketpair op).
FAMILIES = {"inet": 2, "key": 15, "netlink": 16, "packet": 17, "tipc": 30, "bluetooth": 31,
            "alg": 38, "vsock": 40, "smc": 43, "xdp": 44}
TYPES = {"stream": socket.SOCK_STREAM, "dgram": socket.SOCK_DGRAM, "seqpacket": socket.SOCK_SEQPACKET}
sv = (ctypes.c_int * 2)()
out = {}
for name, fam in FAMILIES.items():
    for tname, typ in TYPES.items():
        r, err = sysc_ret(53, fam, typ, 0, sv)
        if r == 0:
            os.close(sv[0])
            os.close(sv[1])
        out[f"{name}/{tname}"] = err
r, unix_err = sysc_ret(53, 1, socket.SOCK_STREAM, 0, sv)
emit(families=out, unix_allowed=unix_err)
