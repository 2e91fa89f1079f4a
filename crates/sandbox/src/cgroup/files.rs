//! Reading and writing cgroup control files.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Writes a control file. It must exist: the kernel creates every control file with its
/// directory, so a missing one means a controller is absent, which is an error, not something
/// to paper over by creating a plain file.
pub(super) fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {value:?} to {}: {e}", path.display()),
        )
    })
}

pub(super) fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Reads a `key value` line from a flat-keyed cgroup file.
pub(super) fn read_key(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// True when the entry is a real directory (not a symlink to one: co-mounted v1 hierarchies
/// such as `cpu -> cpu,cpuacct` appear twice otherwise).
pub(super) fn is_dir(entry: &fs::DirEntry) -> bool {
    entry.file_type().map(|t| t.is_dir()).unwrap_or(false)
}
