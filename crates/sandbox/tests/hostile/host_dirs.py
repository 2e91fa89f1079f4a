# Host directories outside the environment (/root, /home, /var, /run, the host's /work, ...)
# do not exist in the sandbox; the root holds only the mount points and the environment.
emit(
    root=sorted(os.listdir("/")),
    root_home=oserr(os.listdir, "/root"),
    home=oserr(os.listdir, "/home"),
    var=oserr(os.listdir, "/var"),
    run=oserr(os.listdir, "/run"),
    boot=oserr(os.listdir, "/boot"),
    opt=oserr(os.listdir, "/opt"),
    mnt=oserr(os.listdir, "/mnt"),
    srv=oserr(os.listdir, "/srv"),
    work=oserr(os.listdir, "/work"),
    sys=oserr(os.listdir, "/sys"),
    docker_sock=oserr(open, "/var/run/docker.sock"),
    via_proc_root=oserr(open, "/proc/1/root/etc/shadow"),
    dotdot=oserr(open, "/../../../../etc/shadow"),
    usr_lib_present=os.path.isdir("/usr/lib"),
)
