//! The planner's referrer check: an image whose targets are in sync may still lack
//! referrers there (a signature pushed since it was mirrored), and then its copy job goes
//! anyway; the copier brings them (`copy::referrers`). What refers to an image is read from
//! the plan's listing of its source repository, so an image without referrer tags costs
//! no request. Deciding what a target lacks mirrors the copier's rules; copying is its.

use std::collections::{BTreeMap, BTreeSet};

use super::{CheckError, Staleness};
use crate::copy::index_lacks_entries;
use crate::image::{fallback_tag, is_referrer_tag, referrer_subject, ImageOptions, PlannedImage};
use crate::reference::{Digest, Locator, Repository};
use crate::registry::{Actions, ManifestHead, Registries};

/// The referrer tags (fallback indexes, cosign's) of each source repository the plan listed;
/// empty when referrers are off.
pub(super) type ReferrerTags = BTreeMap<Repository, BTreeSet<String>>;

pub(super) fn referrer_tags(
    listings: &BTreeMap<Repository, Vec<String>>,
    image: &ImageOptions,
) -> ReferrerTags {
    if !image.referrers.enabled {
        return ReferrerTags::new();
    }
    listings
        .iter()
        .map(|(repository, tags)| {
            let tags: BTreeSet<String> = tags
                .iter()
                .filter(|t| is_referrer_tag(t))
                .cloned()
                .collect();
            (repository.clone(), tags)
        })
        .filter(|(_, tags)| !tags.is_empty())
        .collect()
}

/// An image whose targets are in sync still needs a job when its source has referrers the
/// targets lack (a signature pushed after the image was mirrored). Its referrer tags come
/// from the plan's listing, so an image without any costs nothing; for each one it has, a
/// HEAD at the source and at each target repository: a cosign tag must be at the same
/// digest; a fallback index at another digest (the target merged referrers of its own) is
/// read on both sides (one GET each) and must list every source entry.
pub(super) async fn referrers_behind(
    image: &PlannedImage,
    digest: Digest,
    referrer_tags: &ReferrerTags,
    registries: &Registries,
) -> Result<Staleness, CheckError> {
    let fallback = fallback_tag(&digest);
    let tags: Vec<&String> = referrer_tags
        .get(&image.source.repository)
        .into_iter()
        .flatten()
        .filter(|tag| referrer_subject(tag).as_ref() == Some(&digest))
        .collect();
    let mut repositories: Vec<&Repository> = Vec::new();
    for target in &image.targets {
        if !repositories.contains(&&target.repository) {
            repositories.push(&target.repository);
        }
    }
    for tag in tags {
        let at = |repository: &Repository| repository.at(Locator::Tag(tag.clone()));
        let mut references = vec![at(&image.source.repository)];
        references.extend(repositories.iter().map(|r| at(r)));
        let heads = registries
            .manifest_heads(&references, Actions::Pull, references.len())
            .await?;
        let Some(source) = ManifestHead::digest_of(&heads[0]) else {
            continue; // gone since the listing
        };
        for (reference, head) in references.iter().zip(&heads).skip(1) {
            let behind = match ManifestHead::digest_of(head) {
                None => true,
                Some(held) if held == source => false,
                Some(_) if *tag != fallback => true,
                Some(_) => {
                    let client = registries.client(reference.repository.registry())?;
                    let theirs = client.manifest_get(reference).await?;
                    let ours = registries
                        .client(image.source.repository.registry())?
                        .manifest_get(&references[0])
                        .await?;
                    index_lacks_entries(&ours.bytes, &theirs.bytes)
                }
            };
            if behind {
                return Ok(Staleness::Stale {
                    targets: image.targets.clone(),
                    digest: Some(digest),
                });
            }
        }
    }
    Ok(Staleness::InSync(Some(digest)))
}
