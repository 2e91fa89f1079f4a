//! A crate's modules and which of them import which, read from the source text.
//!
//! Good enough for this workspace's code, not a Rust parser: it strips comments, strings and
//! `#[cfg(test)]` modules, finds `mod` declarations, `use` trees and `crate::`/`super::`/
//! `self::` paths, and resolves each path to the module that defines what it names, following
//! re-exports (`pub use child::Item`). Declaring a module (`mod x;`) is not importing it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A module's path from the crate root (`[]` is the root).
pub type ModPath = Vec<String>;

#[derive(Debug, Default)]
pub struct Module {
    pub file: PathBuf,
    pub children: BTreeSet<String>,
    /// Names this module re-exports, and the path they come from (as written).
    pub reexports: BTreeMap<String, (ModPath, Vec<String>)>,
    /// Every path this module uses, as written (`crate::a::B`, `super::c`, `child::D`).
    pub uses: Vec<Vec<String>>,
}

#[derive(Debug, Default)]
pub struct Crate {
    pub modules: BTreeMap<ModPath, Module>,
}

/// Removes comments, string and char literals (their text could look like paths).
pub fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == b'r' && matches!(b.get(i + 1), Some(b'"' | b'#')) && !ident_byte_before(b, i)
        {
            // Raw string: r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            j += 1;
            'raw: while j < b.len() {
                if b[j] == b'"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&b'#')) {
                    j += 1 + hashes;
                    break 'raw;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == b'\'' && is_char_literal(b, i) {
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            // Copy one whole UTF-8 character.
            let len = utf8_len(c);
            out.push_str(&src[i..(i + len).min(src.len())]);
            i += len;
        }
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

fn ident_byte_before(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// `'x'`, `'\n'`, `'\u{..}'` — not a lifetime (`'a`, `'static`).
fn is_char_literal(b: &[u8], i: usize) -> bool {
    match b.get(i + 1) {
        Some(b'\\') => true,
        Some(_) => {
            // One character (possibly multi-byte), then a quote.
            let len = utf8_len(b[i + 1]);
            b.get(i + 1 + len) == Some(&b'\'')
        }
        None => false,
    }
}

/// Removes `#[cfg(test)]` items with a body (test modules): their imports are not the
/// module's.
pub fn strip_tests(src: &str) -> String {
    let mut out = String::new();
    let mut rest = src;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        // The item ends at its body's closing brace, or at a `;` that comes first.
        let Some(open) = after.find(['{', ';']) else {
            rest = "";
            break;
        };
        if after.as_bytes()[open] == b';' {
            rest = &after[open + 1..];
            continue;
        }
        let mut depth = 0usize;
        let mut end = after.len();
        for (k, ch) in after[open..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn is_ident(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// Expands a `use` tree (`a::{b, c::{d, e as f}, self}`) into paths; the last element of each
/// is the name it is imported as.
pub fn expand_use_tree(tree: &str) -> Vec<(Vec<String>, String)> {
    fn split_top(s: &str) -> Vec<&str> {
        let mut parts = Vec::new();
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in s.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&s[start..]);
        parts
    }
    fn go(prefix: &[String], tree: &str, out: &mut Vec<(Vec<String>, String)>) {
        let tree = tree.trim();
        if tree.is_empty() {
            return;
        }
        if let Some(inner) = tree.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
            for part in split_top(inner) {
                go(prefix, part, out);
            }
            return;
        }
        if let Some(brace) = tree.find("::{") {
            let mut p = prefix.to_vec();
            p.extend(tree[..brace].split("::").map(|s| s.trim().to_string()));
            go(&p, &tree[brace + 2..], out);
            return;
        }
        let (path, alias) = match tree.split_once(" as ") {
            Some((p, a)) => (p.trim(), Some(a.trim().to_string())),
            None => (tree, None),
        };
        let mut p = prefix.to_vec();
        for seg in path.split("::").map(str::trim) {
            if seg == "self" && !p.is_empty() {
                continue;
            }
            p.push(seg.to_string());
        }
        let name = alias.unwrap_or_else(|| p.last().cloned().unwrap_or_default());
        out.push((p, name));
    }
    let mut out = Vec::new();
    go(&[], tree, &mut out);
    out
}

struct Parsed {
    children: BTreeSet<String>,
    uses: Vec<(bool, Vec<String>, String)>,
    paths: Vec<Vec<String>>,
}

fn parse(src: &str) -> Parsed {
    let text = strip_tests(&strip(src));
    let mut children = BTreeSet::new();
    let mut uses = Vec::new();
    // `mod x;` and `use …;` items: a keyword at the start of an item (after `;`, a brace, an
    // attribute or the start), optionally `pub`/`pub(crate)`/`pub(super)` before it.
    let bytes = text.as_bytes();
    for kw in ["mod ", "use "] {
        let mut from = 0;
        while let Some(at) = text[from..].find(kw) {
            let i = from + at;
            from = i + kw.len();
            if ident_byte_before(bytes, i) {
                continue;
            }
            let before = text[..i].trim_end();
            let (public, before) = if let Some(b) = before
                .strip_suffix("pub(crate)")
                .or_else(|| before.strip_suffix("pub(super)"))
                .or_else(|| before.strip_suffix("pub"))
            {
                (true, b.trim_end())
            } else {
                (false, before)
            };
            let starts_item = before.is_empty()
                || before.ends_with([';', '{', '}', ']'])
                || before.ends_with("*/");
            if !starts_item {
                continue;
            }
            let Some(end) = text[from..].find([';', '{']).map(|e| from + e) else {
                continue;
            };
            if kw == "mod " {
                if bytes[end] == b';' {
                    let name = text[from..end].trim();
                    if is_ident(name) {
                        children.insert(name.to_string());
                    }
                }
                continue;
            }
            // A use tree may hold braces: read to the `;`.
            let Some(semi) = text[from..].find(';').map(|e| from + e) else {
                continue;
            };
            let tree: String = text[from..semi]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            for (path, name) in expand_use_tree(&tree) {
                uses.push((public, path, name));
            }
        }
    }
    // Paths used in the code: `crate::…`, `super::…`, `self::…`.
    let mut paths = Vec::new();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = text[from..].find(start) {
            let i = from + at;
            from = i + start.len();
            if ident_byte_before(bytes, i) || (i >= 2 && &text[i - 2..i] == "::") {
                continue;
            }
            let mut end = i;
            while end < text.len() {
                let c = text[end..].chars().next().unwrap_or(' ');
                if c.is_alphanumeric() || c == '_' || c == ':' {
                    end += c.len_utf8();
                } else {
                    break;
                }
            }
            let p: Vec<String> = text[i..end]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            // `crate::{…}` alone is a use tree, read above.
            if p.len() > 1 {
                paths.push(p);
            }
        }
    }
    Parsed {
        children,
        uses,
        paths,
    }
}

/// Reads every module of the crate whose root file is `root` (`lib.rs` or `main.rs`).
pub fn read_crate(root: &Path) -> Crate {
    let mut krate = Crate::default();
    let mut todo: Vec<(ModPath, PathBuf)> = vec![(Vec::new(), root.to_path_buf())];
    while let Some((path, file)) = todo.pop() {
        let src = fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let parsed = parse(&src);
        // Where this module's children live.
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let dir = if path.is_empty() || stem == "mod" {
            file.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            file.with_extension("")
        };
        for child in &parsed.children {
            let a = dir.join(format!("{child}.rs"));
            let b = dir.join(child).join("mod.rs");
            let child_file = if a.exists() {
                a
            } else if b.exists() {
                b
            } else {
                continue; // inline module (`mod x { … }` was split oddly) or generated
            };
            let mut p = path.clone();
            p.push(child.clone());
            todo.push((p, child_file));
        }
        let mut m = Module {
            file,
            children: parsed.children,
            ..Module::default()
        };
        for (public, p, name) in parsed.uses {
            if public {
                m.reexports.insert(name, (path.clone(), p.clone()));
            }
            m.uses.push(p);
        }
        m.uses.extend(parsed.paths);
        krate.modules.insert(path, m);
    }
    krate
}

impl Crate {
    /// The module that defines what `p` (as written in module `from`) names; `None` for
    /// paths into other crates.
    pub fn resolve(&self, from: &ModPath, p: &[String]) -> Option<ModPath> {
        self.resolve_depth(from, p, 0)
    }

    fn resolve_depth(&self, from: &ModPath, p: &[String], depth: usize) -> Option<ModPath> {
        if depth > 16 || p.is_empty() {
            return None;
        }
        let mut cur: ModPath;
        let mut rest = p;
        match p[0].as_str() {
            "crate" => {
                cur = Vec::new();
                rest = &p[1..];
            }
            "self" => {
                cur = from.clone();
                rest = &p[1..];
            }
            "super" => {
                cur = from.clone();
                while rest.first().is_some_and(|s| s == "super") {
                    cur.pop();
                    rest = &rest[1..];
                }
            }
            first => {
                // A relative path: a child module, or an item this module imported.
                let m = self.modules.get(from)?;
                if m.children.contains(first) {
                    cur = from.clone();
                } else {
                    return None;
                }
            }
        }
        loop {
            let m = self.modules.get(&cur)?;
            let Some(seg) = rest.first() else {
                return Some(cur);
            };
            if m.children.contains(seg) {
                cur.push(seg.clone());
                rest = &rest[1..];
                continue;
            }
            if let Some((at, src)) = m.reexports.get(seg) {
                // `pub use x::Seg`: what `Seg` names is where `x::Seg` points.
                return self.resolve_depth(at, src, depth + 1).or(Some(cur));
            }
            return Some(cur);
        }
    }

    /// Which modules each module imports (edges between distinct modules).
    pub fn imports(&self) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
        let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
        for (path, m) in &self.modules {
            let e = edges.entry(path.clone()).or_default();
            for u in &m.uses {
                if let Some(target) = self.resolve(path, u)
                    && &target != path
                {
                    e.insert(target);
                }
            }
        }
        edges
    }

    /// Groups of modules that import each other, directly or around a circle.
    pub fn cycles(&self) -> Vec<Vec<ModPath>> {
        let edges = self.imports();
        let reach = |from: &ModPath| -> BTreeSet<ModPath> {
            let mut seen = BTreeSet::new();
            let mut todo = vec![from.clone()];
            while let Some(n) = todo.pop() {
                for next in edges.get(&n).into_iter().flatten() {
                    if seen.insert(next.clone()) {
                        todo.push(next.clone());
                    }
                }
            }
            seen
        };
        let reachable: BTreeMap<ModPath, BTreeSet<ModPath>> =
            edges.keys().map(|k| (k.clone(), reach(k))).collect();
        let mut groups: Vec<Vec<ModPath>> = Vec::new();
        let mut done = BTreeSet::new();
        for (a, ra) in &reachable {
            if done.contains(a) || !ra.contains(a) {
                continue;
            }
            let group: Vec<ModPath> = ra
                .iter()
                .filter(|b| reachable.get(*b).is_some_and(|rb| rb.contains(a)))
                .cloned()
                .collect();
            done.extend(group.iter().cloned());
            groups.push(group);
        }
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_trees_expand() {
        let got: Vec<String> = expand_use_tree("crate::{a::{B, C as D}, e, f::self}")
            .into_iter()
            .map(|(p, n)| format!("{}={n}", p.join("::")))
            .collect();
        assert_eq!(
            got,
            ["crate::a::B=B", "crate::a::C=D", "crate::e=e", "crate::f=f"]
        );
    }

    #[test]
    fn comments_strings_and_tests_are_not_code() {
        let src = "use crate::a; // crate::b\nfn f() { let s = \"crate::c\"; let r = r#\"crate::d\"#; let c = '\"'; crate::e::f(); }\n#[cfg(test)]\nmod tests { use crate::g; }\n";
        let p = parse(src);
        let all: Vec<String> = p.paths.iter().map(|p| p.join("::")).collect();
        assert_eq!(all, ["crate::a", "crate::e::f"]);
    }
}
