//! The benchmark corpora, generated deterministically from names: every blob's bytes are
//! gzip streams (stored blocks) of `support::layer(seed, payload)` with `seed` a hash of the
//! blob's name. This file owns their shape and statistics; seeding them into a registry and
//! checking a copy is `seeding.rs`'s.
//!
//! C1 is shaped like a small real mirror: 15 repositories built on a handful of shared base
//! images (debian, alpine, ubuntu, a JRE, Python, Node, a 200 MiB CUDA layer), one
//! dependencies layer per repository shared by its tags, and per tag a code layer and a
//! small metadata layer. Three tags are Docker manifest lists (amd64 + arm64, one also
//! arm/v7) and one an OCI index; their children have their own per-architecture layers.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use support::gzip_layer_len;

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

    pub fn key(&self) -> (u64, u64) {
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

    /// Every single-platform image, with the tag it is (or is a child of).
    pub fn images(&self) -> impl Iterator<Item = (&TagDef, &Image)> {
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
