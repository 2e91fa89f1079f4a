# The only network interface is the loopback; there is no route anywhere.
import array
import fcntl
import struct

with open("/proc/net/dev") as f:
    proc_dev = sorted(line.split(":")[0].strip() for line in f.read().splitlines()[2:])
try:
    with open("/proc/net/route") as f:
        routes = len(f.read().splitlines()[1:])
except OSError as e:
    routes = -e.errno
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
buf = array.array("B", b"\0" * 40 * 32)
addr, _ = buf.buffer_info()
res = fcntl.ioctl(s.fileno(), 0x8912, struct.pack("iL", len(buf), addr))  # SIOCGIFCONF
n, _ = struct.unpack("iL", res)
ifconf = sorted(bytes(buf[i:i + 16]).split(b"\0")[0].decode() for i in range(0, n, 40))
try:
    nameindex = sorted(name for _, name in socket.if_nameindex())
except OSError as e:
    nameindex = e.errno
emit(proc_net_dev=proc_dev, ipv4_routes=routes, ifconf=ifconf, if_nameindex=nameindex)
