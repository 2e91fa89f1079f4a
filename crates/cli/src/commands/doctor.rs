//! `assay doctor`: what works on this host for running sandboxes, and what to fix.

use assay_sandbox::doctor::{self, Level};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    #[arg(long, default_value = "/run/assay", env = "ASSAY_STATE_DIR")]
    state_dir: PathBuf,
}

/// Exit status 1 when sandboxes cannot run here.
pub async fn run(args: DoctorArgs) -> ExitCode {
    let checks = doctor::run_checks(&args.state_dir).await;
    let mut failed = false;
    for c in &checks {
        let tag = match c.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => {
                failed = true;
                "FAIL"
            }
        };
        println!("[{tag}] {:<11} {}", c.name, c.detail);
        if !c.fix.is_empty() {
            println!("       {:<11} fix: {}", "", c.fix);
        }
    }
    if failed {
        println!("\nSome checks failed: sandboxes cannot run until they are fixed.");
        ExitCode::from(1)
    } else {
        println!("\nThis host can run sandboxes.");
        ExitCode::SUCCESS
    }
}
