//! Resource limits of one run: operator defaults, operator maxima, and per-request overrides.
//!
//! A request above a maximum is an error, never clamped silently (DESIGN.md 4).

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The limits a sandbox enforces for one run. Every field is a hard cap.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock time from sandbox start to the end of the program, in milliseconds.
    pub wall_time_ms: u64,
    /// CPU time of all processes of the run together, in milliseconds.
    pub cpu_time_ms: u64,
    /// Memory (RAM; there is no swap) of all processes together, in bytes. Includes `/tmp`.
    pub memory_bytes: u64,
    /// Processes and threads alive at once.
    pub pids: u32,
    /// Bytes kept of each of stdout and stderr; producing more ends the run (`output_exceeded`).
    pub output_bytes: u64,
    /// Size of the writable `/tmp` (and of `/dev/shm`), in bytes.
    pub tmpfs_bytes: u64,
    /// Open file descriptors per process (RLIMIT_NOFILE).
    pub open_files: u32,
    /// Largest file a process may write (RLIMIT_FSIZE), in bytes.
    pub file_size_bytes: u64,
    /// CPU bandwidth in thousandths of a core (1000 = one full core).
    pub cpu_millicores: u32,
}

impl Limits {
    pub fn wall_time(&self) -> Duration {
        Duration::from_millis(self.wall_time_ms)
    }

    pub fn cpu_time(&self) -> Duration {
        Duration::from_millis(self.cpu_time_ms)
    }
}

/// Per-request overrides: every field optional; absent fields take the operator default.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_time_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_time_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millicores: Option<u32>,
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    #[error("limit {field} = {requested} is above the operator maximum {maximum}")]
    AboveMaximum {
        field: &'static str,
        requested: u64,
        maximum: u64,
    },
    #[error("limit {field} must be greater than zero")]
    Zero { field: &'static str },
    #[error("limit {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// Operator policy: the defaults applied when a request says nothing, and the maxima a request
/// may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitPolicy {
    pub defaults: Limits,
    pub maxima: Limits,
}

impl Default for LimitPolicy {
    fn default() -> Self {
        LimitPolicy {
            defaults: Limits {
                wall_time_ms: 10_000,
                cpu_time_ms: 10_000,
                memory_bytes: 256 << 20,
                pids: 64,
                output_bytes: 1 << 20,
                tmpfs_bytes: 64 << 20,
                open_files: 256,
                file_size_bytes: 16 << 20,
                cpu_millicores: 1000,
            },
            maxima: Limits {
                wall_time_ms: 300_000,
                cpu_time_ms: 300_000,
                memory_bytes: 4 << 30,
                pids: 1024,
                output_bytes: 256 << 20,
                tmpfs_bytes: 1 << 30,
                open_files: 4096,
                file_size_bytes: 1 << 30,
                cpu_millicores: 4000,
            },
        }
    }
}

macro_rules! for_each_limit {
    ($mac:ident) => {
        $mac!(wall_time_ms);
        $mac!(cpu_time_ms);
        $mac!(memory_bytes);
        $mac!(pids);
        $mac!(output_bytes);
        $mac!(tmpfs_bytes);
        $mac!(open_files);
        $mac!(file_size_bytes);
        $mac!(cpu_millicores);
    };
}

/// Smallest memory limit accepted: below this the interpreter cannot even start, and the result
/// would be a confusing `memory_exceeded` for an empty program.
pub const MIN_MEMORY_BYTES: u64 = 16 << 20;

impl LimitPolicy {
    /// Checks that the policy itself is coherent: every default positive and within its maximum.
    pub fn validate(&self) -> Result<(), LimitError> {
        self.resolve(&LimitOverrides::default()).map(|_| ())?;
        macro_rules! check_max {
            ($f:ident) => {
                if self.maxima.$f == 0 {
                    return Err(LimitError::Zero {
                        field: concat!("maxima.", stringify!($f)),
                    });
                }
            };
        }
        for_each_limit!(check_max);
        Ok(())
    }

    /// Applies request overrides on top of the defaults. Any value above its maximum, or zero,
    /// is an error naming the field.
    pub fn resolve(&self, overrides: &LimitOverrides) -> Result<Limits, LimitError> {
        let mut out = self.defaults;
        macro_rules! apply {
            ($f:ident) => {
                if let Some(v) = overrides.$f {
                    out.$f = v;
                }
                if out.$f == 0 {
                    return Err(LimitError::Zero {
                        field: stringify!($f),
                    });
                }
                if out.$f > self.maxima.$f {
                    return Err(LimitError::AboveMaximum {
                        field: stringify!($f),
                        requested: u64::from(out.$f),
                        maximum: u64::from(self.maxima.$f),
                    });
                }
            };
        }
        for_each_limit!(apply);
        if out.memory_bytes < MIN_MEMORY_BYTES {
            return Err(LimitError::Invalid {
                field: "memory_bytes",
                reason: format!("must be at least {MIN_MEMORY_BYTES} bytes (16MiB)"),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_policy_is_valid() {
        let p = LimitPolicy::default();
        p.validate().unwrap();
        assert_eq!(p.resolve(&LimitOverrides::default()).unwrap(), p.defaults);
    }

    #[test]
    fn overrides_within_maxima_apply() {
        let p = LimitPolicy::default();
        let got = p
            .resolve(&LimitOverrides {
                memory_bytes: Some(512 << 20),
                wall_time_ms: Some(1500),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(got.memory_bytes, 512 << 20);
        assert_eq!(got.wall_time_ms, 1500);
        assert_eq!(got.pids, p.defaults.pids);
    }

    #[test]
    fn above_maximum_is_an_error_not_clamped() {
        let p = LimitPolicy::default();
        let err = p
            .resolve(&LimitOverrides {
                pids: Some(100_000),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(
            err,
            LimitError::AboveMaximum {
                field: "pids",
                requested: 100_000,
                maximum: 1024
            }
        );
        assert!(matches!(err, LimitError::AboveMaximum { .. }), "{err:?}");
    }

    #[test]
    fn zero_and_tiny_memory_are_rejected() {
        let p = LimitPolicy::default();
        let zero = p.resolve(&LimitOverrides {
            wall_time_ms: Some(0),
            ..Default::default()
        });
        assert_eq!(
            zero.unwrap_err(),
            LimitError::Zero {
                field: "wall_time_ms"
            }
        );
        let tiny = p.resolve(&LimitOverrides {
            memory_bytes: Some(1024),
            ..Default::default()
        });
        assert!(matches!(tiny, Err(LimitError::Invalid { .. })));
    }

    #[test]
    fn incoherent_policy_is_rejected() {
        let mut p = LimitPolicy::default();
        p.defaults.memory_bytes = p.maxima.memory_bytes + 1;
        assert!(p.validate().is_err());
    }

    #[test]
    fn unknown_override_fields_are_rejected() {
        let r: Result<LimitOverrides, _> = serde_json::from_str(r#"{"memory": 5}"#);
        assert!(r.is_err());
    }
}
