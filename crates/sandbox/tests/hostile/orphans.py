# A detached grandchild (double fork, new session) that keeps stdout/stderr open, holds a
# listening socket, writes a file and prints to stderr forever, with a marker in its argv. The
# main program exits 0 at once: the run must end promptly and the grandchild must not survive.
marker = "assay-orphan-" + os.urandom(8).hex()
r, w = os.pipe()  # close-on-exec: EOF once the grandchild has exec'd
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() != 0:
        os._exit(0)
    os.write(w, str(os.getpid()).encode())
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    os.set_inheritable(s.fileno(), True)
    code = ("import sys, time\nwhile True:\n    open('/tmp/orphan', 'a').write('x')\n"
            "    sys.stderr.write('tick\\n'); sys.stderr.flush()\n    time.sleep(0.1)\n")
    os.execv(sys.executable, [sys.executable, "-c", code, marker])
os.close(w)
os.waitpid(pid, 0)
data = b""
while True:
    b = os.read(r, 64)
    if not b:
        break
    data += b
gpid = int(data)
with open(f"/proc/{gpid}/cmdline", "rb") as f:
    cmdline = [a.decode() for a in f.read().split(b"\0") if a]
emit(marker=marker, orphan_pid=gpid, orphan_cmdline=cmdline)
