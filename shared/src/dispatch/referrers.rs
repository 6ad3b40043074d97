//! The planner's referrer check: an image whose targets are in sync may still lack
//! referrers there (a signature pushed since it was mirrored), and then its copy job goes
//! anyway; the copier brings them (`copy::referrers`). Deciding what a target lacks mirrors
//! the copier's rules; copying is its.
//!
//! What refers to an image is found, as the copier finds it, in two places:
//!
//! - the plan's listing of its source repository: referrer tags of its digest (cosign's,
//!   fallback indexes), so an image without any costs no request;
//! - the OCI 1.1 referrers API, where the source registry has it (asked once per registry
//!   and plan, with the first in-sync image; `registry::ReferrersApi` remembers the answer):
//!   one GET per in-sync image, which finds what was pushed by digest alone (notation,
//!   `oras attach`). When it lists a referrer the run wants, each target repository is read:
//!   its own referrers API, else its fallback index (absent: it lacks them all).
//!
//! An index's children have referrers too (`cosign sign --recursive` signs each platform's
//! manifest), and the planner knows only the top digest. So an in-sync index whose
//! repository's listing shows referrer tags of another digest waits until every image of
//! the plan is checked; if some of those tags then refer to no planned image's digest
//! ("orphans"), the index is read (one GET) and its children checked like the image, API
//! included. An index in a repository without orphans costs nothing more. (API-only
//! referrers of a child, with no tag in the listing to hint at them, are not seen here;
//! the image's next copy brings them.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use futures::stream::{self, Stream, StreamExt};
use serde_json::Value;

use super::{CheckError, Staleness, Synced};
use crate::copy::{
    children_of, entries_of, index_lacks_entries, is_wanted, lacks_entries, repositories,
};
use crate::image::{
    fallback_tag, is_referrer_tag, referrer_subject, ImageOptions, PlannedImage, Referrers,
};
use crate::reference::{Digest, Locator, Repository};
use crate::registry::{Actions, ErrorKind, ManifestHead, ReferrersApi, Registries, RegistryError};

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

/// Whether the image's targets lack a referrer tag of `digest` (the image's, or a child's)
/// its source has. Its referrer tags come from the plan's listing, so a digest without any
/// costs nothing; for each one it has, a HEAD at the source and at each target repository:
/// a cosign tag must be at the same digest; a fallback index at another digest (the target
/// merged referrers of its own) is read on both sides (one GET each) and must list every
/// source entry.
async fn referrers_behind(
    image: &PlannedImage,
    digest: Digest,
    referrer_tags: &ReferrerTags,
    registries: &Registries,
) -> Result<bool, CheckError> {
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
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The planner's referrer check for one plan: the referrer tags of its listings, and what
/// checking learns beyond them (which registries have the referrers API, the digests of the
/// plan's images, the indexes left for later).
pub(super) struct ReferrerCheck<'a> {
    tags: &'a ReferrerTags,
    api: ReferrersApi,
    /// The digests of the plan's images, by source repository (of those with referrer
    /// tags), as checking learns them.
    planned: Mutex<BTreeMap<Repository, BTreeSet<Digest>>>,
    /// In-sync indexes whose children may have referrers: checked once every image is.
    later: Mutex<Vec<(PlannedImage, Synced, Referrers)>>,
}

impl<'a> ReferrerCheck<'a> {
    pub(super) fn new(tags: &'a ReferrerTags) -> Self {
        ReferrerCheck {
            tags,
            api: ReferrersApi::default(),
            planned: Mutex::new(BTreeMap::new()),
            later: Mutex::new(Vec::new()),
        }
    }

    /// What an image's check (`staleness`) becomes once its referrers are: an image in sync
    /// whose source has referrers a target lacks is stale on every target; an index that
    /// may have referrers on its children is left for [`Self::indexes_checked`] (`Later`).
    pub(super) async fn check(
        &self,
        image: &PlannedImage,
        staleness: Result<Staleness, CheckError>,
        wanted: &Referrers,
        registries: &Registries,
    ) -> Result<Staleness, CheckError> {
        self.note_planned(image, &staleness);
        let synced = match staleness {
            Ok(Staleness::InSync(Some(synced))) if wanted.enabled => synced,
            other => return other,
        };
        if self
            .subject_behind(image, &synced.digest, wanted, registries)
            .await?
        {
            return Ok(stale_everywhere(image, synced.digest));
        }
        if synced.index && self.tags_of_others(&image.source.repository, &synced.digest) {
            self.later.lock().expect("later list poisoned").push((
                image.clone(),
                synced,
                wanted.clone(),
            ));
            return Ok(Staleness::Later);
        }
        Ok(Staleness::InSync(Some(synced)))
    }

    /// The indexes [`Self::check`] left for later, checked once the stream before them has
    /// ended (so every planned image's digest is known): where their repository's listing
    /// has orphan referrer tags, the index is read and its children checked.
    pub(super) fn indexes_checked<'s>(
        &'s self,
        registries: &'s Registries,
        concurrency: usize,
    ) -> impl Stream<Item = (PlannedImage, Result<Staleness, CheckError>)> + 's {
        stream::once(async move {
            let later = std::mem::take(&mut *self.later.lock().expect("later list poisoned"));
            let orphaned = self.orphaned_repositories();
            let later: Vec<_> = later
                .into_iter()
                .map(|(image, synced, wanted)| {
                    let orphans = orphaned.contains(&image.source.repository);
                    (image, synced, wanted, orphans)
                })
                .collect();
            stream::iter(later)
                .map(move |(image, synced, wanted, orphans)| async move {
                    let stale = if orphans {
                        self.children_behind(&image, synced, &wanted, registries)
                            .await
                    } else {
                        Ok(Staleness::InSync(Some(synced)))
                    };
                    (image, stale)
                })
                .buffer_unordered(concurrency.max(1))
        })
        .flatten()
    }

    /// Remembers the image's digest, where it is known, for telling orphans apart.
    fn note_planned(&self, image: &PlannedImage, staleness: &Result<Staleness, CheckError>) {
        let repository = &image.source.repository;
        if !self.tags.contains_key(repository) {
            return;
        }
        let checked = match staleness {
            Ok(Staleness::InSync(Some(synced))) => Some(&synced.digest),
            Ok(Staleness::Stale { digest, .. }) => digest.as_ref(),
            _ => None,
        };
        let mut planned = self.planned.lock().expect("planned digests poisoned");
        let digests = planned.entry(repository.clone()).or_default();
        digests.extend(image.digest.iter().chain(checked).cloned());
    }

    /// Whether `repository`'s listing shows referrer tags of a digest other than `digest`.
    fn tags_of_others(&self, repository: &Repository, digest: &Digest) -> bool {
        self.tags
            .get(repository)
            .into_iter()
            .flatten()
            .filter_map(|tag| referrer_subject(tag))
            .any(|subject| subject != *digest)
    }

    /// The repositories whose listing shows referrer tags of a digest no planned image has.
    fn orphaned_repositories(&self) -> BTreeSet<Repository> {
        let planned = self.planned.lock().expect("planned digests poisoned");
        self.tags
            .iter()
            .filter(|(repository, tags)| {
                let known = planned.get(*repository);
                tags.iter()
                    .filter_map(|tag| referrer_subject(tag))
                    .any(|subject| !known.is_some_and(|d| d.contains(&subject)))
            })
            .map(|(repository, _)| repository.clone())
            .collect()
    }

    /// Whether the image's targets lack a referrer of `subject` (its digest or a child's)
    /// that the source's API or its referrer tags show.
    async fn subject_behind(
        &self,
        image: &PlannedImage,
        subject: &Digest,
        wanted: &Referrers,
        registries: &Registries,
    ) -> Result<bool, CheckError> {
        if self.api_behind(image, subject, wanted, registries).await? == Some(true) {
            return Ok(true);
        }
        referrers_behind(image, subject.clone(), self.tags, registries).await
    }

    /// An in-sync index's children, each checked like the image (one GET of the index).
    async fn children_behind(
        &self,
        image: &PlannedImage,
        synced: Synced,
        wanted: &Referrers,
        registries: &Registries,
    ) -> Result<Staleness, CheckError> {
        let source = &image.source.repository;
        let index = registries
            .client(source.registry())?
            .manifest_get(&source.at(Locator::Digest(synced.digest.clone())))
            .await?;
        for child in &children_of(&index) {
            if self
                .subject_behind(image, child, wanted, registries)
                .await?
            {
                return Ok(stale_everywhere(image, synced.digest));
            }
        }
        Ok(Staleness::InSync(Some(synced)))
    }

    /// At a source with the referrers API: whether a target lacks a wanted referrer of
    /// `subject` the API lists (`None`: the source has no API, which costs no request once
    /// known).
    async fn api_behind(
        &self,
        image: &PlannedImage,
        subject: &Digest,
        wanted: &Referrers,
        registries: &Registries,
    ) -> Result<Option<bool>, CheckError> {
        let source = &image.source.repository;
        let client = registries.client(source.registry())?;
        let Some(listed) = self.api.referrers(&client, source, subject).await? else {
            return Ok(None);
        };
        let listed: Vec<Value> = listed
            .into_iter()
            .filter(|entry| is_wanted(entry, wanted))
            .collect();
        if listed.is_empty() {
            return Ok(Some(false));
        }
        for repository in repositories(&image.targets) {
            let held = self.held_by(&repository, subject, registries).await?;
            if lacks_entries(&listed, &held) {
                return Ok(Some(true));
            }
        }
        Ok(Some(false))
    }

    /// The referrers of `subject` a target repository holds: as its referrers API lists
    /// them, else as its fallback index does (none without one; one that is no index holds
    /// none, as `index_lacks_entries` reads it).
    async fn held_by(
        &self,
        repository: &Repository,
        subject: &Digest,
        registries: &Registries,
    ) -> Result<Vec<Value>, RegistryError> {
        let client = registries.client(repository.registry())?;
        if let Some(listed) = self.api.referrers(&client, repository, subject).await? {
            return Ok(listed);
        }
        let fallback = repository.at(Locator::Tag(fallback_tag(subject)));
        match client.manifest_get(&fallback).await {
            Ok(index) => Ok(entries_of(&index.bytes).unwrap_or_default()),
            Err(e) if matches!(e.kind, ErrorKind::NotFound(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

/// The image's job goes to every target (each lacks a referrer, or may).
fn stale_everywhere(image: &PlannedImage, digest: Digest) -> Staleness {
    Staleness::Stale {
        targets: image.targets.clone(),
        digest: Some(digest),
    }
}
