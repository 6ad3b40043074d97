//! Seeding a corpus into a registry and checking a copy of it. Every unique layer is
//! streamed once (never held whole) into the first repository that uses it and mounted
//! into the others; configs, manifests and indexes are built with the harness's own JSON
//! builders (`support::config_json`, `support::manifest_json`, `support::index_json`) and
//! pushed through its registry client. [`Seeded`] is what a complete copy must hold, and
//! [`verify`] compares a registry with it. The corpora's shapes are `corpus.rs`'s.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use support::{
    config_json, index_json, manifest_json, manifest_media_type, sha256_digest, IndexEntry,
    Registry,
};

use crate::corpus::{Content, Corpus, Image};

impl Image {
    /// Its config, with these layer digests as `diff_ids` and its label as
    /// `ferry.bench`.
    fn config_json(&self, layer_digests: &[String]) -> Vec<u8> {
        config_json(
            (self.os, self.arch, self.variant),
            &[("ferry.bench".to_string(), self.label.clone())],
            layer_digests,
            "ferry-bench",
        )
    }
}

/// A tag as seeded: what a copy must reproduce.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeededTag {
    pub repo: String,
    pub tag: String,
    pub digest: String,
}

/// A blob every copy must place in a repository.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Placement {
    pub repo: String,
    pub digest: String,
    pub size: u64,
}

/// What seeding produced: the expected destination state.
#[derive(Clone, Debug, Default)]
pub struct Seeded {
    pub tags: Vec<SeededTag>,
    /// Child manifests of indexes, by (repository, digest).
    pub children: Vec<(String, String)>,
    /// Every (repository, blob) a complete copy holds: configs and layers.
    pub placements: BTreeSet<Placement>,
}

impl Seeded {
    /// Unique blobs and their total bytes.
    pub fn unique_blobs(&self) -> (usize, u64) {
        let mut seen = BTreeMap::new();
        for p in &self.placements {
            seen.insert(p.digest.clone(), p.size);
        }
        (seen.len(), seen.values().sum())
    }
}

/// One tag as seeded: the tag, its index children, its blob placements.
type TagSeeded = (SeededTag, Vec<(String, String)>, Vec<Placement>);

/// Push `corpus` into `reg`: every unique layer is streamed once (never held whole in
/// memory) into the first repository that uses it and mounted into the others; then
/// configs and manifests, `concurrency` at a time.
pub async fn seed(reg: &Registry, corpus: &Corpus, concurrency: usize) -> Seeded {
    // Phase 1: unique layers, streamed, into their first repository.
    let mut first: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut uses: BTreeMap<(u64, u64), BTreeSet<String>> = BTreeMap::new();
    for (t, i) in corpus.images() {
        for l in &i.layers {
            first.entry(l.key()).or_insert_with(|| t.repo.clone());
            uses.entry(l.key()).or_default().insert(t.repo.clone());
        }
    }
    let digests: BTreeMap<(u64, u64), String> = futures::stream::iter(first.iter())
        .map(|(&(seed, payload), repo)| async move {
            let digest = reg.push_gzip_layer_streamed(repo, seed, payload).await;
            ((seed, payload), digest)
        })
        .buffer_unordered(concurrency.clamp(1, 4))
        .collect()
        .await;
    // Phase 2: mounts into every other repository using a layer.
    let mounts: Vec<(String, String, String)> = uses
        .iter()
        .flat_map(|(key, repos)| {
            let from = first[key].clone();
            let digest = digests[key].clone();
            repos
                .iter()
                .filter(|r| **r != from)
                .map(|r| (r.clone(), digest.clone(), from.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    futures::stream::iter(mounts)
        .map(|(repo, digest, from)| async move {
            assert!(
                reg.mount_blob(&repo, &digest, &from).await,
                "registry declined mounting {digest} from {from} into {repo}"
            );
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
    // Phase 3: configs and manifests, per tag.
    let results: Vec<TagSeeded> = futures::stream::iter(corpus.tags.iter())
        .map(|t| {
            let digests = &digests;
            async move {
                let push_image = |image: Image, reference: Option<String>| async move {
                    let layers: Vec<(String, u64)> = image
                        .layers
                        .iter()
                        .map(|l| (digests[&l.key()].clone(), l.size))
                        .collect();
                    let layer_digests: Vec<String> =
                        layers.iter().map(|(d, _)| d.clone()).collect();
                    let config = image.config_json(&layer_digests);
                    let config_digest = reg.push_blob(&t.repo, &config).await;
                    let manifest = manifest_json(image.oci, &config, &layers);
                    let digest = sha256_digest(&manifest);
                    let mt = manifest_media_type(image.oci);
                    let reference = reference.unwrap_or_else(|| digest.clone());
                    let pushed = reg.push_manifest(&t.repo, &reference, mt, &manifest).await;
                    assert_eq!(pushed, digest);
                    let mut placements: Vec<Placement> = layers
                        .into_iter()
                        .map(|(digest, size)| Placement {
                            repo: t.repo.clone(),
                            digest,
                            size,
                        })
                        .collect();
                    placements.push(Placement {
                        repo: t.repo.clone(),
                        digest: config_digest,
                        size: config.len() as u64,
                    });
                    (digest, manifest.len(), image, placements)
                };
                match &t.content {
                    Content::Image(image) => {
                        let (digest, _, _, placements) =
                            push_image(image.clone(), Some(t.tag.clone())).await;
                        (
                            SeededTag {
                                repo: t.repo.clone(),
                                tag: t.tag.clone(),
                                digest,
                            },
                            Vec::new(),
                            placements,
                        )
                    }
                    Content::Index { oci, children } => {
                        let mut pushed = Vec::new();
                        let mut kids = Vec::new();
                        let mut placements = Vec::new();
                        for child in children {
                            let (digest, len, image, p) = push_image(child.clone(), None).await;
                            kids.push((t.repo.clone(), digest.clone()));
                            placements.extend(p);
                            pushed.push((digest, len, image));
                        }
                        let entries: Vec<IndexEntry<'_>> = pushed
                            .iter()
                            .map(|(digest, len, image)| IndexEntry {
                                digest,
                                size: *len,
                                platform: (image.os, image.arch, image.variant),
                            })
                            .collect();
                        let (mt, bytes) = index_json(*oci, &entries);
                        let digest = reg.push_manifest(&t.repo, &t.tag, mt, &bytes).await;
                        (
                            SeededTag {
                                repo: t.repo.clone(),
                                tag: t.tag.clone(),
                                digest,
                            },
                            kids,
                            placements,
                        )
                    }
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut seeded = Seeded::default();
    for (tag, kids, placements) in results {
        seeded.tags.push(tag);
        seeded.children.extend(kids);
        seeded.placements.extend(placements);
    }
    seeded
        .tags
        .sort_by(|a, b| (&a.repo, &a.tag).cmp(&(&b.repo, &b.tag)));
    seeded
}

/// Check that `reg` holds exactly what `seeded` describes: every tag at the source digest,
/// every child manifest, and (with `blobs`) every blob placement with its size. Returns
/// the list of problems (empty when the copy is right).
pub async fn verify(
    reg: &Registry,
    seeded: &Seeded,
    blobs: bool,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    let mut problems: Vec<String> = futures::stream::iter(seeded.tags.iter())
        .map(|t| async move {
            match reg.fetch_manifest(&t.repo, &t.tag).await {
                None => Some(format!("{}:{} missing", t.repo, t.tag)),
                Some(m) if m.digest != t.digest || sha256_digest(&m.bytes) != t.digest => {
                    Some(format!(
                        "{}:{} is {}, source is {}",
                        t.repo, t.tag, m.digest, t.digest
                    ))
                }
                Some(_) => None,
            }
        })
        .buffer_unordered(concurrency)
        .filter_map(|p| async move { p })
        .collect()
        .await;
    let children: Vec<String> = futures::stream::iter(seeded.children.iter())
        .map(|(repo, digest)| async move {
            match reg.fetch_manifest(repo, digest).await {
                Some(m) if sha256_digest(&m.bytes) == *digest => None,
                Some(_) => Some(format!("{repo}@{digest} has other bytes")),
                None => Some(format!("{repo}@{digest} (index child) missing")),
            }
        })
        .buffer_unordered(concurrency)
        .filter_map(|p| async move { p })
        .collect()
        .await;
    problems.extend(children);
    if blobs {
        let missing: Vec<String> = futures::stream::iter(seeded.placements.iter())
            .map(|p| async move {
                match reg.blob_size(&p.repo, &p.digest).await {
                    Some(size) if size == p.size => Ok(None),
                    Some(size) => Ok(Some(format!(
                        "{}@{} is {size} bytes, expected {}",
                        p.repo, p.digest, p.size
                    ))),
                    None => Ok::<_, anyhow::Error>(Some(format!(
                        "blob {}@{} missing",
                        p.repo, p.digest
                    ))),
                }
            })
            .buffer_unordered(concurrency)
            .try_filter_map(|p| async move { Ok(p) })
            .try_collect()
            .await?;
        problems.extend(missing);
    }
    problems.sort();
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::{big, c1, warm};

    /// Every config, manifest and index the corpora seed (layer digests stood in by their
    /// names and child manifest sizes by their position, so no layer is generated): one
    /// hash over all their bytes. A change of this hash means the benchmark would copy
    /// other bytes than before.
    fn corpus_bytes_hash() -> String {
        let mut all = Vec::new();
        for corpus in [c1(1), c1(64), warm(100), warm(1000), big("1g", 1 << 30)] {
            for t in &corpus.tags {
                if let Content::Index { oci, children } = &t.content {
                    let digests: Vec<String> = children
                        .iter()
                        .map(|image| sha256_digest(image.label.as_bytes()))
                        .collect();
                    let entries: Vec<IndexEntry<'_>> = children
                        .iter()
                        .zip(&digests)
                        .enumerate()
                        .map(|(i, (image, digest))| IndexEntry {
                            digest,
                            size: 1000 + i,
                            platform: (image.os, image.arch, image.variant),
                        })
                        .collect();
                    all.extend_from_slice(&index_json(*oci, &entries).1);
                }
            }
            for (t, image) in corpus.images() {
                let layers: Vec<(String, u64)> = image
                    .layers
                    .iter()
                    .map(|l| (sha256_digest(l.name.as_bytes()), l.size))
                    .collect();
                let digests: Vec<String> = layers.iter().map(|(d, _)| d.clone()).collect();
                let config = image.config_json(&digests);
                let manifest = manifest_json(image.oci, &config, &layers);
                all.extend_from_slice(t.repo.as_bytes());
                all.extend_from_slice(&config);
                all.extend_from_slice(&manifest);
            }
        }
        sha256_digest(&all)
    }

    /// The hash taken before the corpora were built with the harness's JSON builders.
    #[test]
    fn corpus_bytes_are_unchanged() {
        assert_eq!(
            corpus_bytes_hash(),
            "sha256:47d9731e740f786a57ac10d9870dc79f9caacc17c094ffcb1a279127f44f374c"
        );
    }
}
