//! Reading image-syncer's input files: YAML (`.yaml`/`.yml`) or JSON (`.json`), chosen by
//! extension, into a generic document that `rules` and `auth` then interpret. A document is
//! a local file or an S3 object (`DocumentSource`, parsed once from a flag or variable); both
//! are capped at [`MAX_DOCUMENT_BYTES`] and named in messages as given (a path, or
//! `s3://BUCKET/KEY`). Fetching the object is `s3`'s.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::Value;
use thiserror::Error;

use crate::error::{HasKind, Kind};
use crate::s3::{S3Error, S3Uri, S3};

/// The most an input document may be: thousands of rules take a few hundred kilobytes, and
/// the whole document is held in memory (twice, as text and parsed).
pub const MAX_DOCUMENT_BYTES: u64 = 32 << 20;

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
    #[error("{}: larger than {limit} bytes, more than an input document may be", file.display())]
    TooLarge { file: PathBuf, limit: u64 },
    #[error("{text:?}: only local files and s3://BUCKET/KEY are read, not {scheme}:// URLs")]
    Scheme { text: String, scheme: String },
    /// An S3 object that could not be had; the message names its `s3://` URI.
    #[error(transparent)]
    S3(#[from] S3Error),
}

impl HasKind for FileError {
    fn kind(&self) -> Kind {
        match self {
            // S3 may merely be out of reach: worth another try, unlike a bad file.
            FileError::S3(error) => error.kind(),
            _ => Kind::BadInput,
        }
    }
}

/// Where a document is: a local file, or an object in S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentSource {
    Local(PathBuf),
    S3(S3Uri),
}

impl DocumentSource {
    /// What names the document in messages and in each rule's `file`: the path, or the
    /// `s3://BUCKET/KEY` URI.
    pub fn label(&self) -> PathBuf {
        match self {
            DocumentSource::Local(path) => path.clone(),
            DocumentSource::S3(uri) => PathBuf::from(uri.to_string()),
        }
    }
}

/// `s3://BUCKET/KEY` (checked), another `SCHEME://` refused, anything else a local path.
impl FromStr for DocumentSource {
    type Err = FileError;

    fn from_str(text: &str) -> Result<Self, FileError> {
        if let Some(uri) = S3Uri::parse(text) {
            return Ok(DocumentSource::S3(uri?));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            let mut chars = scheme.chars();
            let is_scheme = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
            if is_scheme {
                return Err(FileError::Scheme {
                    text: crate::error::truncate(text, 200),
                    scheme: scheme.to_string(),
                });
            }
        }
        Ok(DocumentSource::Local(PathBuf::from(text)))
    }
}

impl fmt::Display for DocumentSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DocumentSource::Local(path) => write!(f, "{}", path.display()),
            DocumentSource::S3(uri) => write!(f, "{uri}"),
        }
    }
}

/// The directory a document's relative paths (an auth entry's `ca`) are taken against: a
/// local file's own, the working directory for a document given inline, and none for one
/// from S3, whose neighbours are not local files.
pub fn local_directory(label: &Path) -> Option<&Path> {
    if S3Uri::is_s3(&label.to_string_lossy()) {
        return None;
    }
    Some(label.parent().unwrap_or(Path::new("")))
}

/// Reads the document at `source`: a local file, or an object fetched through `s3`.
pub async fn load_document(source: &DocumentSource, s3: &S3) -> Result<Value, FileError> {
    match source {
        DocumentSource::Local(path) => read_document(path),
        DocumentSource::S3(uri) => {
            let label = source.label();
            // A key with the wrong extension fails before any request.
            let format = format_of(&label, Path::new(uri.key()))?;
            let bytes = s3.get(uri, MAX_DOCUMENT_BYTES).await?;
            document_from_bytes(&label, format, bytes)
        }
    }
}

/// Reads `path` as YAML or JSON according to its extension.
pub fn read_document(path: &Path) -> Result<Value, FileError> {
    let format = format_of(path, path)?;
    let read_error = |source| FileError::Read {
        file: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(read_error)?
        .take(MAX_DOCUMENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(FileError::TooLarge {
            file: path.to_path_buf(),
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    document_from_bytes(path, format, bytes)
}

/// The format `name`'s extension says; `label` names the document in the error.
fn format_of(label: &Path, name: &Path) -> Result<&'static str, FileError> {
    let extension = name
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match extension.as_str() {
        "yaml" | "yml" => Ok("YAML"),
        "json" => Ok("JSON"),
        _ => Err(FileError::Extension {
            file: label.to_path_buf(),
            extension,
        }),
    }
}

fn document_from_bytes(
    label: &Path,
    format: &'static str,
    bytes: Vec<u8>,
) -> Result<Value, FileError> {
    let text = String::from_utf8(bytes).map_err(|_| FileError::Malformed {
        file: label.to_path_buf(),
        format,
        message: "not UTF-8 text".to_string(),
    })?;
    parse_document(label, format, &text)
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
        std::fs::write(&json, b"{\"a\": \"\xff\"}").unwrap();
        let err = read_document(&json).unwrap_err().to_string();
        assert!(err.contains("malformed JSON: not UTF-8"), "{err}");
    }

    #[test]
    fn documents_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.yaml");
        // Sparse: no disk used for the zeros.
        let file = std::fs::File::create(&big).unwrap();
        file.set_len(MAX_DOCUMENT_BYTES + 1).unwrap();
        let err = read_document(&big).unwrap_err();
        assert!(matches!(err, FileError::TooLarge { .. }), "{err}");
        assert!(err
            .to_string()
            .contains("big.yaml: larger than 33554432 bytes"));
    }

    #[test]
    fn sources_parse_once() {
        let local: DocumentSource = "rules/images.yaml".parse().unwrap();
        assert_eq!(local, DocumentSource::Local("rules/images.yaml".into()));
        let remote: DocumentSource = "s3://bucket/rules/images.yaml".parse().unwrap();
        assert_eq!(remote.to_string(), "s3://bucket/rules/images.yaml");
        assert_eq!(
            remote.label(),
            PathBuf::from("s3://bucket/rules/images.yaml")
        );
        assert_eq!(local_directory(&remote.label()), None);
        assert_eq!(
            local_directory(Path::new("conf/auth.yaml")),
            Some(Path::new("conf"))
        );
        let bad = "s3://bucket/".parse::<DocumentSource>().unwrap_err();
        assert_eq!(bad.kind(), Kind::BadInput);
        assert!(bad.to_string().contains("the key is empty"), "{bad}");
        let https = "https://example.com/images.yaml"
            .parse::<DocumentSource>()
            .unwrap_err()
            .to_string();
        assert!(https.contains("not https:// URLs"), "{https}");
    }

    #[tokio::test]
    async fn an_s3_key_with_an_unknown_extension_fails_before_any_request() {
        let source: DocumentSource = "s3://bucket/rules.toml".parse().unwrap();
        // No endpoint could answer: the extension is checked first.
        let err = load_document(&source, &S3::new()).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("s3://bucket/rules.toml: unknown file extension"),
            "{err}"
        );
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
