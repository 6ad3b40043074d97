//! The registry client: one `Client` per registry host, shared by every repository on it.
//!
//! A client pings `/v2/` once to learn the scheme (HTTPS; plain HTTP only for registries
//! marked insecure) and the authentication challenge, then sends each request with Basic
//! credentials or a Bearer token cached per (repository, actions). The API areas live in
//! their own files (`manifest`, `tag`); retries and backoff live in `transport`.

mod blob;
mod challenge;
mod error;
mod manifest;
mod tag;
mod token;
mod transport;
mod upload;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use reqwest::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode, Url};

/// Re-exported from `crate::manifest`, where the formats live.
pub use crate::manifest::media_types;
pub use blob::BlobStream;
pub use challenge::{parse_challenge, Challenge};
pub use error::{ErrorKind, RegistryError};
pub use manifest::{Manifest, ManifestHead};
pub use transport::RetryPolicy;
pub use upload::{UploadSession, UploadStart};

use crate::credentials::{CredentialStore, Credentials, TlsSettings};
use crate::env::Env;
use futures::stream::{self, StreamExt};

use crate::reference::{Reference, Repository, DOCKER_HUB, DOCKER_HUB_API};
use error::describe_error_body;
use token::TokenCache;
use transport::{execute, TransportFailure};

/// Settings shared by every client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub retry: RetryPolicy,
    /// `n` for tags/list; `None` lets the registry choose (pagination is followed either way).
    pub tags_page_size: Option<usize>,
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            retry: RetryPolicy::default(),
            tags_page_size: None,
            user_agent: format!("ferry/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// The clients for every registry a run touches, built on first use.
pub struct Registries {
    auth: Arc<dyn CredentialStore>,
    options: ClientOptions,
    clients: Mutex<HashMap<String, Arc<Client>>>,
}

impl Registries {
    pub fn new(auth: Arc<dyn CredentialStore>, options: ClientOptions) -> Self {
        Registries {
            auth,
            options,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Clients with the default options and the retry policy the environment sets
    /// (`FERRY_RETRY_BASE_MS`): what the CLI and every function use.
    pub fn from_env(auth: Arc<dyn CredentialStore>, env: &dyn Env) -> Self {
        let options = ClientOptions {
            retry: RetryPolicy::from_env(env),
            ..ClientOptions::default()
        };
        Registries::new(auth, options)
    }

    /// The client for `registry` (as in `Repository::registry()`).
    pub fn client(&self, registry: &str) -> Result<Arc<Client>, RegistryError> {
        let mut clients = self.clients.lock().expect("client map poisoned");
        if let Some(client) = clients.get(registry) {
            return Ok(client.clone());
        }
        let client = Arc::new(Client::new(registry, self.auth.clone(), &self.options)?);
        clients.insert(registry.to_string(), client.clone());
        Ok(client)
    }

    /// HEADs every reference (with a token for `actions`), up to `concurrency` at once, in
    /// order: `None` where missing. HEAD spends no pull quota, which is what makes no-op runs
    /// free.
    pub async fn manifest_heads(
        &self,
        references: &[Reference],
        actions: Actions,
        concurrency: usize,
    ) -> Result<Vec<Option<ManifestHead>>, RegistryError> {
        stream::iter(references)
            .map(|reference| async move {
                self.client(reference.repository.registry())?
                    .manifest_head_as(reference, actions)
                    .await
            })
            .buffered(concurrency.max(1))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }
}

/// Which repository a request is for and what it may do there: the token scope, and the
/// key that selects credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub repository: Repository,
    pub actions: Actions,
    /// A second repository to pull from in the same token, for cross-repository mounts.
    pub mount_from: Option<Repository>,
}

/// The actions a token is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Actions {
    Pull,
    PullPush,
}

impl Actions {
    pub fn as_str(self) -> &'static str {
        match self {
            Actions::Pull => "pull",
            Actions::PullPush => "pull,push",
        }
    }
}

impl Scope {
    pub fn pull(repository: &Repository) -> Self {
        Scope {
            repository: repository.clone(),
            actions: Actions::Pull,
            mount_from: None,
        }
    }

    pub fn push(repository: &Repository) -> Self {
        Scope {
            repository: repository.clone(),
            actions: Actions::PullPush,
            mount_from: None,
        }
    }

    /// Push to `repository` and pull from `from`, as a mount needs.
    pub fn push_mounting(repository: &Repository, from: &Repository) -> Self {
        Scope {
            mount_from: Some(from.clone()),
            ..Scope::push(repository)
        }
    }
}

/// Where a registry answers and how it wants to be authenticated.
#[derive(Debug, Clone)]
struct Endpoint {
    base: Url,
}

/// A client for one registry host.
pub struct Client {
    registry: String,
    host: String,
    http: reqwest::Client,
    tls: TlsSettings,
    auth: Arc<dyn CredentialStore>,
    options: ClientOptions,
    endpoint: tokio::sync::OnceCell<Endpoint>,
    challenge: RwLock<Challenge>,
    tokens: TokenCache,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("registry", &self.registry)
            .field("host", &self.host)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Client {
    fn new(
        registry: &str,
        auth: Arc<dyn CredentialStore>,
        options: &ClientOptions,
    ) -> Result<Self, RegistryError> {
        let tls = auth.tls_for(registry);
        let setup = |message: String| {
            RegistryError::new(format!("registry {registry}"), ErrorKind::Setup(message))
        };
        let mut builder = reqwest::Client::builder()
            .user_agent(&options.user_agent)
            .connect_timeout(std::time::Duration::from_secs(30))
            .read_timeout(std::time::Duration::from_secs(300))
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            // HTTP/1.1 on several keep-alive connections: the benchmark measured one HTTP/2
            // connection carrying every blob stream a third slower (flow-control windows).
            .http1_only()
            .danger_accept_invalid_certs(tls.insecure);
        if let Some(ca) = &tls.ca {
            let pem = std::fs::read(ca)
                .map_err(|e| setup(format!("cannot read CA file {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| setup(format!("bad CA file {}: {e}", ca.display())))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| setup(e.to_string()))?;
        let host = if registry == DOCKER_HUB {
            DOCKER_HUB_API.to_string()
        } else {
            registry.to_string()
        };
        Ok(Client {
            registry: registry.to_string(),
            host,
            http,
            tls,
            auth,
            options: options.clone(),
            endpoint: tokio::sync::OnceCell::new(),
            challenge: RwLock::new(Challenge::None),
            tokens: TokenCache::default(),
        })
    }

    /// The registry as named in references.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Pings `/v2/` once per client: picks the scheme and records the challenge.
    async fn endpoint(&self) -> Result<&Endpoint, RegistryError> {
        self.endpoint.get_or_try_init(|| self.ping()).await
    }

    async fn ping(&self) -> Result<Endpoint, RegistryError> {
        let context = format!("ping {}", self.registry);
        let mut schemes = vec!["https"];
        if self.tls.insecure {
            schemes.push("http");
        }
        let mut last_error = None;
        for (i, scheme) in schemes.iter().enumerate() {
            let base = Url::parse(&format!("{scheme}://{}/v2/", self.host))
                .map_err(|e| RegistryError::new(&context, ErrorKind::Setup(e.to_string())))?;
            // An insecure registry is tried over HTTPS once, then over plain HTTP.
            let mut policy = self.options.retry;
            if i + 1 < schemes.len() {
                policy.attempts = 1;
            }
            match execute(&policy, || self.http.get(base.clone())).await {
                Ok(response) => {
                    self.learn_challenge(&response, &context)?;
                    return Ok(Endpoint { base });
                }
                Err(failure) => last_error = Some(transport_failure(failure, &context).await),
            }
        }
        Err(last_error.expect("at least one scheme is tried"))
    }

    /// Records what a `/v2/` or 401 response says about authentication.
    fn learn_challenge(&self, response: &Response, context: &str) -> Result<(), RegistryError> {
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

    /// Sends a request for `scope` with the right authorization, retrying transient faults
    /// and, once, a 401 (an expired token or a challenge seen for the first time).
    /// `path` is relative to `/v2/`. Returns the response whatever its status.
    pub(crate) async fn send(
        &self,
        scope: &Scope,
        context: &str,
        path: &str,
        build: impl Fn(&reqwest::Client, Url) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let url = self.url(path, context).await?;
        self.send_to(scope, context, url, build).await
    }

    /// The absolute URL of `path` (relative to `/v2/`, or absolute as upload `Location`s
    /// may be).
    pub(crate) async fn url(&self, path: &str, context: &str) -> Result<Url, RegistryError> {
        self.endpoint()
            .await?
            .base
            .join(path)
            .map_err(|e| RegistryError::new(context, ErrorKind::Setup(e.to_string())))
    }

    /// `send` to an absolute URL.
    pub(crate) async fn send_to(
        &self,
        scope: &Scope,
        context: &str,
        url: Url,
        build: impl Fn(&reqwest::Client, Url) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let mut refreshed = false;
        loop {
            let authorization = self.authorization(scope, context).await?;
            let response = execute(&self.options.retry, || {
                let request = build(&self.http, url.clone());
                match &authorization {
                    Some(value) => request.header(AUTHORIZATION, value.clone()),
                    None => request,
                }
            })
            .await;
            let response = match response {
                Ok(response) => response,
                Err(failure) => return Err(transport_failure(failure, context).await),
            };
            if response.status() != StatusCode::UNAUTHORIZED || refreshed {
                return Ok(response);
            }
            refreshed = true;
            self.tokens.forget(scope);
            self.learn_challenge(&response, context)?;
        }
    }

    /// Like `send`, but any non-success status becomes an error.
    pub(crate) async fn send_ok(
        &self,
        scope: &Scope,
        context: &str,
        path: &str,
        build: impl Fn(&reqwest::Client, Url) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let response = self.send(scope, context, path, build).await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(status_error(response, context).await)
        }
    }

    /// Sends a request whose body can be sent only once (a streamed blob): no retries here;
    /// the caller retries the whole transfer.
    pub(crate) async fn send_once(
        &self,
        scope: &Scope,
        context: &str,
        request: impl FnOnce(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let authorization = self.authorization(scope, context).await?;
        let mut request = request(&self.http);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        request
            .send()
            .await
            .map_err(|error| transport_error(error, context))
    }

    async fn authorization(
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
            Challenge::Basic => Ok(self.credentials(scope, context)?.and_then(|c| match c {
                Credentials::Basic { username, password } => {
                    Some(basic_header(&username, password.expose()))
                }
                Credentials::IdentityToken(_) => None,
            })),
            Challenge::Bearer { realm, service } => {
                let credentials = self.credentials(scope, context)?;
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

    fn credentials(
        &self,
        scope: &Scope,
        context: &str,
    ) -> Result<Option<Credentials>, RegistryError> {
        self.auth
            .credentials_for(&scope.repository)
            .map_err(|e| RegistryError::new(context, ErrorKind::Credentials(e.to_string())))
    }
}

/// The error for a request that failed after its retries.
pub(crate) async fn transport_failure(failure: TransportFailure, context: &str) -> RegistryError {
    match failure {
        TransportFailure::Io(error) => transport_error(error, context),
        TransportFailure::Status(response) => status_error(response, context).await,
    }
}

/// A connection-level error, without its URL (queries can carry upload state).
fn transport_error(error: reqwest::Error, context: &str) -> RegistryError {
    RegistryError::new(
        context,
        ErrorKind::Transport(error_chain(&error.without_url())),
    )
}

/// The error for a response whose status is not what the operation needed.
pub(crate) async fn status_error(response: Response, context: &str) -> RegistryError {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    let detail = describe_error_body(&body);
    let kind = match status {
        StatusCode::NOT_FOUND => ErrorKind::NotFound(detail),
        StatusCode::UNAUTHORIZED => ErrorKind::Unauthorized(detail),
        StatusCode::FORBIDDEN => ErrorKind::Denied(detail),
        StatusCode::TOO_MANY_REQUESTS => ErrorKind::RateLimited,
        s if s.is_server_error() => ErrorKind::Transport(format!("HTTP {s}: {detail}")),
        s => ErrorKind::Protocol(format!("HTTP {s}: {detail}")),
    };
    RegistryError::new(context, kind)
}

/// An error and its causes on one line: reqwest's top-level message alone says little.
fn error_chain(error: &dyn std::error::Error) -> String {
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
