//! The workspace keeps the shape ARCHITECTURE.md describes:
//! - crate dependencies point one way (the table below is the graph ARCHITECTURE.md draws);
//! - no two modules of a crate import each other, directly or around a circle;
//! - no source file under `crates/*/src` is longer than 900 lines (conformance suites aside);
//! - ARCHITECTURE.md and the ADRs name only files that exist and point only inside the
//!   repository.

use assay_layout::modules::{ModPath, read_crate};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Every package of the workspace: (directory, package name).
fn packages() -> Vec<(PathBuf, String)> {
    let root = root();
    let mut dirs: Vec<PathBuf> = fs::read_dir(root.join("crates"))
        .expect("crates/")
        .flatten()
        .map(|e| e.path())
        .collect();
    dirs.push(root.join("bench"));
    dirs.push(root.join("tools/layout"));
    dirs.sort();
    dirs.into_iter()
        .filter(|d| d.join("Cargo.toml").exists())
        .map(|d| {
            let toml = fs::read_to_string(d.join("Cargo.toml")).expect("Cargo.toml");
            let name = toml
                .lines()
                .find_map(|l| l.strip_prefix("name = \""))
                .and_then(|l| l.strip_suffix('"'))
                .expect("a package name")
                .to_string();
            (d, name)
        })
        .collect()
}

/// The Assay crates a package depends on (`[dependencies]`, not dev-dependencies).
fn assay_dependencies(dir: &Path) -> BTreeSet<String> {
    let toml = fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
    let mut in_deps = false;
    let mut deps = BTreeSet::new();
    for line in toml.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && line.starts_with("assay-") {
            let name: String = line
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '-')
                .collect();
            deps.insert(name);
        }
    }
    deps
}

#[test]
fn crate_dependencies_point_one_way() {
    // Top depends on bottom. Keep in step with the graph in ARCHITECTURE.md.
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("assay-domain", &[][..]),
        ("assay-api", &["assay-domain"][..]),
        ("assay-store", &["assay-domain"][..]),
        ("assay-sandbox", &["assay-domain"][..]),
        ("assay-blob", &[][..]),
        ("assay-store-sqlite", &["assay-domain", "assay-store"][..]),
        ("assay-store-postgres", &["assay-domain", "assay-store"][..]),
        (
            "assay-service",
            &["assay-api", "assay-blob", "assay-domain", "assay-store"][..],
        ),
        (
            "assay-worker",
            &["assay-blob", "assay-domain", "assay-sandbox", "assay-store"][..],
        ),
        (
            "assay-server",
            &["assay-api", "assay-domain", "assay-service"][..],
        ),
        (
            "assay",
            &[
                "assay-api",
                "assay-blob",
                "assay-domain",
                "assay-sandbox",
                "assay-server",
                "assay-service",
                "assay-store",
                "assay-store-postgres",
                "assay-store-sqlite",
                "assay-worker",
            ][..],
        ),
        (
            "assay-bench",
            &[
                "assay-domain",
                "assay-sandbox",
                "assay-store",
                "assay-store-postgres",
                "assay-store-sqlite",
            ][..],
        ),
        ("assay-layout", &[][..]),
    ]);
    for (dir, name) in packages() {
        let ok: BTreeSet<String> = allowed
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name} is not in this test's table (nor ARCHITECTURE.md)"))
            .iter()
            .map(|s| s.to_string())
            .collect();
        let deps = assay_dependencies(&dir);
        let extra: Vec<&String> = deps.difference(&ok).collect();
        assert!(extra.is_empty(), "{name} must not depend on {extra:?}");
    }
}

fn crate_roots() -> Vec<(String, PathBuf)> {
    let mut roots = Vec::new();
    for (dir, name) in packages() {
        let src = dir.join("src");
        for file in ["lib.rs", "main.rs"] {
            if src.join(file).exists() {
                roots.push((format!("{name} ({file})"), src.join(file)));
            }
        }
        if name == "assay-bench" {
            for bin in ["sandbox.rs", "service.rs"] {
                roots.push((format!("{name} ({bin})"), src.join(bin)));
            }
        }
    }
    roots
}

fn show(p: &ModPath) -> String {
    if p.is_empty() {
        "crate".into()
    } else {
        p.join("::")
    }
}

#[test]
fn no_two_modules_of_a_crate_import_each_other() {
    let mut problems = Vec::new();
    for (name, root) in crate_roots() {
        let krate = read_crate(&root);
        for cycle in krate.cycles() {
            let names: Vec<String> = cycle.iter().map(show).collect();
            problems.push(format!("{name}: {}", names.join(" ⇄ ")));
        }
    }
    assert!(
        problems.is_empty(),
        "modules that import each other (move what both need into a module of its own):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_module_reader_sees_imports_and_cycles() {
    // A crate made up for the check itself, so that it cannot pass by seeing nothing.
    let dir = std::env::temp_dir().join(format!("assay-layout-{}", std::process::id()));
    let src = dir.join("src");
    fs::create_dir_all(src.join("b")).unwrap();
    fs::write(src.join("lib.rs"), "mod a;\nmod b;\npub use b::Thing;\n").unwrap();
    fs::write(src.join("a.rs"), "use crate::Thing;\npub fn f() {}\n").unwrap();
    fs::write(
        src.join("b/mod.rs"),
        "mod c;\npub use c::Thing;\nfn g() { crate::a::f() }\n",
    )
    .unwrap();
    fs::write(
        src.join("b/c.rs"),
        "pub struct Thing;\nuse super::super::a;\n",
    )
    .unwrap();
    let krate = read_crate(&src.join("lib.rs"));
    let edges = krate.imports();
    let p = |s: &str| -> ModPath { s.split("::").map(str::to_string).collect() };
    assert!(
        edges[&p("a")].contains(&p("b::c")),
        "a re-export is followed to its source"
    );
    assert!(edges[&p("b")].contains(&p("a")));
    let cycles = krate.cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(cycles[0].contains(&p("a")) && cycles[0].contains(&p("b::c")));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn source_files_stay_short() {
    const MAX_LINES: usize = 900;
    let mut long = Vec::new();
    // The bound is on the crates; the benchmarks' binaries are not counted.
    let mut todo: Vec<PathBuf> = packages()
        .into_iter()
        .filter(|(d, _)| d.starts_with(root().join("crates")))
        .map(|(d, _)| d.join("src"))
        .collect();
    while let Some(p) = todo.pop() {
        let Ok(rd) = fs::read_dir(&p) else { continue };
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|x| x == "rs")
                && path.file_stem().is_none_or(|s| s != "conformance")
            {
                let n = fs::read_to_string(&path).unwrap().lines().count();
                if n > MAX_LINES {
                    long.push(format!("{} ({n} lines)", path.display()));
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "split these by concern (at most {MAX_LINES} lines): {long:?}"
    );
}

/// Every file of the repository (not under target/, node_modules/, .git/).
fn repository_files() -> Vec<PathBuf> {
    let root = root();
    let mut out = Vec::new();
    let mut todo = vec![root.clone()];
    while let Some(dir) = todo.pop() {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(
                    name.as_str(),
                    "target" | "node_modules" | ".git" | "assay-data"
                ) {
                    todo.push(path);
                }
            } else {
                out.push(path.strip_prefix(&root).unwrap().to_path_buf());
            }
        }
    }
    out
}

#[test]
fn the_architecture_documents_name_only_what_exists() {
    let root = root();
    let files = repository_files();
    let names: BTreeSet<String> = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let dirs: BTreeSet<PathBuf> = files
        .iter()
        .flat_map(|f| f.ancestors().skip(1).map(Path::to_path_buf))
        .collect();
    let mut docs = vec![root.join("ARCHITECTURE.md")];
    for e in fs::read_dir(root.join("docs/adr")).unwrap().flatten() {
        docs.push(e.path());
    }
    let mut problems = Vec::new();
    for doc in docs {
        let text = fs::read_to_string(&doc).unwrap();
        let shown = doc.strip_prefix(&root).unwrap().display().to_string();
        for bad in ["../", "DESIGN.md", "/work/"] {
            if text.contains(bad) {
                problems.push(format!("{shown}: points outside the repository ({bad})"));
            }
        }
        // `code spans` that name files: with a directory, the exact path; a bare file name,
        // some file of that name.
        for (i, span) in text.split('`').enumerate() {
            if i % 2 == 0 || span.contains(' ') || span.contains('*') || span.contains('<') {
                continue;
            }
            let span = span.trim_end_matches(['.', ',', ':']);
            let is_file = [".rs", ".md", ".sql", ".toml", ".json", ".sh"]
                .iter()
                .any(|x| span.ends_with(x));
            let rooted = [
                "crates/", "docs/", "scripts/", "bench/", "tools/", ".ci/", "fuzz/",
            ]
            .iter()
            .any(|p| span.starts_with(p));
            if rooted {
                let p = Path::new(span.trim_end_matches('/'));
                if !files.iter().any(|f| f == p) && !dirs.contains(p) {
                    problems.push(format!("{shown}: `{span}` does not exist"));
                }
            } else if is_file && !span.contains('/') && !names.contains(span) {
                problems.push(format!("{shown}: no file is called `{span}`"));
            }
        }
        // Markdown links stay inside the repository and resolve.
        for link in text.split("](").skip(1) {
            let target = link.split(')').next().unwrap_or("");
            if target.starts_with('#') || target.is_empty() {
                continue;
            }
            let base = doc.parent().unwrap();
            let resolved = base.join(target.split('#').next().unwrap());
            if target.contains("://") || !resolved.exists() {
                problems.push(format!(
                    "{shown}: link ({target}) does not resolve in the repository"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
