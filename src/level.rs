//! Log severity, a leaf type shared by the settings ([`crate::config`], which parses
//! `log_level`) and the logger ([`crate::runtime::log`], which re-exports it). It lives here, below
//! both, so that `config` does not depend on `runtime`.

use std::fmt;
use std::str::FromStr;

/// Severity of a log record; `Error` is the most severe. Ordered so that
/// `Level::Error < Level::Debug`: a record is emitted when `record.level <= max_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Level {
    /// Upper-case name as printed in a formatted record (`ERROR`, `WARN`, `INFO`, `DEBUG`).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }

    /// Lower-case name as used by the `log_level` setting.
    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    /// The level stored as `level as u8` (anything above 3 is `Debug`).
    pub(crate) fn from_u8(v: u8) -> Level {
        match v {
            0 => Level::Error,
            1 => Level::Warn,
            2 => Level::Info,
            _ => Level::Debug,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`Level::from_str`]: the text was not one of `error|warn|info|debug`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseLevelError;

impl fmt::Display for ParseLevelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected one of error, warn, info, debug")
    }
}

impl std::error::Error for ParseLevelError {}

impl FromStr for Level {
    type Err = ParseLevelError;

    /// Case-insensitive `error`, `warn` (or `warning`), `info`, `debug`.
    fn from_str(s: &str) -> Result<Level, ParseLevelError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "error" => Ok(Level::Error),
            "warn" | "warning" => Ok(Level::Warn),
            "info" => Ok(Level::Info),
            "debug" => Ok(Level::Debug),
            _ => Err(ParseLevelError),
        }
    }
}
