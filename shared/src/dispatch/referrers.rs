//! The planner's referrer check: an image whose targets are in sync may still lack
//! referrers there (a signature pushed since it was mirrored), and then its copy job goes
//! anyway; the copier brings them (`copy::referrers`). Deciding what a target lacks mirrors
//! the copier's rules; copying is its.
//!
//! What refers to an image is found, as the copier finds it, in two places:
//!
//! - a listing of its source repository: referrer tags of its digest (cosign's, fallback
//!   indexes). The plan's listing when it listed the repository, else one `tags/list` made
//!   here the first time an image of the repository is found in sync (a rule naming tags or
//!   a digest, a fan-out slice's images), shared by its other images. So an image without
//!   referrer tags costs no request, and a repository the plan did not list one per plan;
//! - the OCI 1.1 referrers API, where the source registry has it (asked once per registry
//!   and plan, with the first in-sync image; `registry::ReferrersApi` remembers the answer):
//!   one GET per in-sync image, which finds what was pushed by digest alone (notation,
//!   `oras attach`). When it lists a referrer the run wants, each target repository is read:
//!   its own referrers API, else its fallback index (absent: it lacks them all).
//!
//! With `--referrers-type`, only what the copier would copy counts, so a referrer of another
//! type sends no job. An immutable tag every target lists is spared any request; its
//! referrers are checked only when the listings already made show a referrer tag a target
//! lacks (see [`ReferrerCheck::immutable_behind`]).
//!
//! An index's children have referrers too (`cosign sign --recursive` signs each platform's
//! manifest), and the planner knows only the top digest. So an in-sync index whose
//! repository's listing shows referrer tags of another digest waits until every image of
//! the plan is checked; if some of those tags then refer to no planned image's digest
//! ("orphans"), the index is read (one GET) and its children checked like the image, API
//! included. An index in a repository without orphans costs nothing more. (Only the plan's
//! own listings are searched for orphans; API-only referrers of a child, with no tag in the
//! listing to hint at them, are not seen here; the image's next copy brings them.)

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures::stream::{self, Stream, StreamExt};
use serde_json::Value;
use tokio::sync::OnceCell;

use super::{CheckError, Staleness, Synced};
use crate::copy::{
    children_of, entries_of, index_lacks_entries, is_wanted, lacks_entries, repositories,
};
use crate::image::{
    fallback_tag, is_referrer_tag, referrer_subject, ImageOptions, PlannedImage, Referrers,
};
use crate::plan::head_source;
use crate::platform::PlatformFilter;
use crate::reference::{Digest, Locator, Repository};
use crate::registry::{
    Actions, ErrorKind, Manifest, ManifestHead, ReferrersApi, Registries, RegistryError,
};
use crate::target_tags::TargetTags;

/// A source repository's referrer tags (fallback indexes, cosign's).
type Tags = Arc<BTreeSet<String>>;

/// The referrer tags of source repositories: those of the repositories the plan listed, and
/// of any other listed here on first need, once per plan (concurrent askers wait for the
/// one listing).
#[derive(Default)]
pub(super) struct ReferrerTags {
    planned: BTreeMap<Repository, Tags>,
    listed_here: Mutex<HashMap<Repository, Arc<OnceCell<Tags>>>>,
}

impl ReferrerTags {
    /// From the plan's listings; none when referrers are off (nothing is asked then).
    pub(super) fn new(listings: &BTreeMap<Repository, Vec<String>>, image: &ImageOptions) -> Self {
        if !image.referrers.enabled {
            return ReferrerTags::default();
        }
        let planned = listings
            .iter()
            .map(|(repository, tags)| (repository.clone(), referrer_tags_in(tags)))
            .collect();
        ReferrerTags {
            planned,
            listed_here: Mutex::default(),
        }
    }

    /// The referrer tags of `repository`: from the plan's listing, else from one `tags/list`
    /// (all its pages) made on the first ask; a repository that does not exist has none.
    async fn of(
        &self,
        repository: &Repository,
        registries: &Registries,
    ) -> Result<Tags, RegistryError> {
        if let Some(tags) = self.planned.get(repository) {
            return Ok(Arc::clone(tags));
        }
        let cell = Arc::clone(
            self.listed_here
                .lock()
                .expect("referrer tags poisoned")
                .entry(repository.clone())
                .or_default(),
        );
        let tags = cell
            .get_or_try_init(|| async {
                match registries
                    .client(repository.registry())?
                    .tag_list(repository)
                    .await
                {
                    Ok(tags) => Ok(referrer_tags_in(&tags)),
                    Err(e) if matches!(e.kind, ErrorKind::NotFound(_)) => Ok(Tags::default()),
                    Err(e) => Err(e),
                }
            })
            .await?;
        Ok(Arc::clone(tags))
    }
}

fn referrer_tags_in(tags: &[String]) -> Tags {
    Arc::new(
        tags.iter()
            .filter(|t| is_referrer_tag(t))
            .cloned()
            .collect(),
    )
}

/// Whether the image's targets lack a referrer tag of `digest` (the image's, or a child's)
/// its source has. Its referrer tags come from its repository's listing (see
/// [`ReferrerTags`]); for each one it has, a
/// HEAD at the source and at each target repository: a cosign tag must be at the same
/// digest; a fallback index at another digest (the target merged referrers of its own) is
/// read on both sides (one GET each) and must list every source entry. With
/// `--referrers-type`, only what the copier would copy counts (`wanted`): a cosign tag a
/// target lacks only if its manifest (one GET) is of a wanted type, a fallback index only
/// for its entries of a wanted type, so a referrer of another type sends no job.
async fn referrers_behind(
    image: &PlannedImage,
    digest: Digest,
    wanted: &Referrers,
    referrer_tags: &ReferrerTags,
    registries: &Registries,
) -> Result<bool, CheckError> {
    let fallback = fallback_tag(&digest);
    let listed = referrer_tags
        .of(&image.source.repository, registries)
        .await?;
    let tags: Vec<&String> = listed
        .iter()
        .filter(|tag| referrer_subject(tag).as_ref() == Some(&digest))
        .collect();
    let target_repositories = repositories(&image.targets);
    for tag in tags {
        let at = |repository: &Repository| repository.at(Locator::Tag(tag.clone()));
        let mut references = vec![at(&image.source.repository)];
        references.extend(target_repositories.iter().map(at));
        let heads = registries
            .manifest_heads(&references, Actions::Pull, references.len())
            .await?;
        let Some(source) = ManifestHead::digest_of(&heads[0]) else {
            continue; // gone since the listing
        };
        // The source's document at the tag, read (one GET) only when a target lacks the tag
        // and its content decides: a fallback index's entries, a cosign tag's type.
        let ours: OnceCell<Manifest> = OnceCell::new();
        let read_ours = || {
            ours.get_or_try_init(|| async {
                let client = registries.client(image.source.repository.registry())?;
                client.manifest_get(&references[0]).await
            })
        };
        let any_type = wanted.types.is_empty();
        for (reference, head) in references.iter().zip(&heads).skip(1) {
            let held = ManifestHead::digest_of(head);
            if held == Some(source) {
                continue;
            }
            let behind = match (*tag == fallback, held) {
                (false, _) | (true, None) if any_type => true,
                (false, _) => {
                    let ours = read_ours().await?;
                    wanted.wants_manifest(&ours.media_type, &ours.bytes)
                }
                (true, None) => index_lacks_entries(&read_ours().await?.bytes, &[], wanted),
                (true, Some(_)) => {
                    let client = registries.client(reference.repository.registry())?;
                    let theirs = client.manifest_get(reference).await?;
                    index_lacks_entries(&read_ours().await?.bytes, &theirs.bytes, wanted)
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

    /// An image whose immutable tag every target lists was spared any request (`target_tags`);
    /// `image` comes with all its targets. Its referrers are checked only when the plan's
    /// listing of its source repository shows a referrer tag that the listing of one of its
    /// target repositories (made to spare it, so no new request) lacks: then its source is
    /// HEADed and checked like any image's. A job that goes is by digest, to its target
    /// repositories, as the webhook sends one for a new signature: the copier skips a copy of
    /// an immutable tag the targets list, referrers and all. Images of a repository the plan
    /// did not list are not checked: listing it would cost what immutable tags spare.
    pub(super) async fn immutable_behind(
        &self,
        image: PlannedImage,
        wanted: &Referrers,
        target_tags: &TargetTags,
        registries: &Registries,
    ) -> (PlannedImage, Result<Staleness, CheckError>) {
        let referrer_tags = self.tags;
        let Some(source_tags) = referrer_tags.planned.get(&image.source.repository) else {
            return (image, Ok(Staleness::InSync(None)));
        };
        let mut lacking = false;
        for repository in &repositories(&image.targets) {
            if source_tags.is_empty() {
                break;
            }
            lacking = match target_tags.of(registries, repository).await {
                Some(listed) => source_tags.iter().any(|tag| !listed.contains(tag)),
                None => true,
            };
            if lacking {
                break;
            }
        }
        if !lacking {
            return (image, Ok(Staleness::InSync(None)));
        }
        let digest = match head_source(&image.source, registries).await {
            Ok(Some(digest)) => digest,
            // No digest told: nothing to compare; as without referrers.
            Ok(None) => return (image, Ok(Staleness::InSync(None))),
            Err(error) => return (image, Err(error.into())),
        };
        match referrers_behind(&image, digest.clone(), wanted, referrer_tags, registries).await {
            Ok(true) => {
                let at = |repository: &Repository| repository.at(Locator::Digest(digest.clone()));
                let by_digest = PlannedImage {
                    source: at(&image.source.repository),
                    digest: Some(digest.clone()),
                    targets: repositories(&image.targets).iter().map(at).collect(),
                    rule_options: image.rule_options.clone(),
                    pushed_referrer: None,
                };
                let targets = by_digest.targets.clone();
                let stale = Staleness::Stale {
                    targets,
                    digest: Some(digest),
                };
                (by_digest, Ok(stale))
            }
            Ok(false) => (image, Ok(Staleness::InSync(None))),
            Err(error) => (image, Err(error)),
        }
    }

    /// Remembers the image's digest, where it is known, for telling orphans apart.
    fn note_planned(&self, image: &PlannedImage, staleness: &Result<Staleness, CheckError>) {
        let repository = &image.source.repository;
        if !self.tags.planned.contains_key(repository) {
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
            .planned
            .get(repository)
            .into_iter()
            .flat_map(|tags| tags.iter())
            .filter_map(|tag| referrer_subject(tag))
            .any(|subject| subject != *digest)
    }

    /// The repositories whose listing shows referrer tags of a digest no planned image has.
    fn orphaned_repositories(&self) -> BTreeSet<Repository> {
        let planned = self.planned.lock().expect("planned digests poisoned");
        self.tags
            .planned
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
        referrers_behind(image, subject.clone(), wanted, self.tags, registries).await
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
        // Only images without a platform filter are compared, so in sync: every child.
        for child in &children_of(&index, &PlatformFilter::default()) {
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
