//! An image as the plan and the copier see it: `PlannedImage` (a source and the targets it
//! goes to), `ImageOptions` (what a copy asks for beyond that) and what "stale" means for a
//! target. How images are found is `plan`'s; how they are copied is `copy`'s.

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
}

/// What one image's copy asks for beyond its source and targets; a queued job carries its
/// own, so one copier can serve jobs planned with different flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageOptions {
    /// Push even when a target already has the source digest.
    pub force: bool,
    pub platforms: PlatformFilter,
}

/// A rule's own copy options (the long form's `platforms:` and `force:`), each replacing
/// the run's `--os`/`--arch` or `--force` for the images that rule selects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleOptions {
    pub force: Option<bool>,
    pub platforms: Option<PlatformFilter>,
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
        }
    }

    pub fn is_empty(&self) -> bool {
        self.force.is_none() && self.platforms.is_none()
    }

    /// The images file's long-form keys that ask for these options (`platforms`, `force`),
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
