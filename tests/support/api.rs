//! The harness's one client for a registry's HTTP API ([`RegistryApi`]), independent of
//! ferry's own: a base URL and the registry's auth (none, Basic credentials, or a token
//! minted directly by the registry's issuer, so the harness's own requests do not show up
//! in the issuer's record; they do show in the access log, so call
//! [`Registry::clear_requests`] after seeding), and every endpoint the harness touches:
//! blobs (`HEAD`, `GET`, monolithic and streamed uploads, cross-repository mounts),
//! manifests (`PUT`, `GET`, `DELETE`) and `tags/list`. Its methods return errors naming
//! the registry's answer.
//!
//! The `Registry` methods built on it (here for single requests, in `seed.rs` for whole
//! images and indexes, in `streamed.rs` for generated layers) run it on the support
//! background runtime, so they work from any test runtime, and panic on failure. Raw
//! requests that test the registry's or the issuer's own auth behaviour (`selftest.rs`)
//! and the benchmark's floor copier (a measured contender) use their own HTTP on purpose.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use reqwest::Method;
use sha2::{Digest, Sha256};

use crate::net;
use crate::registry::Registry;
use crate::seed::{hex_digest, sha256_digest, FetchedManifest, ALL_MANIFEST_TYPES};
use crate::token::IssuerState;

/// Signed Docker schema 1: the one manifest type whose digest is not sha256 of its bytes.
use crate::seed::DOCKER_MANIFEST_V1_SIGNED;

/// Per-request timeout of streamed uploads and mounts (a blob of gigabytes may take a
/// while); other requests have the client's own.
const STREAMING_TIMEOUT: Duration = Duration::from_secs(3600);

pub(crate) type Res<T> = anyhow::Result<T>;

/// How the harness authenticates to one registry.
#[derive(Clone)]
pub(crate) enum Auth {
    None,
    Basic(&'static str, &'static str),
    Token(Arc<IssuerState>),
}

/// A client for one registry's V2 API (cheap to clone; see the module docs).
#[derive(Clone)]
pub struct RegistryApi {
    base: String,
    auth: Auth,
}

impl RegistryApi {
    /// `http(s)://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The `Authorization` header value for a request needing `scopes`
    /// (`repository:NAME:ACTIONS`): a token minted for exactly those scopes in token
    /// modes, the harness credentials in Basic modes (scopes unused), `None` without auth.
    pub fn authorization(&self, scopes: &[&str]) -> Option<String> {
        match &self.auth {
            Auth::None => None,
            Auth::Basic(user, password) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )),
            Auth::Token(issuer) => Some(format!("Bearer {}", issuer.mint(scopes))),
        }
    }

    /// A request on `repo` (a token grants pull, push and delete on it), and in token mode
    /// also pull on `from` (a mount needs both).
    fn request(
        &self,
        method: Method,
        url: &str,
        repo: &str,
        from: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let own = format!("repository:{repo}:pull,push,delete");
        let other = from.map(|f| format!("repository:{f}:pull"));
        let mut scopes = vec![own.as_str()];
        scopes.extend(other.as_deref());
        let req = net::bg_client().request(method, url);
        match self.authorization(&scopes) {
            Some(value) => req.header(reqwest::header::AUTHORIZATION, value),
            None => req,
        }
    }

    fn url(&self, repo: &str, rest: &str) -> String {
        format!("{}/v2/{repo}/{rest}", self.base)
    }

    /// The `Location` of an upload answer, resolved against the base URL.
    fn location(&self, resp: &reqwest::Response) -> Res<url::Url> {
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow::anyhow!("upload answer without Location"))?;
        Ok(url::Url::parse(&self.base)?.join(location)?)
    }

    /// `POST` opening an upload session in `repo`; its `Location`.
    async fn start_upload(&self, repo: &str, timeout: Option<Duration>) -> Res<url::Url> {
        let mut req = self
            .request(Method::POST, &self.url(repo, "blobs/uploads/"), repo, None)
            .header("content-length", "0");
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let start = expect_status(req.send().await?, 202, "starting blob upload").await?;
        self.location(&start)
    }

    /// Upload `data` as a blob of `repo` in one `PUT` (skipped when a `HEAD` finds it);
    /// its digest.
    pub async fn push_blob(&self, repo: &str, data: Bytes) -> Res<String> {
        let digest = sha256_digest(&data);
        if self.blob_size(repo, &digest).await?.is_some() {
            return Ok(digest);
        }
        let mut url = self.start_upload(repo, None).await?;
        url.query_pairs_mut().append_pair("digest", &digest);
        let len = data.len();
        let put = self
            .request(Method::PUT, url.as_str(), repo, None)
            .header("content-type", "application/octet-stream")
            .header("content-length", len.to_string())
            .body(data)
            .send()
            .await?;
        expect_status(put, 201, &format!("finishing upload of {digest}")).await?;
        Ok(digest)
    }

    /// Upload the bytes `chunks` yields as a blob of `repo` without holding them: `POST`,
    /// one streamed `PATCH` hashing as it goes, `PUT ?digest=`. Its digest. No `HEAD`
    /// first: the digest is only known once the bytes have streamed.
    pub async fn push_blob_streamed(
        &self,
        repo: &str,
        chunks: impl Iterator<Item = Bytes> + Send + 'static,
    ) -> Res<String> {
        let patch_url = self.start_upload(repo, Some(STREAMING_TIMEOUT)).await?;
        let hasher = Arc::new(Mutex::new(Sha256::new()));
        let tap = hasher.clone();
        let chunks = futures::stream::iter(chunks.map(move |c| {
            tap.lock().unwrap().update(&c);
            Ok::<_, std::io::Error>(c)
        }));
        let patch = self
            .request(Method::PATCH, patch_url.as_str(), repo, None)
            .timeout(STREAMING_TIMEOUT)
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await?;
        let patch = expect_status(patch, 202, "streaming the blob (PATCH)").await?;
        let mut put_url = self.location(&patch)?;
        let digest = hex_digest(std::mem::take(&mut *hasher.lock().unwrap()));
        put_url.query_pairs_mut().append_pair("digest", &digest);
        let put = self
            .request(Method::PUT, put_url.as_str(), repo, None)
            .timeout(STREAMING_TIMEOUT)
            .header("content-type", "application/octet-stream")
            .header("content-length", "0")
            .send()
            .await?;
        expect_status(put, 201, &format!("finishing upload of {digest}")).await?;
        Ok(digest)
    }

    /// Cross-repository mount of `digest` from `from` into `repo`; `false` when the
    /// registry declined (the upload session it opened instead is cancelled).
    pub async fn mount_blob(&self, repo: &str, digest: &str, from: &str) -> Res<bool> {
        let url = format!(
            "{}?mount={digest}&from={from}",
            self.url(repo, "blobs/uploads/")
        );
        let resp = self
            .request(Method::POST, &url, repo, Some(from))
            .timeout(STREAMING_TIMEOUT)
            .header("content-length", "0")
            .send()
            .await?;
        match resp.status().as_u16() {
            201 => Ok(true),
            202 => {
                if let Ok(loc) = self.location(&resp) {
                    let _ = self
                        .request(Method::DELETE, loc.as_str(), repo, None)
                        .timeout(STREAMING_TIMEOUT)
                        .send()
                        .await;
                }
                Ok(false)
            }
            _ => {
                expect_status(resp, 201, &format!("mounting {digest} from {from}")).await?;
                unreachable!()
            }
        }
    }

    /// The size a `HEAD` of the blob answers; `None` on 404.
    pub async fn blob_size(&self, repo: &str, digest: &str) -> Res<Option<u64>> {
        let url = self.url(repo, &format!("blobs/{digest}"));
        let resp = self.request(Method::HEAD, &url, repo, None).send().await?;
        match resp.status().as_u16() {
            200 => Ok(Some(
                resp.headers()
                    .get("content-length")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("HEAD {repo}@{digest}: no Content-Length"))?,
            )),
            404 => Ok(None),
            s => anyhow::bail!("HEAD blob {repo}@{digest}: {s}"),
        }
    }

    /// `GET` a blob; `None` on 404.
    pub async fn fetch_blob(&self, repo: &str, digest: &str) -> Res<Option<Vec<u8>>> {
        let url = self.url(repo, &format!("blobs/{digest}"));
        let resp = self.request(Method::GET, &url, repo, None).send().await?;
        if resp.status() == 404 {
            return Ok(None);
        }
        let resp = expect_status(resp, 200, &format!("fetching blob {repo}@{digest}")).await?;
        Ok(Some(resp.bytes().await?.to_vec()))
    }

    /// `PUT` a manifest under `reference` (tag or digest); the digest the registry
    /// answered. For everything but signed schema 1 that must equal sha256 of the bytes;
    /// for schema 1 it is the digest of the payload without signatures.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Res<String> {
        let digest = sha256_digest(&bytes);
        let url = self.url(repo, &format!("manifests/{reference}"));
        let resp = self
            .request(Method::PUT, &url, repo, None)
            .header("content-type", media_type)
            .body(bytes)
            .send()
            .await?;
        let resp =
            expect_status(resp, 201, &format!("pushing manifest {repo}:{reference}")).await?;
        let answered = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        if media_type == DOCKER_MANIFEST_V1_SIGNED {
            return answered
                .ok_or_else(|| anyhow::anyhow!("no Docker-Content-Digest for schema 1 push"));
        }
        if let Some(answered) = answered {
            anyhow::ensure!(
                answered == digest,
                "registry computed digest {answered}, expected {digest}"
            );
        }
        Ok(digest)
    }

    /// `GET` a manifest with this `Accept`; `None` on 404.
    pub async fn fetch_manifest_as(
        &self,
        repo: &str,
        reference: &str,
        accept: &str,
    ) -> Res<Option<FetchedManifest>> {
        let url = self.url(repo, &format!("manifests/{reference}"));
        let resp = self
            .request(Method::GET, &url, repo, None)
            .header("accept", accept)
            .send()
            .await?;
        if resp.status() == 404 {
            return Ok(None);
        }
        let resp =
            expect_status(resp, 200, &format!("fetching manifest {repo}:{reference}")).await?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let media_type = header("content-type").unwrap_or_default();
        let answered = header("docker-content-digest");
        let bytes = resp.bytes().await?.to_vec();
        Ok(Some(FetchedManifest {
            media_type,
            digest: answered.unwrap_or_else(|| sha256_digest(&bytes)),
            bytes,
        }))
    }

    /// `GET` a manifest accepting every manifest type; `None` on 404.
    pub async fn fetch_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Res<Option<FetchedManifest>> {
        self.fetch_manifest_as(repo, reference, ALL_MANIFEST_TYPES)
            .await
    }

    /// `DELETE` a manifest by digest.
    pub async fn delete_manifest(&self, repo: &str, digest: &str) -> Res<()> {
        let url = self.url(repo, &format!("manifests/{digest}"));
        let resp = self
            .request(Method::DELETE, &url, repo, None)
            .send()
            .await?;
        expect_status(resp, 202, &format!("deleting {repo}@{digest}")).await?;
        Ok(())
    }

    /// All tags of `repo`, sorted (empty if the repository is unknown).
    pub async fn list_tags(&self, repo: &str) -> Res<Vec<String>> {
        let url = self.url(repo, "tags/list");
        let resp = self.request(Method::GET, &url, repo, None).send().await?;
        if resp.status() == 404 {
            return Ok(Vec::new());
        }
        let resp = expect_status(resp, 200, &format!("listing tags of {repo}")).await?;
        let v: serde_json::Value = resp.json().await?;
        let mut tags: Vec<String> = v["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        Ok(tags)
    }
}

/// `resp` when it has status `want`; otherwise an error naming `what` and the registry's
/// answer.
pub(crate) async fn expect_status(
    resp: reqwest::Response,
    want: u16,
    what: &str,
) -> Res<reqwest::Response> {
    if resp.status().as_u16() == want {
        return Ok(resp);
    }
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    anyhow::bail!("{what}: expected {want}, got {status}: {body}")
}

/// Single requests through [`RegistryApi`] (async; every method panics on failure with the
/// registry's answer).
impl Registry {
    /// The harness's API client for this registry.
    pub fn api(&self) -> RegistryApi {
        RegistryApi {
            base: self.base_url(),
            auth: self.auth(),
        }
    }

    /// Run `op` with this registry's client on the background runtime; panics naming
    /// `what` when it fails.
    pub(crate) async fn on_api<T, F, Fut>(&self, what: &'static str, op: F) -> T
    where
        F: FnOnce(RegistryApi) -> Fut + Send + 'static,
        Fut: Future<Output = Res<T>> + Send + 'static,
        T: Send + 'static,
    {
        let api = self.api();
        net::on_bg(async move { op(api).await })
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:#}"))
    }

    /// Upload `data` as a blob of `repo` (skipped if `HEAD` finds it); its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let (repo, data) = (repo.to_owned(), Bytes::copy_from_slice(data));
        self.on_api("push_blob", |api| async move {
            api.push_blob(&repo, data).await
        })
        .await
    }

    /// [`RegistryApi::push_blob_streamed`]: the bytes `chunks` yields, never held whole.
    pub async fn push_blob_streamed(
        &self,
        repo: &str,
        chunks: impl Iterator<Item = Bytes> + Send + 'static,
    ) -> String {
        let repo = repo.to_owned();
        self.on_api("push_blob_streamed", |api| async move {
            api.push_blob_streamed(&repo, chunks).await
        })
        .await
    }

    /// Cross-repository mount of `digest` from `from` into `repo`; `false` when the
    /// registry declined.
    pub async fn mount_blob(&self, repo: &str, digest: &str, from: &str) -> bool {
        let (repo, digest, from) = (repo.to_owned(), digest.to_owned(), from.to_owned());
        self.on_api("mount_blob", |api| async move {
            api.mount_blob(&repo, &digest, &from).await
        })
        .await
    }

    /// The size a `HEAD` of the blob answers; `None` on 404.
    pub async fn blob_size(&self, repo: &str, digest: &str) -> Option<u64> {
        let (repo, digest) = (repo.to_owned(), digest.to_owned());
        self.on_api("blob_size", |api| async move {
            api.blob_size(&repo, &digest).await
        })
        .await
    }

    /// Whether `HEAD` finds the blob in `repo`.
    pub async fn has_blob(&self, repo: &str, digest: &str) -> bool {
        self.blob_size(repo, digest).await.is_some()
    }

    /// `GET` a blob; `None` on 404.
    pub async fn fetch_blob(&self, repo: &str, digest: &str) -> Option<Vec<u8>> {
        let (repo, digest) = (repo.to_owned(), digest.to_owned());
        self.on_api("fetch_blob", |api| async move {
            api.fetch_blob(&repo, &digest).await
        })
        .await
    }

    /// `PUT` a manifest under `reference` (tag or digest); its digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> String {
        let (repo, reference, media_type) =
            (repo.to_owned(), reference.to_owned(), media_type.to_owned());
        let bytes = Bytes::copy_from_slice(bytes);
        self.on_api("push_manifest", |api| async move {
            api.push_manifest(&repo, &reference, &media_type, bytes)
                .await
        })
        .await
    }

    /// `GET` a manifest accepting every manifest type; `None` on 404.
    pub async fn fetch_manifest(&self, repo: &str, reference: &str) -> Option<FetchedManifest> {
        let (repo, reference) = (repo.to_owned(), reference.to_owned());
        self.on_api("fetch_manifest", |api| async move {
            api.fetch_manifest(&repo, &reference).await
        })
        .await
    }

    /// `DELETE` a manifest by digest.
    pub async fn delete_manifest(&self, repo: &str, digest: &str) {
        let (repo, digest) = (repo.to_owned(), digest.to_owned());
        self.on_api("delete_manifest", |api| async move {
            api.delete_manifest(&repo, &digest).await
        })
        .await
    }

    /// All tags of `repo`, sorted (empty if the repository is unknown).
    pub async fn list_tags(&self, repo: &str) -> Vec<String> {
        let repo = repo.to_owned();
        self.on_api("list_tags", |api| async move { api.list_tags(&repo).await })
            .await
    }
}
