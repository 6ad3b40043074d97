//! Seeding and inspecting registries through the plain Registry V2 API with
//! `reqwest`, independent of ferry's own client: blobs, manifests, whole
//! images ([`ImageSpec`] → [`SeededImage`]), manifest lists / OCI indexes
//! ([`SeededIndex`]) and many tags at once, plus raw reads to check what a
//! copy produced. Auth is handled per mode (Basic credentials, or a token
//! minted directly by the registry's issuer, so seeding does not show up in
//! the issuer's request record — it does show in the access log; call
//! [`Registry::clear_requests`] after seeding). All work runs on the support
//! background runtime; the helpers panic with the registry's answer on
//! failure.

use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::net;
use crate::registry::Registry;
use crate::token::IssuerState;

/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config media type.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker (gzip) layer media type.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker schema 1 signed manifest media type.
pub const DOCKER_MANIFEST_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI (gzip) layer media type.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Every manifest media type, for an `Accept` header.
pub const ALL_MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.v1+prettyjws, \
    application/vnd.docker.distribution.manifest.v1+json";

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in hash {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// `size` deterministic, incompressible bytes (SplitMix64 of `seed`): a
/// stand-in layer blob. Different seeds give different content.
pub fn layer(seed: u64, size: usize) -> Vec<u8> {
    let mut state = seed ^ 0x6a09_e667_f3bc_c908;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(size);
    out
}

/// What [`Registry::seed_image`] builds.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// Config `os` (default `linux`).
    pub os: String,
    /// Config `architecture` (default `amd64`).
    pub architecture: String,
    /// Config `variant`, if any.
    pub variant: Option<String>,
    /// Layer blobs, bottom first (see [`layer`]).
    pub layers: Vec<Vec<u8>>,
    /// OCI media types instead of Docker schema 2.
    pub oci: bool,
    /// Extra config labels (`config.Labels`), to make configs differ.
    pub labels: Vec<(String, String)>,
}

impl Default for ImageSpec {
    fn default() -> Self {
        ImageSpec {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
            layers: Vec::new(),
            oci: false,
            labels: Vec::new(),
        }
    }
}

impl ImageSpec {
    /// linux/amd64 Docker image with these layers.
    pub fn new(layers: Vec<Vec<u8>>) -> ImageSpec {
        ImageSpec {
            layers,
            ..ImageSpec::default()
        }
    }

    /// linux/amd64 Docker image with `n` layers of `size` bytes from seeds
    /// `seed`, `seed+1`, ...
    pub fn with_layers(seed: u64, n: usize, size: usize) -> ImageSpec {
        ImageSpec::new((0..n as u64).map(|i| layer(seed + i, size)).collect())
    }

    /// Set os/architecture/variant.
    pub fn platform(mut self, os: &str, architecture: &str, variant: Option<&str>) -> ImageSpec {
        self.os = os.into();
        self.architecture = architecture.into();
        self.variant = variant.map(String::from);
        self
    }

    /// Use OCI media types.
    pub fn oci(mut self, oci: bool) -> ImageSpec {
        self.oci = oci;
        self
    }

    /// Add a config label.
    pub fn label(mut self, key: &str, value: &str) -> ImageSpec {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// The config JSON. It has a `history` entry per layer so distribution
    /// can down-convert the manifest to schema 1 if a client asks for that.
    pub fn config_json(&self) -> Vec<u8> {
        let diff_ids: Vec<String> = self.layers.iter().map(|l| sha256_digest(l)).collect();
        let history: Vec<_> = (0..self.layers.len())
            .map(|i| json!({"created": "2024-01-01T00:00:00Z", "created_by": format!("ferry-test layer {i}")}))
            .collect();
        let labels: serde_json::Map<String, serde_json::Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let mut config = json!({
            "architecture": self.architecture,
            "os": self.os,
            "created": "2024-01-01T00:00:00Z",
            "config": {"Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        });
        if let Some(v) = &self.variant {
            config["variant"] = json!(v);
        }
        serde_json::to_vec(&config).expect("serialising config")
    }

    /// The manifest JSON for this image (config and layers by digest).
    pub fn manifest_json(&self) -> Vec<u8> {
        let (mt, config_mt, layer_mt) = if self.oci {
            (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER)
        } else {
            (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
        };
        let config = self.config_json();
        let layers: Vec<_> = self
            .layers
            .iter()
            .map(|l| json!({"mediaType": layer_mt, "size": l.len(), "digest": sha256_digest(l)}))
            .collect();
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": mt,
            "config": {"mediaType": config_mt, "size": config.len(), "digest": sha256_digest(&config)},
            "layers": layers,
        }))
        .expect("serialising manifest")
    }

    /// The manifest media type.
    pub fn media_type(&self) -> &'static str {
        if self.oci {
            OCI_MANIFEST
        } else {
            DOCKER_MANIFEST
        }
    }
}

/// An image pushed by [`Registry::seed_image`].
#[derive(Clone, Debug)]
pub struct SeededImage {
    /// Manifest digest.
    pub digest: String,
    /// Manifest media type.
    pub media_type: String,
    /// Manifest bytes exactly as pushed.
    pub bytes: Vec<u8>,
    /// Config blob digest.
    pub config_digest: String,
    /// Layer blob digests, bottom first.
    pub layer_digests: Vec<String>,
    /// os/architecture/variant of the config.
    pub platform: (String, String, Option<String>),
}

/// A manifest list / OCI index pushed by [`Registry::seed_index`].
#[derive(Clone, Debug)]
pub struct SeededIndex {
    /// Index digest.
    pub digest: String,
    /// Index media type.
    pub media_type: String,
    /// Index bytes exactly as pushed.
    pub bytes: Vec<u8>,
    /// The child images, in index order.
    pub children: Vec<SeededImage>,
}

/// A manifest read back by [`Registry::fetch_manifest`].
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    /// `Content-Type` answered.
    pub media_type: String,
    /// `Docker-Content-Digest` answered (or computed when absent).
    pub digest: String,
    /// Body bytes.
    pub bytes: Vec<u8>,
}

#[derive(Clone)]
pub(crate) enum Auth {
    None,
    Basic(&'static str, &'static str),
    Token(Arc<IssuerState>),
}

/// Everything a background task needs to talk to one registry.
#[derive(Clone)]
struct Api {
    base: String,
    auth: Auth,
}

type Res<T> = anyhow::Result<T>;

impl Api {
    fn request(&self, method: reqwest::Method, url: &str, repo: &str) -> reqwest::RequestBuilder {
        let req = net::bg_client().request(method, url);
        match &self.auth {
            Auth::None => req,
            Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
            Auth::Token(issuer) => {
                req.bearer_auth(issuer.mint(&[&format!("repository:{repo}:pull,push,delete")]))
            }
        }
    }

    fn url(&self, repo: &str, rest: &str) -> String {
        format!("{}/v2/{repo}/{rest}", self.base)
    }

    async fn push_blob(&self, repo: &str, data: Bytes) -> Res<String> {
        let digest = sha256_digest(&data);
        let head = self
            .request(
                reqwest::Method::HEAD,
                &self.url(repo, &format!("blobs/{digest}")),
                repo,
            )
            .send()
            .await?;
        if head.status().is_success() {
            return Ok(digest);
        }
        let start = self
            .request(
                reqwest::Method::POST,
                &self.url(repo, "blobs/uploads/"),
                repo,
            )
            .header("content-length", "0")
            .send()
            .await?;
        let start = expect_status(start, 202, "starting blob upload").await?;
        let location = start
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow::anyhow!("upload start without Location"))?;
        let mut url = url::Url::parse(&self.base)?.join(location)?;
        url.query_pairs_mut().append_pair("digest", &digest);
        let len = data.len();
        let put = self
            .request(reqwest::Method::PUT, url.as_str(), repo)
            .header("content-type", "application/octet-stream")
            .header("content-length", len.to_string())
            .body(data)
            .send()
            .await?;
        expect_status(put, 201, &format!("finishing upload of {digest}")).await?;
        Ok(digest)
    }

    /// PUT a manifest; returns the digest the registry answered. For
    /// everything but signed schema 1 that must equal sha256 of the bytes;
    /// for schema 1 it is the digest of the payload without signatures.
    async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Res<String> {
        let digest = sha256_digest(&bytes);
        let resp = self
            .request(
                reqwest::Method::PUT,
                &self.url(repo, &format!("manifests/{reference}")),
                repo,
            )
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

    async fn seed_image(&self, repo: &str, reference: &str, spec: ImageSpec) -> Res<SeededImage> {
        let config = spec.config_json();
        let config_digest = self.push_blob(repo, Bytes::from(config)).await?;
        let mut layer_digests = Vec::new();
        for l in &spec.layers {
            layer_digests.push(self.push_blob(repo, Bytes::copy_from_slice(l)).await?);
        }
        let bytes = spec.manifest_json();
        let digest = self
            .push_manifest(
                repo,
                reference,
                spec.media_type(),
                Bytes::from(bytes.clone()),
            )
            .await?;
        Ok(SeededImage {
            digest,
            media_type: spec.media_type().into(),
            bytes,
            config_digest,
            layer_digests,
            platform: (spec.os, spec.architecture, spec.variant),
        })
    }

    async fn seed_schema1_image(&self, repo: &str, tag: &str, spec: ImageSpec) -> Res<SeededImage> {
        let v2 = self.seed_image(repo, tag, spec).await?;
        let resp = self
            .request(
                reqwest::Method::GET,
                &self.url(repo, &format!("manifests/{tag}")),
                repo,
            )
            .header("accept", DOCKER_MANIFEST_V1_SIGNED)
            .send()
            .await?;
        let resp = expect_status(resp, 200, "fetching the schema 1 conversion").await?;
        let signed = resp.bytes().await?;
        self.delete_manifest(repo, &v2.digest).await?;
        let digest = self
            .push_manifest(repo, tag, DOCKER_MANIFEST_V1_SIGNED, signed.clone())
            .await?;
        Ok(SeededImage {
            digest,
            media_type: DOCKER_MANIFEST_V1_SIGNED.into(),
            bytes: signed.to_vec(),
            config_digest: String::new(),
            layer_digests: v2.layer_digests,
            platform: v2.platform,
        })
    }

    async fn fetch_manifest(&self, repo: &str, reference: &str) -> Res<Option<FetchedManifest>> {
        let resp = self
            .request(
                reqwest::Method::GET,
                &self.url(repo, &format!("manifests/{reference}")),
                repo,
            )
            .header("accept", ALL_MANIFEST_TYPES)
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

    async fn fetch_blob(&self, repo: &str, digest: &str) -> Res<Option<Vec<u8>>> {
        let resp = self
            .request(
                reqwest::Method::GET,
                &self.url(repo, &format!("blobs/{digest}")),
                repo,
            )
            .send()
            .await?;
        if resp.status() == 404 {
            return Ok(None);
        }
        let resp = expect_status(resp, 200, &format!("fetching blob {repo}@{digest}")).await?;
        Ok(Some(resp.bytes().await?.to_vec()))
    }

    async fn has_blob(&self, repo: &str, digest: &str) -> Res<bool> {
        let resp = self
            .request(
                reqwest::Method::HEAD,
                &self.url(repo, &format!("blobs/{digest}")),
                repo,
            )
            .send()
            .await?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            s => anyhow::bail!("HEAD blob {repo}@{digest}: {s}"),
        }
    }

    async fn list_tags(&self, repo: &str) -> Res<Vec<String>> {
        let resp = self
            .request(reqwest::Method::GET, &self.url(repo, "tags/list"), repo)
            .send()
            .await?;
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

    async fn delete_manifest(&self, repo: &str, digest: &str) -> Res<()> {
        let resp = self
            .request(
                reqwest::Method::DELETE,
                &self.url(repo, &format!("manifests/{digest}")),
                repo,
            )
            .send()
            .await?;
        expect_status(resp, 202, &format!("deleting {repo}@{digest}")).await?;
        Ok(())
    }
}

/// `resp` when it has status `want`; otherwise an error naming `what` and the registry's answer.
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

/// Seeding and raw inspection (async; every method panics on failure with
/// the registry's answer).
impl Registry {
    fn api(&self) -> Api {
        Api {
            base: self.base_url(),
            auth: self.auth(),
        }
    }

    /// Upload `data` as a blob of `repo` (skipped if `HEAD` finds it);
    /// returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let (api, repo, data) = (self.api(), repo.to_owned(), Bytes::copy_from_slice(data));
        net::on_bg(async move { api.push_blob(&repo, data).await })
            .await
            .unwrap_or_else(|e| panic!("push_blob: {e:#}"))
    }

    /// `PUT` a manifest under `reference` (tag or digest); returns its digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> String {
        let (api, repo, reference, mt) = (
            self.api(),
            repo.to_owned(),
            reference.to_owned(),
            media_type.to_owned(),
        );
        let bytes = Bytes::copy_from_slice(bytes);
        net::on_bg(async move { api.push_manifest(&repo, &reference, &mt, bytes).await })
            .await
            .unwrap_or_else(|e| panic!("push_manifest: {e:#}"))
    }

    /// Push config, layers and manifest of `spec` as `repo:tag` (`tag` may
    /// also be a digest reference).
    pub async fn seed_image(&self, repo: &str, tag: &str, spec: &ImageSpec) -> SeededImage {
        let (api, repo, tag, spec) = (self.api(), repo.to_owned(), tag.to_owned(), spec.clone());
        net::on_bg(async move { api.seed_image(&repo, &tag, spec).await })
            .await
            .unwrap_or_else(|e| panic!("seed_image: {e:#}"))
    }

    /// Seed `spec` as a signed Docker schema 1 manifest under `repo:tag`:
    /// distribution 2.8 cannot take unsigned schema 1, so this pushes the
    /// schema 2 image, fetches the registry's own signed down-conversion,
    /// deletes the schema 2 manifest and pushes the schema 1 bytes under the
    /// tag. `digest` is the registry's (payload without signatures, so not
    /// sha256 of `bytes`); `config_digest` is empty (schema 1 has none).
    pub async fn seed_schema1_image(&self, repo: &str, tag: &str, spec: &ImageSpec) -> SeededImage {
        let (api, repo, tag, spec) = (self.api(), repo.to_owned(), tag.to_owned(), spec.clone());
        net::on_bg(async move { api.seed_schema1_image(&repo, &tag, spec).await })
            .await
            .unwrap_or_else(|e| panic!("seed_schema1_image: {e:#}"))
    }

    /// Push one small image per `(os, architecture, variant)` by digest, then
    /// a Docker manifest list (or an OCI index when `oci`) of them as
    /// `repo:tag`. Children have distinct, deterministic layers and configs.
    pub async fn seed_index(
        &self,
        repo: &str,
        tag: &str,
        platforms: &[(&str, &str, Option<&str>)],
        oci: bool,
    ) -> SeededIndex {
        let specs: Vec<ImageSpec> = platforms
            .iter()
            .map(|(os, arch, variant)| {
                let name = format!("{os}/{arch}/{}", variant.unwrap_or(""));
                let seed =
                    u64::from_le_bytes(Sha256::digest(name.as_bytes())[..8].try_into().unwrap());
                ImageSpec::new(vec![layer(seed, 1024), layer(seed ^ 1, 2048)])
                    .platform(os, arch, *variant)
                    .oci(oci)
            })
            .collect();
        let (api, repo, tag) = (self.api(), repo.to_owned(), tag.to_owned());
        net::on_bg(async move {
            let mut children = Vec::new();
            for spec in specs {
                let digest = sha256_digest(&spec.manifest_json());
                children.push(api.seed_image(&repo, &digest, spec).await?);
            }
            let (mt, child_mt) = if oci {
                (OCI_INDEX, OCI_MANIFEST)
            } else {
                (DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)
            };
            let manifests: Vec<_> = children
                .iter()
                .map(|c| {
                    let (os, arch, variant) = &c.platform;
                    let mut platform = json!({"architecture": arch, "os": os});
                    if let Some(v) = variant {
                        platform["variant"] = json!(v);
                    }
                    json!({"mediaType": child_mt, "size": c.bytes.len(), "digest": c.digest, "platform": platform})
                })
                .collect();
            let bytes = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": mt,
                "manifests": manifests,
            }))?;
            let digest = api.push_manifest(&repo, &tag, mt, Bytes::from(bytes.clone())).await?;
            Ok::<_, anyhow::Error>(SeededIndex {
                digest,
                media_type: mt.into(),
                bytes,
                children,
            })
        })
        .await
        .unwrap_or_else(|e| panic!("seed_index: {e:#}"))
    }

    /// Push `manifest` (already in `repo`) under every tag in `tags`, eight
    /// at a time.
    pub async fn tag_many(&self, repo: &str, tags: &[String], manifest: &SeededImage) {
        let (api, repo, tags) = (self.api(), repo.to_owned(), tags.to_vec());
        let (mt, bytes) = (
            manifest.media_type.clone(),
            Bytes::from(manifest.bytes.clone()),
        );
        net::on_bg(async move {
            futures::stream::iter(tags)
                .map(|tag| {
                    let (api, repo, mt, bytes) =
                        (api.clone(), repo.clone(), mt.clone(), bytes.clone());
                    async move { api.push_manifest(&repo, &tag, &mt, bytes).await }
                })
                .buffer_unordered(8)
                .try_collect::<Vec<_>>()
                .await
        })
        .await
        .unwrap_or_else(|e| panic!("tag_many: {e:#}"));
    }

    /// `GET` a manifest accepting every manifest type; `None` on 404.
    pub async fn fetch_manifest(&self, repo: &str, reference: &str) -> Option<FetchedManifest> {
        let (api, repo, reference) = (self.api(), repo.to_owned(), reference.to_owned());
        net::on_bg(async move { api.fetch_manifest(&repo, &reference).await })
            .await
            .unwrap_or_else(|e| panic!("fetch_manifest: {e:#}"))
    }

    /// `GET` a blob; `None` on 404.
    pub async fn fetch_blob(&self, repo: &str, digest: &str) -> Option<Vec<u8>> {
        let (api, repo, digest) = (self.api(), repo.to_owned(), digest.to_owned());
        net::on_bg(async move { api.fetch_blob(&repo, &digest).await })
            .await
            .unwrap_or_else(|e| panic!("fetch_blob: {e:#}"))
    }

    /// Whether `HEAD` finds the blob in `repo`.
    pub async fn has_blob(&self, repo: &str, digest: &str) -> bool {
        let (api, repo, digest) = (self.api(), repo.to_owned(), digest.to_owned());
        net::on_bg(async move { api.has_blob(&repo, &digest).await })
            .await
            .unwrap_or_else(|e| panic!("has_blob: {e:#}"))
    }

    /// All tags of `repo`, sorted (empty if the repository is unknown).
    pub async fn list_tags(&self, repo: &str) -> Vec<String> {
        let (api, repo) = (self.api(), repo.to_owned());
        net::on_bg(async move { api.list_tags(&repo).await })
            .await
            .unwrap_or_else(|e| panic!("list_tags: {e:#}"))
    }

    /// `DELETE` a manifest by digest.
    pub async fn delete_manifest(&self, repo: &str, digest: &str) {
        let (api, repo, digest) = (self.api(), repo.to_owned(), digest.to_owned());
        net::on_bg(async move { api.delete_manifest(&repo, &digest).await })
            .await
            .unwrap_or_else(|e| panic!("delete_manifest: {e:#}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_deterministic_and_distinct() {
        assert_eq!(layer(1, 100), layer(1, 100));
        assert_ne!(layer(1, 100), layer(2, 100));
        assert_eq!(layer(7, 13).len(), 13);
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
