//! Reading image-syncer's input files: YAML (`.yaml`/`.yml`) or JSON (`.json`), chosen by
//! extension, into a generic document that `rules` and `auth` then interpret.

use std::path::{Path, PathBuf};

use serde_json::Value;
use thiserror::Error;

use crate::error::{HasKind, Kind};

/// Why an input file could not be read as a document.
#[derive(Debug, Error)]
pub enum FileError {
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: unknown file extension {extension:?} (expected .yaml, .yml or .json)", file.display())]
    Extension { file: PathBuf, extension: String },
    #[error("{}: malformed {format}: {message}", file.display())]
    Malformed {
        file: PathBuf,
        format: &'static str,
        message: String,
    },
}

impl HasKind for FileError {
    fn kind(&self) -> Kind {
        Kind::BadInput
    }
}

/// Reads `path` as YAML or JSON according to its extension.
pub fn read_document(path: &Path) -> Result<Value, FileError> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let format = match extension.as_str() {
        "yaml" | "yml" => "YAML",
        "json" => "JSON",
        _ => {
            return Err(FileError::Extension {
                file: path.to_path_buf(),
                extension,
            })
        }
    };
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    parse_document(path, format, &text)
}

/// Parses a document given inline (an environment variable, an event field) as YAML, which
/// also reads JSON; `label` names where it came from in messages.
pub fn parse_inline(label: &Path, text: &str) -> Result<Value, FileError> {
    parse_document(label, "YAML or JSON", text)
}

fn parse_document(path: &Path, format: &'static str, text: &str) -> Result<Value, FileError> {
    let malformed = |message: String| FileError::Malformed {
        file: path.to_path_buf(),
        format,
        message,
    };
    let value = if format == "JSON" {
        serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?
    } else if text.trim().is_empty() {
        // An empty YAML file is an empty map, not an error.
        Value::Object(Default::default())
    } else {
        serde_yaml::from_str(text).map_err(|e| malformed(e.to_string()))?
    };
    Ok(value)
}

/// A scalar as text: YAML users write `password: 12345678`, which parses as a number.
pub fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("a.yml");
        std::fs::write(&yaml, "a: 1\nb: [x, y]\n").unwrap();
        assert_eq!(read_document(&yaml).unwrap()["b"][1], "y");
        let json = dir.path().join("a.JSON");
        std::fs::write(&json, r#"{"a": "b"}"#).unwrap();
        assert_eq!(read_document(&json).unwrap()["a"], "b");
        let toml = dir.path().join("a.toml");
        std::fs::write(&toml, "").unwrap();
        let err = read_document(&toml).unwrap_err().to_string();
        assert!(
            err.contains("a.toml") && err.contains("unknown file extension"),
            "{err}"
        );
        std::fs::write(&json, "{").unwrap();
        let err = read_document(&json).unwrap_err().to_string();
        assert!(err.contains("malformed JSON"), "{err}");
    }

    #[test]
    fn numbers_read_as_text() {
        assert_eq!(
            scalar_string(&serde_json::json!(12345678)).as_deref(),
            Some("12345678")
        );
        assert_eq!(scalar_string(&serde_json::json!(null)), None);
    }
}
