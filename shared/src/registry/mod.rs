//! The registry client: one `Client` per registry host, shared by every repository on it.
//!
//! A client pings `/v2/` once to learn the scheme (HTTPS; plain HTTP only for registries
//! marked insecure) and the authentication challenge, then sends each request with Basic
//! credentials or a Bearer token cached per (repository, actions). The API areas live in
//! their own files (`manifest`, `tag`, `blob`, `upload`); how requests are authorized lives
//! in `authorize`, retries and backoff in `transport`, the host's pull budget and requests in
//! flight in `ratelimit`, errors in `error`.
//!
//! A response that stops arriving (headers or body) fails after the read timeout and is
//! retried like a reset; a body cut off or stalled midway is asked for again here
//! (`get_body`). Uploads go through a second HTTP client without that timeout, which
//! reqwest would also count against the time spent sending the body; `upload` watches
//! their progress instead.

mod authorize;
mod blob;
mod challenge;
mod error;
mod manifest;
mod path;
mod ratelimit;
mod referrers;
mod tag;
mod token;
mod transport;
mod upload;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderMap, AUTHORIZATION};
use reqwest::{RequestBuilder, Response, StatusCode, Url};

/// Re-exported from `crate::manifest`, where the formats live.
pub use crate::manifest::media_types;
pub use blob::BlobStream;
pub use challenge::{parse_challenge, Challenge};
pub use error::{ErrorKind, RegistryError, SetupProblem};
pub use manifest::{Manifest, ManifestHead};
pub use ratelimit::DEFAULT_REQUESTS_IN_FLIGHT;
pub use referrers::ReferrersApi;
pub use transport::RetryPolicy;
pub use upload::{UploadSession, UploadStart};

/// The parsers of what registries send, for the property tests (`shared/tests/parsers.rs`);
/// not part of the API.
#[doc(hidden)]
pub mod parsers {
    pub use super::tag::{next_link, relative_to_v2};
    pub use super::token::token_response;
    pub use super::transport::parse_retry_after;
}

use crate::credentials::{CredentialStore, TlsSettings};
use crate::env::Env;
use futures::stream::{self, StreamExt};

use crate::reference::{Reference, Repository, DOCKER_HUB, DOCKER_HUB_API};
use crate::report::RegistryUsage;
use error::{status_error, transport_error, transport_failure};
use path::ApiPath;
use ratelimit::RateLimits;
use token::TokenCache;
use transport::{execute, read_capped, send_limited, TransportFailure};

/// Settings shared by every client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub retry: RetryPolicy,
    /// `n` for tags/list (and `_catalog`); `None` lets the registry choose tags/list's and
    /// asks 1,000 repositories a `_catalog` page (pagination is followed either way).
    pub tags_page_size: Option<usize>,
    pub user_agent: String,
    /// How long a response may go without a byte arriving (its headers, then each read of
    /// its body) before the request fails as a transient fault; for uploads, how long the
    /// body may go without moving.
    pub read_timeout: Duration,
    /// Requests in flight per registry host at most; 429s lower it for a while.
    pub requests_in_flight: usize,
}

/// The read timeout unless `FERRY_READ_TIMEOUT_SECS` says otherwise.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            retry: RetryPolicy::default(),
            tags_page_size: None,
            user_agent: format!("ferry/{}", env!("CARGO_PKG_VERSION")),
            read_timeout: DEFAULT_READ_TIMEOUT,
            requests_in_flight: DEFAULT_REQUESTS_IN_FLIGHT,
        }
    }
}

impl ClientOptions {
    /// The defaults, with the retry policy the environment sets (`FERRY_RETRY_BASE_MS`) and
    /// the read timeout (`FERRY_READ_TIMEOUT_SECS`, whole seconds from 1; tests shorten it to
    /// see stalls retried quickly).
    pub fn from_env(env: &dyn Env) -> Self {
        let read_timeout = env
            .var("FERRY_READ_TIMEOUT_SECS")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|secs| (1..=86_400).contains(secs))
            .map_or(DEFAULT_READ_TIMEOUT, Duration::from_secs);
        ClientOptions {
            retry: RetryPolicy::from_env(env),
            read_timeout,
            ..ClientOptions::default()
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

    /// Clients with [`ClientOptions::from_env`]: what the functions use.
    pub fn from_env(auth: Arc<dyn CredentialStore>, env: &dyn Env) -> Self {
        Registries::new(auth, ClientOptions::from_env(env))
    }

    /// The settings every client has (the copier paces its blob retries by them).
    pub fn options(&self) -> &ClientOptions {
        &self.options
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

    /// What each registry said of its rate limits so far: only those that stated a pull
    /// budget or answered 429.
    pub fn usage(&self) -> Vec<RegistryUsage> {
        let clients: Vec<Arc<Client>> = self
            .clients
            .lock()
            .expect("client map poisoned")
            .values()
            .cloned()
            .collect();
        clients
            .iter()
            .filter_map(|client| client.limits.usage())
            .collect()
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
    /// The registry's catalogue (`_catalog`): token scope `registry:catalog:*`, asked with
    /// the credentials of the scope's repository (a wildcard rule's prefix).
    Catalog,
}

impl Actions {
    pub fn as_str(self) -> &'static str {
        match self {
            Actions::Pull => "pull",
            Actions::PullPush => "pull,push",
            Actions::Catalog => "*",
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

    /// The catalogue of `within`'s registry, with `within`'s credentials.
    pub fn catalog(within: &Repository) -> Self {
        Scope {
            repository: within.clone(),
            actions: Actions::Catalog,
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
    /// For upload bodies: no read timeout (see the module docs).
    upload_http: reqwest::Client,
    tls: TlsSettings,
    auth: Arc<dyn CredentialStore>,
    options: ClientOptions,
    endpoint: tokio::sync::OnceCell<Endpoint>,
    challenge: RwLock<Challenge>,
    tokens: TokenCache,
    /// Repositories made ready for pushes (see `authorize::prepare_push`).
    prepared: Mutex<HashMap<Repository, Arc<tokio::sync::OnceCell<()>>>>,
    /// The host's pull budget and requests in flight.
    limits: RateLimits,
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
        let setup =
            |problem| RegistryError::new(format!("registry {registry}"), ErrorKind::Setup(problem));
        let http = http_client(options, &tls, Some(options.read_timeout)).map_err(setup)?;
        let upload_http = http_client(options, &tls, None).map_err(setup)?;
        let host = if registry == DOCKER_HUB {
            DOCKER_HUB_API.to_string()
        } else {
            registry.to_string()
        };
        Ok(Client {
            registry: registry.to_string(),
            host,
            http,
            upload_http,
            tls,
            auth,
            options: options.clone(),
            endpoint: tokio::sync::OnceCell::new(),
            challenge: RwLock::new(Challenge::None),
            tokens: TokenCache::default(),
            prepared: Mutex::new(HashMap::new()),
            limits: RateLimits::new(registry, options.requests_in_flight),
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
            let base = Url::parse(&format!("{scheme}://{}/v2/", self.host)).map_err(|e| {
                RegistryError::new(&context, ErrorKind::Setup(SetupProblem::Url(e)))
            })?;
            // An insecure registry is tried over HTTPS once, then over plain HTTP.
            let mut policy = self.options.retry;
            if i + 1 < schemes.len() {
                policy.attempts = 1;
            }
            match execute(&policy, Some(&self.limits), || self.http.get(base.clone())).await {
                Ok(response) => {
                    self.learn_challenge(&response, &context)?;
                    return Ok(Endpoint { base });
                }
                Err(failure) => last_error = Some(self.failure(failure, &context).await),
            }
        }
        Err(last_error.expect("at least one scheme is tried"))
    }

    /// Sends a request for `scope` with the right authorization, retrying transient faults
    /// and, once, a 401 (an expired token or a challenge seen for the first time).
    /// `path` is under `/v2/`. Returns the response whatever its status.
    pub(crate) async fn send(
        &self,
        scope: &Scope,
        context: &str,
        path: &ApiPath,
        build: impl Fn(&reqwest::Client, Url) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let url = self.api_url(path).await?;
        self.send_to(scope, context, url, build).await
    }

    /// The absolute URL of `path` on this registry.
    pub(crate) async fn api_url(&self, path: &ApiPath) -> Result<Url, RegistryError> {
        Ok(path.under(&self.endpoint().await?.base))
    }

    /// The absolute URL of a path the registry itself gave (a `Link` target, relative to
    /// `/v2/`), on the registry's own host.
    pub(crate) async fn url(&self, path: &str, context: &str) -> Result<Url, RegistryError> {
        self.endpoint()
            .await?
            .base
            .join(path)
            .map_err(|e| RegistryError::new(context, ErrorKind::Setup(SetupProblem::Url(e))))
    }

    /// `send` to an absolute URL. Credentials go only to the registry's own origin (scheme,
    /// host and port): an upload `Location` on another host gets the request without them.
    /// Only a 401 from that origin is a challenge to learn; another host's (after a
    /// redirect, say) is just an answer, so no realm it names ever sees the registry's
    /// credentials.
    pub(crate) async fn send_to(
        &self,
        scope: &Scope,
        context: &str,
        url: Url,
        build: impl Fn(&reqwest::Client, Url) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        self.send_via(&self.http, scope, context, url, build).await
    }

    /// `send_to` through the upload client, for requests whose body the caller watches.
    pub(crate) async fn send_upload_to(
        &self,
        scope: &Scope,
        context: &str,
        url: Url,
        build: impl Fn(&reqwest::Client, Url) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        self.send_via(&self.upload_http, scope, context, url, build)
            .await
    }

    async fn send_via(
        &self,
        http: &reqwest::Client,
        scope: &Scope,
        context: &str,
        url: Url,
        build: impl Fn(&reqwest::Client, Url) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let own = self.is_own(&url).await?;
        let mut refreshed = false;
        loop {
            let authorization = match own {
                true => self.authorization(scope, context).await?,
                false => None,
            };
            let response = execute(&self.options.retry, Some(&self.limits), || {
                let request = build(http, url.clone());
                match &authorization {
                    Some(value) => request.header(AUTHORIZATION, value.clone()),
                    None => request,
                }
            })
            .await;
            let response = match response {
                Ok(response) => response,
                Err(failure) => return Err(self.failure(failure, context).await),
            };
            if response.status() != StatusCode::UNAUTHORIZED
                || refreshed
                || !self.is_own(response.url()).await?
            {
                return Ok(response);
            }
            refreshed = true;
            if authorization.is_some() {
                self.auth.refused(&scope.repository);
            }
            self.tokens.forget(scope);
            self.learn_challenge(&response, context)?;
        }
    }

    /// The error for a request that failed after its retries: a 429 while the host's pull
    /// budget is spent says until when.
    async fn failure(&self, failure: TransportFailure, context: &str) -> RegistryError {
        let throttled = matches!(&failure, TransportFailure::Status(r) if r.status() == StatusCode::TOO_MANY_REQUESTS);
        match self.limits.spent() {
            Some(spent) if throttled => RegistryError::new(context, spent.error_kind()),
            _ => transport_failure(failure, context).await,
        }
    }

    /// Before a pull (a manifest GET, which registries count): a spent budget back within
    /// a retry's longest wait is waited out; one spent for longer fails at once, saying
    /// until when, and nothing is sent.
    pub(crate) async fn before_pull(&self, context: &str) -> Result<(), RegistryError> {
        let Some(spent) = self.limits.spent() else {
            return Ok(());
        };
        let wait = spent
            .until
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        if wait > self.options.retry.max_delay {
            return Err(RegistryError::new(context, spent.error_kind()));
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Whether `url` is on the registry's own origin, the only one its credentials go to.
    async fn is_own(&self, url: &Url) -> Result<bool, RegistryError> {
        Ok(self.endpoint().await?.base.origin() == url.origin())
    }

    /// Like `send`, but any non-success status becomes an error.
    pub(crate) async fn send_ok(
        &self,
        scope: &Scope,
        context: &str,
        path: &ApiPath,
        build: impl Fn(&reqwest::Client, Url) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let response = self.send(scope, context, path, build).await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(status_error(response, context).await)
        }
    }

    /// `send_to` for a GET whose body is wanted whole (at most `limit` bytes, `what` names
    /// it in errors): a success's headers and body. A body cut off or stalled midway is a
    /// transient fault like a reset, so the request is sent again, as often as the retry
    /// policy allows.
    pub(crate) async fn get_body(
        &self,
        scope: &Scope,
        context: &str,
        url: Url,
        build: impl Fn(&reqwest::Client, Url) -> RequestBuilder,
        (limit, what): (usize, &str),
    ) -> Result<(HeaderMap, Bytes), RegistryError> {
        let policy = self.options.retry;
        let mut retry = 0;
        loop {
            let response = self.send_to(scope, context, url.clone(), &build).await?;
            if !response.status().is_success() {
                return Err(status_error(response, context).await);
            }
            let headers = response.headers().clone();
            match read_capped(response, limit, what, context).await {
                Err(error)
                    if matches!(error.kind, ErrorKind::Transport(_))
                        && retry + 1 < policy.attempts =>
                {
                    let delay =
                        crate::backoff::jittered(policy.base_delay, retry, policy.max_delay);
                    tracing::debug!(%error, ?delay, "body cut off; asking again");
                    tokio::time::sleep(delay).await;
                    retry += 1;
                }
                read => return read.map(|body| (headers, body)),
            }
        }
    }

    /// Sends a request whose body can be sent only once (a streamed blob) to `url`, through
    /// the upload client: no retries here; the caller retries the whole transfer.
    /// Credentials as for `send_to`.
    pub(crate) async fn send_once(
        &self,
        scope: &Scope,
        context: &str,
        url: Url,
        request: impl FnOnce(&reqwest::Client, Url) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let authorization = match self.is_own(&url).await? {
            true => self.authorization(scope, context).await?,
            false => None,
        };
        let mut request = request(&self.upload_http, url);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        send_limited(&self.limits, request)
            .await
            .map_err(|error| transport_error(error, context))
    }
}

/// Redirects followed for one request, at most.
const MAX_REDIRECTS: usize = 10;

/// Redirects (a blob GET sent to a CDN, say) are followed, but never from HTTPS down to
/// plain HTTP: reqwest keeps `Authorization` when only the scheme changes and the port is
/// explicit. reqwest itself drops `Authorization` when the host or port changes.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt.url().scheme() == "http"
            && attempt.previous().iter().any(|url| url.scheme() == "https");
        if downgrade {
            attempt.error("refusing a redirect from HTTPS to plain HTTP")
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    })
}

/// An HTTP client for one registry host: its TLS settings (extra CA certificates, or no
/// verification for an insecure registry) and timeouts. reqwest's read timeout also runs
/// while a request body is being sent (reqwest#2784), capping every upload at it: the
/// upload client has none.
fn http_client(
    options: &ClientOptions,
    tls: &TlsSettings,
    read_timeout: Option<Duration>,
) -> Result<reqwest::Client, SetupProblem> {
    let mut builder = reqwest::Client::builder()
        .user_agent(&options.user_agent)
        .connect_timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(90))
        // HTTP/1.1 on several keep-alive connections: the benchmark measured one HTTP/2
        // connection carrying every blob stream a third slower (flow-control windows).
        .http1_only()
        .redirect(redirect_policy())
        .danger_accept_invalid_certs(tls.insecure);
    if let Some(timeout) = read_timeout {
        builder = builder.read_timeout(timeout);
    }
    for cert in crate::roots::extra_roots()? {
        builder = builder.add_root_certificate(cert);
    }
    if let Some(ca) = &tls.ca {
        let pem = std::fs::read(ca).map_err(|e| SetupProblem::CaUnreadable {
            path: ca.clone(),
            reason: e.to_string(),
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| SetupProblem::CaInvalid {
                path: ca.clone(),
                reason: e.to_string(),
            })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| SetupProblem::HttpClient(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::{Credentials, CredentialsError};
    use std::path::PathBuf;

    /// No credentials; every host with the CA file `0`.
    struct WithCa(PathBuf);

    #[async_trait::async_trait]
    impl CredentialStore for WithCa {
        async fn credentials_for(
            &self,
            _: &Repository,
        ) -> Result<Option<Credentials>, CredentialsError> {
            Ok(None)
        }
        fn tls_for(&self, _: &str) -> TlsSettings {
            TlsSettings {
                insecure: false,
                ca: Some(self.0.clone()),
            }
        }
    }

    #[test]
    fn the_read_timeout_comes_from_the_environment_within_bounds() {
        let timeout = |value: &str| {
            let env = crate::env::MapEnv::new([("FERRY_READ_TIMEOUT_SECS", value)]);
            ClientOptions::from_env(&env).read_timeout
        };
        assert_eq!(timeout("2"), Duration::from_secs(2));
        assert_eq!(timeout(" 90 "), Duration::from_secs(90));
        for unusable in ["0", "-1", "soon", "99999999999999999999", "86401"] {
            assert_eq!(timeout(unusable), DEFAULT_READ_TIMEOUT, "{unusable}");
        }
        let unset = ClientOptions::from_env(&crate::env::MapEnv::default());
        assert_eq!(unset.read_timeout, DEFAULT_READ_TIMEOUT);
    }

    #[test]
    fn unusable_ca_files_stop_client_setup() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let registries =
            Registries::new(Arc::new(WithCa(missing.clone())), ClientOptions::default());
        let err = registries.client("quay.io").unwrap_err();
        assert!(
            matches!(&err.kind, ErrorKind::Setup(SetupProblem::CaUnreadable { path, .. }) if *path == missing),
            "{err:?}"
        );
        let expected = format!(
            "registry quay.io: client setup: cannot read CA file {}: ",
            missing.display()
        );
        assert!(err.to_string().starts_with(&expected), "{err}");
    }
}
