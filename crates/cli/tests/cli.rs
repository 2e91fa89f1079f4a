//! The `assay` binary as a user runs it: `assay run`, `assay doctor`, bad input, and clean-up
//! after the process itself was killed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn assay() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_assay"));
    c.env_remove("ASSAY_RUNTIME").env_remove("ASSAY_STATE_DIR");
    c
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn runtimes() -> Vec<&'static str> {
    let found: Vec<_> = ["runc", "crun", "runsc"]
        .into_iter()
        .filter(|r| {
            r.parse::<assay_sandbox::RuntimeKind>()
                .unwrap()
                .find()
                .is_some()
        })
        .collect();
    if std::env::var_os("CI").is_some() {
        assert_eq!(found.len(), 3, "CI must have runc, crun and runsc");
    }
    found
}

fn write_program(dir: &Path, name: &str, code: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, code).unwrap();
    p
}

fn json_of(out: &Output) -> serde_json::Value {
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let mut lines = text.lines();
    let first = lines.next().expect("one line of JSON");
    assert!(
        lines.next().is_none(),
        "exactly one JSON object on stdout, got {text:?}"
    );
    serde_json::from_str(first).expect("valid JSON")
}

#[test]
fn run_hello_json_under_every_runtime() {
    for rt in runtimes() {
        let state = tempfile::tempdir().unwrap();
        let out = assay()
            .args(["run", "--json", "--runtime", rt, "--state-dir"])
            .arg(state.path())
            .arg(repo_file("examples/hello.py"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{rt}: {out:?}");
        let v = json_of(&out);
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for k in [
            "status",
            "exit_code",
            "signal",
            "wall_ms",
            "cpu_ms",
            "peak_memory_bytes",
            "stdout",
            "stderr",
            "stdout_truncated",
            "stderr_truncated",
            "runtime",
        ] {
            assert!(keys.contains(&k), "{rt}: field {k} missing in {v}");
        }
        assert_eq!(v["status"], "succeeded");
        assert_eq!(v["stdout"], "hello, world\n");
        assert_eq!(v["runtime"], rt);
        assert_eq!(v["exit_code"], 0);
    }
}

#[test]
fn run_prints_live_output_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let prog = write_program(
        dir.path(),
        "p.py",
        "import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)",
    );
    let out = assay()
        .args(["run", "--runtime", runtimes()[0], "--state-dir"])
        .arg(dir.path().join("state"))
        .arg(&prog)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed program exits 1: {out:?}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("err\n"), "{stderr}");
    assert!(stderr.contains("failed · exit 3"), "{stderr}");
}

#[test]
fn run_limits_and_stdin_from_flags() {
    let dir = tempfile::tempdir().unwrap();
    let looping = write_program(dir.path(), "loop.py", "while True: pass");
    let out = assay()
        .args([
            "run",
            "--json",
            "--timeout",
            "500ms",
            "--runtime",
            runtimes()[0],
            "--state-dir",
        ])
        .arg(dir.path().join("state"))
        .arg(&looping)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_of(&out)["status"], "timed_out");

    let hog = write_program(dir.path(), "hog.py", "x = bytearray(200 * 1024 * 1024)");
    let out = assay()
        .args([
            "run",
            "--json",
            "--memory",
            "64MiB",
            "--runtime",
            runtimes()[0],
            "--state-dir",
        ])
        .arg(dir.path().join("state"))
        .arg(&hog)
        .output()
        .unwrap();
    assert_eq!(json_of(&out)["status"], "memory_exceeded");

    let echo = write_program(
        dir.path(),
        "echo.py",
        "import sys; print(sys.stdin.read()[::-1])",
    );
    let input = write_program(dir.path(), "in.txt", "abc");
    let out = assay()
        .args(["run", "--json", "--runtime", runtimes()[0], "--stdin"])
        .arg(&input)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg(&echo)
        .output()
        .unwrap();
    assert_eq!(json_of(&out)["stdout"], "cba\n");
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let hello = repo_file("examples/hello.py");
    let cases: &[(&[&str], &str)] = &[
        (&["--memory", "12XB"], "invalid size"),
        (&["--timeout", "3"], "a unit is required"),
        (&["--memory", "100GiB"], "above the operator maximum"),
        (&["--runtime", "docker"], "unknown runtime"),
        (&["--pids", "0"], "greater than zero"),
    ];
    for (flags, want) in cases {
        let out = assay()
            .arg("run")
            .args(*flags)
            .arg("--state-dir")
            .arg(dir.path())
            .arg(&hello)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{flags:?}: nothing on stdout");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{flags:?}: {stderr}");
    }
    let out = assay().args(["run", "/nonexistent/x.py"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading /nonexistent/x.py"));
}

#[test]
fn doctor_reports_the_host() {
    let state = tempfile::tempdir().unwrap();
    let out = assay()
        .args(["doctor", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for rt in runtimes() {
        assert!(
            text.contains(&format!("[ok  ] {rt:<11}")),
            "{rt} should work: {text}"
        );
    }
    assert!(text.contains("cgroups"), "{text}");
    assert!(text.contains("This host can run sandboxes."), "{text}");
}

fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie is dead; it only waits for its parent to read its status.
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

fn procs_below(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(t) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(t.lines().filter_map(|l| l.parse::<i32>().ok()));
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                procs_below(&e.path(), out);
            }
        }
    }
}

/// `assay run` is SIGKILLed mid-run: its sandbox lives on. The next engine started on the same
/// state directory removes it: processes, cgroups, runtime state and bundle.
#[test]
fn leftovers_of_a_killed_process_are_removed_on_next_start() {
    for rt in runtimes() {
        let state = tempfile::tempdir().unwrap();
        let prog = write_program(
            state.path(),
            "sleeper.py",
            "import time\nprint('ready', flush=True)\ntime.sleep(120)",
        );
        let mut child = assay()
            .args(["run", "--runtime", rt, "--state-dir"])
            .arg(state.path().join("s"))
            .arg(&prog)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n", "{rt}");
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let engines: Vec<_> = std::fs::read_dir(state.path().join("s/engines"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(
            engines.len(),
            1,
            "{rt}: the dead engine's directory is still there"
        );
        let engine_id = engines[0].file_name().to_string_lossy().into_owned();
        let cg = Path::new("/sys/fs/cgroup/memory/assay").join(&engine_id);
        let mut pids = Vec::new();
        procs_below(&cg, &mut pids);
        assert!(
            !pids.is_empty(),
            "{rt}: the orphaned sandbox is still running"
        );

        let out = assay()
            .args(["run", "--json", "--runtime", rt, "--state-dir"])
            .arg(state.path().join("s"))
            .arg(repo_file("examples/hello.py"))
            .output()
            .unwrap();
        assert_eq!(json_of(&out)["status"], "succeeded");
        assert!(
            !engines[0].path().exists(),
            "{rt}: dead engine directory removed"
        );
        assert!(!cg.exists(), "{rt}: dead engine cgroup removed");
        for p in pids {
            assert!(
                !pid_alive(p),
                "{rt}: process {p} of the dead engine's sandbox survived"
            );
        }
        let left: Vec<_> = std::fs::read_dir(state.path().join("s/engines"))
            .unwrap()
            .flatten()
            .collect();
        assert!(
            left.is_empty(),
            "{rt}: the second engine removed its own directory too: {left:?}"
        );
    }
}
