# The program runs as nobody (65534), without supplementary groups.
import pwd

st = status_fields()
emit(
    resuid=list(os.getresuid()),
    resgid=list(os.getresgid()),
    groups=os.getgroups(),
    status_uid=[int(x) for x in st["Uid"].split()],
    status_gid=[int(x) for x in st["Gid"].split()],
    user=pwd.getpwuid(os.getuid()).pw_name,
)
