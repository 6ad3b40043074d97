//! The benchmark corpora, generated deterministically from names (every blob's bytes are
//! gzip streams (stored blocks) of `support::layer(seed, payload)` with `seed` a hash of the
//! blob's name), seeded into a
//! registry without holding layers in memory, and checked after a copy.
//!
//! C1 is shaped like a small real mirror: 15 repositories built on a handful of shared base
//! images (debian, alpine, ubuntu, a JRE, Python, Node, a 200 MiB CUDA layer), one
//! dependencies layer per repository shared by its tags, and per tag a code layer and a
//! small metadata layer. Three tags are Docker manifest lists (amd64 + arm64, one also
//! arm/v7) and one an OCI index; their children have their own per-architecture layers.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use support::{
    gzip_layer_len, sha256_digest, Registry, DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST, OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST,
};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// One layer blob: a gzip stream (stored blocks) of `support::layer(seed, payload)`, so
/// it is incompressible but still a valid gzip layer (skopeo recompresses a layer it finds
/// uncompressed, which would change its digest); `size` is the blob's length.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Blob {
    pub name: String,
    pub seed: u64,
    pub payload: u64,
    pub size: u64,
}

impl Blob {
    fn new(name: String, payload: u64) -> Blob {
        Blob {
            seed: fnv64(&name),
            name,
            payload,
            size: gzip_layer_len(payload),
        }
    }

    fn key(&self) -> (u64, u64) {
        (self.seed, self.payload)
    }
}

/// One single-platform image.
#[derive(Clone, Debug)]
pub struct Image {
    pub os: &'static str,
    pub arch: &'static str,
    pub variant: Option<&'static str>,
    pub oci: bool,
    pub layers: Vec<Blob>,
    /// A config label that makes every image's config distinct.
    pub label: String,
}

/// What a tag points at.
#[derive(Clone, Debug)]
pub enum Content {
    Image(Image),
    Index { oci: bool, children: Vec<Image> },
}

#[derive(Clone, Debug)]
pub struct TagDef {
    pub repo: String,
    pub tag: String,
    pub content: Content,
}

#[derive(Clone, Debug)]
pub struct Corpus {
    pub name: String,
    pub tags: Vec<TagDef>,
}

/// What a corpus looks like, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub repositories: usize,
    pub tags: usize,
    pub manifest_lists: usize,
    pub oci_indexes: usize,
    pub images: usize,
    pub unique_layers: usize,
    pub unique_layer_bytes: u64,
    pub smallest_layer: u64,
    pub largest_layer: u64,
    /// Layers used by more than one repository.
    pub shared_layers: usize,
}

impl Corpus {
    pub fn repos(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self.tags.iter().map(|t| t.repo.as_str()).collect();
        set.into_iter().map(String::from).collect()
    }

    fn images(&self) -> impl Iterator<Item = (&TagDef, &Image)> {
        self.tags.iter().flat_map(|t| match &t.content {
            Content::Image(i) => vec![(t, i)],
            Content::Index { children, .. } => children.iter().map(|c| (t, c)).collect(),
        })
    }

    pub fn stats(&self) -> Stats {
        let mut layers: BTreeMap<(u64, u64), BTreeSet<&str>> = BTreeMap::new();
        for (t, i) in self.images() {
            for l in &i.layers {
                layers.entry(l.key()).or_default().insert(t.repo.as_str());
            }
        }
        let sizes = || layers.keys().map(|(_, p)| gzip_layer_len(*p));
        Stats {
            repositories: self.repos().len(),
            tags: self.tags.len(),
            manifest_lists: self
                .tags
                .iter()
                .filter(|t| matches!(t.content, Content::Index { oci: false, .. }))
                .count(),
            oci_indexes: self
                .tags
                .iter()
                .filter(|t| matches!(t.content, Content::Index { oci: true, .. }))
                .count(),
            images: self.images().count(),
            unique_layers: layers.len(),
            unique_layer_bytes: sizes().sum(),
            smallest_layer: sizes().min().unwrap_or(0),
            largest_layer: sizes().max().unwrap_or(0),
            shared_layers: layers.values().filter(|r| r.len() > 1).count(),
        }
    }
}

/// FNV-1a, for seeds from names.
fn fnv64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A base image family: its layers per architecture.
struct Family {
    name: &'static str,
    /// Layers below this family's own (another family's name).
    parent: Option<&'static str>,
    /// Own layers: (name, size) per architecture key (`amd64`, `arm64`, `armv7`).
    layers: &'static [(&'static str, &'static [(&'static str, u64)])],
}

const FAMILIES: &[Family] = &[
    Family {
        name: "debian",
        parent: None,
        layers: &[
            ("amd64", &[("rootfs", 26 * MIB), ("etc", 3 * KIB)]),
            ("arm64", &[("rootfs", 25 * MIB), ("etc", 3 * KIB)]),
        ],
    },
    Family {
        name: "alpine",
        parent: None,
        layers: &[
            ("amd64", &[("rootfs", 3 * MIB + 300 * KIB)]),
            ("arm64", &[("rootfs", 3 * MIB + 200 * KIB)]),
            ("armv7", &[("rootfs", 3 * MIB)]),
        ],
    },
    Family {
        name: "ubuntu",
        parent: None,
        layers: &[("amd64", &[("rootfs", 27 * MIB), ("motd", KIB)])],
    },
    Family {
        name: "jre",
        parent: Some("debian"),
        layers: &[
            ("amd64", &[("jre", 40 * MIB), ("cacerts", 180 * KIB)]),
            ("arm64", &[("jre", 39 * MIB), ("cacerts", 180 * KIB)]),
        ],
    },
    Family {
        name: "python",
        parent: Some("debian"),
        layers: &[("amd64", &[("python", 40 * MIB), ("pip", 9 * MIB)])],
    },
    Family {
        name: "node",
        parent: Some("debian"),
        layers: &[
            ("amd64", &[("node", 34 * MIB)]),
            ("arm64", &[("node", 33 * MIB)]),
        ],
    },
    Family {
        name: "cuda",
        parent: Some("ubuntu"),
        layers: &[("amd64", &[("runtime", 200 * MIB), ("cudnn", 64 * MIB)])],
    },
];

fn family_layers(family: &str, arch_key: &str, scale: u64) -> Vec<Blob> {
    let f = FAMILIES
        .iter()
        .find(|f| f.name == family)
        .expect("known family");
    let mut out = f
        .parent
        .map(|p| family_layers(p, arch_key, scale))
        .unwrap_or_default();
    let own = f
        .layers
        .iter()
        .find(|(a, _)| *a == arch_key)
        .unwrap_or_else(|| panic!("family {family} has no {arch_key}"))
        .1;
    for (name, size) in own {
        out.push(Blob::new(
            format!("base/{family}/{arch_key}/{name}"),
            scaled(*size, scale),
        ));
    }
    out
}

fn scaled(size: u64, scale: u64) -> u64 {
    (size / scale).max(KIB)
}

/// Which multi-platform tags a repository has.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Multi {
    None,
    /// Docker manifest list of these arch keys.
    List(&'static [&'static str]),
    /// OCI index of these arch keys.
    Oci(&'static [&'static str]),
}

/// (name, family, tags in C1, dependencies layer size, multi-platform kind)
const REPOS: &[(&str, &str, usize, u64, Multi)] = &[
    (
        "web-api",
        "node",
        3,
        18 * MIB,
        Multi::List(&["amd64", "arm64"]),
    ),
    ("worker", "python", 3, 24 * MIB, Multi::None),
    (
        "gateway",
        "alpine",
        3,
        6 * MIB,
        Multi::List(&["amd64", "arm64", "armv7"]),
    ),
    ("billing", "jre", 3, 30 * MIB, Multi::None),
    (
        "search",
        "jre",
        3,
        22 * MIB,
        Multi::List(&["amd64", "arm64"]),
    ),
    ("ml-infer", "cuda", 2, 40 * MIB, Multi::None),
    ("ml-train", "cuda", 2, 34 * MIB, Multi::None),
    (
        "auth",
        "alpine",
        3,
        4 * MIB,
        Multi::Oci(&["amd64", "arm64"]),
    ),
    ("frontend", "node", 3, 25 * MIB, Multi::None),
    ("reports", "python", 3, 16 * MIB, Multi::None),
    ("scheduler", "debian", 2, 12 * MIB, Multi::None),
    ("cache", "alpine", 2, 2 * MIB, Multi::None),
    ("notifier", "python", 3, 8 * MIB, Multi::None),
    ("metrics", "debian", 2, 10 * MIB, Multi::None),
    ("docs", "alpine", 3, 3 * MIB, Multi::None),
];

fn platform(arch_key: &str) -> (&'static str, Option<&'static str>) {
    match arch_key {
        "amd64" => ("amd64", None),
        "arm64" => ("arm64", Some("v8")),
        "armv7" => ("arm", Some("v7")),
        other => panic!("unknown arch {other}"),
    }
}

/// A deterministic size in `[lo, hi)`, log-uniform, from a name.
fn size_from(name: &str, lo: u64, hi: u64) -> u64 {
    let x = (fnv64(name) >> 11) as f64 / (1u64 << 53) as f64;
    let (l, h) = ((lo as f64).ln(), (hi as f64).ln());
    (l + (h - l) * x).exp() as u64
}

/// The corpus: repositories of [`REPOS`] under `prefix`, `total_tags` tags spread over them
/// (C1's own counts when `None`), sizes divided by `scale` (at least 1 KiB). Every
/// `index_every`-th tag of a multi-platform repository (counting from its last tag) is its
/// manifest list / OCI index.
pub fn build(prefix: &str, total_tags: Option<usize>, scale: u64, index_every: usize) -> Corpus {
    let counts: Vec<usize> = match total_tags {
        None => REPOS.iter().map(|r| r.2).collect(),
        Some(n) => (0..REPOS.len())
            .map(|i| n / REPOS.len() + usize::from(i < n % REPOS.len()))
            .collect(),
    };
    let mut tags = Vec::new();
    for (&(name, family, _, deps, multi), &count) in REPOS.iter().zip(&counts) {
        let repo = format!("{prefix}/{name}");
        for t in 0..count {
            let tag = format!("1.{t}");
            let image = |arch_key: &str, oci: bool| {
                let mut layers = family_layers(family, arch_key, scale);
                layers.push(Blob::new(
                    format!("{repo}/deps/{arch_key}"),
                    scaled(
                        size_from(&format!("{repo}/deps/{arch_key}"), deps, deps + deps / 8),
                        scale,
                    ),
                ));
                let code = format!("{repo}/{tag}/{arch_key}/code");
                layers.push(Blob::new(
                    code.clone(),
                    scaled(size_from(&code, 200 * KIB, 12 * MIB), scale),
                ));
                let meta = format!("{repo}/{tag}/{arch_key}/meta");
                layers.push(Blob::new(
                    meta.clone(),
                    size_from(&meta, KIB, 16 * KIB).max(KIB),
                ));
                let (arch, variant) = platform(arch_key);
                Image {
                    os: "linux",
                    arch,
                    variant,
                    oci,
                    layers,
                    label: format!("{repo}:{tag}/{arch_key}"),
                }
            };
            let is_index = (count - 1 - t) % index_every == 0;
            let content = match multi {
                Multi::List(archs) if is_index => Content::Index {
                    oci: false,
                    children: archs.iter().map(|a| image(a, false)).collect(),
                },
                Multi::Oci(archs) if is_index => Content::Index {
                    oci: true,
                    children: archs.iter().map(|a| image(a, true)).collect(),
                },
                _ => Content::Image(image("amd64", false)),
            };
            tags.push(TagDef {
                repo: repo.clone(),
                tag,
                content,
            });
        }
    }
    Corpus {
        name: prefix.to_string(),
        tags,
    }
}

/// Corpus C1: 40 tags in 15 repositories, about 1 GiB of unique layers (scale 1).
pub fn c1(scale: u64) -> Corpus {
    build("c1", None, scale, usize::MAX)
}

/// C1's shape with `tags` tags of small images (layers of a few KiB), one tag in ten of
/// the multi-platform repositories an index.
pub fn warm(tags: usize) -> Corpus {
    build("c1w", Some(tags), 4096, 10)
}

/// One image with a single layer of `size` bytes, as `big/<name>:1`.
pub fn big(name: &str, size: u64) -> Corpus {
    Corpus {
        name: format!("big/{name}"),
        tags: vec![TagDef {
            repo: format!("big/{name}"),
            tag: "1".into(),
            content: Content::Image(Image {
                os: "linux",
                arch: "amd64",
                variant: None,
                oci: false,
                layers: vec![Blob::new(format!("big/{name}/layer"), size)],
                label: format!("big/{name}"),
            }),
        }],
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

fn config_json(image: &Image, layer_digests: &[String]) -> Vec<u8> {
    let history: Vec<_> = (0..layer_digests.len())
        .map(|i| json!({"created": "2024-01-01T00:00:00Z", "created_by": format!("ferry-bench layer {i}")}))
        .collect();
    let mut config = json!({
        "architecture": image.arch,
        "os": image.os,
        "created": "2024-01-01T00:00:00Z",
        "config": {"Labels": {"ferry.bench": image.label}},
        "rootfs": {"type": "layers", "diff_ids": layer_digests},
        "history": history,
    });
    if let Some(v) = image.variant {
        config["variant"] = json!(v);
    }
    serde_json::to_vec(&config).expect("config JSON")
}

fn manifest_json(image: &Image, config: &[u8], layers: &[(String, u64)]) -> Vec<u8> {
    let (mt, config_mt, layer_mt) = if image.oci {
        (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER)
    } else {
        (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
    };
    let layers: Vec<_> = layers
        .iter()
        .map(|(d, s)| json!({"mediaType": layer_mt, "size": s, "digest": d}))
        .collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": mt,
        "config": {"mediaType": config_mt, "size": config.len(), "digest": sha256_digest(config)},
        "layers": layers,
    }))
    .expect("manifest JSON")
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
    let results: Vec<TagSeeded> =
        futures::stream::iter(corpus.tags.iter())
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
                        let config = config_json(&image, &layer_digests);
                        let config_digest = reg.push_blob(&t.repo, &config).await;
                        let manifest = manifest_json(&image, &config, &layers);
                        let digest = sha256_digest(&manifest);
                        let mt = if image.oci {
                            OCI_MANIFEST
                        } else {
                            DOCKER_MANIFEST
                        };
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
                            let mut entries = Vec::new();
                            let mut kids = Vec::new();
                            let mut placements = Vec::new();
                            for child in children {
                                let (digest, len, image, p) =
                                    push_image(child.clone(), None).await;
                                let mut platform =
                                    json!({"architecture": image.arch, "os": image.os});
                                if let Some(v) = image.variant {
                                    platform["variant"] = json!(v);
                                }
                                let child_mt = if *oci { OCI_MANIFEST } else { DOCKER_MANIFEST };
                                entries.push(json!({"mediaType": child_mt, "size": len, "digest": digest, "platform": platform}));
                                kids.push((t.repo.clone(), digest));
                                placements.extend(p);
                            }
                            let mt = if *oci { OCI_INDEX } else { DOCKER_MANIFEST_LIST };
                            let bytes = serde_json::to_vec(&json!({
                                "schemaVersion": 2,
                                "mediaType": mt,
                                "manifests": entries,
                            }))
                            .expect("index JSON");
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

    /// Every config and manifest the corpora seed (layer digests stood in by their names,
    /// so no layer is generated): one hash over all their bytes. A change of this hash
    /// means the benchmark would copy other bytes than before.
    fn corpus_bytes_hash() -> String {
        let mut all = Vec::new();
        for corpus in [c1(1), c1(64), warm(100), warm(1000), big("1g", 1 << 30)] {
            for t in &corpus.tags {
                if let Content::Index { oci, children } = &t.content {
                    let mut entries = Vec::new();
                    for (i, image) in children.iter().enumerate() {
                        let mut platform = json!({"architecture": image.arch, "os": image.os});
                        if let Some(v) = image.variant {
                            platform["variant"] = json!(v);
                        }
                        let child_mt = if *oci { OCI_MANIFEST } else { DOCKER_MANIFEST };
                        let digest = sha256_digest(image.label.as_bytes());
                        entries.push(json!({"mediaType": child_mt, "size": 1000 + i, "digest": digest, "platform": platform}));
                    }
                    let mt = if *oci {
                        OCI_INDEX
                    } else {
                        DOCKER_MANIFEST_LIST
                    };
                    let bytes = serde_json::to_vec(&json!({
                        "schemaVersion": 2,
                        "mediaType": mt,
                        "manifests": entries,
                    }))
                    .expect("index JSON");
                    all.extend_from_slice(&bytes);
                }
            }
            for (t, image) in corpus.images() {
                let layers: Vec<(String, u64)> = image
                    .layers
                    .iter()
                    .map(|l| (sha256_digest(l.name.as_bytes()), l.size))
                    .collect();
                let digests: Vec<String> = layers.iter().map(|(d, _)| d.clone()).collect();
                let config = config_json(image, &digests);
                let manifest = manifest_json(image, &config, &layers);
                all.extend_from_slice(t.repo.as_bytes());
                all.extend_from_slice(&config);
                all.extend_from_slice(&manifest);
            }
        }
        sha256_digest(&all)
    }

    #[test]
    fn corpus_bytes_are_unchanged() {
        assert_eq!(
            corpus_bytes_hash(),
            "sha256:47d9731e740f786a57ac10d9870dc79f9caacc17c094ffcb1a279127f44f374c"
        );
    }
}
