//! Which store to open, as a URL: `sqlite://PATH` (the embedded default) or
//! `postgres://USER@HOST[:PORT]/DB`. Parsed here; opened by the binary's one `open` function,
//! the only place that names the backends.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// A SQLite database file (created if missing).
    Sqlite { path: PathBuf },
    /// A PostgreSQL database (the URL as given).
    Postgres { url: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("store URL {url:?}: {reason} (expected sqlite://PATH or postgres://USER@HOST[:PORT]/DB)")]
pub struct StoreUrlError {
    url: String,
    reason: &'static str,
}

impl StoreUrl {
    /// The default of a data folder: `sqlite://<data>/assay.db`.
    pub fn default_for(data: &Path) -> StoreUrl {
        StoreUrl::Sqlite {
            path: data.join("assay.db"),
        }
    }

    pub fn parse(s: &str) -> Result<StoreUrl, StoreUrlError> {
        let err = |reason| StoreUrlError {
            url: redact(s),
            reason,
        };
        if let Some(path) = s.strip_prefix("sqlite://").or(s.strip_prefix("sqlite:")) {
            if path.is_empty() || path.contains('?') {
                return Err(err(
                    "a SQLite URL is sqlite:// and a file path, without options",
                ));
            }
            return Ok(StoreUrl::Sqlite { path: path.into() });
        }
        if let Some(rest) = s
            .strip_prefix("postgres://")
            .or(s.strip_prefix("postgresql://"))
        {
            let host_and_db = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            match host_and_db.split_once('/') {
                Some((host, db)) if !host.is_empty() && !db.is_empty() => {}
                _ => return Err(err("a PostgreSQL URL names a host and a database")),
            }
            return Ok(StoreUrl::Postgres { url: s.into() });
        }
        Err(err("unknown scheme"))
    }

    /// The backend's name: `sqlite` or `postgres`.
    pub fn scheme(&self) -> &'static str {
        match self {
            StoreUrl::Sqlite { .. } => "sqlite",
            StoreUrl::Postgres { .. } => "postgres",
        }
    }
}

/// The URL with any password replaced by `***` (URLs are logged and shown in errors).
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite { path } => write!(f, "sqlite://{}", path.display()),
            StoreUrl::Postgres { url } => f.write_str(&redact(url)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            StoreUrl::parse("sqlite://./assay-data/assay.db").unwrap(),
            StoreUrl::Sqlite {
                path: "./assay-data/assay.db".into()
            }
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///var/lib/assay/assay.db").unwrap(),
            StoreUrl::Sqlite {
                path: "/var/lib/assay/assay.db".into()
            }
        );
        assert_eq!(
            StoreUrl::default_for(Path::new("d")).to_string(),
            "sqlite://d/assay.db"
        );
        let pg = StoreUrl::parse("postgres://assay:s3cret@db.internal:5432/assay").unwrap();
        assert_eq!(pg.scheme(), "postgres");
        assert_eq!(
            pg.to_string(),
            "postgres://assay:***@db.internal:5432/assay"
        );
        assert!(StoreUrl::parse("postgres://root@127.0.0.1/test").is_ok());
        for bad in [
            "",
            "assay.db",
            "mysql://x/y",
            "sqlite://",
            "postgres://host",
            "postgres:///db",
        ] {
            assert!(StoreUrl::parse(bad).is_err(), "{bad:?}");
        }
        let e = StoreUrl::parse("mysql://u:pw@h/db")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("pw") && e.contains("u:***@h/db"), "{e}");
    }
}
