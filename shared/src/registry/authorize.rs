//! How a client authorizes its requests: the challenge a registry answered `/v2/` or a 401
//! with, and the `Authorization` header that follows from it for a scope (Basic credentials,
//! a Bearer token from the token cache, or nothing). Where credentials come from is the
//! `CredentialStore`'s business (`crate::auth` for ferry's input); parsing challenges is
//! `challenge`'s and fetching tokens `token`'s.

use reqwest::header::{HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};

use super::challenge::{parse_challenge, Challenge};
use super::error::{ErrorKind, RegistryError};
use super::token;
use super::{Client, Scope};
use std::sync::Arc;

use crate::credentials::Credentials;
use crate::reference::Repository;

impl Client {
    /// Records what a `/v2/` or 401 response says about authentication.
    pub(super) fn learn_challenge(
        &self,
        response: &Response,
        context: &str,
    ) -> Result<(), RegistryError> {
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if status != StatusCode::UNAUTHORIZED {
            return Err(RegistryError::new(
                context,
                ErrorKind::Protocol(format!("/v2/ answered HTTP {status}; is this a registry?")),
            ));
        }
        let challenge = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(parse_challenge)
            .ok_or_else(|| {
                RegistryError::new(
                    context,
                    ErrorKind::Protocol("401 without a usable WWW-Authenticate challenge".into()),
                )
            })?;
        *self.challenge.write().expect("challenge lock poisoned") = challenge;
        Ok(())
    }

    /// The `Authorization` header for a request in `scope`, if the registry wants one.
    pub(super) async fn authorization(
        &self,
        scope: &Scope,
        context: &str,
    ) -> Result<Option<HeaderValue>, RegistryError> {
        let challenge = self
            .challenge
            .read()
            .expect("challenge lock poisoned")
            .clone();
        match challenge {
            Challenge::None => Ok(None),
            Challenge::Basic => Ok(self
                .credentials(scope, context)
                .await?
                .and_then(|c| match c {
                    Credentials::Basic { username, password } => {
                        Some(basic_header(&username, password.expose()))
                    }
                    Credentials::IdentityToken(_) => None,
                })),
            Challenge::Bearer { realm, service } => {
                let credentials = self.credentials(scope, context).await?;
                let token = self
                    .tokens
                    .get_or_fetch(scope, || {
                        token::fetch(
                            &self.http,
                            &self.options.retry,
                            token::TokenRequest {
                                realm: &realm,
                                service: service.as_deref(),
                                scope,
                                credentials: credentials.as_ref(),
                                allow_plain_http: self.tls.insecure,
                                context,
                            },
                        )
                    })
                    .await?;
                Ok(Some(bearer_header(token.expose())))
            }
        }
    }

    /// The store's credentials for the scope's repository. The store caches what costs
    /// something (a helper's answer, an ECR password) and renews what expires.
    async fn credentials(
        &self,
        scope: &Scope,
        context: &str,
    ) -> Result<Option<Credentials>, RegistryError> {
        self.auth
            .credentials_for(&scope.repository)
            .await
            .map_err(|e| RegistryError::new(context, ErrorKind::Credentials(e)))
    }

    /// Once per repository per client, before the first push into it: the store may create
    /// it (ECR). Concurrent pushes wait for one call; a failure is not remembered, so the
    /// next image tries again.
    pub(super) async fn prepare_push(
        &self,
        repository: &Repository,
        context: &str,
    ) -> Result<(), RegistryError> {
        let cell = {
            let mut prepared = self.prepared.lock().expect("prepared pushes poisoned");
            Arc::clone(prepared.entry(repository.clone()).or_default())
        };
        cell.get_or_try_init(|| async {
            self.auth
                .prepare_push(repository)
                .await
                .map_err(|e| RegistryError::new(context, ErrorKind::PushRefused(e)))
        })
        .await
        .map(|_| ())
    }
}

fn basic_header(username: &str, password: &str) -> HeaderValue {
    use base64::Engine as _;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut value =
        HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}

fn bearer_header(token: &str) -> HeaderValue {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
    value.set_sensitive(true);
    value
}
