//! Reading a live cluster's workloads through the API server's list endpoints: Pods,
//! ReplicationControllers, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and
//! CronJobs (operators' workloads are found through the pods they run). Every namespace is
//! read with one cluster-wide list per kind when the credentials may; otherwise, and with
//! `--namespace`, namespace by namespace, where a namespace the credentials may not read is
//! a warning when listing everything and an error when it was named. Lists are paged
//! ([`PAGE_LIMIT`] objects a page, at most [`MAX_PAGES`] pages, a repeated `continue`
//! token is an error), each page's body capped at [`MAX_PAGE_BYTES`] and reduced to its
//! image uses before the next is fetched. Which credentials to use is `kubeconfig.rs`'s.

use std::collections::HashSet;
use std::time::Duration;

use futures::stream::{self, StreamExt as _};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::exec;
use super::kubeconfig::{ClusterAccess, Login};
use super::workload::{read_object, ObjectImages};
use super::{DiscoverError, Selection, Warning, QUOTE_LIMIT};
use crate::backoff::jittered;
use crate::credentials::Secret;
use crate::env::Env;
use crate::error::{error_chain, truncate};

/// Objects asked for per page (kubectl's default).
const PAGE_LIMIT: usize = 500;
/// Pages per list: 5 million objects of one kind in one namespace is more than any cluster.
const MAX_PAGES: usize = 10_000;
/// One page's body: 500 pods are a few MiB; an API server that ignores `limit` and sends
/// 10,000 pods at once (~6 KiB each) still fits.
const MAX_PAGE_BYTES: usize = 64 << 20;
/// Attempts per page when the server is unreachable or answers 429/5xx.
const ATTEMPTS: u32 = 3;
/// Namespaces listed at once.
const CONCURRENCY: usize = 8;
/// Overrides the first retry delay in milliseconds (tests).
const RETRY_BASE_VAR: &str = "FERRY_RETRY_BASE_MS";

/// One kind the API serves: its path prefix, resource name and kind.
struct Resource {
    prefix: &'static [&'static str],
    plural: &'static str,
    kind: &'static str,
}

const RESOURCES: [Resource; 8] = [
    Resource {
        prefix: &["api", "v1"],
        plural: "pods",
        kind: "Pod",
    },
    Resource {
        prefix: &["api", "v1"],
        plural: "replicationcontrollers",
        kind: "ReplicationController",
    },
    Resource {
        prefix: &["apis", "apps", "v1"],
        plural: "deployments",
        kind: "Deployment",
    },
    Resource {
        prefix: &["apis", "apps", "v1"],
        plural: "statefulsets",
        kind: "StatefulSet",
    },
    Resource {
        prefix: &["apis", "apps", "v1"],
        plural: "daemonsets",
        kind: "DaemonSet",
    },
    Resource {
        prefix: &["apis", "apps", "v1"],
        plural: "replicasets",
        kind: "ReplicaSet",
    },
    Resource {
        prefix: &["apis", "batch", "v1"],
        plural: "jobs",
        kind: "Job",
    },
    Resource {
        prefix: &["apis", "batch", "v1"],
        plural: "cronjobs",
        kind: "CronJob",
    },
];

/// Why one list failed: the two a caller decides about, or the run's end.
enum ListError {
    Forbidden(String),
    NotServed,
    Fatal(DiscoverError),
}

#[derive(Deserialize)]
struct ListPage {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Option<Vec<Value>>,
}

#[derive(Default, Deserialize)]
struct ListMeta {
    #[serde(default, rename = "continue")]
    continue_token: Option<String>,
}

/// A logged-in client for one API server.
pub(super) struct Cluster {
    client: reqwest::Client,
    base: Url,
    authorization: Option<HeaderValue>,
    context: String,
    retry_base: Duration,
}

impl Cluster {
    /// The client for `access`, after running its exec plugin if it has one.
    pub async fn connect(access: ClusterAccess, env: &dyn Env) -> Result<Self, DiscoverError> {
        let problem = |message: String| DiscoverError::Context {
            context: access.context.clone(),
            message,
        };
        let base = Url::parse(&access.server)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
            .ok_or_else(|| {
                problem(format!(
                    "server {:?} is not an http(s) URL",
                    truncate(&access.server, QUOTE_LIMIT)
                ))
            })?;
        let mut identity = access.identity_pem.clone();
        let (token, basic) = match &access.login {
            Login::None => (None, None),
            Login::Bearer(token) => (Some(token.clone()), None),
            Login::Basic { username, password } => {
                (None, Some((username.clone(), password.clone())))
            }
            Login::Exec(config) => {
                let credential = exec::run(config, &access).await?;
                identity = credential.identity_pem.or(identity);
                (credential.token, None)
            }
        };
        let authorization = authorization(token, basic)
            .map_err(|()| problem("the token is not a valid HTTP header value".to_string()))?;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .danger_accept_invalid_certs(access.insecure);
        if let Some(pem) = &access.ca_pem {
            // The cluster's CA only, as kubectl: a public CA must not vouch for an API server.
            builder = builder.tls_built_in_root_certs(false);
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| problem(format!("its certificate authority is not PEM: {e}")))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(pem) = &identity {
            let identity = reqwest::Identity::from_pem(pem.expose().as_bytes()).map_err(|_| {
                problem("the client certificate or key is not PEM ferry can use".to_string())
            })?;
            builder = builder.identity(identity);
        }
        let client = builder
            .build()
            .map_err(|e| problem(format!("cannot set up an HTTPS client: {e}")))?;
        let retry_base = env
            .var(RETRY_BASE_VAR)
            .and_then(|v| v.parse().ok())
            .map_or(Duration::from_millis(500), Duration::from_millis);
        Ok(Cluster {
            client,
            base,
            authorization,
            context: access.context,
            retry_base,
        })
    }

    /// Every workload object `selection` admits, and what was left out.
    pub async fn read_workloads(
        &self,
        selection: &Selection,
    ) -> Result<(Vec<ObjectImages>, Vec<Warning>), DiscoverError> {
        let mut warnings = Vec::new();
        if selection.namespaces.is_empty() {
            if let Some(objects) = self.read_cluster_wide(selection, &mut warnings).await? {
                return Ok((objects, warnings));
            }
            let namespaces = self.namespaces().await?;
            let namespaces: Vec<String> = namespaces
                .into_iter()
                .filter(|n| !selection.exclude.contains(n))
                .collect();
            let objects = self
                .read_namespaces(&namespaces, false, &mut warnings)
                .await?;
            return Ok((objects, warnings));
        }
        let objects = self
            .read_namespaces(&selection.namespaces, true, &mut warnings)
            .await?;
        Ok((objects, warnings))
    }

    /// One list per kind across namespaces; `None` when the credentials may not.
    async fn read_cluster_wide(
        &self,
        selection: &Selection,
        warnings: &mut Vec<Warning>,
    ) -> Result<Option<Vec<ObjectImages>>, DiscoverError> {
        let mut objects = Vec::new();
        for resource in &RESOURCES {
            match self.list(resource, None).await {
                Ok(found) => objects.extend(found),
                Err(ListError::Forbidden(_)) => {
                    tracing::debug!(
                        resource = resource.plural,
                        "no cluster-wide list; reading namespace by namespace"
                    );
                    return Ok(None);
                }
                Err(ListError::NotServed) => warnings.push(Warning::ResourceUnavailable {
                    resource: resource.plural.to_string(),
                }),
                Err(ListError::Fatal(e)) => return Err(e),
            }
        }
        objects.retain(|o| selection.admits(o.namespace()));
        Ok(Some(objects))
    }

    /// Every kind in each of `namespaces`. A namespace the credentials may not read is an
    /// error when it was `named`, else a warning.
    async fn read_namespaces(
        &self,
        namespaces: &[String],
        named: bool,
        warnings: &mut Vec<Warning>,
    ) -> Result<Vec<ObjectImages>, DiscoverError> {
        let lists = namespaces
            .iter()
            .flat_map(|ns| RESOURCES.iter().map(move |r| (ns, r)));
        let results: Vec<_> = stream::iter(lists)
            .map(
                |(ns, resource)| async move { (ns, resource, self.list(resource, Some(ns)).await) },
            )
            .buffered(CONCURRENCY)
            .collect()
            .await;
        let mut objects = Vec::new();
        let mut forbidden = HashSet::new();
        let mut unserved = HashSet::new();
        for (namespace, resource, result) in results {
            match result {
                Ok(found) => objects.extend(found),
                Err(ListError::Forbidden(detail)) if named => {
                    return Err(DiscoverError::Forbidden {
                        context: self.context.clone(),
                        what: format!("{} in namespace {namespace}", resource.plural),
                        detail,
                    })
                }
                Err(ListError::Forbidden(_)) => {
                    if forbidden.insert(namespace.clone()) {
                        warnings.push(Warning::NamespaceForbidden {
                            namespace: namespace.clone(),
                            resource: resource.plural.to_string(),
                        });
                    }
                }
                Err(ListError::NotServed) => {
                    if unserved.insert(resource.plural) {
                        warnings.push(Warning::ResourceUnavailable {
                            resource: resource.plural.to_string(),
                        });
                    }
                }
                Err(ListError::Fatal(e)) => return Err(e),
            }
        }
        Ok(objects)
    }

    /// The names of every namespace.
    async fn namespaces(&self) -> Result<Vec<String>, DiscoverError> {
        let what = "namespaces";
        let mut names = Vec::new();
        let url = self.url(&["api", "v1", "namespaces"], what)?;
        let result = self
            .pages(url, what, |item| {
                if let Some(name) = item.pointer("/metadata/name").and_then(Value::as_str) {
                    names.push(name.to_string());
                }
            })
            .await;
        match result {
            Ok(()) => Ok(names),
            Err(ListError::Forbidden(detail)) => Err(DiscoverError::Forbidden {
                context: self.context.clone(),
                what: "namespaces (name the ones to read with --namespace)".to_string(),
                detail,
            }),
            Err(ListError::NotServed) => Err(self.api_error(what, "404 Not Found".to_string())),
            Err(ListError::Fatal(e)) => Err(e),
        }
    }

    /// Every object of `resource` (in `namespace`, or everywhere), reduced.
    async fn list(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
    ) -> Result<Vec<ObjectImages>, ListError> {
        let mut segments: Vec<&str> = resource.prefix.to_vec();
        if let Some(namespace) = namespace {
            segments.extend(["namespaces", namespace]);
        }
        segments.push(resource.plural);
        let what = match namespace {
            Some(ns) => format!("{} in namespace {ns}", resource.plural),
            None => resource.plural.to_string(),
        };
        let url = self.url(&segments, &what).map_err(ListError::Fatal)?;
        let mut objects = Vec::new();
        self.pages(url, &what, |item| {
            if let Some(object) = read_object(item, resource.kind) {
                objects.push(object);
            }
        })
        .await?;
        Ok(objects)
    }

    fn url(&self, segments: &[&str], what: &str) -> Result<Url, DiscoverError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| self.api_error(what, "the server URL cannot take a path".to_string()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// Calls `each` for every item of every page of the list at `url`.
    async fn pages(
        &self,
        url: Url,
        what: &str,
        mut each: impl FnMut(&Value),
    ) -> Result<(), ListError> {
        let mut seen_tokens = HashSet::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut page_url = url.clone();
            page_url
                .query_pairs_mut()
                .append_pair("limit", &PAGE_LIMIT.to_string());
            if let Some(token) = &token {
                page_url.query_pairs_mut().append_pair("continue", token);
            }
            let body = self.get(page_url, what).await?;
            let page: ListPage = serde_json::from_slice(&body).map_err(|e| {
                ListError::Fatal(self.api_error(what, format!("the answer is not a list: {e}")))
            })?;
            drop(body);
            for item in page.items.iter().flatten() {
                each(item);
            }
            match page.metadata.continue_token.filter(|t| !t.is_empty()) {
                None => return Ok(()),
                Some(next) => {
                    if !seen_tokens.insert(next.clone()) {
                        return Err(ListError::Fatal(self.api_error(
                            what,
                            "the server repeated a continue token; stopped".to_string(),
                        )));
                    }
                    token = Some(next);
                }
            }
        }
        Err(ListError::Fatal(self.api_error(
            what,
            format!("more than {MAX_PAGES} pages; stopped"),
        )))
    }

    /// One page's body, retried on connection failures, 429 and 5xx.
    async fn get(&self, url: Url, what: &str) -> Result<Vec<u8>, ListError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .client
                .get(url.clone())
                .header("Accept", "application/json");
            if let Some(authorization) = &self.authorization {
                request = request.header(AUTHORIZATION, authorization.clone());
            }
            let retry = match request.send().await {
                Err(e) => {
                    let reason = error_chain(&e.without_url());
                    if attempt >= ATTEMPTS {
                        return Err(ListError::Fatal(DiscoverError::Unreachable {
                            context: self.context.clone(),
                            server: self.base.to_string(),
                            reason,
                        }));
                    }
                    reason
                }
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        return self.body(response, what).await;
                    }
                    let transient =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    if !transient || attempt >= ATTEMPTS {
                        return Err(self.refusal(status, response, what).await);
                    }
                    status.to_string()
                }
            };
            tracing::debug!(what, attempt, reason = %retry, "retrying a list page");
            tokio::time::sleep(jittered(
                self.retry_base,
                attempt - 1,
                Duration::from_secs(10),
            ))
            .await;
        }
    }

    async fn body(
        &self,
        mut response: reqwest::Response,
        what: &str,
    ) -> Result<Vec<u8>, ListError> {
        let too_big = || {
            ListError::Fatal(self.api_error(
                what,
                format!("a page is larger than {} MiB", MAX_PAGE_BYTES >> 20),
            ))
        };
        if response
            .content_length()
            .is_some_and(|l| l > MAX_PAGE_BYTES as u64)
        {
            return Err(too_big());
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_PAGE_BYTES {
                        return Err(too_big());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(e) => {
                    return Err(ListError::Fatal(DiscoverError::Unreachable {
                        context: self.context.clone(),
                        server: self.base.to_string(),
                        reason: error_chain(&e.without_url()),
                    }))
                }
            }
        }
    }

    /// What a non-success status means for this list.
    async fn refusal(
        &self,
        status: StatusCode,
        response: reqwest::Response,
        what: &str,
    ) -> ListError {
        match status {
            StatusCode::UNAUTHORIZED => ListError::Fatal(DiscoverError::Refused {
                context: self.context.clone(),
                server: self.base.to_string(),
            }),
            StatusCode::FORBIDDEN => ListError::Forbidden(status_message(response).await),
            StatusCode::NOT_FOUND => ListError::NotServed,
            _ => {
                let message = status_message(response).await;
                ListError::Fatal(self.api_error(what, format!("{status}: {message}")))
            }
        }
    }

    fn api_error(&self, what: &str, message: String) -> DiscoverError {
        DiscoverError::Api {
            context: self.context.clone(),
            what: what.to_string(),
            message,
        }
    }
}

/// The `Authorization` header, marked sensitive so no log shows it.
fn authorization(
    token: Option<Secret>,
    basic: Option<(String, Secret)>,
) -> Result<Option<HeaderValue>, ()> {
    use base64::Engine as _;
    let text = match (token, basic) {
        (Some(token), _) => format!("Bearer {}", token.expose()),
        (None, Some((username, password))) => {
            let pair = format!("{username}:{}", password.expose());
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        }
        (None, None) => return Ok(None),
    };
    let mut value = HeaderValue::from_str(&text).map_err(|_| ())?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// The `message` of a Kubernetes `Status` answer, cut; the status line when there is none.
async fn status_message(response: reqwest::Response) -> String {
    const LIMIT: usize = 64 << 10;
    let mut response = response;
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() > LIMIT {
            break;
        }
    }
    let message = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "no message".to_string());
    let printable: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(&printable, QUOTE_LIMIT)
}
