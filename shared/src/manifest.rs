//! The manifest formats' nouns as serde types: `Descriptor`, `ImageManifest` (config and
//! layers), `Index` (manifests), schema 1's `Schema1` (fsLayers, architecture) and
//! `ImageConfig` (os, architecture, variant, os.version), plus `media_types`, the names
//! that tell the formats apart.
//!
//! Everything is read leniently, the way registries serve it: unknown fields are ignored,
//! and a field that is absent or of another type than the spec says reads as absent (`None`,
//! an empty list), as does a whole document that is JSON but not an object. So ferry reads
//! whatever a registry accepted; only text that is not JSON at all is refused. What an
//! absent field *means* (a descriptor without a digest is an error, a config without an
//! architecture an unknown platform) is the reader's call, `copy`'s. Fetching manifests,
//! their digests and their raw bytes are the registry client's. (The `oci-spec` crate's
//! types require what the spec requires and know no schema 1, hence these.)

use serde::de::{DeserializeOwned, Deserializer};
use serde::Deserialize;
use serde_json::Value;

use crate::platform::Platform;

/// The manifest media types ferry understands.
pub mod media_types {
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";

    /// Every type, so registries never down-convert (Docker Hub would answer schema 1).
    pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
        application/vnd.docker.distribution.manifest.list.v2+json, \
        application/vnd.oci.image.manifest.v1+json, \
        application/vnd.docker.distribution.manifest.v2+json, \
        application/vnd.docker.distribution.manifest.v1+prettyjws, \
        application/vnd.docker.distribution.manifest.v1+json";

    /// Lists and indexes, whose entries are manifests themselves.
    pub fn is_index(media_type: &str) -> bool {
        media_type == DOCKER_LIST || media_type == OCI_INDEX
    }

    pub fn is_schema1(media_type: &str) -> bool {
        media_type == DOCKER_SCHEMA1_SIGNED || media_type == DOCKER_SCHEMA1
    }

    /// Foreign (Windows base) and other non-distributable layers: registries do not hold
    /// them, they are fetched from their `urls`.
    pub fn is_non_distributable(media_type: &str) -> bool {
        media_type.contains("foreign") || media_type.contains("nondistributable")
    }
}

/// A reference to content: a config, a layer, or (in an index) a manifest. The digest is
/// kept as written; whether it is a valid one is the reader's question.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default, deserialize_with = "lenient")]
    pub media_type: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub digest: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub size: Option<u64>,
    /// An index entry's platform.
    #[serde(default, deserialize_with = "lenient")]
    pub platform: Option<PlatformSpec>,
    /// A referrer's type, as a referrers index lists it.
    #[serde(default, rename = "artifactType", deserialize_with = "lenient")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// Content registries do not hold, which is not copied (see `media_types`).
    pub fn is_non_distributable(&self) -> bool {
        self.media_type
            .as_deref()
            .is_some_and(media_types::is_non_distributable)
    }

    /// The platform an index entry names; fields it leaves out are empty.
    pub fn platform(&self) -> Platform {
        self.platform
            .as_ref()
            .map(Platform::from)
            .unwrap_or_default()
    }
}

/// Where an image runs, as an index entry's `platform` states it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PlatformSpec {
    #[serde(default, deserialize_with = "lenient")]
    pub os: Option<String>,
    #[serde(default, rename = "os.version", deserialize_with = "lenient")]
    pub os_version: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub architecture: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub variant: Option<String>,
}

impl From<&PlatformSpec> for Platform {
    fn from(spec: &PlatformSpec) -> Platform {
        Platform {
            os: spec.os.clone().unwrap_or_default(),
            os_version: spec.os_version.clone(),
            architecture: spec.architecture.clone().unwrap_or_default(),
            variant: spec.variant.clone(),
        }
    }
}

/// A single image (Docker v2 or OCI): a config blob and layers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ImageManifest {
    #[serde(default, deserialize_with = "lenient")]
    pub config: Option<Descriptor>,
    #[serde(default, deserialize_with = "lenient_list")]
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to (a signature's, an SBOM's image): OCI 1.1.
    #[serde(default, deserialize_with = "lenient")]
    pub subject: Option<Descriptor>,
    #[serde(default, rename = "artifactType", deserialize_with = "lenient")]
    pub artifact_type: Option<String>,
}

/// A Docker manifest list or OCI index: one entry per platform (or other artifact).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Index {
    #[serde(default, deserialize_with = "lenient_list")]
    pub manifests: Vec<Descriptor>,
    #[serde(default, deserialize_with = "lenient")]
    pub subject: Option<Descriptor>,
    #[serde(default, rename = "artifactType", deserialize_with = "lenient")]
    pub artifact_type: Option<String>,
}

/// A Docker schema 1 manifest, signed or not: layers by `blobSum`, no config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Schema1 {
    #[serde(default, rename = "fsLayers", deserialize_with = "lenient_list")]
    pub fs_layers: Vec<FsLayer>,
    #[serde(default, deserialize_with = "lenient")]
    pub architecture: Option<String>,
}

/// One schema 1 layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct FsLayer {
    #[serde(default, rename = "blobSum", deserialize_with = "lenient")]
    pub blob_sum: Option<String>,
}

/// What an image config says about its platform (the rest of it is not ferry's concern).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ImageConfig {
    #[serde(default, deserialize_with = "lenient")]
    pub os: Option<String>,
    #[serde(default, rename = "os.version", deserialize_with = "lenient")]
    pub os_version: Option<String>,
    /// `Some` when the config has an `architecture` key at all, whatever its value.
    #[serde(default, deserialize_with = "present")]
    pub architecture: Option<Option<String>>,
    #[serde(default, deserialize_with = "lenient")]
    pub variant: Option<String>,
}

impl ImageConfig {
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, serde_json::Error> {
        read(bytes)
    }

    /// The platform, or `None` (unknown) for a config without an `architecture` key.
    pub fn platform(&self) -> Option<Platform> {
        let architecture = self.architecture.as_ref()?;
        Some(Platform {
            os: self.os.clone().unwrap_or_default(),
            os_version: self.os_version.clone(),
            architecture: architecture.clone().unwrap_or_default(),
            variant: self.variant.clone(),
        })
    }
}

/// A manifest's body, in the format its media type names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestBody {
    Index(Index),
    Schema1(Schema1),
    /// Docker v2, OCI, and any other type a registry serves: read as config and layers.
    Image(ImageManifest),
}

impl ManifestBody {
    /// The manifest this one refers to (`subject`), for an image manifest or an index.
    pub fn subject(&self) -> Option<&Descriptor> {
        match self {
            ManifestBody::Image(image) => image.subject.as_ref(),
            ManifestBody::Index(index) => index.subject.as_ref(),
            ManifestBody::Schema1(_) => None,
        }
    }

    /// The types a `--referrers-type` filter matches this manifest by: its `artifactType`,
    /// else its config's media type (what OCI 1.1 says an artifact's type falls back to),
    /// and its layers' media types (cosign's signatures are told apart by their layer).
    pub fn artifact_types(&self) -> Vec<&str> {
        let layers = match self {
            ManifestBody::Image(image) => image.layers.as_slice(),
            _ => &[],
        };
        self.artifact_type()
            .into_iter()
            .chain(layers.iter().filter_map(|l| l.media_type.as_deref()))
            .collect()
    }

    /// The artifact type a referrers list gives this manifest: its `artifactType`, else (an
    /// image manifest's) its config's media type.
    pub fn artifact_type(&self) -> Option<&str> {
        match self {
            ManifestBody::Image(image) => image
                .artifact_type
                .as_deref()
                .or_else(|| image.config.as_ref()?.media_type.as_deref()),
            ManifestBody::Index(index) => index.artifact_type.as_deref(),
            ManifestBody::Schema1(_) => None,
        }
    }

    /// Reads `bytes` as the format `media_type` names; an error only for text that is not
    /// JSON.
    pub fn parse(media_type: &str, bytes: &[u8]) -> Result<ManifestBody, serde_json::Error> {
        Ok(if media_types::is_index(media_type) {
            ManifestBody::Index(read(bytes)?)
        } else if media_types::is_schema1(media_type) {
            ManifestBody::Schema1(read(bytes)?)
        } else {
            ManifestBody::Image(read(bytes)?)
        })
    }
}

/// A JSON document as `T`: an error only for text that is not JSON. `T`'s fields are all
/// lenient, so any object reads; anything else reads as `T`'s default.
fn read<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    let value: Value = serde_json::from_slice(bytes)?;
    Ok(loose(value))
}

/// `value` as `T`, or `T`'s default when it is of another shape.
fn loose<T: DeserializeOwned + Default>(value: Value) -> T {
    T::deserialize(value).unwrap_or_default()
}

/// A field of the wrong type reads as absent.
fn lenient<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Default,
{
    Value::deserialize(deserializer).map(loose)
}

/// A list whose items each read leniently (an item of another shape is `T`'s default, so
/// the list keeps its length); anything but a list reads as empty.
fn lenient_list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Default,
{
    Ok(match Value::deserialize(deserializer)? {
        Value::Array(items) => items.into_iter().map(loose).collect(),
        _ => Vec::new(),
    })
}

/// A key that is present, even with a value of the wrong type (`Some(None)`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Default,
{
    lenient(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_the_wrong_type_read_as_absent() {
        let body = ManifestBody::parse(
            media_types::OCI_MANIFEST,
            br#"{"config":{"digest":7,"size":"x","extra":1},"layers":[3,{"digest":"d","size":2}]}"#,
        )
        .unwrap();
        let ManifestBody::Image(image) = body else {
            panic!("{body:?}")
        };
        assert_eq!(image.config, Some(Descriptor::default()));
        assert_eq!(image.layers.len(), 2, "an odd item keeps its place");
        assert_eq!(image.layers[0], Descriptor::default());
        assert_eq!(image.layers[1].size, Some(2));
        assert_eq!(
            ManifestBody::parse(media_types::OCI_INDEX, b"[1]").unwrap(),
            ManifestBody::Index(Index::default())
        );
        assert!(ManifestBody::parse(media_types::OCI_INDEX, b"{").is_err());
    }

    #[test]
    fn platforms_of_entries_and_configs() {
        let index: Index = read(
            br#"{"manifests":[{"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},{}]}"#,
        )
        .unwrap();
        assert_eq!(index.manifests[0].platform().variant.as_deref(), Some("v8"));
        assert_eq!(index.manifests[1].platform(), Platform::default());
        let config =
            ImageConfig::parse(br#"{"os":"windows","os.version":"10.0","architecture":"amd64"}"#)
                .unwrap();
        let platform = config.platform().unwrap();
        assert_eq!(platform.os_version.as_deref(), Some("10.0"));
        assert_eq!(
            ImageConfig::parse(br#"{"os":"linux"}"#).unwrap().platform(),
            None
        );
        assert_eq!(
            ImageConfig::parse(br#"{"architecture":null}"#)
                .unwrap()
                .platform(),
            Some(Platform::default()),
            "a present key makes the platform known"
        );
        assert!(Descriptor {
            media_type: Some("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip".into()),
            ..Descriptor::default()
        }
        .is_non_distributable());
    }
}
