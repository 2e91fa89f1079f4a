//! Loading the operator settings ([`assay_server::settings::Settings`]) from, in rising
//! precedence: built-in defaults, the TOML file given by `--config` (or `ASSAY_CONFIG`), and
//! `ASSAY_<SECTION>__<KEY>` environment variables (`__` separates nesting levels, e.g.
//! `ASSAY_QUOTAS__DEFAULT__MAX_QUEUED=100`). Any such variable may instead be given as
//! `<NAME>_FILE`, naming a file whose contents (without the final newline) are the value: the
//! way to hand secrets over without putting them in the environment or the config file.

use anyhow::{Context, Result};
use assay_server::settings::Settings;
use figment::value::Value;
use std::path::Path;

/// The top-level sections the environment may set (other `ASSAY_*` variables belong to the
/// command-line flags, e.g. `ASSAY_DATA`).
const SECTIONS: &[&str] = &["quotas", "jwt", "http", "admin"];

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
    let mut overrides = Vec::new();
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
        overrides.push((name.to_ascii_lowercase().replace("__", "."), value));
    }
    crate::config::load(&Settings::default(), file, overrides, "invalid settings")
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
    fn quotas_from_file_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("assay.toml");
        std::fs::write(
            &f,
            "[quotas]\nmax_queued_total = 500\n[quotas.default]\nmax_running = 4\n\
             [quotas.tenants.team-a]\nmax_running = 1\nrate_per_minute = 60\nburst = 5\n\
             max_limits = { wall_time_ms = 2000, memory_bytes = 134217728 }\n",
        )
        .unwrap();
        let s = load_from(
            Some(&f),
            env(&[
                ("ASSAY_QUOTAS__DEFAULT__MAX_QUEUED", "100"),
                ("ASSAY_QUOTAS__TENANTS__TEAM-A__MAX_QUEUED", "7"),
            ]),
        )
        .unwrap();
        let q = &s.quotas;
        assert_eq!(q.max_queued_total, 500);
        assert_eq!(q.default.max_running, 4);
        assert_eq!(
            q.default.max_queued, 100,
            "the environment wins over the file"
        );
        assert_eq!(
            q.default.rate_per_minute,
            assay_domain::DEFAULT_RATE_PER_MINUTE,
            "unset keys keep their defaults"
        );
        let a = q.for_tenant("team-a");
        assert_eq!((a.max_running, a.max_queued), (1, 7));
        assert_eq!((a.rate_per_minute, a.burst), (60, 5));
        assert_eq!(a.max_limits.wall_time_ms, Some(2000));
        assert_eq!(a.max_limits.memory_bytes, Some(128 << 20));
        assert_eq!(a.max_limits.pids, None);
        q.validate().unwrap();

        std::fs::write(&f, "[quotas.default]\nmax_limits = { memory = 1 }\n").unwrap();
        let e = load_from(Some(&f), env(&[])).unwrap_err();
        assert!(e.to_string().contains("memory"), "{e}");
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
    fn admin_key_from_a_file_is_kept_verbatim_and_never_debug_printed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("admin-key");
        let secret = "ak_0123456789abcdef0123456789abcdef";
        std::fs::write(&f, format!("{secret}\n")).unwrap();
        let s = load_from(None, env(&[("ASSAY_ADMIN__KEY_FILE", f.to_str().unwrap())])).unwrap();
        assert_eq!(s.admin.key.as_ref().map(|k| k.expose()), Some(secret));
        assert!(!format!("{s:?}").contains(secret), "{s:?}");
    }

    #[test]
    fn jwt_and_http_settings_from_file_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("assay.toml");
        std::fs::write(
            &f,
            "[jwt]\nissuer = \"https://idp\"\naudience = \"assay\"\njwks_url = \"https://idp/jwks\"\n\
             tenant_claim = \"org\"\n[http]\ncors_allowed_origins = [\"https://a.example\"]\n",
        )
        .unwrap();
        let s = load_from(
            Some(&f),
            env(&[
                ("ASSAY_JWT__ROLE_CLAIM", "assay_role"),
                ("ASSAY_JWT__LEEWAY_SECS", "5"),
            ]),
        )
        .unwrap();
        let j = s.jwt.unwrap();
        assert_eq!(
            (
                j.issuer.as_str(),
                j.tenant_claim.as_str(),
                j.role_claim.as_str(),
                j.leeway_secs
            ),
            ("https://idp", "org", "assay_role", 5)
        );
        assert_eq!(j.jwks_max_age_secs, 600, "unset keys keep their defaults");
        assert_eq!(s.http.cors_allowed_origins, ["https://a.example"]);
    }

    #[test]
    fn unreadable_secret_file_is_an_error_naming_the_variable() {
        let e = load_from(None, env(&[("ASSAY_HTTP__X_FILE", "/nonexistent/secret")])).unwrap_err();
        assert!(format!("{e:#}").contains("ASSAY_HTTP__X_FILE"), "{e:#}");
    }
}
