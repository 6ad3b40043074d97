//! The registry client's one catalogue of error kinds, with the context of the request.

use std::fmt;

use thiserror::Error;

use crate::error::{HasKind, Kind};
use crate::reference::Digest;

/// What went wrong, matchable by callers (the CLI maps kinds to exit codes and messages).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ErrorKind {
    #[error("not found{}", detail(.0))]
    NotFound(String),
    #[error("unauthorized: the registry refused the credentials{}", detail(.0))]
    Unauthorized(String),
    #[error("denied{}", detail(.0))]
    Denied(String),
    #[error("rate limited (HTTP 429) after retries")]
    RateLimited,
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("transport: {0}")]
    Transport(String),
    #[error("unexpected response: {0}")]
    Protocol(String),
    #[error("refusing to send credentials to {0} over plain HTTP (mark the registry insecure to allow it)")]
    InsecureRealm(String),
    #[error("client setup: {0}")]
    Setup(String),
    #[error("credentials: {0}")]
    Credentials(String),
}

fn detail(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

impl ErrorKind {
    /// Worth another attempt later (the request-level retries are already spent).
    pub fn is_transient(&self) -> bool {
        matches!(self, ErrorKind::Transport(_) | ErrorKind::RateLimited)
    }

    /// Where this sits in the library's catalogue of kinds.
    pub fn class(&self) -> Kind {
        match self {
            ErrorKind::NotFound(_) => Kind::NotFound,
            ErrorKind::Unauthorized(_) => Kind::Unauthorized,
            ErrorKind::Denied(_) => Kind::Denied,
            ErrorKind::RateLimited => Kind::RateLimited,
            ErrorKind::DigestMismatch { .. } => Kind::DigestMismatch,
            ErrorKind::Transport(_) => Kind::Transport,
            ErrorKind::Protocol(_) | ErrorKind::InsecureRealm(_) => Kind::Protocol,
            ErrorKind::Setup(_) | ErrorKind::Credentials(_) => Kind::Credentials,
        }
    }
}

impl HasKind for RegistryError {
    fn kind(&self) -> Kind {
        self.kind.class()
    }
}

/// An error from a registry operation, naming what was being done.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct RegistryError {
    /// e.g. `GET manifest 127.0.0.1:5000/a/b:v1`
    pub context: String,
    #[source]
    pub kind: ErrorKind,
}

impl RegistryError {
    pub fn new(context: impl Into<String>, kind: ErrorKind) -> Self {
        RegistryError {
            context: context.into(),
            kind,
        }
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.kind)
    }
}

/// One entry of a registry error body's `errors[]`.
#[derive(serde::Deserialize)]
pub(crate) struct ErrorItem {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// The `errors[]` of a registry error body; empty when it is not one.
pub(crate) fn error_items(body: &[u8]) -> Vec<ErrorItem> {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<ErrorItem>,
    }
    serde_json::from_slice::<Body>(body)
        .map(|b| b.errors)
        .unwrap_or_default()
}

/// The `errors[]` of a registry error body, as `CODE: message; …`, for messages.
pub(crate) fn describe_error_body(body: &[u8]) -> String {
    let items = error_items(body);
    if items.is_empty() {
        return String::from_utf8_lossy(&body[..body.len().min(200)])
            .trim()
            .to_string();
    }
    items
        .iter()
        .map(|e| format!("{}: {}", e.code, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}
