//! What a registry is presented with and how it is reached: `Secret` (a string that never
//! prints), `Credentials` (Basic, or a Docker identity token), `TlsSettings` per host, and
//! `CredentialStore`, the one question the registry client asks of them. Where credentials
//! come from (auth file, Docker config, helpers) is `auth`'s business.

use std::fmt;
use std::path::PathBuf;

use crate::error::Kind;
use crate::reference::Repository;

/// A secret string: Debug/Display print "***"; `expose()` gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What to present to a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    Basic {
        username: String,
        password: Secret,
    },
    /// Docker config `identitytoken`: an OAuth2 refresh token for the token endpoint.
    IdentityToken(Secret),
}

impl Credentials {
    /// Basic credentials unless both parts are absent or empty, which every place that
    /// holds credentials (an auth file entry, Docker's config, a helper's reply) means as
    /// "none here".
    pub fn basic_unless_empty(username: Option<String>, password: Option<String>) -> Option<Self> {
        let username = username.unwrap_or_default();
        let password = password.unwrap_or_default();
        if username.is_empty() && password.is_empty() {
            return None;
        }
        Some(Credentials::Basic {
            username,
            password: Secret::new(password),
        })
    }
}

/// How to connect to one registry host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    /// Plain HTTP allowed and TLS certificates not verified.
    pub insecure: bool,
    /// A PEM file with extra CA certificates to trust.
    pub ca: Option<PathBuf>,
}

/// Where the registry client gets credentials and TLS settings, and what it asks before
/// pushing into a repository; the auth file implements it.
#[async_trait::async_trait]
pub trait CredentialStore: Send + Sync {
    /// The credentials for `repository`, if any are configured. Asked per request: a store
    /// whose answers cost something (a helper, an API call) caches them itself.
    async fn credentials_for(
        &self,
        repository: &Repository,
    ) -> Result<Option<Credentials>, CredentialsError>;
    /// The registry answered 401 to the credentials given for `repository`: a store whose
    /// credentials expire (ECR's passwords) gets fresh ones for the next request.
    fn refused(&self, _repository: &Repository) {}
    /// How to connect to `registry` (as in `Repository::registry()`).
    fn tls_for(&self, registry: &str) -> TlsSettings;
    /// Called once per repository per process before the first push into it: a registry
    /// that does not create repositories on push (ECR) gets it created here.
    async fn prepare_push(&self, _repository: &Repository) -> Result<(), PushRefused> {
        Ok(())
    }
    /// The repositories of `registry`, where the store has a way to list them that the
    /// registry's `_catalog` lacks (ECR serves no catalogue; its API lists them); `None`:
    /// ask `_catalog`.
    async fn repositories(&self, _registry: &str) -> Option<Result<Vec<String>, ListingRefused>> {
        None
    }
}

/// Why the store could not list a registry's repositories. The message names the registry,
/// never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ListingRefused {
    pub kind: Kind,
    pub message: String,
}

/// Why a repository cannot be pushed into (it is missing and may not be created, or it
/// could not be created). The message names the registry and repository, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PushRefused {
    pub kind: Kind,
    pub message: String,
}

/// Credentials that are configured but could not be had (a helper failed, say). The message
/// never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CredentialsError {
    /// Where they were to come from (an auth file entry, a Docker config's helper), for
    /// logs; the message already says it in its own words.
    pub source_name: String,
    pub message: String,
}

/// No credentials anywhere and default TLS: anonymous access.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anonymous;

#[async_trait::async_trait]
impl CredentialStore for Anonymous {
    async fn credentials_for(
        &self,
        _: &Repository,
    ) -> Result<Option<Credentials>, CredentialsError> {
        Ok(None)
    }
    fn tls_for(&self, _: &str) -> TlsSettings {
        TlsSettings::default()
    }
}
