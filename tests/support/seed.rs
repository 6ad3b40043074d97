//! What the harness seeds, built deterministically: media types, stand-in layer bytes
//! ([`layer`]), image configs, manifests and indexes as JSON ([`config_json`],
//! [`manifest_json`], [`index_json`]; the benchmark's corpora are built with the same
//! functions), whole images ([`ImageSpec`] → [`SeededImage`]), manifest lists / OCI
//! indexes ([`SeededIndex`]), signed schema 1 images and many tags at once, pushed through
//! the harness's one registry client ([`crate::RegistryApi`], which also does the raw
//! reads that check what a copy produced). Like every `Registry` helper they run on the
//! support background runtime and panic with the registry's answer on failure.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::api::{RegistryApi, Res};
use crate::registry::Registry;

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
    let mut h = Sha256::new();
    h.update(data);
    hex_digest(h)
}

/// `sha256:<hex>` of what `h` has hashed.
pub(crate) fn hex_digest(h: Sha256) -> String {
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in h.finalize() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// `size` deterministic, incompressible bytes (SplitMix64 of `seed`): a
/// stand-in layer blob. Different seeds give different content.
pub fn layer(seed: u64, size: usize) -> Vec<u8> {
    let mut state = layer_state(seed);
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        out.extend_from_slice(&next_layer_word(&mut state).to_le_bytes());
    }
    out.truncate(size);
    out
}

/// The generator state [`layer`] starts from for `seed`.
pub(crate) fn layer_state(seed: u64) -> u64 {
    seed ^ 0x6a09_e667_f3bc_c908
}

/// The next 8 bytes of a layer (SplitMix64).
pub(crate) fn next_layer_word(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// An image config as JSON: platform, `config.Labels`, `rootfs.diff_ids`, and one
/// `history` entry per layer (`"{history_by} layer {i}"`), so distribution can
/// down-convert the manifest to schema 1 if a client asks for that.
pub fn config_json(
    (os, architecture, variant): (&str, &str, Option<&str>),
    labels: &[(String, String)],
    diff_ids: &[String],
    history_by: &str,
) -> Vec<u8> {
    let history: Vec<_> = (0..diff_ids.len())
        .map(|i| json!({"created": "2024-01-01T00:00:00Z", "created_by": format!("{history_by} layer {i}")}))
        .collect();
    let labels: serde_json::Map<String, serde_json::Value> =
        labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let mut config = json!({
        "architecture": architecture,
        "os": os,
        "created": "2024-01-01T00:00:00Z",
        "config": {"Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    });
    if let Some(v) = variant {
        config["variant"] = json!(v);
    }
    serde_json::to_vec(&config).expect("serialising config")
}

/// The media type of an image manifest: OCI or Docker schema 2.
pub fn manifest_media_type(oci: bool) -> &'static str {
    if oci {
        OCI_MANIFEST
    } else {
        DOCKER_MANIFEST
    }
}

/// An image manifest as JSON: `config` and the layers by `(digest, size)`, with OCI or
/// Docker schema 2 media types.
pub fn manifest_json(oci: bool, config: &[u8], layers: &[(String, u64)]) -> Vec<u8> {
    let (config_mt, layer_mt) = if oci {
        (OCI_CONFIG, OCI_LAYER)
    } else {
        (DOCKER_CONFIG, DOCKER_LAYER)
    };
    let layers: Vec<_> = layers
        .iter()
        .map(|(digest, size)| json!({"mediaType": layer_mt, "size": size, "digest": digest}))
        .collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": manifest_media_type(oci),
        "config": {"mediaType": config_mt, "size": config.len(), "digest": sha256_digest(config)},
        "layers": layers,
    }))
    .expect("serialising manifest")
}

/// One child of an index: its manifest's digest and size, and its platform.
pub struct IndexEntry<'a> {
    /// Manifest digest.
    pub digest: &'a str,
    /// Manifest length in bytes.
    pub size: usize,
    /// `(os, architecture, variant)`.
    pub platform: (&'a str, &'a str, Option<&'a str>),
}

/// An OCI index (`oci`) or a Docker manifest list of `children` as JSON, with its media
/// type.
pub fn index_json(oci: bool, children: &[IndexEntry<'_>]) -> (&'static str, Vec<u8>) {
    let (mt, child_mt) = if oci {
        (OCI_INDEX, OCI_MANIFEST)
    } else {
        (DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)
    };
    let manifests: Vec<_> = children
        .iter()
        .map(|c| {
            let (os, arch, variant) = c.platform;
            let mut platform = json!({"architecture": arch, "os": os});
            if let Some(v) = variant {
                platform["variant"] = json!(v);
            }
            json!({"mediaType": child_mt, "size": c.size, "digest": c.digest, "platform": platform})
        })
        .collect();
    let bytes = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": mt,
        "manifests": manifests,
    }))
    .expect("serialising index");
    (mt, bytes)
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

    /// The config JSON ([`config_json`] of its platform, labels and layers).
    pub fn config_json(&self) -> Vec<u8> {
        let diff_ids: Vec<String> = self.layers.iter().map(|l| sha256_digest(l)).collect();
        config_json(
            (&self.os, &self.architecture, self.variant.as_deref()),
            &self.labels,
            &diff_ids,
            "ferry-test",
        )
    }

    /// The manifest JSON for this image (config and layers by digest).
    pub fn manifest_json(&self) -> Vec<u8> {
        let layers: Vec<(String, u64)> = self
            .layers
            .iter()
            .map(|l| (sha256_digest(l), l.len() as u64))
            .collect();
        manifest_json(self.oci, &self.config_json(), &layers)
    }

    /// The manifest media type.
    pub fn media_type(&self) -> &'static str {
        manifest_media_type(self.oci)
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

impl RegistryApi {
    /// Push config, layers and manifest of `spec` as `repo:reference`.
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
        let signed = self
            .fetch_manifest_as(repo, tag, DOCKER_MANIFEST_V1_SIGNED)
            .await?
            .ok_or_else(|| anyhow::anyhow!("fetching the schema 1 conversion: 404"))?;
        self.delete_manifest(repo, &v2.digest).await?;
        let digest = self
            .push_manifest(
                repo,
                tag,
                DOCKER_MANIFEST_V1_SIGNED,
                Bytes::from(signed.bytes.clone()),
            )
            .await?;
        Ok(SeededImage {
            digest,
            media_type: DOCKER_MANIFEST_V1_SIGNED.into(),
            bytes: signed.bytes,
            config_digest: String::new(),
            layer_digests: v2.layer_digests,
            platform: v2.platform,
        })
    }
}

/// Seeding whole images (async; every method panics on failure with the registry's
/// answer).
impl Registry {
    /// Push config, layers and manifest of `spec` as `repo:tag` (`tag` may
    /// also be a digest reference).
    pub async fn seed_image(&self, repo: &str, tag: &str, spec: &ImageSpec) -> SeededImage {
        let (repo, tag, spec) = (repo.to_owned(), tag.to_owned(), spec.clone());
        self.on_api("seed_image", |api| async move {
            api.seed_image(&repo, &tag, spec).await
        })
        .await
    }

    /// Seed `spec` as a signed Docker schema 1 manifest under `repo:tag`:
    /// distribution 2.8 cannot take unsigned schema 1, so this pushes the
    /// schema 2 image, fetches the registry's own signed down-conversion,
    /// deletes the schema 2 manifest and pushes the schema 1 bytes under the
    /// tag. `digest` is the registry's (payload without signatures, so not
    /// sha256 of `bytes`); `config_digest` is empty (schema 1 has none).
    pub async fn seed_schema1_image(&self, repo: &str, tag: &str, spec: &ImageSpec) -> SeededImage {
        let (repo, tag, spec) = (repo.to_owned(), tag.to_owned(), spec.clone());
        self.on_api("seed_schema1_image", |api| async move {
            api.seed_schema1_image(&repo, &tag, spec).await
        })
        .await
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
        let (repo, tag) = (repo.to_owned(), tag.to_owned());
        self.on_api("seed_index", move |api| async move {
            let mut children = Vec::new();
            for spec in specs {
                let digest = sha256_digest(&spec.manifest_json());
                children.push(api.seed_image(&repo, &digest, spec).await?);
            }
            let entries: Vec<IndexEntry<'_>> = children
                .iter()
                .map(|c| IndexEntry {
                    digest: &c.digest,
                    size: c.bytes.len(),
                    platform: (&c.platform.0, &c.platform.1, c.platform.2.as_deref()),
                })
                .collect();
            let (mt, bytes) = index_json(oci, &entries);
            let digest = api
                .push_manifest(&repo, &tag, mt, Bytes::from(bytes.clone()))
                .await?;
            Ok(SeededIndex {
                digest,
                media_type: mt.into(),
                bytes,
                children,
            })
        })
        .await
    }

    /// Push `manifest` (already in `repo`) under every tag in `tags`, eight
    /// at a time.
    pub async fn tag_many(&self, repo: &str, tags: &[String], manifest: &SeededImage) {
        let (repo, tags) = (repo.to_owned(), tags.to_vec());
        let (mt, bytes) = (
            manifest.media_type.clone(),
            Bytes::from(manifest.bytes.clone()),
        );
        self.on_api("tag_many", |api| async move {
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
        .await;
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
