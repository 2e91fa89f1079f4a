//! Fuzzes what the API does with an untrusted request body: JSON → `SubmitRequest` →
//! `validate` (program shape, paths, Python syntax, limits, stdin, priority, labels), plus the
//! duration and size parsers. It must never panic, and whatever validation accepts must hold
//! the invariants the rest of the platform relies on.
#![no_main]

use assay_api::ApiError;
use assay_api::evaluation::SubmitRequest;
use assay_domain::{LimitPolicy, MAX_STDIN_BYTES, check_python, parse_duration, parse_size};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        // The small parsers see user text from the CLI and the API's limit fields.
        let _ = parse_duration(text);
        let _ = parse_size(text);
        // The syntax checker sees arbitrary program text.
        let _ = check_python("main.py", text);
    }
    let Ok(req) = serde_json::from_slice::<SubmitRequest>(data) else {
        return;
    };
    let policy = LimitPolicy::default();
    match req.validate(&policy) {
        Ok(sub) => {
            let l = &sub.limits;
            let m = &policy.maxima;
            assert!(l.wall_time_ms >= 1 && l.wall_time_ms <= m.wall_time_ms);
            assert!(l.cpu_time_ms <= m.cpu_time_ms);
            assert!(l.memory_bytes <= m.memory_bytes);
            assert!(l.pids >= 1 && l.pids <= m.pids);
            assert!(l.output_bytes <= m.output_bytes);
            assert!(l.tmpfs_bytes <= m.tmpfs_bytes);
            assert!(l.open_files <= m.open_files);
            assert!(l.file_size_bytes <= m.file_size_bytes);
            assert!(sub.stdin.len() <= MAX_STDIN_BYTES);
            assert!((-100..=100).contains(&sub.priority));
            assert!(sub.labels.len() <= 16);
            let files = sub.program.files();
            assert!(!files.is_empty());
            assert!(files.iter().any(|f| f.path == sub.program.entrypoint()));
            for f in files {
                // A path can never leave the program's directory.
                assert!(!f.path.starts_with('/'), "absolute path {:?}", f.path);
                assert!(
                    f.path
                        .split('/')
                        .all(|c| !c.is_empty() && c != "." && c != ".."),
                    "path escapes: {:?}",
                    f.path
                );
                assert!(!f.path.contains('\0'));
            }
        }
        Err(e) => {
            // Every refusal has a stable code (a 422) and a message.
            assert!(!e.to_string().is_empty());
            let api = ApiError::from(e);
            assert_eq!(api.status(), 422, "{api}");
            assert!(!api.message.is_empty());
        }
    }
});
