//! The raw floor: the least a copier must do to move a corpus's blobs. Every unique blob
//! is streamed once, `GET` from the source straight into a monolithic `PUT` on the target
//! (after the `POST` that opens the upload), over keep-alive HTTP/1.1 connections (or, as
//! a variant, HTTP/2), at a fixed parallelism, largest blobs first; the other repositories that need the blob get a
//! cross-repository mount. No manifests, no verification, no retries, no existence checks.
//! It runs as its own process (`ferry-bench floor SPEC`) so it is measured like the others.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

/// What the floor copies, and where.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spec {
    pub source: String,
    pub target: String,
    pub ca: PathBuf,
    pub username: String,
    pub password: String,
    /// Token mode: the issuer's realm and service (Basic auth otherwise).
    pub token: Option<(String, String)>,
    pub parallel: usize,
    /// Let TLS negotiate HTTP/2 (one multiplexed connection per registry) instead of
    /// HTTP/1.1 keep-alive connections.
    pub http2: bool,
    pub blobs: Vec<FloorBlob>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FloorBlob {
    pub digest: String,
    pub size: u64,
    /// A source repository holding it.
    pub from: String,
    /// Target repositories: the first gets the bytes, the rest a mount.
    pub to: Vec<String>,
}

struct Ctx {
    http: reqwest::Client,
    spec: Spec,
    /// Tokens by scope, fetched once each.
    tokens: Mutex<HashMap<String, String>>,
}

impl Ctx {
    /// `Authorization` for `scope` (`repository:NAME:ACTIONS`, space-separated).
    async fn auth(&self, scope: &str) -> anyhow::Result<String> {
        let Some((realm, service)) = &self.spec.token else {
            let pair = format!("{}:{}", self.spec.username, self.spec.password);
            return Ok(format!("Basic {}", BASE64.encode(pair)));
        };
        if let Some(token) = self.tokens.lock().unwrap().get(scope) {
            return Ok(token.clone());
        }
        let mut url = url::Url::parse(realm)?;
        url.query_pairs_mut().append_pair("service", service);
        for s in scope.split(' ') {
            url.query_pairs_mut().append_pair("scope", s);
        }
        let v: serde_json::Value = self
            .http
            .get(url)
            .basic_auth(&self.spec.username, Some(&self.spec.password))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = v["token"]
            .as_str()
            .or(v["access_token"].as_str())
            .ok_or_else(|| anyhow::anyhow!("token answer without token"))?;
        let value = format!("Bearer {token}");
        self.tokens
            .lock()
            .unwrap()
            .insert(scope.to_string(), value.clone());
        Ok(value)
    }

    async fn copy(&self, blob: &FloorBlob) -> anyhow::Result<()> {
        let (spec, http) = (&self.spec, &self.http);
        let src_auth = self.auth(&format!("repository:{}:pull", blob.from)).await?;
        let get = http
            .get(format!(
                "{}/v2/{}/blobs/{}",
                spec.source, blob.from, blob.digest
            ))
            .header("authorization", src_auth)
            .send()
            .await?
            .error_for_status()?;
        let to = &blob.to[0];
        let dst_auth = self.auth(&format!("repository:{to}:pull,push")).await?;
        let start = http
            .post(format!("{}/v2/{to}/blobs/uploads/", spec.target))
            .header("authorization", &dst_auth)
            .header("content-length", "0")
            .send()
            .await?
            .error_for_status()?;
        let location = start
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow::anyhow!("no Location"))?;
        let mut put_url = url::Url::parse(&spec.target)?.join(location)?;
        put_url
            .query_pairs_mut()
            .append_pair("digest", &blob.digest);
        let put = http
            .put(put_url)
            .header("authorization", &dst_auth)
            .header("content-type", "application/octet-stream")
            .header("content-length", blob.size)
            .body(reqwest::Body::wrap_stream(get.bytes_stream()))
            .send()
            .await?;
        anyhow::ensure!(
            put.status().as_u16() == 201,
            "PUT {to}@{}: {}",
            blob.digest,
            put.status()
        );
        for repo in &blob.to[1..] {
            let auth = self
                .auth(&format!("repository:{repo}:pull,push repository:{to}:pull"))
                .await?;
            let mount = http
                .post(format!(
                    "{}/v2/{repo}/blobs/uploads/?mount={}&from={to}",
                    spec.target, blob.digest
                ))
                .header("authorization", auth)
                .header("content-length", "0")
                .send()
                .await?;
            anyhow::ensure!(
                mount.status().as_u16() == 201,
                "mount {repo}@{}: {}",
                blob.digest,
                mount.status()
            );
        }
        Ok(())
    }
}

/// `ferry-bench floor SPEC`: copy, exit non-zero on the first failure.
pub fn main(spec_path: &Path) -> anyhow::Result<()> {
    let mut spec: Spec = serde_json::from_slice(&std::fs::read(spec_path)?)?;
    spec.blobs.sort_by_key(|b| std::cmp::Reverse(b.size));
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&spec.ca)?)?;
    let parallel = spec.parallel.max(1);
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .pool_max_idle_per_host(parallel * 2)
        .no_proxy()
        .connect_timeout(Duration::from_secs(30));
    if !spec.http2 {
        builder = builder.http1_only();
    }
    let http = builder.build()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let blobs = spec.blobs.clone();
        let ctx = Arc::new(Ctx {
            http,
            spec,
            tokens: Mutex::new(HashMap::new()),
        });
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(blobs)
            .map(|b| {
                let ctx = ctx.clone();
                async move { ctx.copy(&b).await }
            })
            .buffer_unordered(parallel)
            .collect()
            .await;
        results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
        Ok(())
    })
}
