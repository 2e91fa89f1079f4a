//! Loading the operator settings ([`assay_server::settings::Settings`]) from, in rising
//! precedence: built-in defaults, the TOML file given by `--config` (or `ASSAY_CONFIG`), and
//! `ASSAY_<SECTION>__<KEY>` environment variables (`__` separates nesting levels, e.g.
//! `ASSAY_QUOTAS__DEFAULT__MAX_QUEUED=100`). Any such variable may instead be given as
//! `<NAME>_FILE`, naming a file whose contents (without the final newline) are the value: the
//! way to hand secrets over without putting them in the environment or the config file.

use anyhow::{Context, Result, bail};
use assay_server::settings::Settings;
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::Value;
use std::path::Path;

/// The top-level sections the environment may set (other `ASSAY_*` variables belong to the
/// command-line flags, e.g. `ASSAY_DATA`).
const SECTIONS: &[&str] = &["quotas", "jwt", "http"];

fn is_setting(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    SECTIONS
        .iter()
        .any(|s| lower.starts_with(&format!("{s}__")))
}

pub fn load(file: Option<&Path>) -> Result<Settings> {
    load_from(file, std::env::vars())
}

/// [`load`] with the environment passed in (tests).
pub fn load_from(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings> {
    let mut fig = Figment::from(Serialized::defaults(Settings::default()));
    if let Some(path) = file {
        if !path.is_file() {
            bail!("config file {} does not exist", path.display());
        }
        fig = fig.merge(Toml::file(path));
    }
    for (k, raw) in env {
        let Some(name) = k.strip_prefix("ASSAY_") else {
            continue;
        };
        if !is_setting(name) {
            continue;
        }
        let (name, value) = match name.strip_suffix("_FILE") {
            Some(name) => {
                let mut text =
                    std::fs::read_to_string(&raw).with_context(|| format!("{k}: reading {raw}"))?;
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                // A secret is text, never reinterpreted as a number or a list.
                (name, Value::from(text))
            }
            // Like figment's `Env`: `10` is a number, `true` a bool, `[a, b]` a list.
            None => (name, raw.parse::<Value>().expect("infallible")),
        };
        let key = name.to_ascii_lowercase().replace("__", ".");
        fig = fig.merge(Serialized::default(&key, value));
    }
    fig.extract().map_err(|e| {
        // Figment's messages name the key and the source, never the value.
        anyhow::anyhow!("invalid settings: {e}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_without_file_or_environment() {
        let s = load_from(None, env(&[("ASSAY_DATA", "/x"), ("HOME", "/root")])).unwrap();
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn missing_file_is_an_error() {
        let e = load_from(Some(Path::new("/nonexistent/assay.toml")), env(&[])).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("assay.toml");
        std::fs::write(&f, "[quotas]\nno_such_setting = 1\n").unwrap();
        let e = load_from(Some(&f), env(&[])).unwrap_err();
        assert!(e.to_string().contains("no_such_setting"), "{e}");
    }

    #[test]
    fn unreadable_secret_file_is_an_error_naming_the_variable() {
        let e = load_from(None, env(&[("ASSAY_HTTP__X_FILE", "/nonexistent/secret")])).unwrap_err();
        assert!(format!("{e:#}").contains("ASSAY_HTTP__X_FILE"), "{e:#}");
    }
}
