//! What the suites that run once per runtime share.

use assay_sandbox::RuntimeKind;

/// Whether `kind` is installed. A missing runtime fails under CI (which installs runc, crun and
/// runsc); elsewhere it is reported loudly, naming the `suite` that did not run for it.
pub fn installed(kind: RuntimeKind, suite: &str) -> bool {
    if kind.find().is_some() {
        return true;
    }
    let msg = format!("RUNTIME {kind} IS NOT INSTALLED: its {suite} did NOT run");
    if std::env::var_os("CI").is_some() {
        panic!("{msg} (CI is set, and CI installs runc, crun and runsc)");
    }
    let bar = "!".repeat(msg.len() + 8);
    eprintln!("\n{bar}\n!!! {msg} !!!\n{bar}\n");
    false
}
