# Every socket family but AF_UNIX, AF_INET and AF_INET6 is refused by seccomp.
FAMILIES = {
    "ax25": 3, "ipx": 4, "appletalk": 5, "x25": 9, "key": 15, "rds": 21, "pppox": 24, "llc": 26,
    "can": 29, "tipc": 30, "bluetooth": 31, "rxrpc": 33, "isdn": 34, "phonet": 35,
    "ieee802154": 36, "caif": 37, "alg": 38, "nfc": 39, "kcm": 41, "qipcrtr": 42, "smc": 43,
    "xdp": 44, "mctp": 45,
}
TYPES = {"stream": socket.SOCK_STREAM, "dgram": socket.SOCK_DGRAM,
         "seqpacket": socket.SOCK_SEQPACKET, "raw": socket.SOCK_RAW}
out = {}
for name, fam in FAMILIES.items():
    for tname, typ in TYPES.items():
        fd, err = sysc_ret(41, fam, typ, 0)
        if fd >= 0:
            os.close(fd)
        out[f"{name}/{tname}"] = err
unix, unix_err = sysc_ret(41, 1, socket.SOCK_STREAM, 0)
if unix >= 0:
    os.close(unix)
emit(families=out, unix_allowed=unix_err)
