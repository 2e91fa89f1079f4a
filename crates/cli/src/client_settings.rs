//! Where the client commands find the server and which key they present, in falling
//! precedence: a flag, then the environment (`ASSAY_URL`, `ASSAY_KEY`; both through clap), then
//! the config file (`$XDG_CONFIG_HOME/assay/config.toml`, else `~/.config/assay/config.toml`,
//! or `--config`), then the defaults: `http://127.0.0.1:8080`, and the admin key `assay serve`
//! writes on first start (`$ASSAY_DATA/admin.key`, else `./assay-data/admin.key`).
//!
//! The file is read by the same loader as the server's settings (`config`), and like them it
//! refuses unknown keys.

use anyhow::{Context, Result, bail};
use figment::value::Value;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// The server URL when neither a flag, the environment nor the config file names one.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
/// Where `assay serve` (with its default data directory) writes the admin key on first start.
const ADMIN_KEY_FILE: &str = "assay-data/admin.key";
const NO_KEY: &str =
    "no API key: pass --key, set ASSAY_KEY, or put key = \"...\" in the config file";

/// Where the server is and how to authenticate (global flags of every command).
#[derive(clap::Args, Clone, Default)]
pub struct Connection {
    /// Server URL [default: `url` in the config file, else http://127.0.0.1:8080]
    #[arg(long, env = "ASSAY_URL", global = true)]
    pub url: Option<String>,
    /// API key [default: `key` in the config file, else the admin key the server wrote to
    /// $ASSAY_DATA/admin.key or ./assay-data/admin.key]
    #[arg(long, env = "ASSAY_KEY", hide_env_values = true, global = true)]
    pub key: Option<String>,
    /// Config file [default: $XDG_CONFIG_HOME/assay/config.toml or ~/.config/assay/config.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// What the config file may set; any other key is an error.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    url: Option<String>,
    key: Option<String>,
}

/// Where to connect, with which key.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSettings {
    pub url: String,
    pub key: String,
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key itself.
        let key = format!("<{} characters>", self.key.len());
        f.debug_struct("ClientSettings")
            .field("url", &self.url)
            .field("key", &key)
            .finish()
    }
}

/// The settings of this process: its flags and environment, its config file, its data folder.
pub fn resolve(conn: &Connection) -> Result<ClientSettings> {
    let default_config = default_config_path(
        std::env::var_os("XDG_CONFIG_HOME"),
        std::env::var_os("HOME"),
    );
    // The server's data directory: `--data`/`ASSAY_DATA` of `assay serve`, default ./assay-data.
    let admin_key = std::env::var_os("ASSAY_DATA")
        .filter(|d| !d.is_empty())
        .map_or_else(
            || PathBuf::from(ADMIN_KEY_FILE),
            |d| PathBuf::from(d).join("admin.key"),
        );
    resolve_with(conn, default_config, &admin_key)
}

/// `$XDG_CONFIG_HOME/assay/config.toml`, else `$HOME/.config/assay/config.toml`.
fn default_config_path(
    xdg_config_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    match xdg_config_home.filter(|x| !x.is_empty()) {
        Some(x) => Some(PathBuf::from(x).join("assay/config.toml")),
        None => home
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".config/assay/config.toml")),
    }
}

fn nonempty(s: Option<&str>) -> Option<String> {
    s.map(str::trim).filter(|s| !s.is_empty()).map(String::from)
}

/// Flag or environment (already merged by clap) over the config file (`--config`, which must
/// exist, else `default_config` if it exists) over the defaults.
fn resolve_with(
    conn: &Connection,
    default_config: Option<PathBuf>,
    admin_key_file: &Path,
) -> Result<ClientSettings> {
    let file = conn
        .config
        .clone()
        .or_else(|| default_config.filter(|p| p.exists()));
    let given = [("url", &conn.url), ("key", &conn.key)]
        .into_iter()
        .filter_map(|(name, v)| Some((name.to_string(), Value::from(nonempty(v.as_deref())?))));
    let what = match &file {
        Some(path) => format!("config file {}", path.display()),
        None => "client settings".to_string(),
    };
    let merged = crate::config::load(&ClientFile::default(), file.as_deref(), given, &what)?;
    let url = nonempty(merged.url.as_deref()).unwrap_or_else(|| DEFAULT_URL.to_string());
    let key = match nonempty(merged.key.as_deref()) {
        Some(k) => k,
        None if admin_key_file.is_file() => {
            let k = std::fs::read_to_string(admin_key_file)
                .with_context(|| format!("reading {}", admin_key_file.display()))?;
            match nonempty(Some(&k)) {
                Some(k) => k,
                None => bail!("{} is empty; {NO_KEY}", admin_key_file.display()),
            }
        }
        None => bail!("{NO_KEY}"),
    };
    Ok(ClientSettings { url, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_path_prefers_xdg() {
        assert_eq!(
            default_config_path(Some("/x".into()), Some("/home/u".into())),
            Some(PathBuf::from("/x/assay/config.toml"))
        );
        assert_eq!(
            default_config_path(Some("".into()), Some("/home/u".into())),
            Some(PathBuf::from("/home/u/.config/assay/config.toml"))
        );
        assert_eq!(default_config_path(None, None), None);
    }

    fn conn(url: Option<&str>, key: Option<&str>, config: Option<&Path>) -> Connection {
        Connection {
            url: url.map(String::from),
            key: key.map(String::from),
            config: config.map(Path::to_path_buf),
        }
    }

    fn settings(url: &str, key: &str) -> ClientSettings {
        ClientSettings {
            url: url.into(),
            key: key.into(),
        }
    }

    /// The settings from a config file of `text` alone (no flags, no admin key file).
    fn from_file(text: &str) -> Result<ClientSettings> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.toml");
        std::fs::write(&f, text).unwrap();
        resolve_with(&conn(None, None, Some(&f)), None, &dir.path().join("none"))
    }

    #[test]
    fn config_file_syntax() {
        let s =
            from_file("# Assay\n\nurl = \"http://10.0.0.1:9000\"  # the lab server\nkey='k-\\1'\n")
                .unwrap();
        assert_eq!(s, settings("http://10.0.0.1:9000", "k-\\1"));
        let s = from_file("key = \"a\\\"b\\u00e9\"").unwrap();
        assert_eq!(s.key, "a\"bé");
        assert_eq!(s.url, DEFAULT_URL);
        let err = from_file("").unwrap_err().to_string();
        assert!(
            err.contains("no API key"),
            "an empty file sets nothing: {err}"
        );

        let err = format!("{:#}", from_file("key = \"x\"\nkey = \"y\"").unwrap_err());
        assert!(err.contains("line 2") && err.contains("duplicate"), "{err}");
        let err = format!("{:#}", from_file("key = \"k\"\nport = \"1\"").unwrap_err());
        assert!(err.contains("port") && err.contains("unknown"), "{err}");
        let err = format!("{:#}", from_file("url = http://x").unwrap_err());
        assert!(
            err.contains("line 1") && err.contains("config.toml"),
            "{err}"
        );
        let err = format!("{:#}", from_file("url = \"x").unwrap_err());
        assert!(err.contains("line 1"), "unterminated: {err}");
        let err = format!("{:#}", from_file("url = \"x\" y").unwrap_err());
        assert!(err.contains("line 1"), "text after the value: {err}");
        let err = format!("{:#}", from_file("just words").unwrap_err());
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn settings_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.toml");
        std::fs::write(&cfg, "url = \"http://cfg:1\"\nkey = \"cfg-key\"\n").unwrap();
        let admin = dir.path().join("admin.key");
        std::fs::write(&admin, "admin-key\n").unwrap();
        let missing = dir.path().join("missing");

        // Flags (or the environment, which clap folds in) beat the config file.
        let s = resolve_with(
            &conn(Some("http://flag:2"), Some("flag-key"), None),
            Some(cfg.clone()),
            &admin,
        )
        .unwrap();
        assert_eq!(s, settings("http://flag:2", "flag-key"));
        // The default config file, when it exists, beats the defaults.
        let s = resolve_with(&conn(None, None, None), Some(cfg.clone()), &admin).unwrap();
        assert_eq!(s, settings("http://cfg:1", "cfg-key"));
        // --config names the file; mixing with a flag.
        let s = resolve_with(&conn(None, Some("flag-key"), Some(&cfg)), None, &admin).unwrap();
        assert_eq!(s, settings("http://cfg:1", "flag-key"));
        // No config: the default URL, and the server's admin key file.
        let s = resolve_with(&conn(None, None, None), Some(missing.clone()), &admin).unwrap();
        assert_eq!(s, settings(DEFAULT_URL, "admin-key"));
        // An empty value counts as absent.
        let s = resolve_with(&conn(Some(""), Some(" "), None), None, &admin).unwrap();
        assert_eq!(s, settings(DEFAULT_URL, "admin-key"));
        // Nothing at all.
        let err = resolve_with(&conn(None, None, None), None, &missing).unwrap_err();
        assert!(err.to_string().contains("no API key: pass --key"), "{err}");
        // A --config that does not exist is an error (a missing default one is not).
        let err = resolve_with(&conn(None, Some("k"), Some(&missing)), None, &admin).unwrap_err();
        assert!(format!("{err:#}").contains("config file"), "{err:#}");
        // A bad config file names itself and the line.
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "url = \"x\"\nkey = oops\n").unwrap();
        let err = resolve_with(&conn(None, None, Some(&bad)), None, &admin).unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("bad.toml") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let s = settings(DEFAULT_URL, "ak_secret_secret");
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("secret") && shown.contains("16 characters"),
            "{shown}"
        );
    }
}
