//! The program a run executes: a set of files and the entrypoint among them.

use serde::{Deserialize, Serialize};

/// One file of a program, relative to the program's directory (`/code` in the sandbox).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramFile {
    pub path: String,
    pub content: String,
}

/// A validated program: relative, normalised file paths and an entrypoint that is one of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    files: Vec<ProgramFile>,
    entrypoint: String,
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProgramError {
    #[error("the program has no files")]
    Empty,
    #[error("too many files: {0} (at most {MAX_FILES})")]
    TooManyFiles(usize),
    #[error("program too large: {0} bytes (at most {MAX_TOTAL_BYTES})")]
    TooLarge(usize),
    #[error("invalid file path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("duplicate file path {0:?}")]
    Duplicate(String),
    #[error("entrypoint {0:?} is not one of the program's files")]
    MissingEntrypoint(String),
}

pub const MAX_FILES: usize = 256;
pub const MAX_TOTAL_BYTES: usize = 8 << 20;
const MAX_PATH_LEN: usize = 255;
const MAX_DEPTH: usize = 8;

fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty");
    }
    if path.len() > MAX_PATH_LEN {
        return Err("longer than 255 bytes");
    }
    if path.starts_with('/') {
        return Err("must be relative");
    }
    let mut depth = 0;
    for part in path.split('/') {
        depth += 1;
        match part {
            "" => return Err("empty path segment"),
            "." | ".." => return Err("'.' and '..' are not allowed"),
            _ => {}
        }
        if part
            .chars()
            .any(|c| c.is_control() || c == '\\' || c == '\0')
        {
            return Err("control characters and backslashes are not allowed");
        }
    }
    if depth > MAX_DEPTH {
        return Err("nested too deeply");
    }
    Ok(())
}

impl Program {
    /// A single-file program whose entrypoint is `main.py`.
    pub fn single(code: impl Into<String>) -> Program {
        Program {
            files: vec![ProgramFile {
                path: "main.py".into(),
                content: code.into(),
            }],
            entrypoint: "main.py".into(),
        }
    }

    pub fn new(
        files: Vec<ProgramFile>,
        entrypoint: impl Into<String>,
    ) -> Result<Program, ProgramError> {
        let entrypoint = entrypoint.into();
        if files.is_empty() {
            return Err(ProgramError::Empty);
        }
        if files.len() > MAX_FILES {
            return Err(ProgramError::TooManyFiles(files.len()));
        }
        let total: usize = files.iter().map(|f| f.content.len()).sum();
        if total > MAX_TOTAL_BYTES {
            return Err(ProgramError::TooLarge(total));
        }
        let mut seen = std::collections::BTreeSet::new();
        for f in &files {
            check_path(&f.path).map_err(|reason| ProgramError::InvalidPath {
                path: f.path.clone(),
                reason,
            })?;
            if !seen.insert(f.path.as_str()) {
                return Err(ProgramError::Duplicate(f.path.clone()));
            }
        }
        // A file may not also be a directory of another ("a" and "a/b").
        for f in &files {
            let prefix = format!("{}/", f.path);
            if let Some(other) = files.iter().find(|o| o.path.starts_with(&prefix)) {
                return Err(ProgramError::InvalidPath {
                    path: other.path.clone(),
                    reason: "a file of the same name exists",
                });
            }
        }
        if !seen.contains(entrypoint.as_str()) {
            return Err(ProgramError::MissingEntrypoint(entrypoint));
        }
        Ok(Program { files, entrypoint })
    }

    pub fn files(&self) -> &[ProgramFile] {
        &self.files
    }

    pub fn entrypoint(&self) -> &str {
        &self.entrypoint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> ProgramFile {
        ProgramFile {
            path: path.into(),
            content: "print(1)".into(),
        }
    }

    #[test]
    fn accepts_nested_relative_paths() {
        let p = Program::new(vec![file("main.py"), file("pkg/util.py")], "main.py").unwrap();
        assert_eq!(p.entrypoint(), "main.py");
        assert_eq!(p.files().len(), 2);
    }

    #[test]
    fn rejects_escaping_and_odd_paths() {
        for bad in [
            "/etc/passwd",
            "../x.py",
            "a/../../x",
            "a//b",
            "",
            "a\0b",
            "a\\b",
            "./a",
        ] {
            let r = Program::new(vec![file(bad)], bad);
            assert!(
                matches!(r, Err(ProgramError::InvalidPath { .. })),
                "{bad:?} gave {r:?}"
            );
        }
    }

    #[test]
    fn rejects_duplicates_missing_entrypoint_and_empty() {
        assert_eq!(
            Program::new(vec![file("a.py"), file("a.py")], "a.py"),
            Err(ProgramError::Duplicate("a.py".into()))
        );
        assert_eq!(
            Program::new(vec![file("a.py")], "b.py"),
            Err(ProgramError::MissingEntrypoint("b.py".into()))
        );
        assert_eq!(Program::new(vec![], "a.py"), Err(ProgramError::Empty));
        assert!(Program::new(vec![file("a"), file("a/b")], "a").is_err());
    }
}
