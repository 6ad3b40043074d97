//! Bearer tokens: fetched from the challenge's realm and cached per (repository, actions)
//! until shortly before they expire. Concurrent requests for the same scope wait for one
//! fetch instead of each asking the token server.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::error::{status_error, transport_failure};
use super::error::{ErrorKind, RegistryError};
use super::transport::{execute, read_capped, RetryPolicy};
use super::{Actions, Scope};
use crate::credentials::{Credentials, Secret};

/// Tokens are renewed this long before their stated expiry, so none expires in flight.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// What the distribution spec says to assume when `expires_in` is absent.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// A token is trusted for a day at most, whatever `expires_in` says (2^64-1, say).
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// Token responses are small JSON documents; a larger one is refused.
const MAX_TOKEN_RESPONSE: usize = 1 << 20;

/// When a token fetched at `started` is to be renewed: `expires_in` seconds later (capped,
/// so no number overflows the clock) less a margin.
fn renew_at(started: Instant, expires_in: Option<u64>) -> Instant {
    let lifetime = expires_in
        .map_or(DEFAULT_LIFETIME, Duration::from_secs)
        .min(MAX_LIFETIME);
    started + lifetime.saturating_sub(EXPIRY_MARGIN)
}

#[derive(Clone)]
pub(crate) struct Token {
    value: Secret,
    renew_at: Instant,
}

impl Token {
    pub(crate) fn expose(&self) -> &str {
        self.value.expose()
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Token>>>;

/// The cache: one slot per scope, locked while a token is being fetched.
#[derive(Default)]
pub(crate) struct TokenCache {
    slots: Mutex<HashMap<Scope, Slot>>,
}

impl TokenCache {
    pub(crate) async fn get_or_fetch<F, Fut>(
        &self,
        scope: &Scope,
        fetch: F,
    ) -> Result<Token, RegistryError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Token, RegistryError>>,
    {
        let slot = self
            .slots
            .lock()
            .expect("token cache poisoned")
            .entry(scope.clone())
            .or_default()
            .clone();
        let mut guard = slot.lock().await;
        if let Some(token) = guard.as_ref().filter(|t| Instant::now() < t.renew_at) {
            return Ok(token.clone());
        }
        let token = fetch().await?;
        *guard = Some(token.clone());
        Ok(token)
    }

    /// Drops a token the registry refused.
    pub(crate) fn forget(&self, scope: &Scope) {
        self.slots
            .lock()
            .expect("token cache poisoned")
            .remove(scope);
    }
}

/// Everything a token request needs.
pub(crate) struct TokenRequest<'a> {
    pub realm: &'a str,
    pub service: Option<&'a str>,
    pub scope: &'a Scope,
    pub credentials: Option<&'a Credentials>,
    pub allow_plain_http: bool,
    pub context: &'a str,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Asks the realm for a token: GET with Basic credentials (or anonymously), or the OAuth2
/// refresh-token POST for Docker config identity tokens.
pub(crate) async fn fetch(
    http: &reqwest::Client,
    retry: &RetryPolicy,
    request: TokenRequest<'_>,
) -> Result<Token, RegistryError> {
    let context = request.context;
    let error = |kind| RegistryError::new(format!("{context}: token from {}", request.realm), kind);
    let mut url = Url::parse(request.realm)
        .map_err(|e| error(ErrorKind::Protocol(format!("bad token realm: {e}"))))?;
    if url.scheme() != "https" && !request.allow_plain_http {
        return Err(error(ErrorKind::InsecureRealm(request.realm.to_string())));
    }
    let mut scopes = vec![match request.scope.actions {
        Actions::Catalog => "registry:catalog:*".to_string(),
        actions => format!(
            "repository:{}:{}",
            request.scope.repository.path(),
            actions.as_str()
        ),
    }];
    if let Some(from) = &request.scope.mount_from {
        scopes.push(format!("repository:{}:pull", from.path()));
    }
    let started = Instant::now();
    let response = match request.credentials {
        Some(Credentials::IdentityToken(refresh)) => {
            // Scoped: the serializer is not Send and must not live across an await.
            let body = {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("client_id", "ferry")
                    .append_pair("refresh_token", refresh.expose())
                    .append_pair("scope", &scopes.join(" "));
                if let Some(service) = request.service {
                    form.append_pair("service", service);
                }
                form.finish()
            };
            execute(retry, None, || {
                http.post(url.clone())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.clone())
            })
            .await
        }
        credentials => {
            {
                let mut query = url.query_pairs_mut();
                if let Some(service) = request.service {
                    query.append_pair("service", service);
                }
                for scope in &scopes {
                    query.append_pair("scope", scope);
                }
                if let Some(Credentials::Basic { username, .. }) = credentials {
                    query.append_pair("account", username);
                }
            }
            execute(retry, None, || {
                let get = http.get(url.clone());
                match credentials {
                    Some(Credentials::Basic { username, password }) => {
                        get.basic_auth(username, Some(password.expose()))
                    }
                    _ => get,
                }
            })
            .await
        }
    };
    let response = match response {
        Ok(r) => r,
        Err(failure) => {
            let context = format!("{context}: token from {}", request.realm);
            return Err(transport_failure(failure, &context).await);
        }
    };
    if response.status() == StatusCode::UNAUTHORIZED || response.status() == StatusCode::FORBIDDEN {
        return Err(error(ErrorKind::Unauthorized(
            "the token server refused the credentials".into(),
        )));
    }
    if !response.status().is_success() {
        return Err(status_error(response, &format!("{context}: token")).await);
    }
    let body = read_capped(response, MAX_TOKEN_RESPONSE, "token response", context).await?;
    let (value, expires_in) = parse_response(&body).map_err(error)?;
    Ok(Token {
        value,
        renew_at: renew_at(started, expires_in),
    })
}

/// A token server's answer: the token (`token`, else `access_token`) and its stated lifetime
/// in seconds.
fn parse_response(body: &[u8]) -> Result<(Secret, Option<u64>), ErrorKind> {
    let body: TokenResponse = serde_json::from_slice(body)
        .map_err(|e| ErrorKind::Protocol(format!("token response: {e}")))?;
    let value = body
        .token
        .or(body.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ErrorKind::Protocol("token response without a token".into()))?;
    Ok((Secret::new(value), body.expires_in))
}

/// A token server's answer as ferry uses it: the token, and how long it is used before it
/// is renewed. For the property tests (`ferry::registry::parsers`).
pub fn token_response(body: &[u8]) -> Result<(String, Duration), ErrorKind> {
    let (value, expires_in) = parse_response(body)?;
    let now = Instant::now();
    Ok((value.expose().to_string(), renew_at(now, expires_in) - now))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12, row 6: an `expires_in` of 2^64-1 made `Instant + Duration` panic.
    #[test]
    fn huge_expiry_is_capped_not_a_panic() {
        let now = Instant::now();
        assert_eq!(
            renew_at(now, Some(u64::MAX)),
            now + MAX_LIFETIME - EXPIRY_MARGIN
        );
        assert_eq!(renew_at(now, None), now + DEFAULT_LIFETIME - EXPIRY_MARGIN);
        assert_eq!(renew_at(now, Some(0)), now);
        assert_eq!(
            renew_at(now, Some(300)),
            now + Duration::from_secs(300) - EXPIRY_MARGIN
        );
    }
}
