# Executing a setuid-root binary of the host's /usr does not raise privileges (nosuid binds and
# no_new_privs). The binary is made to block writing to a full pipe, so that its credentials
# can be read from /proc while it runs.
import fcntl
import stat
import time


def setuid_root(path):
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_uid == 0 and bool(st.st_mode & stat.S_ISUID)


# The host's setuid-root binaries that print their --help on stdout.
CANDIDATES = ["/usr/bin/mount", "/usr/bin/umount", "/usr/bin/su", "/usr/bin/passwd",
              "/usr/bin/chsh", "/usr/bin/chfn", "/usr/bin/gpasswd"]
BIN = next((b for b in CANDIDATES if setuid_root(b)), CANDIDATES[0])
suid_bit = setuid_root(BIN)
r, w = os.pipe()
fcntl.fcntl(w, fcntl.F_SETFL, os.O_NONBLOCK)
try:
    while True:
        os.write(w, b"x" * 4096)
except BlockingIOError:
    pass
fcntl.fcntl(w, fcntl.F_SETFL, 0)
pid = os.fork()
if pid == 0:
    os.dup2(w, 1)
    os.execv(BIN, [BIN, "--help"])
os.close(w)
uids = None
deadline = time.monotonic() + 5
while time.monotonic() < deadline:
    try:
        st = status_fields(f"/proc/{pid}/status")
        if st.get("Name") == os.path.basename(BIN):
            uids = [int(x) for x in st["Uid"].split()]
            if st["State"].startswith("S"):
                break
    except OSError:
        pass
    time.sleep(0.01)
os.kill(pid, 9)
os.waitpid(pid, 0)
emit(binary=BIN, suid_bit=suid_bit, uids=uids)
