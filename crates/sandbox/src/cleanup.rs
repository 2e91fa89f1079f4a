//! Start-up clean-up: what engines that died left under the state directory.

use crate::cgroup::Cgroups;
use crate::runtime::{Runtime, RuntimeKind};
use std::fs::{self, File};
use std::path::Path;
use std::time::Duration;

/// Summary of what start-up clean-up removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cleanup {
    pub engines: usize,
    pub sandboxes: usize,
}

/// Removes what engines that are no longer alive left under `engines/`: their containers
/// (through the runtime), their cgroups and their directories. An engine is alive while it
/// holds the `flock` on its directory's `lock` file.
pub(crate) async fn dead_engines(
    engines: &Path,
    cgroups: &Cgroups,
    cgroup_parent: &str,
) -> Cleanup {
    let mut done = Cleanup::default();
    let Ok(rd) = fs::read_dir(engines) else {
        return done;
    };
    for entry in rd.flatten() {
        let dir = entry.path();
        let Ok(lock) = File::options()
            .read(true)
            .write(true)
            .open(dir.join("lock"))
        else {
            // No lock file: a half-created directory of a dead engine.
            let _ = fs::remove_dir_all(&dir);
            continue;
        };
        if lock.try_lock().is_err() {
            continue; // a live engine
        }
        let engine_id = entry.file_name().to_string_lossy().into_owned();
        // First the processes: killing through the cgroups needs no runtime and, once a cgroup
        // is removed, every process that was in it has exited.
        let cg_root = Path::new(cgroup_parent).join(&engine_id);
        for run in cgroups.list_children(&cg_root) {
            cgroups.remove_tree(&cg_root.join(&run));
        }
        cgroups.remove_tree(&cg_root);
        // Then the runtimes' state of those containers.
        for kind in RuntimeKind::BY_STRENGTH {
            let root = dir.join(kind.name());
            let Some(path) = kind.find() else { continue };
            if !root.exists() {
                continue;
            }
            let rt = Runtime::new(kind, path, root, cgroups.layout());
            for id in rt.known_containers() {
                rt.delete_force(&id).await;
                done.sandboxes += 1;
            }
        }
        if let Ok(runs) = fs::read_dir(dir.join("runs")) {
            done.sandboxes = done.sandboxes.max(runs.count());
        }
        // A runtime process orphaned by the dead engine (runc is not inside the run's cgroup)
        // may still be removing its own state as its container dies: retry briefly.
        for attempt in 0..50 {
            match fs::remove_dir_all(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if attempt == 49 => {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove a dead engine's directory")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        done.engines += 1;
    }
    done
}
