# Mount flags: everything but /tmp and /dev/shm is read-only; what the program can reach is
# nosuid and nodev. Reported both as statvfs() flags and as /proc/self/mountinfo options.
ST_RDONLY, ST_NOSUID, ST_NODEV = 1, 2, 4
POINTS = ["/", "/usr", "/code", "/etc", "/.assay", "/tmp", "/dev/shm", "/proc"]
options = {}
with open("/proc/self/mountinfo") as f:
    for line in f:
        fields = line.split()
        options[fields[4]] = fields[5].split(",")  # a later mount on the same point wins
statvfs = {}
for p in POINTS:
    fl = os.statvfs(p).f_flag
    statvfs[p] = {"ro": bool(fl & ST_RDONLY), "nosuid": bool(fl & ST_NOSUID), "nodev": bool(fl & ST_NODEV)}
KNOWN = {"ro", "rw", "nosuid", "nodev"}
emit(statvfs=statvfs, mountinfo={p: sorted(set(options.get(p, [])) & KNOWN) for p in POINTS})
