//! The one catalogue of error kinds every library error maps to, so callers can match on
//! what happened without knowing which module failed: the CLI turns kinds into exit codes,
//! reports and worker outcomes carry the kind next to the message. Each module keeps its
//! own error type with structured context (file, rule, registry, repository, digest) and
//! says its kind through [`HasKind`].

use serde::Serialize;

/// What kind of failure an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A file, flag, variable, message or payload that is not what ferry accepts. Nothing
    /// was sent for it.
    BadInput,
    /// A repository, tag, manifest or blob that does not exist.
    NotFound,
    /// A registry refused the credentials, or none were configured.
    Unauthorized,
    /// Authenticated, but not allowed.
    Denied,
    /// HTTP 429 after retries.
    RateLimited,
    /// Content whose digest or size is not what its reference says.
    DigestMismatch,
    /// A connection, timeout or 5xx after retries: worth trying again later.
    Transport,
    /// A registry answered something the protocol does not allow.
    Protocol,
    /// Credentials configured but not obtainable (a helper failed), or a client could not be
    /// set up (a CA file).
    Credentials,
    /// The job queue (SQS) failed.
    Queue,
    /// Stopped by Ctrl-C or an invocation deadline before it finished.
    Interrupted,
    /// The target will not overwrite a tag (an immutable repository): no retry can help.
    Immutable,
}

impl Kind {
    /// Worth another attempt later.
    pub fn is_transient(self) -> bool {
        matches!(self, Kind::Transport | Kind::RateLimited | Kind::Queue)
    }

    /// No later attempt can succeed, whatever happens meanwhile: a queued job failing so is
    /// dropped (and logged), not redelivered until the dead-letter queue. (A malformed job is
    /// not: the dead-letter queue is where a user finds it.)
    pub fn is_permanent(self) -> bool {
        matches!(self, Kind::Immutable)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::BadInput => "bad_input",
            Kind::NotFound => "not_found",
            Kind::Unauthorized => "unauthorized",
            Kind::Denied => "denied",
            Kind::RateLimited => "rate_limited",
            Kind::DigestMismatch => "digest_mismatch",
            Kind::Transport => "transport",
            Kind::Protocol => "protocol",
            Kind::Credentials => "credentials",
            Kind::Queue => "queue",
            Kind::Interrupted => "interrupted",
            Kind::Immutable => "immutable",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error that knows its [`Kind`].
pub trait HasKind {
    fn kind(&self) -> Kind;
}

/// `text` cut to `limit` characters, with an ellipsis when cut: values from hostile input
/// are quoted in messages, never whole.
pub fn truncate(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// An error and its causes on one line: reqwest's top-level message alone says little.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    // Bounded: error chains are finite and short.
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_characters() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "abc…");
        assert_eq!(truncate("ééé", 2), "éé…");
        assert_eq!(
            serde_json::to_string(&Kind::BadInput).unwrap(),
            "\"bad_input\""
        );
    }
}
