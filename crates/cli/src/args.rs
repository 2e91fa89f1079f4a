//! Argument groups and value parsers that several commands share: the limit flags (`run`,
//! `submit`, `batch`), the engine flags (`run`, `serve`, `worker`), where a node's files and
//! store are (`serve`, `worker`, `admin`, `audit`), labels, statuses and times. Declared once so
//! that the same flag means the same thing, with the same help and errors, everywhere.

use anyhow::{Context, Result};
use assay_api::time::{parse_time, rfc3339};
use assay_blob::BlobUrl;
use assay_domain::{EvaluationStatus, LimitOverrides, Role, parse_duration, parse_size};
use assay_sandbox::{EngineConfig, Environment, RuntimeChoice};
use assay_store::{StoreUrl, now_millis};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use std::path::PathBuf;
use std::time::Duration;

/// The limits a run may ask for; absent flags leave the operator's defaults.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitArgs {
    /// Wall-clock limit, e.g. 3s or 500ms.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub timeout: Option<Duration>,
    /// CPU-time limit of all processes together, e.g. 2s.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub cpu_time: Option<Duration>,
    /// Memory limit, e.g. 256MiB.
    #[arg(long, value_name = "SIZE", value_parser = size_arg)]
    pub memory: Option<u64>,
    /// Output limit per stream, e.g. 1MiB.
    #[arg(long, value_name = "SIZE", value_parser = size_arg)]
    pub output: Option<u64>,
    /// Maximum number of processes and threads.
    #[arg(long, value_name = "N")]
    pub pids: Option<u32>,
}

impl LimitArgs {
    /// The flags as the API's overrides: only what was given.
    pub fn overrides(&self) -> Result<LimitOverrides> {
        let ms = |d: Option<Duration>, flag: &str| -> Result<Option<u64>> {
            d.map(|d| u64::try_from(d.as_millis()).with_context(|| format!("--{flag}: too long")))
                .transpose()
        };
        Ok(LimitOverrides {
            wall_time_ms: ms(self.timeout, "timeout")?,
            cpu_time_ms: ms(self.cpu_time, "cpu-time")?,
            memory_bytes: self.memory,
            output_bytes: self.output,
            pids: self.pids,
            ..LimitOverrides::default()
        })
    }
}

/// How sandboxes are made on this host.
#[derive(clap::Args, Clone, Debug)]
pub struct EngineArgs {
    /// OCI runtime: runc, crun, runsc (gVisor) or auto (the strongest installed).
    #[arg(long, default_value = "auto", env = "ASSAY_RUNTIME")]
    pub runtime: RuntimeChoice,
    /// Where sandbox bundles and runtime state live (best on a tmpfs).
    #[arg(long, default_value = "/run/assay", env = "ASSAY_STATE_DIR")]
    pub state_dir: PathBuf,
    /// Register an extra environment: NAME=DIR:COMMAND, where DIR is a root file system or an
    /// unpacked OCI image and COMMAND the interpreter inside it (e.g. py=/srv/img:/usr/bin/python3).
    #[arg(long = "register-env", value_name = "NAME=DIR:COMMAND")]
    pub register_env: Vec<String>,
}

impl EngineArgs {
    pub fn config(&self) -> Result<EngineConfig> {
        let mut environments = vec![Environment::python()];
        for spec in &self.register_env {
            let (name, dir, command) = spec
                .split_once('=')
                .and_then(|(name, rest)| rest.split_once(':').map(|(d, c)| (name, d, c)))
                .with_context(|| format!("--register-env {spec:?}: expected NAME=DIR:COMMAND"))?;
            let command = command.split_whitespace().map(String::from).collect();
            environments.push(Environment::from_dir(name, &PathBuf::from(dir), command)?);
        }
        Ok(EngineConfig {
            runtime: self.runtime,
            state_dir: self.state_dir.clone(),
            environments,
            ..EngineConfig::default()
        })
    }
}

/// Where a node keeps its files and which store it uses.
#[derive(clap::Args, Clone, Debug)]
pub struct StoreArgs {
    /// Data folder: the node's own files (the admin key written on first start) and, unless
    /// --store says otherwise, the SQLite database (assay.db).
    #[arg(long = "data", default_value = "./assay-data", env = "ASSAY_DATA")]
    pub data: PathBuf,
    /// The store, as a URL: sqlite://PATH or postgres://USER@HOST[:PORT]/DB (the password in
    /// the URL or in the file ASSAY_STORE_PASSWORD_FILE names) [default:
    /// sqlite://<data>/assay.db].
    #[arg(long, value_name = "URL", env = "ASSAY_STORE", value_parser = store_url_arg)]
    pub store: Option<StoreUrl>,
    /// The blob store for whole output streams, as a URL: file:///DIR or
    /// s3://BUCKET[/PREFIX] (endpoint, region and credentials from AWS_ENDPOINT_URL, AWS_REGION,
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, each secret also as *_FILE)
    /// [default: file://<data>/blobs].
    #[arg(long, value_name = "URL", env = "ASSAY_BLOB", value_parser = blob_url_arg)]
    pub blob: Option<BlobUrl>,
}

impl StoreArgs {
    /// `--store`, else the data folder's SQLite database.
    pub fn url(&self) -> StoreUrl {
        self.store
            .clone()
            .unwrap_or_else(|| StoreUrl::default_for(&self.data))
    }

    /// `--blob`, else the data folder's `blobs` directory (made absolute).
    pub fn blob_url(&self) -> Result<BlobUrl> {
        if let Some(url) = &self.blob {
            return Ok(url.clone());
        }
        let data = std::path::absolute(&self.data)
            .with_context(|| format!("resolving {}", self.data.display()))?;
        BlobUrl::file(&data.join("blobs")).with_context(|| format!("{}", data.display()))
    }
}

/// `--blob`: every node of an installation must name the same blob store.
pub fn blob_url_arg(s: &str) -> Result<BlobUrl, String> {
    BlobUrl::parse(s).map_err(|e| e.to_string())
}

pub fn store_url_arg(s: &str) -> Result<StoreUrl, String> {
    StoreUrl::parse(s).map_err(|e| e.to_string())
}

pub fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

/// `KEY=VALUE`, as `--label` takes it.
pub fn label_arg(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("{s:?}: the key is empty"));
    }
    Ok((k.to_string(), v.to_string()))
}

pub fn status_arg(s: &str) -> Result<EvaluationStatus, String> {
    EvaluationStatus::parse(s).ok_or_else(|| {
        let all: Vec<&str> = EvaluationStatus::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown status {s:?} (one of: {})", all.join(", "))
    })
}

/// A role, by name: `admin`, `member` or `viewer` (clap lists them in the help).
pub fn role_arg() -> impl TypedValueParser<Value = Role> {
    PossibleValuesParser::new(Role::ALL.map(Role::as_str))
        .map(|s| Role::parse(&s).expect("one of the possible values"))
}

/// An RFC 3339 time, as given.
pub fn rfc3339_arg(s: &str) -> Result<String, String> {
    parse_time(s)
        .map(|_| s.to_string())
        .ok_or_else(|| format!("{s:?}: expected an RFC 3339 time such as 2030-01-31T00:00:00Z"))
}

/// A time filter: RFC 3339 as given, or a duration (`1h`, `30m`) meaning that long ago.
pub fn time_or_ago_arg(s: &str) -> Result<String, String> {
    if let Ok(d) = parse_duration(s) {
        let ago = i64::try_from(d.as_millis())
            .ok()
            .and_then(|ms| now_millis().checked_sub(ms))
            .filter(|t| *t >= 0)
            .ok_or_else(|| format!("{s:?}: too long ago"))?;
        return Ok(rfc3339(ago));
    }
    rfc3339_arg(s).map_err(|e| format!("{e} or a duration such as 1h"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct TestCli {
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        store: StoreArgs,
    }

    fn parse(args: &[&str]) -> Result<TestCli, clap::Error> {
        TestCli::try_parse_from(std::iter::once("assay").chain(args.iter().copied()))
    }

    #[test]
    fn the_shared_flags_are_consistent() {
        TestCli::command().debug_assert();
    }

    #[test]
    fn limit_flags_become_overrides() {
        let cli = parse(&[
            "--timeout",
            "3s",
            "--cpu-time",
            "500ms",
            "--memory",
            "256MiB",
            "--pids",
            "8",
        ])
        .unwrap();
        assert_eq!(
            cli.limits.overrides().unwrap(),
            LimitOverrides {
                wall_time_ms: Some(3000),
                cpu_time_ms: Some(500),
                memory_bytes: Some(256 << 20),
                pids: Some(8),
                ..LimitOverrides::default()
            }
        );
        assert_eq!(
            parse(&[]).unwrap().limits.overrides().unwrap(),
            LimitOverrides::default()
        );
        let err = parse(&["--timeout", "3"]).err().unwrap().to_string();
        assert!(
            err.contains("--timeout") && err.contains("a unit is required"),
            "{err}"
        );
        let err = parse(&["--output", "12XB"]).err().unwrap().to_string();
        assert!(
            err.contains("--output") && err.contains("invalid size"),
            "{err}"
        );
    }

    #[test]
    fn the_store_is_the_data_folders_database_unless_named() {
        let cli = parse(&["--data", "/d"]).unwrap();
        assert_eq!(cli.store.url().to_string(), "sqlite:///d/assay.db");
        let cli = parse(&["--store", "sqlite:///elsewhere/x.db"]).unwrap();
        assert_eq!(cli.store.url().to_string(), "sqlite:///elsewhere/x.db");
        let err = parse(&["--store", "mysql://u@h/db"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("--store") && err.contains("sqlite://PATH"),
            "{err}"
        );
    }

    #[test]
    fn labels() {
        assert_eq!(label_arg("k=v"), Ok(("k".into(), "v".into())));
        assert_eq!(label_arg("k="), Ok(("k".into(), "".into())));
        assert_eq!(label_arg("k=a=b"), Ok(("k".into(), "a=b".into())));
        let err = label_arg("novalue").unwrap_err();
        assert!(err.contains("KEY=VALUE"), "{err}");
        assert!(label_arg("=v").unwrap_err().contains("empty"));
    }

    #[test]
    fn time_arguments() {
        assert_eq!(
            time_or_ago_arg("2025-01-02T03:04:05Z").unwrap(),
            "2025-01-02T03:04:05Z"
        );
        let ago = time_or_ago_arg("1h").unwrap();
        let age = now_millis() - parse_time(&ago).unwrap();
        assert!((3_599_000..3_700_000).contains(&age), "{age}");
        assert!(time_or_ago_arg("yesterday").is_err());
        assert!(rfc3339_arg("2030-01-31T00:00:00Z").is_ok());
        assert!(rfc3339_arg("soon").unwrap_err().contains("RFC 3339"));
        assert!(status_arg("bogus").unwrap_err().contains("timed_out"));
        assert_eq!(status_arg("dead"), Ok(EvaluationStatus::Dead));
    }
}
