//! A source image as manifests: `ManifestTree` (a manifest as served, its typed body, the
//! blobs it references and its child manifests), fetched from the source by digest all the
//! way down, and the `--os`/`--arch` filter applied to it. What a manifest references is
//! read here from the typed formats of `crate::manifest`; what can be wrong with one is
//! `ManifestProblem`. Moving the blobs is `blob`'s; pushing the tree to targets, the
//! copier's (`mod`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{self, StreamExt as _, TryStreamExt};
use serde_json::Value;
use thiserror::Error;

use super::verify::Mismatch;
use super::CopyError;
use crate::manifest::{Descriptor, ImageConfig, ManifestBody};
use crate::platform::{Platform, PlatformFilter};
use crate::reference::{Digest, Locator, Reference, ReferenceError, Repository};
use crate::registry::{ErrorKind, Manifest, Registries};

/// Nested indexes deeper than this are refused rather than followed forever.
const MAX_DEPTH: usize = 4;
/// Config blobs are read to check a single image's platform; they are small.
const MAX_CONFIG_BYTES: usize = 8 << 20;
/// Child manifests one image may have in all, across nested indexes; a multi-platform image
/// has a few dozen.
const MAX_MANIFESTS: usize = 1000;
/// Child manifests fetched at once for one index.
const CHILDREN_IN_FLIGHT: usize = 8;

/// What is wrong with a manifest a registry served.
#[derive(Debug, Clone, Error)]
pub enum ManifestProblem {
    #[error("not JSON: {0}")]
    NotJson(Arc<serde_json::Error>),
    #[error("descriptor without digest")]
    DescriptorWithoutDigest,
    #[error("fsLayer without blobSum")]
    FsLayerWithoutBlobSum,
    #[error(transparent)]
    BadDigest(#[from] ReferenceError),
    #[error("indexes nested deeper than {max}")]
    NestedTooDeep { max: usize },
    #[error("more than {max} child manifests in one image")]
    TooManyManifests { max: usize },
}

/// A blob a manifest references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BlobRef {
    pub(super) digest: Digest,
    pub(super) size: Option<u64>,
}

/// What a manifest references: blobs (config, layers), or child manifests (index entries).
struct References {
    blobs: Vec<BlobRef>,
    children: Vec<BlobRef>,
}

/// One manifest with what it references: blobs, or child manifests.
pub(super) struct ManifestTree {
    /// Exactly as the registry served it: what gets pushed.
    pub(super) manifest: Manifest,
    body: ManifestBody,
    blobs: Vec<BlobRef>,
    pub(super) children: Vec<ManifestTree>,
}

impl ManifestTree {
    /// GETs a manifest and, for an index, every child manifest (recursively, by digest, so
    /// a tag moving mid-copy cannot mix two images). A missing top manifest is
    /// `SourceMissing`.
    pub(super) async fn fetch(
        registries: &Registries,
        reference: &Reference,
    ) -> Result<ManifestTree, CopyError> {
        let budget = Budget(AtomicUsize::new(MAX_MANIFESTS));
        fetch_at(registries, reference, 0, &budget).await
    }

    /// The tree of a manifest already fetched from `reference`: only its children (of an
    /// index) are fetched.
    pub(super) async fn of_manifest(
        registries: &Registries,
        reference: &Reference,
        manifest: Manifest,
    ) -> Result<ManifestTree, CopyError> {
        let budget = Budget(AtomicUsize::new(MAX_MANIFESTS));
        tree_of(registries, reference, manifest, 0, &budget).await
    }

    /// The manifest's typed body (its `subject`, its types).
    pub(super) fn body(&self) -> &ManifestBody {
        &self.body
    }

    /// Every blob of this tree and its children, each digest once, in first-seen order.
    pub(super) fn collect_blobs(&self) -> Vec<&BlobRef> {
        let mut seen = HashSet::new();
        let mut blobs = Vec::new();
        self.collect_blobs_into(&mut seen, &mut blobs);
        blobs
    }

    fn collect_blobs_into<'a>(
        &'a self,
        seen: &mut HashSet<&'a Digest>,
        into: &mut Vec<&'a BlobRef>,
    ) {
        for blob in &self.blobs {
            if seen.insert(&blob.digest) {
                into.push(blob);
            }
        }
        for child in &self.children {
            child.collect_blobs_into(seen, into);
        }
    }

    /// Applies the platform filter: `None` when nothing matches. An index keeps the
    /// entries that match; a single image is kept when its platform matches or is unknown.
    pub(super) async fn filter(
        self,
        registries: &Registries,
        source: &Reference,
        filter: &PlatformFilter,
    ) -> Result<Option<ManifestTree>, CopyError> {
        if filter.is_empty() {
            return Ok(Some(self));
        }
        if !matches!(self.body, ManifestBody::Index(_)) {
            let platform = self.image_platform(registries, &source.repository).await?;
            return Ok(platform.is_none_or(|p| filter.matches(&p)).then_some(self));
        }
        self.filter_index(source, filter)
    }

    /// An index with only the entries that match. When some are dropped it is rebuilt: its
    /// JSON as served (field order and unknown fields kept) without those `manifests`
    /// entries, so it gets a new digest.
    fn filter_index(
        mut self,
        source: &Reference,
        filter: &PlatformFilter,
    ) -> Result<Option<ManifestTree>, CopyError> {
        let keep: Vec<bool> = match &self.body {
            ManifestBody::Index(index) => index
                .manifests
                .iter()
                .map(|entry| filter.matches(&entry.platform()))
                .collect(),
            _ => return Ok(Some(self)),
        };
        if !keep.contains(&true) {
            return Ok(None);
        }
        if !keep.contains(&false) {
            return Ok(Some(self));
        }
        let bytes =
            without_entries(&self.manifest.bytes, &keep).map_err(|e| CopyError::BadManifest {
                reference: source.clone(),
                problem: ManifestProblem::NotJson(Arc::new(e)),
            })?;
        self.manifest.digest = Digest::sha256(&bytes);
        self.manifest.bytes = bytes;
        // Children are the distinct digests of the entries that registries hold, not one
        // per entry: the kept ones are found by digest, never by position.
        let mut wanted = HashSet::new();
        if let ManifestBody::Index(index) = &mut self.body {
            index.manifests = kept(std::mem::take(&mut index.manifests), &keep);
            wanted.extend(index.manifests.iter().filter_map(|e| e.digest.clone()));
        }
        self.children
            .retain(|child| wanted.contains(child.manifest.digest.as_str()));
        Ok(Some(self))
    }

    /// A single image's platform: from its config blob, or schema 1's `architecture`;
    /// `None` when the image does not say.
    async fn image_platform(
        &self,
        registries: &Registries,
        repository: &Repository,
    ) -> Result<Option<Platform>, CopyError> {
        let config = match &self.body {
            // Schema 1 has no os; image-syncer's --os does not apply to it either.
            ManifestBody::Schema1(schema1) => {
                return Ok(schema1.architecture.as_ref().map(|arch| Platform {
                    architecture: arch.clone(),
                    ..Platform::default()
                }))
            }
            ManifestBody::Image(image) => image.config.as_ref().and_then(|c| c.digest.as_deref()),
            ManifestBody::Index(_) => None,
        };
        let Some(config) = config.and_then(|d| d.parse::<Digest>().ok()) else {
            return Ok(None);
        };
        let client = registries.client(repository.registry())?;
        let mut blob = client.blob_get(repository, &config).await?;
        // Read no further than a config can be: a larger one names no platform (below).
        let mut bytes: Vec<u8> = Vec::new();
        while let Some(chunk) = blob.chunks.try_next().await? {
            if bytes.len() + chunk.len() > MAX_CONFIG_BYTES {
                tracing::debug!(%config, "config too large to read its platform");
                return Ok(None);
            }
            bytes.extend_from_slice(&chunk);
        }
        // What the platform filter believes must be the config the manifest names.
        let actual = Digest::of(config.algorithm(), &bytes);
        if actual != config {
            return Err(CopyError::BlobMismatch {
                source_repo: repository.clone(),
                digest: config.clone(),
                mismatch: Mismatch::Digest {
                    expected: config,
                    actual: actual.to_string(),
                },
            });
        }
        // A config not JSON names no platform. Like a config without `architecture`, the
        // image is then kept whatever the filter says: the filter narrows a copy by what
        // images say they run on, it does not judge configs (an unfiltered copy never reads
        // them).
        match ImageConfig::parse(&bytes) {
            Ok(config) => Ok(config.platform()),
            Err(error) => {
                tracing::debug!(%config, %error, "config is not JSON; its platform is unknown");
                Ok(None)
            }
        }
    }
}

/// How many manifests one image may still fetch.
struct Budget(AtomicUsize);

impl Budget {
    fn spend(&self, n: usize) -> Result<(), ()> {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(n)
            })
            .map(|_| ())
            .map_err(|_| ())
    }
}

fn fetch_at<'a>(
    registries: &'a Registries,
    reference: &'a Reference,
    depth: usize,
    budget: &'a Budget,
) -> BoxFuture<'a, Result<ManifestTree, CopyError>> {
    Box::pin(async move {
        let client = registries.client(reference.repository.registry())?;
        let manifest = match client.manifest_get(reference).await {
            Err(e) if depth == 0 && matches!(e.kind, ErrorKind::NotFound(_)) => {
                return Err(CopyError::SourceMissing(reference.clone()))
            }
            other => other?,
        };
        tree_of(registries, reference, manifest, depth, budget).await
    })
}

/// The tree of `manifest`, fetched from `reference` at `depth`: its children fetched.
async fn tree_of(
    registries: &Registries,
    reference: &Reference,
    manifest: Manifest,
    depth: usize,
    budget: &Budget,
) -> Result<ManifestTree, CopyError> {
    let bad = |problem| CopyError::BadManifest {
        reference: reference.clone(),
        problem,
    };
    let body = ManifestBody::parse(&manifest.media_type, &manifest.bytes)
        .map_err(|e| bad(ManifestProblem::NotJson(Arc::new(e))))?;
    let references = references(&body).map_err(bad)?;
    let mut children = Vec::new();
    if matches!(body, ManifestBody::Index(_)) {
        if depth >= MAX_DEPTH {
            return Err(bad(ManifestProblem::NestedTooDeep { max: MAX_DEPTH }));
        }
        // An index may name one child many times (and nested indexes multiply that):
        // each distinct child is fetched, and later pushed, once.
        let mut distinct = HashSet::new();
        let child_refs: Vec<Reference> = references
            .children
            .iter()
            .filter(|child| distinct.insert(child.digest.clone()))
            .map(|child| {
                reference
                    .repository
                    .at(Locator::Digest(child.digest.clone()))
            })
            .collect();
        if budget.spend(child_refs.len()).is_err() {
            return Err(bad(ManifestProblem::TooManyManifests {
                max: MAX_MANIFESTS,
            }));
        }
        let fetches: Vec<_> = child_refs
            .iter()
            .map(|child| fetch_at(registries, child, depth + 1, budget))
            .collect();
        children = stream::iter(fetches)
            .buffered(CHILDREN_IN_FLIGHT)
            .try_collect()
            .await?;
    }
    Ok(ManifestTree {
        manifest,
        body,
        blobs: references.blobs,
        children,
    })
}

/// Blobs (config, layers; schema 1 `fsLayers`) or child manifests (index entries).
/// Non-distributable (foreign) layers are not copied: registries do not hold them.
fn references(body: &ManifestBody) -> Result<References, ManifestProblem> {
    let mut blobs = match body {
        ManifestBody::Index(index) => {
            return Ok(References {
                blobs: Vec::new(),
                children: blob_refs(&index.manifests)?,
            })
        }
        ManifestBody::Schema1(schema1) => schema1
            .fs_layers
            .iter()
            .map(|layer| {
                let blob_sum = layer.blob_sum.as_deref();
                Ok(BlobRef {
                    digest: blob_sum
                        .ok_or(ManifestProblem::FsLayerWithoutBlobSum)?
                        .parse()?,
                    size: None,
                })
            })
            .collect::<Result<Vec<_>, ManifestProblem>>()?,
        ManifestBody::Image(image) => {
            let config = image
                .config
                .as_ref()
                .ok_or(ManifestProblem::DescriptorWithoutDigest)?;
            let mut blobs: Vec<BlobRef> = blob_ref(config)?.into_iter().collect();
            blobs.extend(blob_refs(&image.layers)?);
            blobs
        }
    };
    // The same layer twice in one image is copied once.
    let mut seen = HashSet::new();
    blobs.retain(|b| seen.insert(b.digest.clone()));
    Ok(References {
        blobs,
        children: Vec::new(),
    })
}

/// The blob a descriptor references, `None` for one registries do not hold.
fn blob_ref(descriptor: &Descriptor) -> Result<Option<BlobRef>, ManifestProblem> {
    if descriptor.is_non_distributable() {
        return Ok(None);
    }
    let digest = descriptor
        .digest
        .as_deref()
        .ok_or(ManifestProblem::DescriptorWithoutDigest)?
        .parse()?;
    Ok(Some(BlobRef {
        digest,
        size: descriptor.size,
    }))
}

fn blob_refs(descriptors: &[Descriptor]) -> Result<Vec<BlobRef>, ManifestProblem> {
    descriptors
        .iter()
        .map(blob_ref)
        .filter_map(Result::transpose)
        .collect()
}

/// The items of `list` whose flag in `keep` is set (an item past the flags is dropped).
fn kept<T>(list: Vec<T>, keep: &[bool]) -> Vec<T> {
    let mut flags = keep.iter();
    list.into_iter()
        .filter(|_| *flags.next().unwrap_or(&false))
        .collect()
}

/// An index's JSON without the `manifests` entries `keep` says no to. Everything else
/// stays as served: `serde_json` keeps field order (`preserve_order`) and unknown fields.
fn without_entries(bytes: &[u8], keep: &[bool]) -> Result<Bytes, serde_json::Error> {
    let mut index: Value = serde_json::from_slice(bytes)?;
    if let Some(list) = index.get_mut("manifests").and_then(Value::as_array_mut) {
        *list = kept(std::mem::take(list), keep);
    }
    Ok(Bytes::from(
        serde_json::to_vec(&index).expect("a JSON value serialises"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::media_types;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn tree(media_type: &str, json: String) -> ManifestTree {
        let manifest = Manifest {
            bytes: Bytes::from(json),
            media_type: media_type.into(),
            digest: Digest::sha256(b""),
        };
        let body = ManifestBody::parse(&manifest.media_type, &manifest.bytes).unwrap();
        ManifestTree {
            manifest,
            body,
            blobs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// A child manifest whose digest is `d(c)`.
    fn child(c: char) -> ManifestTree {
        let mut child = tree(media_types::OCI_MANIFEST, "{}".into());
        child.manifest.digest = d(c).parse().unwrap();
        child
    }

    /// Issue 12, row 12: children were paired with index entries by position, but the
    /// children skip entries registries do not hold, so a filter could keep the wrong one.
    #[test]
    fn a_filter_keeps_children_by_digest_not_position() {
        let index = format!(
            r#"{{"manifests":[{{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":"{}","platform":{{"architecture":"amd64","os":"linux"}}}},{{"digest":"{}","platform":{{"architecture":"arm64","os":"linux"}}}},{{"digest":"{}","platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            d('f'),
            d('b'),
            d('a')
        );
        let mut full = tree(media_types::OCI_INDEX, index);
        // What fetching makes of it: the distinct children registries hold, in order.
        assert_eq!(references(&full.body).unwrap().children.len(), 2);
        full.children = vec![child('b'), child('a')];
        let source = Reference::parse("example.com/a/b:v1").unwrap();
        let arm = PlatformFilter::parse(&[], &["arm64".into()]).unwrap();
        let kept = full.filter_index(&source, &arm).unwrap().unwrap();
        let digests: Vec<String> = kept
            .children
            .iter()
            .map(|c| c.manifest.digest.to_string())
            .collect();
        assert_eq!(digests, [d('b')]);
    }

    /// Issue 12, row 8: `collect_blobs` compared every blob with every other.
    #[test]
    fn blobs_are_collected_once_each_in_order() {
        let blob = |c: char| BlobRef {
            digest: d(c).parse().unwrap(),
            size: Some(1),
        };
        let mut top = tree(media_types::OCI_INDEX, "{}".into());
        let mut one = child('a');
        one.blobs = vec![blob('1'), blob('2')];
        let mut two = child('b');
        two.blobs = vec![blob('2'), blob('3'), blob('1')];
        top.children = vec![one, two];
        let digests: Vec<String> = top
            .collect_blobs()
            .iter()
            .map(|b| b.digest.to_string())
            .collect();
        assert_eq!(digests, [d('1'), d('2'), d('3')]);
    }

    #[test]
    fn references_of_each_manifest_kind() {
        let image = tree(
            media_types::DOCKER_MANIFEST,
            format!(
                r#"{{"config":{{"digest":"{}","size":1}},"layers":[{{"digest":"{}","size":2}},{{"digest":"{}","size":2}},{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{}"}}]}}"#,
                d('a'),
                d('b'),
                d('b'),
                d('c')
            ),
        );
        let refs = references(&image.body).unwrap();
        assert_eq!(refs.blobs.len(), 2);
        let schema1 = tree(
            media_types::DOCKER_SCHEMA1_SIGNED,
            format!(
                r#"{{"schemaVersion":1,"fsLayers":[{{"blobSum":"{}"}}]}}"#,
                d('e')
            ),
        );
        assert_eq!(
            references(&schema1.body).unwrap().blobs[0]
                .digest
                .to_string(),
            d('e')
        );
    }

    #[test]
    fn problems_read_as_before() {
        let problem = |media_type: &str, json: &str| {
            let body = ManifestBody::parse(media_type, json.as_bytes())
                .map_err(|e| ManifestProblem::NotJson(Arc::new(e)))?;
            references(&body).map(|_| ())
        };
        let message = |media_type, json| problem(media_type, json).unwrap_err().to_string();
        assert!(message(media_types::OCI_MANIFEST, "{").starts_with("not JSON: "));
        assert_eq!(
            message(media_types::OCI_MANIFEST, r#"{"layers":[]}"#),
            "descriptor without digest"
        );
        assert_eq!(
            message(media_types::DOCKER_SCHEMA1, r#"{"fsLayers":[{}]}"#),
            "fsLayer without blobSum"
        );
        assert!(message(
            media_types::OCI_INDEX,
            r#"{"manifests":[{"digest":"md5:x"}]}"#
        )
        .starts_with("invalid digest \"md5:x\""));
        // JSON that is not an object has no references; an index without entries neither.
        assert!(problem(media_types::OCI_INDEX, "[]").is_ok());
        assert_eq!(
            ManifestProblem::NestedTooDeep { max: MAX_DEPTH }.to_string(),
            "indexes nested deeper than 4"
        );
    }

    #[test]
    fn a_filtered_index_loses_only_the_entries_that_do_not_match() {
        let entry = |c: char, arch: &str| {
            format!(
                r#"{{"mediaType":"{}","size":9,"digest":"{}","platform":{{"architecture":"{arch}","os":"linux"}},"x-extra":[1]}}"#,
                media_types::OCI_MANIFEST,
                d(c)
            )
        };
        let (amd64, arm64) = (entry('a', "amd64"), entry('b', "arm64"));
        let index = |entries: &str| {
            format!(
                r#"{{"schemaVersion":2,"manifests":[{entries}],"annotations":{{"z":"1","a":"2"}}}}"#
            )
        };
        let mut full = tree(media_types::OCI_INDEX, index(&format!("{amd64},{arm64}")));
        full.children = vec![child('a'), child('b')];
        let source = Reference::parse("example.com/a/b:v1").unwrap();
        let arm = PlatformFilter::parse(&[], &["arm64".into()]).unwrap();
        let filtered = full.filter_index(&source, &arm).unwrap().unwrap();
        let expected = index(&arm64);
        assert_eq!(filtered.manifest.bytes, expected.as_bytes());
        assert_eq!(
            filtered.manifest.digest,
            Digest::sha256(expected.as_bytes())
        );
        assert_eq!(filtered.children.len(), 1);
        let ManifestBody::Index(index) = &filtered.body else {
            panic!("an index stays an index")
        };
        assert_eq!(index.manifests[0].digest.as_deref(), Some(d('b').as_str()));
        let none = PlatformFilter::parse(&["windows".into()], &[]).unwrap();
        assert!(filtered.filter_index(&source, &none).unwrap().is_none());
    }
}
