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
}

/// What one image's copy asks for beyond its source and targets; a queued job carries its
/// own, so one copier can serve jobs planned with different flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageOptions {
    /// Push even when a target already has the source digest.
    pub force: bool,
    pub platforms: PlatformFilter,
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
