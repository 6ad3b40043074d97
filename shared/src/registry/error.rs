//! The registry client's one catalogue of error kinds, with the context of the request, and
//! how a failed request (a connection error, a status the operation did not want) becomes
//! one. Sending requests and retrying them is for `registry` and `transport`.

use std::fmt;
use std::path::PathBuf;

use reqwest::{Response, StatusCode};
use thiserror::Error;

use super::transport::{read_prefix, TransportFailure};
use crate::credentials::{CredentialsError, ListingRefused, PushRefused};
use crate::error::{error_chain, HasKind, Kind};
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
    /// The host said no pulls are left: none is sent before `until` (RFC 3339).
    #[error("rate limited until {until}: the registry's pull budget is spent{}", parenthesized(.budget))]
    BudgetSpent { until: String, budget: String },
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("transport: {0}")]
    Transport(String),
    #[error("unexpected response: {0}")]
    Protocol(String),
    #[error("refusing to send credentials to {0} over plain HTTP (mark the registry insecure to allow it)")]
    InsecureRealm(String),
    #[error("client setup: {0}")]
    Setup(SetupProblem),
    #[error("credentials: {0}")]
    Credentials(CredentialsError),
    /// The registry will not overwrite the tag (ECR's `IMMUTABLE` repositories, Harbor's
    /// immutability rules): no retry can change that.
    #[error("the tag is immutable on the target{}", detail(.0))]
    Immutable(String),
    /// The repository cannot be pushed into (missing and not to be created, say).
    #[error("{0}")]
    PushRefused(PushRefused),
    /// The repositories could not be listed by the store's own means (ECR's API).
    #[error("{0}")]
    ListingRefused(ListingRefused),
}

/// Why a client could not be set up or a URL could not be formed. Foreign errors that can be
/// neither cloned nor compared (I/O, TLS) are kept as their text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SetupProblem {
    #[error("cannot read CA file {}: {reason}", path.display())]
    CaUnreadable { path: PathBuf, reason: String },
    #[error("bad CA file {}: {reason}", path.display())]
    CaInvalid { path: PathBuf, reason: String },
    /// The HTTP client refused its settings.
    #[error("{0}")]
    HttpClient(String),
    #[error("{0}")]
    Url(url::ParseError),
}

fn parenthesized(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(" ({text})")
    }
}

fn detail(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

impl ErrorKind {
    /// Worth another attempt later (the request-level retries are already spent). A spent
    /// pull budget is not: it lasts until the time it names, not for a retry's backoff.
    pub fn is_transient(&self) -> bool {
        matches!(self, ErrorKind::Transport(_) | ErrorKind::RateLimited)
    }

    /// Where this sits in the library's catalogue of kinds.
    pub fn class(&self) -> Kind {
        match self {
            ErrorKind::NotFound(_) => Kind::NotFound,
            ErrorKind::Unauthorized(_) => Kind::Unauthorized,
            ErrorKind::Denied(_) => Kind::Denied,
            ErrorKind::RateLimited | ErrorKind::BudgetSpent { .. } => Kind::RateLimited,
            ErrorKind::DigestMismatch { .. } => Kind::DigestMismatch,
            ErrorKind::Transport(_) => Kind::Transport,
            ErrorKind::Protocol(_) | ErrorKind::InsecureRealm(_) => Kind::Protocol,
            ErrorKind::Setup(_) | ErrorKind::Credentials(_) => Kind::Credentials,
            ErrorKind::PushRefused(refused) => refused.kind,
            ErrorKind::ListingRefused(refused) => refused.kind,
            ErrorKind::Immutable(_) => Kind::Immutable,
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
fn describe_error_body(body: &[u8]) -> String {
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

/// The error for a request that failed after its retries.
pub(crate) async fn transport_failure(failure: TransportFailure, context: &str) -> RegistryError {
    match failure {
        TransportFailure::Io(error) => transport_error(error, context),
        TransportFailure::Status(response) => status_error(response, context).await,
    }
}

/// A connection-level error, without its URL (queries can carry upload state).
pub(crate) fn transport_error(error: reqwest::Error, context: &str) -> RegistryError {
    RegistryError::new(
        context,
        ErrorKind::Transport(error_chain(&error.without_url())),
    )
}

/// How much of an error body is read: enough for a registry's `errors[]`, and never a
/// hostile registry's endless one.
pub(crate) const MAX_ERROR_BODY: usize = 64 << 10;

/// The error for a response whose status is not what the operation needed.
pub(crate) async fn status_error(response: Response, context: &str) -> RegistryError {
    let status = response.status();
    let body = read_prefix(response, MAX_ERROR_BODY).await;
    let detail = describe_error_body(&body);
    let kind = match status {
        StatusCode::NOT_FOUND => ErrorKind::NotFound(detail),
        StatusCode::UNAUTHORIZED => ErrorKind::Unauthorized(detail),
        StatusCode::FORBIDDEN => ErrorKind::Denied(detail),
        StatusCode::TOO_MANY_REQUESTS => ErrorKind::RateLimited,
        s if s.is_server_error() => ErrorKind::Transport(format!("HTTP {s}: {detail}")),
        // ECR answers 400 TAG_INVALID "... cannot be overwritten because the repository is
        // immutable"; Harbor 412 with "immutable".
        StatusCode::BAD_REQUEST | StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED
            if detail.to_ascii_lowercase().contains("immutable") =>
        {
            ErrorKind::Immutable(detail)
        }
        s => ErrorKind::Protocol(format!("HTTP {s}: {detail}")),
    };
    RegistryError::new(context, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_and_credentials_read_as_before() {
        let bad_ca = ErrorKind::Setup(SetupProblem::CaInvalid {
            path: "certs/ca.pem".into(),
            reason: "no certificates".into(),
        });
        assert_eq!(
            bad_ca.to_string(),
            "client setup: bad CA file certs/ca.pem: no certificates"
        );
        let url = ErrorKind::Setup(SetupProblem::Url(url::ParseError::EmptyHost));
        assert_eq!(url.to_string(), "client setup: empty host");
        let helper = ErrorKind::Credentials(CredentialsError {
            source_name: "credential helper docker-credential-x (credsStore in c.json)".into(),
            message: "credential helper docker-credential-x: it failed".into(),
        });
        assert_eq!(
            helper.to_string(),
            "credentials: credential helper docker-credential-x: it failed"
        );
        for kind in [bad_ca, url, helper] {
            assert_eq!(kind.class(), Kind::Credentials);
        }
    }
}
