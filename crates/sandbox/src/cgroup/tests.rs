//! The cgroup code over temporary directory trees shaped like each layout: the v1/hybrid one of
//! this machine kind (and of systemd hosts that co-mount `cpu,cpuacct`), and the cgroup v2 one
//! of current Kubernetes nodes. No root needed.
//!
//! What a plain directory tree cannot prove, and the engine tests (`tests/engine.rs`,
//! `tests/security.rs`, the conformance suite) prove on a real host instead: that the kernel
//! applies the limits written here, kills through `cgroup.kill` or the freezer, counts OOM kills
//! and signals the eventfd, and lets `rmdir` remove a cgroup directory that still holds its
//! control files. Here the kernel's part is played by the test: it creates the control files a
//! new cgroup directory gets (the code never creates one), fills in the figures it would
//! report, and puts real processes it spawned into `cgroup.procs`.

use super::hierarchy::{Cgroups, Layout};
use super::run::{CgroupLimits, CgroupStats, RunCgroup};
use std::fs;
use std::os::unix::fs::symlink;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const RUN: &str = "assay/e1/r1";

fn put(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    fs::write(path, content).expect("write");
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The v1 controllers Assay uses, as `(directory, control files)`; co-mounted, cpu and cpuacct
/// share one directory.
fn v1_controllers(comounted: bool) -> Vec<(&'static str, Vec<&'static str>)> {
    let memory = vec![
        "memory.limit_in_bytes",
        "memory.memsw.limit_in_bytes",
        "memory.oom_control",
        "memory.max_usage_in_bytes",
        "cgroup.event_control",
    ];
    let cpu = vec!["cpu.cfs_period_us", "cpu.cfs_quota_us"];
    let cpuacct = vec!["cpuacct.usage"];
    let mut out = vec![
        ("memory", memory),
        ("pids", vec!["pids.max"]),
        ("freezer", vec!["freezer.state"]),
    ];
    if comounted {
        out.push(("cpu,cpuacct", [cpu, cpuacct].concat()));
    } else {
        out.push(("cpu", cpu));
        out.push(("cpuacct", cpuacct));
    }
    out
}

/// A v1 host: the controllers' roots (plus ones Assay does not use), optionally co-mounted
/// `cpu,cpuacct` with `cpu` and `cpuacct` symlinks, and for `hybrid` the cgroup2 mount at
/// `unified/`.
fn v1_host(comounted: bool, hybrid: bool) -> TempDir {
    let t = tempfile::tempdir().expect("temp dir");
    let root = t.path();
    for (dir, files) in v1_controllers(comounted) {
        put(&root.join(dir).join("cgroup.procs"), "1\n");
        for f in files {
            if f != "freezer.state" {
                put(&root.join(dir).join(f), "");
            }
        }
    }
    if comounted {
        symlink("cpu,cpuacct", root.join("cpu")).expect("symlink");
        symlink("cpu,cpuacct", root.join("cpuacct")).expect("symlink");
    }
    for other in ["blkio", "devices", "cpuset", "systemd"] {
        put(&root.join(other).join("cgroup.procs"), "1\n");
    }
    if hybrid {
        put(&root.join("unified/cgroup.controllers"), "");
        put(&root.join("unified/cgroup.procs"), "1\n");
    }
    t
}

/// What the kernel puts in a new v1 cgroup `rel`: empty control files in every controller.
fn v1_kernel_mkdir(t: &TempDir, comounted: bool, rel: &str) {
    for (dir, files) in v1_controllers(comounted) {
        let d = t.path().join(dir).join(rel);
        put(&d.join("cgroup.procs"), "");
        for f in files {
            put(&d.join(f), "");
        }
    }
}

const V2_LEAF_FILES: &[&str] = &[
    "cgroup.procs",
    "cgroup.kill",
    "cgroup.subtree_control",
    "memory.max",
    "memory.swap.max",
    "memory.peak",
    "memory.events",
    "pids.max",
    "cpu.max",
    "cpu.stat",
];

/// A cgroup v2 host (a Kubernetes node): one unified hierarchy at the root.
fn v2_host() -> TempDir {
    let t = tempfile::tempdir().expect("temp dir");
    let root = t.path();
    put(
        &root.join("cgroup.controllers"),
        "cpuset cpu io memory hugetlb pids rdma misc\n",
    );
    put(&root.join("cgroup.subtree_control"), "");
    put(&root.join("cgroup.procs"), "1\n");
    put(&root.join("cpu.stat"), "usage_usec 999999999\n");
    t
}

/// What the kernel puts in new v2 cgroups: every level of `rel` gets its control files.
fn v2_kernel_mkdir(t: &TempDir, rel: &str) {
    let mut dir = t.path().to_path_buf();
    for part in Path::new(rel) {
        dir = dir.join(part);
        for f in V2_LEAF_FILES {
            put(&dir.join(f), "");
        }
    }
}

fn limits() -> CgroupLimits {
    CgroupLimits {
        memory_bytes: 256 << 20,
        pids: 64,
        cpu_millicores: 1500,
    }
}

fn detect(t: &TempDir) -> Cgroups {
    Cgroups::detect(t.path()).expect("a usable layout")
}

/// A process to put into a cgroup: the code under test really signals it.
fn sleeper() -> Child {
    Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep")
}

fn pid(c: &Child) -> String {
    c.id().to_string()
}

/// Waits for the child and returns the signal that ended it.
fn ended_by(mut c: Child) -> Option<i32> {
    c.wait().expect("wait").signal()
}

fn still_running(c: &mut Child) -> bool {
    c.try_wait().expect("try_wait").is_none()
}

fn stop(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

#[test]
fn detects_each_layout() {
    for comounted in [false, true] {
        let hybrid = v1_host(comounted, true);
        assert_eq!(Layout::detect(hybrid.path()).unwrap(), Layout::Hybrid);
        let v1 = v1_host(comounted, false);
        assert_eq!(Layout::detect(v1.path()).unwrap(), Layout::V1);
    }
    let v2 = v2_host();
    assert_eq!(Layout::detect(v2.path()).unwrap(), Layout::V2);
    let c = detect(&v2);
    assert_eq!((c.root(), c.layout()), (v2.path(), Layout::V2));

    let empty = tempfile::tempdir().unwrap();
    let e = Cgroups::detect(empty.path()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    assert!(
        e.to_string().contains(&empty.path().display().to_string()),
        "{e}"
    );
}

#[test]
fn v1_run_cgroup_gets_its_limits_and_reports_its_figures() {
    for comounted in [false, true] {
        let t = v1_host(comounted, true);
        v1_kernel_mkdir(&t, comounted, RUN);
        let cgroups = detect(&t);
        let cg = RunCgroup::create(&cgroups, PathBuf::from(RUN), limits()).unwrap();
        let run = |c: &str| t.path().join(c).join(RUN);
        assert_eq!(
            read(&run("memory").join("memory.limit_in_bytes")),
            "268435456"
        );
        assert_eq!(
            read(&run("memory").join("memory.memsw.limit_in_bytes")),
            "268435456",
            "memory + swap = memory: no swap"
        );
        assert_eq!(read(&run("pids").join("pids.max")), "64");
        assert_eq!(read(&run("cpu").join("cpu.cfs_period_us")), "100000");
        assert_eq!(read(&run("cpu").join("cpu.cfs_quota_us")), "150000");
        // The OOM eventfd is registered: "<eventfd> <fd of memory.oom_control>".
        let reg = read(&run("memory").join("cgroup.event_control"));
        let fds: Vec<u32> = reg.split(' ').map(|n| n.parse().unwrap()).collect();
        assert_eq!(fds.len(), 2, "{reg:?}");
        assert_eq!(cg.container_path(), format!("/{RUN}/c"));
        assert_eq!(cg.rel(), Path::new(RUN));

        // Assay's own cgroup in every hierarchy it owns (co-mounted: cpu and cpuacct are one
        // directory, reached through both symlinks).
        let joined = cg.join_procs_files().unwrap();
        let want: Vec<PathBuf> = ["memory", "cpu", "cpuacct", "pids", "freezer"]
            .iter()
            .map(|c| run(c).join("cgroup.procs"))
            .collect();
        assert_eq!(joined, want);

        // Figures as the kernel reports them.
        fs::write(run("cpuacct").join("cpuacct.usage"), "1234567890\n").unwrap();
        fs::write(
            run("memory").join("memory.max_usage_in_bytes"),
            "52428800\n",
        )
        .unwrap();
        fs::write(
            run("memory").join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(cg.cpu_ns(), 1_234_567_890);
        assert_eq!(
            cg.stats(),
            CgroupStats {
                cpu_ns: 1_234_567_890,
                peak_memory_bytes: 52_428_800,
                oom_events: 2,
            }
        );
    }
}

#[test]
fn v1_without_swap_accounting_sets_memory_only() {
    let t = v1_host(false, false);
    v1_kernel_mkdir(&t, false, RUN);
    fs::remove_file(
        t.path()
            .join("memory")
            .join(RUN)
            .join("memory.memsw.limit_in_bytes"),
    )
    .unwrap();
    let cg = RunCgroup::create(&detect(&t), PathBuf::from(RUN), limits()).unwrap();
    assert_eq!(
        read(
            &t.path()
                .join("memory")
                .join(RUN)
                .join("memory.limit_in_bytes")
        ),
        "268435456"
    );
    // Nothing reported yet: zeros, not errors.
    assert_eq!(cg.stats(), CgroupStats::default());
}

#[test]
fn v1_failed_creation_removes_what_it_made() {
    let t = v1_host(false, false);
    v1_kernel_mkdir(&t, false, RUN);
    // The pids controller's files are missing: creation fails on pids.max.
    fs::remove_dir_all(t.path().join("pids/assay")).unwrap();
    let e = RunCgroup::create(&detect(&t), PathBuf::from(RUN), limits()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
    // The pids cgroup it had created (empty, so a plain rmdir removes it) is gone again; the
    // others still hold control files, which only a real cgroupfs lets rmdir remove.
    assert!(!t.path().join("pids").join(RUN).exists());
    assert!(t.path().join("memory").join(RUN).exists());
}

#[test]
fn v2_run_cgroup_gets_its_limits_and_reports_its_figures() {
    let t = v2_host();
    v2_kernel_mkdir(&t, RUN);
    let cgroups = detect(&t);
    let cg = RunCgroup::create(&cgroups, PathBuf::from(RUN), limits()).unwrap();
    let dir = t.path().join(RUN);
    // Controllers delegated at every level down to the run's group (and from it, to `c`).
    for level in ["", "assay", "assay/e1", RUN] {
        assert_eq!(
            read(&t.path().join(level).join("cgroup.subtree_control")),
            "+memory +pids +cpu",
            "level {level:?}"
        );
    }
    assert_eq!(read(&dir.join("memory.max")), "268435456");
    assert_eq!(read(&dir.join("memory.swap.max")), "0");
    assert_eq!(read(&dir.join("pids.max")), "64");
    assert_eq!(read(&dir.join("cpu.max")), "150000 100000");
    assert_eq!(cg.container_path(), format!("/{RUN}/c"));

    // v2 keeps processes out of inner nodes: the runtime joins a leaf `c`.
    assert_eq!(
        cg.join_procs_files().unwrap(),
        vec![dir.join("c").join("cgroup.procs")]
    );
    assert!(dir.join("c").is_dir());

    fs::write(
        dir.join("cpu.stat"),
        "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
    )
    .unwrap();
    fs::write(dir.join("memory.peak"), "1048576\n").unwrap();
    fs::write(
        dir.join("memory.events"),
        "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n",
    )
    .unwrap();
    assert_eq!(cg.cpu_ns(), 2_500_000);
    assert_eq!(
        cg.stats(),
        CgroupStats {
            cpu_ns: 2_500_000,
            peak_memory_bytes: 1 << 20,
            oom_events: 1,
        }
    );
}

#[test]
fn run_cgroups_are_listed_once_across_hierarchies() {
    let t = v1_host(true, true);
    let root = t.path();
    for dir in [
        "memory/assay/e1/r1",
        "memory/assay/e1/r2",
        "pids/assay/e1/r2",
        "pids/assay/e1/r3",
        "cpu,cpuacct/assay/e1/r5",
        "unified/assay/e1/r4",
        "memory/assay/e2/other",
    ] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    put(&root.join("memory/assay/e1/memory.limit_in_bytes"), "");
    let hybrid = detect(&t);
    assert_eq!(
        hybrid.list_children(Path::new("assay/e1")),
        ["r1", "r2", "r3", "r4", "r5"]
    );
    assert!(hybrid.list_children(Path::new("assay/none")).is_empty());

    // Without a cgroup2 mount the `unified` directory is not a hierarchy.
    fs::remove_file(root.join("unified/cgroup.controllers")).unwrap();
    assert_eq!(
        detect(&t).list_children(Path::new("assay/e1")),
        ["r1", "r2", "r3", "r5"]
    );

    let v2 = v2_host();
    v2_kernel_mkdir(&v2, "assay/e1/r1");
    v2_kernel_mkdir(&v2, "assay/e1/r2");
    assert_eq!(
        detect(&v2).list_children(Path::new("assay/e1")),
        ["r1", "r2"]
    );
}

#[test]
fn removal_goes_deepest_first_in_every_hierarchy() {
    let t = v1_host(true, true);
    let root = t.path();
    for dir in ["memory", "cpu,cpuacct", "pids", "freezer", "unified"] {
        fs::create_dir_all(root.join(dir).join(RUN)).unwrap();
    }
    fs::create_dir_all(root.join("memory").join(RUN).join("c/deeper")).unwrap();
    let cgroups = detect(&t);
    let in_ = |c: &str, sub: &str| root.join(c).join(RUN).join(sub);
    assert_eq!(
        cgroups.removal_order(Path::new(RUN)),
        vec![
            // Each co-mounted hierarchy once (not through its symlinks); the cgroup2 mount last.
            in_("cpu,cpuacct", ""),
            in_("freezer", ""),
            in_("memory", "c/deeper"),
            in_("memory", "c"),
            in_("memory", ""),
            in_("pids", ""),
            in_("unified", ""),
        ]
    );

    // Bare directories (nothing inside but directories) are removable on any file system.
    assert_eq!(cgroups.remove_tree(Path::new(RUN)), Vec::<PathBuf>::new());
    assert!(cgroups.removal_order(Path::new(RUN)).is_empty());
    assert!(
        root.join("memory/assay/e1").is_dir(),
        "only the run's cgroup goes"
    );
    assert!(
        cgroups.remove_tree(Path::new(RUN)).is_empty(),
        "gone is fine"
    );
}

#[test]
fn removal_reports_what_it_could_not_remove_without_retrying() {
    let t = v2_host();
    v2_kernel_mkdir(&t, RUN);
    let cgroups = detect(&t);
    // Control files make rmdir fail (ENOTEMPTY) on a plain file system: every directory is
    // reported, at once (only EBUSY, a cgroup still emptying, is worth retrying).
    let began = Instant::now();
    let left = cgroups.remove_tree(Path::new(RUN));
    assert!(began.elapsed() < Duration::from_millis(500));
    assert_eq!(left, vec![t.path().join(RUN)]);
    assert!(t.path().join(RUN).join("memory.max").exists());
}

#[test]
fn v1_kill_freezes_signals_every_process_below_and_thaws() {
    let t = v1_host(false, false);
    v1_kernel_mkdir(&t, false, RUN);
    v1_kernel_mkdir(&t, false, &format!("{RUN}/c"));
    let cgroups = detect(&t);
    let procs = |sub: &str| {
        t.path()
            .join("pids")
            .join(RUN)
            .join(sub)
            .join("cgroup.procs")
    };
    let freezer_state = t.path().join("freezer").join(RUN).join("freezer.state");

    // Nothing inside: no freezer round trip.
    assert_eq!(cgroups.kill_tree(Path::new(RUN), None), 0);
    assert_eq!(read(&freezer_state), "");

    let (a, b) = (sleeper(), sleeper());
    fs::write(procs(""), format!("{}\n", pid(&a))).unwrap();
    fs::write(procs("c"), format!("{}\n", pid(&b))).unwrap();
    assert_eq!(cgroups.kill_tree(Path::new(RUN), None), 2);
    assert_eq!(ended_by(a), Some(libc::SIGKILL));
    assert_eq!(ended_by(b), Some(libc::SIGKILL));
    assert_eq!(
        read(&freezer_state),
        "THAWED",
        "frozen for the kill, thawed after"
    );

    // The runtime process is spared (RunCgroup hands its PID over as u32).
    let (mut runtime, other) = (sleeper(), sleeper());
    fs::write(procs(""), format!("{}\n{}\n", pid(&runtime), pid(&other))).unwrap();
    fs::write(procs("c"), "").unwrap();
    let cg = RunCgroup::create(&cgroups, PathBuf::from(RUN), limits()).unwrap();
    assert_eq!(cg.kill_all_except(Some(runtime.id())), 1);
    assert_eq!(ended_by(other), Some(libc::SIGKILL));
    assert!(still_running(&mut runtime));
    stop(runtime);

    // No pids controller entry: the memory hierarchy is read instead.
    let c = sleeper();
    fs::write(procs(""), "").unwrap();
    fs::write(
        t.path().join("memory").join(RUN).join("cgroup.procs"),
        pid(&c),
    )
    .unwrap();
    assert_eq!(cg.kill_all(), 1);
    assert_eq!(ended_by(c), Some(libc::SIGKILL));
    // Once reaped, a PID may be reused: no stale one may stay for the drop's kill to find.
    fs::write(t.path().join("memory").join(RUN).join("cgroup.procs"), "").unwrap();
    drop(cg);
}

#[test]
fn v2_kill_uses_cgroup_kill_unless_one_is_spared() {
    let t = v2_host();
    v2_kernel_mkdir(&t, RUN);
    v2_kernel_mkdir(&t, &format!("{RUN}/c"));
    let cgroups = detect(&t);
    let dir = t.path().join(RUN);
    let (mut a, mut b) = (sleeper(), sleeper());
    fs::write(dir.join("cgroup.procs"), pid(&a)).unwrap();
    fs::write(dir.join("c/cgroup.procs"), pid(&b)).unwrap();

    // Everything: one write to cgroup.kill, which the kernel (not this tree) acts on.
    assert_eq!(cgroups.kill_tree(Path::new(RUN), None), 2);
    assert_eq!(read(&dir.join("cgroup.kill")), "1");
    assert!(still_running(&mut a) && still_running(&mut b));

    // Sparing one: the others are signalled one by one.
    fs::write(dir.join("cgroup.kill"), "").unwrap();
    assert_eq!(
        cgroups.kill_tree(Path::new(RUN), i32::try_from(a.id()).ok()),
        1
    );
    assert_eq!(ended_by(b), Some(libc::SIGKILL));
    assert!(still_running(&mut a));
    assert_eq!(read(&dir.join("cgroup.kill")), "");
    stop(a);
}
