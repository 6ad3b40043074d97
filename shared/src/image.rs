//! An image as the plan and the copier see it: `PlannedImage` (a source and the targets it
//! goes to), `ImageOptions` (what a copy asks for beyond that) and what "stale" means for a
//! target. How images are found is `plan`'s; how they are copied is `copy`'s.

use crate::manifest::ManifestBody;
use crate::platform::PlatformFilter;
use crate::reference::{Digest, Reference};

/// One source image and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedImage {
    pub source: Reference,
    /// The source manifest digest seen while planning, when the registry told it.
    pub digest: Option<Digest>,
    pub targets: Vec<Reference>,
    /// What the rule that selected it asks beyond the run's flags (the long form's
    /// `platforms`/`force`); the default asks nothing.
    pub rule_options: RuleOptions,
    /// Set by a webhook when a push of a referrer made this image (by digest): what was
    /// pushed, for the copier to make sure of at the source.
    pub pushed_referrer: Option<PushedReferrer>,
}

/// What a webhook saw pushed when a referrer's push made the job of an image by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushedReferrer {
    /// A referrer tag of the image (`sha256-<hex>.sig`, `.att`, `.sbom`, or the fallback
    /// index `sha256-<hex>`): the image's referrers are copied once the source lists it.
    Tag(String),
    /// The image's digest itself, pushed with no tag: a manifest that may refer to a
    /// `subject`, whose referrers are then brought up to date on the targets holding it.
    Manifest,
}

/// What one image's copy asks for beyond its source and targets; a queued job carries its
/// own, so one copier can serve jobs planned with different flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageOptions {
    /// Push even when a target already has the source digest.
    pub force: bool,
    pub platforms: PlatformFilter,
    /// Which of the manifests' referrers (signatures, SBOMs, attestations) go along.
    pub referrers: Referrers,
}

/// Which referrers travel with their images: all of them by default (`--referrers=false`
/// turns it off), or only those of the artifact types named (`--referrers-type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrers {
    pub enabled: bool,
    /// Empty: every type.
    pub types: Vec<String>,
}

impl Default for Referrers {
    fn default() -> Self {
        Referrers {
            enabled: true,
            types: Vec::new(),
        }
    }
}

impl Referrers {
    /// None at all (`--referrers=false`).
    pub fn off() -> Self {
        Referrers {
            enabled: false,
            types: Vec::new(),
        }
    }

    /// Whether a referrer of these types (see `ManifestBody::artifact_types`) is copied;
    /// one whose type is unknown (`None`) is, unless types were named.
    pub fn wants<'a>(&self, mut types: impl Iterator<Item = &'a str>) -> bool {
        self.types.is_empty() || types.any(|t| self.types.iter().any(|w| w == t))
    }

    /// Whether the referrer manifest `body` is copied, by its types.
    pub fn wants_body(&self, body: &ManifestBody) -> bool {
        self.wants(body.artifact_types().into_iter())
    }

    /// [`Referrers::wants_body`] of a manifest as served; one that does not parse is not
    /// wanted (it could not be copied).
    pub fn wants_manifest(&self, media_type: &str, bytes: &[u8]) -> bool {
        ManifestBody::parse(media_type, bytes).is_ok_and(|body| self.wants_body(&body))
    }
}

/// Cosign's tags next to an image: `sha256-<hex>.sig`, `.att`, `.sbom`.
pub const COSIGN_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

/// The referrers tag schema's tag for `digest` (OCI distribution 1.1): `<alg>-<hex>`, cut
/// to the 128 characters a tag may have. Cosign's tags add `.sig`, `.att` or `.sbom`.
pub fn fallback_tag(digest: &Digest) -> String {
    let mut tag = digest.as_str().replacen(':', "-", 1);
    tag.truncate(128);
    tag
}

/// Whether `tag` is one of the referrer tags (a fallback index, or cosign's): copied with
/// the image it refers to, not as an image of its own.
pub fn is_referrer_tag(tag: &str) -> bool {
    let base = match tag.rsplit_once('.') {
        Some((base, suffix)) if COSIGN_SUFFIXES.contains(&suffix) => base,
        _ => tag,
    };
    base.strip_prefix("sha256-")
        .or_else(|| base.strip_prefix("sha512-"))
        .is_some_and(|hex| {
            hex.len() >= 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// The digest a referrer tag refers to (`sha256-<hex>.sig` → `sha256:<hex>`); `None` for
/// any other tag, and for a tag cut too short to hold its digest.
pub fn referrer_subject(tag: &str) -> Option<Digest> {
    if !is_referrer_tag(tag) {
        return None;
    }
    let base = match tag.rsplit_once('.') {
        Some((base, suffix)) if COSIGN_SUFFIXES.contains(&suffix) => base,
        _ => tag,
    };
    base.replacen('-', ":", 1).parse().ok()
}

/// A rule's own copy options (the long form's `platforms:`, `force:` and `referrers:`):
/// `platforms`/`force` replace the run's `--os`/`--arch` or `--force` for the images that
/// rule selects; `referrers: false` turns referrers off for them, while `true` cannot turn
/// on what `--referrers=false` turned off (that run asks the registries nothing about them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleOptions {
    pub force: Option<bool>,
    pub platforms: Option<PlatformFilter>,
    pub referrers: Option<bool>,
}

impl RuleOptions {
    /// The options an image of this rule is copied with in a run with `run`'s.
    pub fn over(&self, run: &ImageOptions) -> ImageOptions {
        ImageOptions {
            force: self.force.unwrap_or(run.force),
            platforms: self
                .platforms
                .clone()
                .unwrap_or_else(|| run.platforms.clone()),
            referrers: Referrers {
                enabled: run.referrers.enabled && self.referrers.unwrap_or(true),
                types: run.referrers.types.clone(),
            },
        }
    }

    pub fn is_empty(&self) -> bool {
        self.force.is_none() && self.platforms.is_none() && self.referrers.is_none()
    }

    /// The images file's long-form keys that ask for these options (`platforms`, `force`,
    /// `referrers`),
    /// so a plan job can carry them.
    pub fn long_form(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut map = serde_json::Map::new();
        if let Some(platforms) = &self.platforms {
            let mut listed = Vec::new();
            for os in platforms.os_entries() {
                for arch in platforms.arch_entries() {
                    let arch = arch.replacen(':', "/", 1);
                    listed.push(serde_json::Value::String(format!("{os}/{arch}")));
                }
            }
            map.insert("platforms".into(), serde_json::Value::Array(listed));
        }
        if let Some(force) = self.force {
            map.insert("force".into(), serde_json::Value::Bool(force));
        }
        if let Some(referrers) = self.referrers {
            map.insert("referrers".into(), serde_json::Value::Bool(referrers));
        }
        map
    }
}

/// The targets whose manifest digest (in the same order; `None` when missing or not told)
/// is not `digest`: those the image must still be copied to.
pub fn stale<'a>(
    targets: &[Reference],
    seen: impl IntoIterator<Item = Option<&'a Digest>>,
    digest: &Digest,
) -> Vec<Reference> {
    targets
        .iter()
        .zip(seen)
        .filter(|(_, seen)| *seen != Some(digest))
        .map(|(target, _)| target.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referrer_tags() {
        let digest = Digest::sha256(b"x");
        let tag = fallback_tag(&digest);
        assert_eq!(tag, format!("sha256-{}", digest.hex()));
        assert!(is_referrer_tag(&tag));
        for suffix in COSIGN_SUFFIXES {
            assert!(is_referrer_tag(&format!("{tag}.{suffix}")));
        }
        assert!(!is_referrer_tag(&format!("{tag}.txt")));
        assert_eq!(referrer_subject(&tag), Some(digest.clone()));
        assert_eq!(
            referrer_subject(&format!("{tag}.sig")),
            Some(digest.clone())
        );
        assert_eq!(referrer_subject(&format!("{tag}.txt")), None);
        assert_eq!(referrer_subject("v1"), None);
        assert!(!is_referrer_tag("sha256-abc"));
        assert!(!is_referrer_tag("v1.0"));
        assert!(!is_referrer_tag(&format!("sha256-{}", "G".repeat(64))));
        let long = Digest::of(crate::reference::Algorithm::Sha512, b"x");
        assert_eq!(fallback_tag(&long).len(), 128);
        assert_eq!(referrer_subject(&fallback_tag(&long)), None, "cut short");
        let wants = Referrers {
            enabled: true,
            types: vec!["a".into()],
        };
        assert!(wants.wants(["b", "a"].into_iter()));
        assert!(!wants.wants(std::iter::empty()));
        assert!(Referrers::default().wants(std::iter::empty()));
    }
}
