# Host secrets under /etc: /etc is a generated minimal directory, read-only.
with open("/etc/passwd") as f:
    users = sorted(line.split(":")[0] for line in f.read().splitlines() if line)
emit(
    listing=sorted(os.listdir("/etc")),
    users=users,
    shadow=oserr(open, "/etc/shadow"),
    gshadow=oserr(open, "/etc/gshadow"),
    sudoers=oserr(open, "/etc/sudoers"),
    ssh_host_key=oserr(open, "/etc/ssh/ssh_host_ed25519_key"),
    machine_id=oserr(open, "/etc/machine-id"),
    write_shadow=open_close("/etc/shadow", os.O_WRONLY | os.O_CREAT),
    write_passwd=open_close("/etc/passwd", os.O_WRONLY | os.O_APPEND),
)
