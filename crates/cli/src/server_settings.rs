//! Loading the operator settings from, in rising precedence: built-in defaults, the TOML file
//! given by `--config` (or `ASSAY_CONFIG`), and `ASSAY_<SECTION>__<KEY>` environment variables
//! (`__` separates nesting levels, e.g. `ASSAY_QUOTAS__DEFAULT__MAX_QUEUED=100`). Any such
//! variable may instead be given as `<NAME>_FILE`, naming a file whose contents (without the
//! final newline) are the value: the way to hand secrets over without putting them in the
//! environment or the config file.
//!
//! One file holds two kinds of settings: those the API enforces
//! ([`assay_server::settings::Settings`]: `[quotas]`, `[jwt]`, `[http]`, `[admin]`) and those of
//! the binary itself (`[retention]`, which `assay serve` applies).

use crate::retention::Policy;
use anyhow::{Context, Result, bail};
use assay_domain::{QuotaPolicy, parse_duration};
use assay_server::settings::{AdminSettings, HttpSettings, JwtSettings, Settings};
use figment::value::Value;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The top-level sections the environment may set (other `ASSAY_*` variables belong to the
/// command-line flags, e.g. `ASSAY_DATA`).
const SECTIONS: &[&str] = &["quotas", "jwt", "http", "admin", "retention"];

/// The shortest time between two retention sweeps.
const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

fn is_setting(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    SECTIONS
        .iter()
        .any(|s| lower.starts_with(&format!("{s}__")))
}

/// Everything the settings file holds, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerSettings {
    /// What the API enforces.
    pub api: Settings,
    /// `[retention]`; `None` when `finished_older_than` is not set (nothing is deleted).
    pub retention: Option<Policy>,
}

/// `[retention]` as written: durations such as `30d`, `12h`, `90m`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RetentionSettings {
    /// Delete evaluations that finished longer ago than this, with their events and output
    /// blobs. Unset (the default): keep everything.
    finished_older_than: Option<String>,
    /// How often `assay serve` looks for them (the first time at start).
    interval: String,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            finished_older_than: None,
            interval: "24h".into(),
        }
    }
}

impl RetentionSettings {
    fn policy(&self) -> Result<Option<Policy>> {
        let interval = parse_duration(&self.interval).context("retention.interval")?;
        if interval < MIN_INTERVAL {
            bail!(
                "retention.interval: {:?} is too short (at least 1s)",
                self.interval
            );
        }
        let Some(age) = &self.finished_older_than else {
            return Ok(None);
        };
        let older_than = parse_duration(age).context("retention.finished_older_than")?;
        Ok(Some(Policy {
            older_than,
            interval,
        }))
    }
}

/// The file's layout: the API's sections (the fields of [`Settings`], each under the same name:
/// the conversions below name every field, so a section added there fails to compile here until
/// it is added) beside the binary's own. Not `#[serde(flatten)]`: that would lose the key and
/// file that errors name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileSettings {
    quotas: QuotaPolicy,
    jwt: Option<JwtSettings>,
    http: HttpSettings,
    admin: AdminSettings,
    retention: RetentionSettings,
}

impl FileSettings {
    fn new(api: Settings, retention: RetentionSettings) -> FileSettings {
        let Settings {
            quotas,
            jwt,
            http,
            admin,
        } = api;
        FileSettings {
            quotas,
            jwt,
            http,
            admin,
            retention,
        }
    }

    fn split(self) -> (Settings, RetentionSettings) {
        let FileSettings {
            quotas,
            jwt,
            http,
            admin,
            retention,
        } = self;
        (
            Settings {
                quotas,
                jwt,
                http,
                admin,
            },
            retention,
        )
    }
}

impl Default for FileSettings {
    fn default() -> Self {
        FileSettings::new(Settings::default(), RetentionSettings::default())
    }
}

/// The API's settings (the file's other sections are checked too).
pub fn load(file: Option<&Path>) -> Result<Settings> {
    Ok(load_all(file)?.api)
}

/// Every setting of the file and the environment.
pub fn load_all(file: Option<&Path>) -> Result<ServerSettings> {
    load_from(file, std::env::vars())
}

/// [`load_all`] with the environment passed in (tests).
pub fn load_from(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<ServerSettings> {
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
    let all: FileSettings = crate::config::load(
        &FileSettings::default(),
        file,
        overrides,
        "invalid settings",
    )?;
    let (api, retention) = all.split();
    let retention = retention
        .policy()
        .map_err(|e| anyhow::anyhow!("invalid settings: {e:#}"))?;
    Ok(ServerSettings { api, retention })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The API's settings of a file and an environment.
    fn api(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings> {
        load_from(file, env).map(|s| s.api)
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_without_file_or_environment() {
        let s = api(None, env(&[("ASSAY_DATA", "/x"), ("HOME", "/root")])).unwrap();
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn missing_file_is_an_error() {
        let e = api(Some(Path::new("/nonexistent/assay.toml")), env(&[])).unwrap_err();
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
        let s = api(
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
        let e = api(Some(&f), env(&[])).unwrap_err();
        assert!(e.to_string().contains("memory"), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("assay.toml");
        std::fs::write(&f, "[quotas]\nno_such_setting = 1\n").unwrap();
        let e = api(Some(&f), env(&[])).unwrap_err();
        assert!(e.to_string().contains("no_such_setting"), "{e}");
    }

    #[test]
    fn admin_key_from_a_file_is_kept_verbatim_and_never_debug_printed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("admin-key");
        let secret = "ak_0123456789abcdef0123456789abcdef";
        std::fs::write(&f, format!("{secret}\n")).unwrap();
        let s = api(None, env(&[("ASSAY_ADMIN__KEY_FILE", f.to_str().unwrap())])).unwrap();
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
        let s = api(
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
        let e = api(None, env(&[("ASSAY_HTTP__X_FILE", "/nonexistent/secret")])).unwrap_err();
        assert!(format!("{e:#}").contains("ASSAY_HTTP__X_FILE"), "{e:#}");
    }

    #[test]
    fn retention_from_file_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("assay.toml");
        let day = Duration::from_secs(86_400);
        // Off unless `finished_older_than` is set.
        assert_eq!(load_from(None, env(&[])).unwrap().retention, None);
        std::fs::write(&f, "[retention]\ninterval = \"1h\"\n").unwrap();
        assert_eq!(load_from(Some(&f), env(&[])).unwrap().retention, None);

        std::fs::write(&f, "[retention]\nfinished_older_than = \"30d\"\n").unwrap();
        let s = load_from(Some(&f), env(&[])).unwrap();
        assert_eq!(
            s.retention,
            Some(Policy {
                older_than: 30 * day,
                interval: day
            }),
            "the interval is 24h by default"
        );
        assert_eq!(s.api, Settings::default(), "the API's settings are apart");
        let s = load_from(
            Some(&f),
            env(&[
                ("ASSAY_RETENTION__FINISHED_OLDER_THAN", "12h"),
                ("ASSAY_RETENTION__INTERVAL", "90m"),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.retention,
            Some(Policy {
                older_than: day / 2,
                interval: Duration::from_secs(5400)
            }),
            "the environment wins over the file"
        );
    }

    #[test]
    fn bad_retention_settings_are_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("assay.toml");
        for (text, expected) in [
            (
                "finished_older_than = \"30x\"",
                &["retention.finished_older_than", "invalid duration \"30x\""][..],
            ),
            (
                "finished_older_than = \"30\"",
                &["retention.finished_older_than", "a unit is required"],
            ),
            (
                "finished_older_than = 30",
                &["retention.finished_older_than", "expected a string"],
            ),
            (
                "finished_older_than = \"1d\"\ninterval = \"0s\"",
                &["retention.interval", "too short"],
            ),
            (
                "interval = \"soon\"",
                &["retention.interval", "invalid duration"],
            ),
            ("keep = \"1d\"", &["keep", "finished_older_than"]),
        ] {
            std::fs::write(&f, format!("[retention]\n{text}\n")).unwrap();
            let e = format!("{:#}", load_from(Some(&f), env(&[])).unwrap_err());
            assert!(
                e.starts_with("invalid settings") && expected.iter().all(|x| e.contains(x)),
                "{text}: {e}"
            );
            // The API's settings come from the same file: refused all the same.
            assert!(load(Some(&f)).is_err());
        }
        let e = load_from(None, env(&[("ASSAY_RETENTION__INTERVAL", "500ms")])).unwrap_err();
        assert!(format!("{e:#}").contains("retention.interval"), "{e:#}");
    }

    #[test]
    fn the_file_layout_holds_every_api_setting() {
        // Every section of the API's settings reads back through the file's layout (the
        // conversions name every field; this checks that their serde forms agree too).
        let mut api = Settings::default();
        api.quotas.max_queued_total = 7;
        api.http.behind_tls = true;
        api.jwt = Some(JwtSettings {
            issuer: "https://idp".into(),
            ..JwtSettings::default()
        });
        api.admin.key = Some(assay_server::settings::Secret::new("ak_x"));
        let file = FileSettings::new(api.clone(), RetentionSettings::default());
        let text = serde_json::to_value(&file).unwrap();
        let back: FileSettings = serde_json::from_value(text.clone()).unwrap();
        assert_eq!(back.split().0, api);
        let mut api_only = text;
        api_only.as_object_mut().unwrap().remove("retention");
        assert_eq!(
            serde_json::from_value::<Settings>(api_only).unwrap(),
            api,
            "the same keys as the API's own settings"
        );
    }
}
