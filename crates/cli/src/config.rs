//! The one loader of settings files, for the operator's settings (`server_settings`) and the
//! client's (`client_settings`) alike: built-in defaults, then a TOML file, then named values
//! that win over both (environment variables, flags). Unknown keys are refused by the settings
//! types (`deny_unknown_fields`), and the error names the key and the file, never a value.

use anyhow::{Result, bail};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;

/// `defaults`, then `file` (which must exist), then each `(dotted.key, value)` of `overrides`.
/// `what` starts the error message (`invalid settings`, `config file …`).
pub fn load<T: Serialize + DeserializeOwned>(
    defaults: &T,
    file: Option<&Path>,
    overrides: impl IntoIterator<Item = (String, Value)>,
    what: &str,
) -> Result<T> {
    let mut fig = Figment::from(Serialized::defaults(defaults));
    if let Some(path) = file {
        if !path.is_file() {
            bail!("config file {} does not exist", path.display());
        }
        fig = fig.merge(Toml::file(path));
    }
    for (key, value) in overrides {
        fig = fig.merge(Serialized::default(&key, value));
    }
    // Figment's messages name the key and the source, never the value.
    fig.extract().map_err(|e| anyhow::anyhow!("{what}: {e}"))
}
