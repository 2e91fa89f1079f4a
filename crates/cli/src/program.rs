//! Programs on disk as submissions (`SubmitRequest`): one file, a directory of files (`submit`),
//! every `*.py` of a directory or every line of a JSONL file (`batch`).

use anyhow::{Context, Result, anyhow, bail};
use assay_api::LimitOverrides;
use assay_api::evaluation::SubmitRequest;
use assay_domain::ProgramFile;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The options of `assay submit` that shape the submission.
#[derive(Clone, Debug, Default)]
pub struct SubmitOptions {
    pub labels: Vec<(String, String)>,
    pub stdin: Option<PathBuf>,
    pub limits: LimitOverrides,
    pub priority: Option<i32>,
    pub entrypoint: Option<String>,
}

/// Every file under `dir`, relative paths with `/`, sorted. Hidden entries, `__pycache__` and
/// `*.pyc` are skipped; symbolic links to directories are not followed.
fn read_program_dir(dir: &Path) -> Result<Vec<ProgramFile>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<ProgramFile>) -> Result<()> {
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name == "__pycache__" || name.ends_with(".pyc") {
                continue;
            }
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                walk(root, &path, out)?;
                continue;
            }
            if !path.is_file() {
                continue; // a link to a directory, a socket, a dangling link…
            }
            let rel = path
                .strip_prefix(root)
                .expect("walked from root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let content = String::from_utf8(bytes).map_err(|_| {
                anyhow!(
                    "{} is not UTF-8 text (only text files can be submitted)",
                    path.display()
                )
            })?;
            out.push(ProgramFile { path: rel, content });
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The submission of a file (`code`) or a directory (`files`).
pub fn build_submission(path: &Path, opts: &SubmitOptions) -> Result<SubmitRequest> {
    let mut req = SubmitRequest {
        language: "python".into(),
        ..SubmitRequest::default()
    };
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.is_dir() {
        let files = read_program_dir(path)?;
        if files.is_empty() {
            bail!("{} has no files", path.display());
        }
        let entry = opts.entrypoint.clone().unwrap_or_else(|| "main.py".into());
        if !files.iter().any(|f| f.path == entry) {
            bail!(
                "{} has no {entry}: name the file to run with --entrypoint",
                path.display()
            );
        }
        req.files = Some(files);
        req.entrypoint = Some(entry);
    } else {
        if opts.entrypoint.is_some() {
            bail!("--entrypoint applies to a directory only");
        }
        req.code = Some(read_text(path)?);
    }
    if let Some(p) = &opts.stdin {
        let stdin = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        let stdin = String::from_utf8(stdin)
            .map_err(|_| anyhow!("{}: stdin must be UTF-8 text", p.display()))?;
        req.stdin = Some(stdin);
    }
    req.limits = Some(opts.limits).filter(|l| *l != LimitOverrides::default());
    req.priority = opts.priority;
    if !opts.labels.is_empty() {
        req.labels = Some(opts.labels.iter().cloned().collect());
    }
    Ok(req)
}

/// One submission of a batch, and where it came from (`a.py`, `line 7`).
#[derive(Clone, Debug, PartialEq)]
pub struct BatchItem {
    pub source: String,
    pub request: SubmitRequest,
}

/// One submission per `*.py` file of `dir` (not recursive), labelled `file=NAME`.
pub fn batch_from_dir(dir: &Path) -> Result<Vec<BatchItem>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".py") && !name.starts_with('.') && entry.path().is_file() {
            names.push(name);
        }
    }
    names.sort();
    if names.is_empty() {
        bail!("{} has no *.py files", dir.display());
    }
    names
        .into_iter()
        .map(|name| {
            let request = SubmitRequest {
                language: "python".into(),
                code: Some(read_text(&dir.join(&name))?),
                labels: Some(BTreeMap::from([("file".to_string(), name.clone())])),
                ..SubmitRequest::default()
            };
            Ok(BatchItem {
                source: name,
                request,
            })
        })
        .collect()
}

/// One submission object per line (the body of `POST /v1/evaluations`); blank lines are
/// skipped; `language` defaults to python. Errors name the line.
pub fn batch_from_jsonl(text: &str) -> Result<Vec<BatchItem>, String> {
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value =
            serde_json::from_str(line).map_err(|e| format!("line {n}: invalid JSON: {e}"))?;
        let Value::Object(mut body) = value else {
            return Err(format!(
                "line {n}: expected a JSON object (one submission per line)"
            ));
        };
        body.entry("language").or_insert_with(|| "python".into());
        let request = serde_json::from_value::<SubmitRequest>(Value::Object(body))
            .map_err(|e| format!("line {n}: not a submission: {e}"))?;
        items.push(BatchItem {
            source: format!("line {n}"),
            request,
        });
    }
    if items.is_empty() {
        return Err("no submissions (the file is empty)".into());
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn submission_from_a_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prog.py");
        std::fs::write(&file, "print(input())\n").unwrap();
        let stdin = dir.path().join("in.txt");
        std::fs::write(&stdin, "hello\n").unwrap();
        let opts = SubmitOptions {
            labels: vec![("team".into(), "a".into()), ("run".into(), "7".into())],
            stdin: Some(stdin),
            limits: LimitOverrides {
                wall_time_ms: Some(3000),
                cpu_time_ms: Some(500),
                memory_bytes: Some(268435456),
                pids: Some(8),
                ..LimitOverrides::default()
            },
            priority: Some(-3),
            ..Default::default()
        };
        let req = build_submission(&file, &opts).unwrap();
        // The body is what the server deserialises.
        let body = serde_json::to_value(&req).unwrap();
        assert_eq!(
            serde_json::from_value::<SubmitRequest>(body.clone()).unwrap(),
            req
        );
        assert_eq!(
            body,
            json!({
                "language": "python",
                "code": "print(input())\n",
                "stdin": "hello\n",
                "limits": {"wall_time_ms": 3000, "cpu_time_ms": 500, "memory_bytes": 268435456u64, "pids": 8},
                "priority": -3,
                "labels": {"team": "a", "run": "7"},
            })
        );

        let plain = build_submission(&file, &SubmitOptions::default()).unwrap();
        assert_eq!(
            serde_json::to_value(&plain).unwrap(),
            json!({"language": "python", "code": "print(input())\n"})
        );

        let err = build_submission(
            &file,
            &SubmitOptions {
                entrypoint: Some("a.py".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
        assert!(build_submission(&dir.path().join("nope.py"), &SubmitOptions::default()).is_err());
    }

    #[test]
    fn submission_from_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("main.py"), "import util.helpers\n").unwrap();
        std::fs::create_dir_all(root.join("util/__pycache__")).unwrap();
        std::fs::write(root.join("util/helpers.py"), "X = 1\n").unwrap();
        std::fs::write(
            root.join("util/__pycache__/helpers.cpython-312.pyc"),
            [0u8, 159, 146],
        )
        .unwrap();
        std::fs::write(root.join("data.txt"), "abc").unwrap();
        std::fs::create_dir(root.join(".git")).unwrap();
        std::fs::write(root.join(".git/HEAD"), "ref").unwrap();

        let req = build_submission(root, &SubmitOptions::default()).unwrap();
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({
                "language": "python",
                "files": [
                    {"path": "data.txt", "content": "abc"},
                    {"path": "main.py", "content": "import util.helpers\n"},
                    {"path": "util/helpers.py", "content": "X = 1\n"},
                ],
                "entrypoint": "main.py",
            })
        );

        let req = build_submission(
            root,
            &SubmitOptions {
                entrypoint: Some("util/helpers.py".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(req.entrypoint.as_deref(), Some("util/helpers.py"));

        let err = build_submission(
            root,
            &SubmitOptions {
                entrypoint: Some("run.py".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("no run.py") && err.to_string().contains("--entrypoint"),
            "{err}"
        );

        std::fs::write(root.join("blob.bin"), [0xffu8, 0xfe]).unwrap();
        let err = build_submission(root, &SubmitOptions::default()).unwrap_err();
        assert!(
            err.to_string().contains("blob.bin") && err.to_string().contains("UTF-8"),
            "{err}"
        );
    }

    #[test]
    fn jsonl_batches() {
        let text = "{\"code\": \"print(1)\"}\n\n{\"language\": \"python\", \"files\": [{\"path\": \"main.py\", \"content\": \"x=1\"}], \"entrypoint\": \"main.py\", \"labels\": {\"k\": \"v\"}}\n";
        let items = batch_from_jsonl(text).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].source, "line 1");
        assert_eq!(items[1].source, "line 3");
        assert_eq!(items[0].request.language, "python");

        let err = batch_from_jsonl("{\"code\": \"1\"}\n{\"code\": \"2\"\n").unwrap_err();
        assert!(err.starts_with("line 2: invalid JSON"), "{err}");
        let err = batch_from_jsonl("{\"code\": \"1\"}\n[1, 2]\n").unwrap_err();
        assert!(err.starts_with("line 2: expected a JSON object"), "{err}");
        let err = batch_from_jsonl("\n\n{\"code\": \"1\", \"colour\": \"red\"}\n").unwrap_err();
        assert!(
            err.starts_with("line 3: not a submission") && err.contains("colour"),
            "{err}"
        );
        let err = batch_from_jsonl("{\"code\": 5}\n").unwrap_err();
        assert!(err.starts_with("line 1:"), "{err}");
        assert!(
            batch_from_jsonl("\n  \n")
                .unwrap_err()
                .contains("no submissions")
        );
    }
}
