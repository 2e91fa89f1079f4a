# The hostname is "sandbox" and cannot be changed.
emit(
    gethostname=socket.gethostname(),
    nodename=os.uname().nodename,
    proc=open("/proc/sys/kernel/hostname").read().strip(),
    etc=open("/etc/hostname").read().strip(),
    sethostname=call(libc.sethostname, b"pwned", 5),
    setdomainname=call(libc.setdomainname, b"pwned", 5),
    after=socket.gethostname(),
)
