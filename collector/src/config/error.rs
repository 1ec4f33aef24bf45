//! Config problems: each names the key path and its position in the file.

use std::fmt;

/// One problem of a config file. Every variant names the key path (`sources.app.include[0]`,
/// empty for the document itself) and the 1-based `line` and `column` it is about (0 when the
/// file could not be read). Messages are lowercase, without a trailing period.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file: {message}")]
    Read {
        path: String,
        line: u32,
        column: u32,
        message: String,
    },

    #[error("invalid yaml: {message}")]
    Syntax {
        path: String,
        line: u32,
        column: u32,
        message: String,
    },

    #[error("{path}: unknown key, expected one of {expected}")]
    UnknownKey {
        path: String,
        line: u32,
        column: u32,
        key: String,
        expected: String,
    },

    #[error("{}missing key `{key}`", prefix(path))]
    MissingKey {
        path: String,
        line: u32,
        column: u32,
        key: String,
    },

    #[error("{path}: duplicate key, first given at line {first_line}")]
    DuplicateKey {
        path: String,
        line: u32,
        column: u32,
        first_line: u32,
    },

    #[error("{}{message}", prefix(path))]
    InvalidType {
        path: String,
        line: u32,
        column: u32,
        message: String,
    },

    #[error("{path}: {message}")]
    InvalidValue {
        path: String,
        line: u32,
        column: u32,
        message: String,
    },

    #[error("{path}: unknown source `{source_id}`, expected one of {expected}")]
    UnknownInput {
        path: String,
        line: u32,
        column: u32,
        source_id: String,
        expected: String,
    },

    #[error("{path}: directory `{dir}` does not exist")]
    MissingDirectory {
        path: String,
        line: u32,
        column: u32,
        dir: String,
    },
}

fn prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

impl ConfigError {
    /// The key path the problem is about.
    pub fn path(&self) -> &str {
        match self {
            ConfigError::Read { path, .. }
            | ConfigError::Syntax { path, .. }
            | ConfigError::UnknownKey { path, .. }
            | ConfigError::MissingKey { path, .. }
            | ConfigError::DuplicateKey { path, .. }
            | ConfigError::InvalidType { path, .. }
            | ConfigError::InvalidValue { path, .. }
            | ConfigError::UnknownInput { path, .. }
            | ConfigError::MissingDirectory { path, .. } => path,
        }
    }

    /// `(line, column)`, 1-based; `(0, 0)` when unknown.
    pub fn position(&self) -> (u32, u32) {
        match self {
            ConfigError::Read { line, column, .. }
            | ConfigError::Syntax { line, column, .. }
            | ConfigError::UnknownKey { line, column, .. }
            | ConfigError::MissingKey { line, column, .. }
            | ConfigError::DuplicateKey { line, column, .. }
            | ConfigError::InvalidType { line, column, .. }
            | ConfigError::InvalidValue { line, column, .. }
            | ConfigError::UnknownInput { line, column, .. }
            | ConfigError::MissingDirectory { line, column, .. } => (*line, *column),
        }
    }
}

/// Whether a diagnostic prevents the config from being used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// A problem in a named file: displays as `FILE:LINE:COL: error: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDiagnostic {
    /// The file name as given to the loader.
    pub file: String,
    pub severity: Severity,
    pub error: ConfigError,
}

impl ConfigDiagnostic {
    pub fn line(&self) -> u32 {
        self.error.position().0
    }

    pub fn column(&self) -> u32 {
        self.error.position().1
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for ConfigDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (line, column) = self.error.position();
        if line == 0 {
            write!(f, "{}: {}: {}", self.file, self.severity, self.error)
        } else {
            write!(
                f,
                "{}:{line}:{column}: {}: {}",
                self.file, self.severity, self.error
            )
        }
    }
}

/// Every problem of a config file that cannot be used (errors, and the warnings found with
/// them), in file order. Displays one problem a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    pub diagnostics: Vec<ConfigDiagnostic>,
}

impl ConfigErrors {
    /// The errors only (without the warnings).
    pub fn errors(&self) -> impl Iterator<Item = &ConfigDiagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
