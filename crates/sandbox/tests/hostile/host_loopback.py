# A TCP service listening on the host's loopback (port in argv[1]) is unreachable: the sandbox's
# loopback is its own.
s = socket.socket()
s.settimeout(3)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
    err = 0
except socket.timeout:
    err = "timeout"
except OSError as e:
    err = e.errno
emit(connect=err)
