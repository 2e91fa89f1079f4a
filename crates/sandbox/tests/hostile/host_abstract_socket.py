# A unix socket in the host's abstract namespace (name in argv[1]) is unreachable: the abstract
# namespace belongs to the network namespace.
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(3)
try:
    s.connect("\0" + sys.argv[1])
    err = 0
except socket.timeout:
    err = "timeout"
except OSError as e:
    err = e.errno
emit(connect=err)
