//! Referrers travel with their images: for each manifest an image copy covers (the top
//! manifest and each child of an index), what refers to it at the source (signatures,
//! SBOMs, attestations) is copied to the image's target repositories, then what refers to
//! those, to a bounded depth. This file owns finding them, deciding what a target lacks,
//! and the one document ferry authors: the target's fallback index.
//!
//! Found at the source by: the OCI 1.1 referrers API where the registry has it (asked once
//! per registry and run; a 404 or an answer that is not an index means it has not, and is
//! remembered); else the referrers tag schema, a `sha256-<hex>` tag holding an index; and
//! cosign's `sha256-<hex>.sig`/`.att`/`.sbom` tags. Which of those tags exist is read from
//! the source repository's tag list, listed once per repository (the planner's own listing
//! is reused when it made one), so an image without referrer tags costs no request. An
//! image every target holds already has only its top manifest's referrers looked for,
//! unless it is an index and the listing shows referrer tags of another digest (a child's,
//! from `cosign sign --recursive`): then the index is read (one GET) for its children.
//!
//! On a target, a referrer is pushed like an image (blobs, then the manifest by digest; a
//! cosign tag by its tag). A target with the referrers API indexes `subject`s itself; one
//! without gets the `sha256-<hex>` fallback index, MERGED with what it holds (never a
//! referrer dropped). When it had none and every source entry is wanted, the source's
//! index is copied byte-exact, so the next run finds both tags at one digest and stops
//! after two HEADs. Every referrer manifest is copied as served, never re-serialised.
//!
//! A webhook's job for a referrer pushed by digest alone names it (`pushed`): it counts
//! among its subject's referrers even where the source lists it nowhere (a source without
//! the API, no fallback tag), and is then merged into the target's fallback index.
//!
//! What is wrong with the referrers (a fallback tag that is not an index, a loop, a
//! referrer missing at the source or naming another subject) is noted in the image's report
//! and the image itself still counts as copied; a transient registry fault fails the image
//! like any other, so its round of retries covers the referrers too.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::OnceCell;

use super::pushed::PushedManifest;
use super::tree::ManifestTree;
use super::{Copier, CopyError};
use crate::error::{HasKind, Kind};
use crate::image::{fallback_tag, referrer_subject, ImageOptions, Referrers, COSIGN_SUFFIXES};
use crate::manifest::{media_types, ManifestBody};
use crate::platform::PlatformFilter;
use crate::reference::{Digest, Locator, Reference, Repository};
use crate::registry::{Actions, ErrorKind, Manifest, ManifestHead, ReferrersApi};
use crate::report::ImageReport;

/// Referrers of referrers are followed this deep (a signature of an SBOM of an image is 2).
pub const MAX_REFERRER_DEPTH: usize = 4;
/// Referrers one image may bring in all, across depths and tags.
const MAX_REFERRERS: usize = 1000;
/// A repository's tag list serves this long: a worker that copies for hours still sees a
/// signature pushed since.
const LISTING_TTL: Duration = Duration::from_secs(60);

type Listing = Arc<HashSet<String>>;
/// A repository's listing, when it was asked for, filled by the first image that needs it.
type ListingCell = (Instant, Arc<OnceCell<Listing>>);

/// What a run remembers about referrers: which registries have the API, and each source
/// repository's tags.
#[derive(Default)]
pub(super) struct ReferrerMemory {
    api: ReferrersApi,
    listings: Mutex<HashMap<Repository, ListingCell>>,
}

impl ReferrerMemory {
    /// Tags someone already listed (the planner): no second `tags/list`.
    pub(super) fn know_tags(&self, repository: &Repository, tags: &[String]) {
        let listing: Listing = Arc::new(tags.iter().cloned().collect());
        let cell = Arc::new(OnceCell::new_with(Some(listing)));
        self.listings
            .lock()
            .expect("listing map poisoned")
            .insert(repository.clone(), (Instant::now(), cell));
    }
}

/// Why a referrer was not copied.
enum Trouble {
    /// Something about the content: noted in the report; the image still counts as copied.
    Note(String),
    /// A fault another attempt may get past: fails the image.
    Fatal(CopyError),
}

impl From<CopyError> for Trouble {
    fn from(error: CopyError) -> Self {
        let content = matches!(
            error,
            CopyError::SourceMissing(_)
                | CopyError::BadManifest { .. }
                | CopyError::BlobMismatch { .. }
        ) || matches!(
            error.kind(),
            Kind::NotFound | Kind::Protocol | Kind::Immutable | Kind::BadInput
        );
        if content {
            Trouble::Note(error.to_string())
        } else {
            Trouble::Fatal(error)
        }
    }
}

impl From<crate::registry::RegistryError> for Trouble {
    fn from(error: crate::registry::RegistryError) -> Self {
        Trouble::from(CopyError::from(error))
    }
}

/// How one image's referrers are looked for.
#[derive(Clone, Copy)]
pub(super) struct ReferrerSearch<'a> {
    pub(super) wanted: &'a Referrers,
    /// Listings of the source's tags made before this are not used (a job by digest may be
    /// for a signature just pushed); `None`: any made within `LISTING_TTL`.
    pub(super) listed_since: Option<Instant>,
    /// A referrer pushed by digest alone, counted among its subject's even where the source
    /// lists it nowhere (no referrers API, no fallback tag).
    pub(super) pushed: Option<&'a PushedManifest>,
}

/// What refers to one subject at the source.
struct Found<'a> {
    subject: Digest,
    /// Entries (descriptors as served) from the API, when the source has it.
    api: Option<Vec<Value>>,
    /// The fallback tag exists at the source (from the listing).
    fallback_listed: bool,
    /// Its digest (a HEAD) and its content (a GET), each asked for once when needed.
    fallback_head: OnceCell<Option<Digest>>,
    fallback: OnceCell<Option<Manifest>>,
    /// Cosign tags present, with their digests at the source.
    cosign: Vec<(String, Digest)>,
    /// Whether the listing holds any referrer tag of a digest, so one with none is skipped.
    listing: Listing,
    /// The referrer of this subject a job was made for, read already.
    pushed: Option<&'a PushedManifest>,
}

impl Copier {
    /// Copies the referrers of `subjects` (manifests of one image, already on the targets)
    /// from `source` to every repository in `targets`, and theirs, to a bounded depth, as
    /// `search` says (a webhook's job for a signature just pushed is by digest, and a
    /// worker's listing of a minute ago would not show it: such a job lists anew).
    pub(super) async fn copy_referrers(
        &self,
        source: &Repository,
        subjects: Vec<Digest>,
        targets: &[Repository],
        search: ReferrerSearch<'_>,
        report: &mut ImageReport,
    ) -> Result<(), CopyError> {
        let wanted = search.wanted;
        if !wanted.enabled || targets.is_empty() {
            return Ok(());
        }
        let mut seen: HashSet<Digest> = subjects.iter().cloned().collect();
        let mut queue: VecDeque<(Digest, Vec<Digest>)> =
            subjects.into_iter().map(|d| (d, Vec::new())).collect();
        let mut budget = MAX_REFERRERS;
        while let Some((subject, path)) = queue.pop_front() {
            if self.is_stopped() {
                return Err(CopyError::Interrupted);
            }
            let found = match self.find_referrers(source, &subject, search).await {
                Ok(Some(found)) => found,
                Ok(None) => continue,
                Err(Trouble::Note(note)) => {
                    report.referrer_problems.push(note);
                    continue;
                }
                Err(Trouble::Fatal(error)) => return Err(error),
            };
            let mut next: Vec<Digest> = Vec::new();
            for target in targets {
                match self
                    .referrers_to(source, target, &found, wanted, report, &mut next)
                    .await
                {
                    Ok(()) => {}
                    Err(Trouble::Note(note)) => report.referrer_problems.push(note),
                    Err(Trouble::Fatal(error)) => return Err(error),
                }
            }
            let mut ancestors = path.clone();
            ancestors.push(subject.clone());
            for referrer in next {
                if ancestors.contains(&referrer) {
                    let note = format!(
                        "referrer loop: {referrer} refers to {subject}, which refers to it; not followed"
                    );
                    if !report.referrer_problems.contains(&note) {
                        report.referrer_problems.push(note);
                    }
                    continue;
                }
                if !seen.insert(referrer.clone()) {
                    continue;
                }
                if ancestors.len() > MAX_REFERRER_DEPTH {
                    report.referrer_problems.push(format!(
                        "referrers of {referrer} not followed: deeper than {MAX_REFERRER_DEPTH}"
                    ));
                    continue;
                }
                if budget == 0 {
                    report.referrer_problems.push(format!(
                        "more than {MAX_REFERRERS} referrers; the rest not followed"
                    ));
                    return Ok(());
                }
                budget -= 1;
                queue.push_back((referrer, ancestors.clone()));
            }
        }
        Ok(())
    }

    /// The manifests whose referrers the copy of an image every target holds looks for:
    /// its own, and, for an index when the source's listing shows referrer tags of another
    /// digest (a child's, as `cosign sign --recursive` makes), its children's too (one GET
    /// of the index). An index in a repository without such tags costs nothing more.
    pub(super) async fn in_sync_subjects(
        &self,
        source: &Repository,
        digest: &Digest,
        index: bool,
        options: &ImageOptions,
    ) -> Result<Vec<Digest>, CopyError> {
        let own = vec![digest.clone()];
        if !index || !options.referrers.enabled {
            return Ok(own);
        }
        let listing = match self.listing(source, None).await {
            Ok(listing) => listing,
            Err(Trouble::Note(_)) => return Ok(own),
            Err(Trouble::Fatal(error)) => return Err(error),
        };
        let others = listing
            .iter()
            .filter_map(|tag| referrer_subject(tag))
            .any(|subject| subject != *digest);
        if !others {
            return Ok(own);
        }
        let index = self
            .client(source.registry())?
            .manifest_get(&source.at(Locator::Digest(digest.clone())))
            .await?;
        Ok(own
            .into_iter()
            .chain(children_of(&index, &options.platforms))
            .collect())
    }

    /// What refers to `subject` at the source, or `None` when nothing does (which the
    /// listing tells for free where the source has no referrers API).
    async fn find_referrers<'a>(
        &self,
        source: &Repository,
        subject: &Digest,
        search: ReferrerSearch<'a>,
    ) -> Result<Option<Found<'a>>, Trouble> {
        let listing = self.listing(source, search.listed_since).await?;
        let pushed = search.pushed.filter(|p| p.subject == *subject);
        let api = self.api_answer(source, subject).await?;
        let tag = fallback_tag(subject);
        let fallback_listed = api.is_none() && listing.contains(&tag);
        let mut cosign = Vec::new();
        for suffix in COSIGN_SUFFIXES {
            let name = format!("{tag}.{suffix}");
            if !listing.contains(&name) {
                continue;
            }
            let client = self.client(source.registry())?;
            match client
                .manifest_head(&source.at(Locator::Tag(name.clone())))
                .await?
            {
                Some(ManifestHead {
                    digest: Some(digest),
                    ..
                }) => cosign.push((name, digest)),
                Some(_) => {
                    // No digest told: read the manifest to know it.
                    let manifest = client
                        .manifest_get(&source.at(Locator::Tag(name.clone())))
                        .await?;
                    cosign.push((name, manifest.digest));
                }
                None => {}
            }
        }
        let nothing = api.as_ref().is_none_or(Vec::is_empty)
            && !fallback_listed
            && cosign.is_empty()
            && pushed.is_none();
        if nothing {
            return Ok(None);
        }
        Ok(Some(Found {
            subject: subject.clone(),
            api,
            fallback_listed,
            fallback_head: OnceCell::new(),
            fallback: OnceCell::new(),
            cosign,
            listing,
            pushed,
        }))
    }

    /// `GET …/referrers/<subject>` unless the registry is known to have no API (the
    /// run's [`ReferrersApi`] memory).
    async fn api_answer(
        &self,
        repository: &Repository,
        subject: &Digest,
    ) -> Result<Option<Vec<Value>>, Trouble> {
        let client = self.client(repository.registry())?;
        Ok(self
            .referrer_memory
            .api
            .referrers(&client, repository, subject)
            .await?)
    }

    /// The source repository's tags, listed once per `LISTING_TTL`; a repository that does
    /// not exist has none.
    async fn listing(
        &self,
        repository: &Repository,
        listed_since: Option<Instant>,
    ) -> Result<Listing, Trouble> {
        let cell = {
            let mut listings = self
                .referrer_memory
                .listings
                .lock()
                .expect("listing map poisoned");
            let fresh = listings
                .get(repository)
                .filter(|(at, _)| at.elapsed() < LISTING_TTL)
                .filter(|(at, _)| listed_since.is_none_or(|since| *at >= since))
                .map(|(_, cell)| Arc::clone(cell));
            fresh.unwrap_or_else(|| {
                let cell = Arc::new(OnceCell::new());
                listings.insert(repository.clone(), (Instant::now(), Arc::clone(&cell)));
                cell
            })
        };
        let listing = cell
            .get_or_try_init(|| async {
                let client = self.client(repository.registry())?;
                match client.tag_list(repository).await {
                    Ok(tags) => Ok(Arc::new(tags.into_iter().collect())),
                    Err(e) if matches!(e.kind, ErrorKind::NotFound(_)) => {
                        Ok(Arc::new(HashSet::new()))
                    }
                    Err(e) => Err(CopyError::from(e)),
                }
            })
            .await?;
        Ok(Arc::clone(listing))
    }

    /// Brings `target` up to date with what refers to `found.subject`; the digests of the
    /// referrers seen go to `next` (their own referrers are looked for in turn).
    async fn referrers_to(
        &self,
        source: &Repository,
        target: &Repository,
        found: &Found<'_>,
        wanted: &Referrers,
        report: &mut ImageReport,
        next: &mut Vec<Digest>,
    ) -> Result<(), Trouble> {
        for (tag, digest) in &found.cosign {
            let copied = self
                .cosign_tag_to(source, target, tag, digest, wanted, report)
                .await?;
            if copied || has_referrer_tags(&found.listing, digest) {
                next.push(digest.clone());
            }
        }
        if found.api.is_none() && !found.fallback_listed && found.pushed.is_none() {
            return Ok(());
        }
        let tag = fallback_tag(&found.subject);
        let target_api = self.target_has_api(target, &found.subject).await?;
        let target_index = match &target_api {
            Some(_) => None,
            None => {
                let (digest, entries) = self.target_index(target, &tag).await?;
                // Both fallback tags at one digest: the target has all the source lists
                // (a HEAD at the source; its index is read only when they differ), which
                // says nothing of a referrer pushed by digest that the source lists nowhere.
                if found.fallback_listed && digest.is_some() && found.pushed.is_none() {
                    let source_head = self.fallback_head(source, found).await?;
                    if source_head.is_some() && digest == source_head {
                        return Ok(());
                    }
                }
                Some(entries)
            }
        };
        let mut entries: Vec<Value> = match &found.api {
            Some(entries) => entries.clone(),
            // No index (the tag went away since the listing): nothing but a pushed one.
            None if found.fallback_listed => match self.source_fallback(source, found).await? {
                Some(index) => entries_of(&index.bytes)
                    .ok_or_else(|| not_an_index(source, &tag, "at the source"))?,
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        // The pushed referrer, where the source lists it nowhere (no API, no fallback tag):
        // then the source's index is no longer the whole list, and not copied as it is.
        let mut listed_in_full = true;
        if let Some(pushed) = found.pushed {
            let digest = pushed.tree.manifest.digest.as_str();
            if !entries
                .iter()
                .any(|e| entry_digest(e).as_deref() == Some(digest))
            {
                entries.push(pushed.entry.clone());
                listed_in_full = false;
            }
        }
        // What the target holds already, by digest.
        let held: HashSet<String> = match (&target_api, &target_index) {
            (Some(listed), _) => listed.iter().filter_map(entry_digest).collect(),
            (None, Some(Some(existing))) => existing.iter().filter_map(entry_digest).collect(),
            _ => HashSet::new(),
        };
        let mut added: Vec<Value> = Vec::new();
        let mut all_wanted = true;
        for entry in entries.iter().take(MAX_REFERRERS) {
            let Some(digest) = entry_digest(entry).and_then(|d| d.parse::<Digest>().ok()) else {
                report.referrer_problems.push(format!(
                    "a referrer of {} without a valid digest; skipped",
                    found.subject
                ));
                all_wanted = false;
                continue;
            };
            if !is_wanted(entry, wanted) {
                all_wanted = false;
                continue;
            }
            // Its own referrers are looked for when it is new here, or when the listing
            // shows tags of them (free); an API source is not asked again for every
            // referrer the target holds already, so a warm run asks once per image.
            let held_here = held.contains(digest.as_str());
            if !held_here || has_referrer_tags(&found.listing, &digest) {
                next.push(digest.clone());
            }
            if held_here {
                continue;
            }
            let copied = match found
                .pushed
                .filter(|pushed| pushed.tree.manifest.digest == digest)
            {
                // Read already, and known to name this subject.
                Some(pushed) => {
                    let locator = Locator::Digest(digest.clone());
                    self.push_referrer(&pushed.tree, source, target, locator, report)
                        .await
                }
                None => {
                    self.copy_referrer(source, target, &digest, Some(&found.subject), None, report)
                        .await
                }
            };
            match copied {
                Ok(()) => added.push(entry.clone()),
                Err(Trouble::Note(note)) => {
                    all_wanted = false;
                    report.referrer_problems.push(note);
                }
                Err(fatal) => return Err(fatal),
            }
        }
        // A target with the API indexed the pushes itself.
        let Some(existing) = target_index else {
            return Ok(());
        };
        if added.is_empty() {
            return Ok(());
        }
        let target_ref = target.at(Locator::Tag(tag.clone()));
        let client = self.client(target.registry())?;
        let verbatim = match (
            &existing,
            found.api.is_none() && all_wanted && listed_in_full,
        ) {
            (None, true) => self.source_fallback(source, found).await?,
            _ => None,
        };
        let (media_type, bytes) = match verbatim {
            Some(index) => (index.media_type.clone(), index.bytes.clone()),
            None => (
                media_types::OCI_INDEX.to_string(),
                merged_index(existing.unwrap_or_default(), added),
            ),
        };
        client
            .manifest_put(&target_ref, &media_type, &bytes)
            .await?;
        report.manifests_pushed += 1;
        Ok(())
    }

    /// A cosign tag: pushed when the target's tag is at another digest (or absent).
    /// Whether it was pushed.
    async fn cosign_tag_to(
        &self,
        source: &Repository,
        target: &Repository,
        tag: &str,
        digest: &Digest,
        wanted: &Referrers,
        report: &mut ImageReport,
    ) -> Result<bool, Trouble> {
        let target_ref = target.at(Locator::Tag(tag.to_string()));
        let head = self
            .client(target.registry())?
            .manifest_head_as(&target_ref, Actions::PullPush)
            .await?;
        if ManifestHead::digest_of(&head) == Some(digest) {
            return Ok(false);
        }
        let before = report.referrers_copied;
        match self
            .copy_referrer(source, target, digest, None, Some((tag, wanted)), report)
            .await
        {
            Ok(()) => Ok(report.referrers_copied > before),
            Err(Trouble::Note(note)) => {
                report.referrer_problems.push(note);
                Ok(false)
            }
            Err(fatal) => Err(fatal),
        }
    }

    /// One referrer, like an image: its blobs, children, then its manifest, by digest (or
    /// by `tag` for cosign's, filtered by type once its manifest is read). `subject`: what
    /// it must refer to.
    async fn copy_referrer(
        &self,
        source: &Repository,
        target: &Repository,
        digest: &Digest,
        subject: Option<&Digest>,
        tag: Option<(&str, &Referrers)>,
        report: &mut ImageReport,
    ) -> Result<(), Trouble> {
        let at_source = source.at(Locator::Digest(digest.clone()));
        let tree = match ManifestTree::fetch(&self.registries, &at_source).await {
            Err(CopyError::SourceMissing(_)) => {
                return Err(Trouble::Note(format!(
                    "referrer {digest} of {} is missing at the source",
                    subject.map_or_else(|| source.to_string(), ToString::to_string)
                )))
            }
            other => other?,
        };
        if let Some(subject) = subject {
            let named = tree.body().subject().and_then(|s| s.digest.as_deref());
            if named != Some(subject.as_str()) {
                return Err(Trouble::Note(format!(
                    "referrer {digest} names subject {}, not {subject}; not copied",
                    named.unwrap_or("none")
                )));
            }
        }
        if let Some((_, wanted)) = tag {
            if !wanted.wants_body(tree.body()) {
                return Ok(());
            }
        }
        let locator = match tag {
            Some((tag, _)) => Locator::Tag(tag.to_string()),
            None => Locator::Digest(digest.clone()),
        };
        self.push_referrer(&tree, source, target, locator, report)
            .await
    }

    /// A referrer read from `source` into `target` as `locator`: like an image, counted.
    async fn push_referrer(
        &self,
        tree: &ManifestTree,
        source: &Repository,
        target: &Repository,
        locator: Locator,
        report: &mut ImageReport,
    ) -> Result<(), Trouble> {
        self.push_to(tree, source, &[target.at(locator)], false, report)
            .await?;
        report.referrers_copied += 1;
        Ok(())
    }

    /// Whether the source serves `tag` (one HEAD; distribution 2.8 lists a tag a moment
    /// before it serves it, and notifies before either), with the listing made since
    /// `listed_since` taken to hold it when the HEAD found it first, so the referrers
    /// under it are looked for.
    pub(super) async fn source_serves_tag(
        &self,
        source: &Repository,
        tag: &str,
        listed_since: Option<Instant>,
    ) -> Result<bool, CopyError> {
        let listing = match self.listing(source, listed_since).await {
            Ok(listing) => listing,
            Err(Trouble::Fatal(error)) => return Err(error),
            // A listing that is not one: the HEAD decides.
            Err(Trouble::Note(_)) => Listing::default(),
        };
        let head = self
            .client(source.registry())?
            .manifest_head(&source.at(Locator::Tag(tag.to_string())))
            .await?;
        if head.is_none() {
            return Ok(false);
        }
        if !listing.contains(tag) {
            let tags: Vec<String> = listing.iter().cloned().chain([tag.to_string()]).collect();
            self.know_tags(source, &tags);
        }
        Ok(true)
    }

    /// The target's referrers of `subject` when it has the API (`None`: it has not; asked
    /// once per registry and run, like the source's).
    async fn target_has_api(
        &self,
        target: &Repository,
        subject: &Digest,
    ) -> Result<Option<Vec<Value>>, Trouble> {
        match self.api_answer(target, subject).await {
            // A target repository not there yet: it has nothing, and the answer says
            // nothing of the API.
            Err(Trouble::Note(_)) => Ok(None),
            other => other,
        }
    }

    /// The target's fallback index, its digest and entries: `(None, None)` when it has no
    /// such tag. One that is not an index is left alone (noted), never overwritten.
    async fn target_index(
        &self,
        target: &Repository,
        tag: &str,
    ) -> Result<(Option<Digest>, Option<Vec<Value>>), Trouble> {
        let reference = target.at(Locator::Tag(tag.to_string()));
        let manifest = match self
            .client(target.registry())?
            .manifest_get(&reference)
            .await
        {
            Err(e) if matches!(e.kind, ErrorKind::NotFound(_)) => return Ok((None, None)),
            other => other?,
        };
        if !media_types::is_index(&manifest.media_type) {
            return Err(not_an_index(target, tag, "on the target"));
        }
        let entries = entries_of(&manifest.bytes)
            .ok_or_else(|| not_an_index(target, tag, "on the target"))?;
        Ok((Some(manifest.digest), Some(entries)))
    }

    async fn fallback_head(
        &self,
        source: &Repository,
        found: &Found<'_>,
    ) -> Result<Option<Digest>, Trouble> {
        let head = found
            .fallback_head
            .get_or_try_init(|| async {
                let reference = source.at(Locator::Tag(fallback_tag(&found.subject)));
                let head = self
                    .client(source.registry())?
                    .manifest_head(&reference)
                    .await?;
                Ok::<_, CopyError>(head.and_then(|h| h.digest))
            })
            .await?;
        Ok(head.clone())
    }

    /// The source's fallback index as served (`None`: the tag went away since the listing).
    async fn source_fallback(
        &self,
        source: &Repository,
        found: &Found<'_>,
    ) -> Result<Option<Manifest>, Trouble> {
        let tag = fallback_tag(&found.subject);
        let manifest = found
            .fallback
            .get_or_try_init(|| async {
                let reference = source.at(Locator::Tag(tag.clone()));
                match self
                    .client(source.registry())?
                    .manifest_get(&reference)
                    .await
                {
                    Err(e) if matches!(e.kind, ErrorKind::NotFound(_)) => Ok(None),
                    Err(e) => Err(CopyError::from(e)),
                    Ok(manifest) => Ok(Some(manifest)),
                }
            })
            .await?;
        match manifest {
            Some(m) if !media_types::is_index(&m.media_type) || entries_of(&m.bytes).is_none() => {
                Err(not_an_index(source, &tag, "at the source"))
            }
            other => Ok(other.clone()),
        }
    }
}

/// A referrer at the source as `ferry plan --explain` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReferrer {
    /// The manifest it refers to: the image's, or (deeper) another referrer's.
    pub subject: Digest,
    pub digest: Digest,
    /// The entry's `artifactType`; for a cosign tag, its manifest's (see
    /// `ManifestBody::artifact_types`: the first that is not an image config's type).
    pub artifact_type: Option<String>,
    /// Where it was found: `referrers API`, `fallback tag sha256-…`, `cosign tag sha256-….sig`.
    pub found_in: String,
    /// 1 for what refers to the image, 2 for what refers to those, …
    pub depth: usize,
    /// Whether the run's `--referrers-type` takes it (a cosign tag's type is its manifest's).
    pub wanted: bool,
}

impl Copier {
    /// What refers to `image` at the source (its top manifest and each child of an index
    /// the run's platforms keep), and to those, to the copy's depth: what a copy would look
    /// for, found the same way (the API, the fallback index, cosign's tags), and nothing
    /// written. With what is wrong with them, as a copy would note it.
    pub async fn referrers_at_source(
        &self,
        image: &Reference,
    ) -> Result<(Vec<SourceReferrer>, Vec<String>), CopyError> {
        let wanted = &self.options.image.referrers;
        let mut found_all = Vec::new();
        let mut problems = Vec::new();
        if !wanted.enabled {
            return Ok((found_all, problems));
        }
        let source = &image.repository;
        let manifest = self.client(source.registry())?.manifest_get(image).await?;
        let mut subjects = vec![manifest.digest.clone()];
        subjects.extend(children_of(&manifest, &self.options.image.platforms));
        let mut seen: HashSet<Digest> = subjects.iter().cloned().collect();
        let mut queue: VecDeque<(Digest, usize)> = subjects.into_iter().map(|d| (d, 1)).collect();
        while let Some((subject, depth)) = queue.pop_front() {
            let search = ReferrerSearch {
                wanted,
                listed_since: None,
                pushed: None,
            };
            let found = match self.find_referrers(source, &subject, search).await {
                Ok(Some(found)) => found,
                Ok(None) => continue,
                Err(Trouble::Note(note)) => {
                    problems.push(note);
                    continue;
                }
                Err(Trouble::Fatal(error)) => return Err(error),
            };
            let mut here: Vec<SourceReferrer> = Vec::new();
            let entry = |digest: Digest, artifact_type: Option<String>, found_in: String| {
                let wanted = wanted.wants(artifact_type.as_deref().into_iter());
                SourceReferrer {
                    subject: subject.clone(),
                    digest,
                    artifact_type,
                    found_in,
                    depth,
                    wanted,
                }
            };
            let listed = match &found.api {
                Some(entries) => Some((entries.clone(), "referrers API".to_string())),
                None if found.fallback_listed => match self.source_fallback(source, &found).await {
                    Ok(Some(index)) => entries_of(&index.bytes)
                        .map(|e| (e, format!("fallback tag {}", fallback_tag(&subject)))),
                    Ok(None) => None,
                    Err(Trouble::Note(note)) => {
                        problems.push(note);
                        None
                    }
                    Err(Trouble::Fatal(error)) => return Err(error),
                },
                None => None,
            };
            for value in listed.iter().flat_map(|(entries, _)| entries) {
                let Some(digest) = entry_digest(value).and_then(|d| d.parse::<Digest>().ok())
                else {
                    problems.push(format!(
                        "a referrer of {subject} without a valid digest; skipped"
                    ));
                    continue;
                };
                let artifact_type = value
                    .get("artifactType")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let found_in = listed
                    .as_ref()
                    .map(|(_, how)| how.clone())
                    .unwrap_or_default();
                here.push(entry(digest, artifact_type, found_in));
            }
            for (tag, digest) in &found.cosign {
                let reference = source.at(Locator::Digest(digest.clone()));
                let manifest = self
                    .client(source.registry())?
                    .manifest_get(&reference)
                    .await?;
                let body = ManifestBody::parse(&manifest.media_type, &manifest.bytes).ok();
                let mut referrer = entry(digest.clone(), None, format!("cosign tag {tag}"));
                referrer.wanted = body.as_ref().is_some_and(|b| wanted.wants_body(b));
                // An image config's media type says nothing of what a cosign tag holds;
                // its layers' type does.
                let image_config = |t: &&str| {
                    *t == "application/vnd.oci.image.config.v1+json"
                        || *t == "application/vnd.docker.container.image.v1+json"
                };
                let types = body.as_ref().map(ManifestBody::artifact_types);
                let types = types.unwrap_or_default();
                referrer.artifact_type = types
                    .iter()
                    .find(|t| !image_config(t))
                    .or(types.first())
                    .map(|t| t.to_string());
                here.push(referrer);
            }
            for referrer in here {
                if seen.len() >= MAX_REFERRERS {
                    problems.push(format!(
                        "more than {MAX_REFERRERS} referrers; the rest not followed"
                    ));
                    found_all.push(referrer);
                    return Ok((found_all, problems));
                }
                if seen.insert(referrer.digest.clone()) && depth < MAX_REFERRER_DEPTH {
                    queue.push_back((referrer.digest.clone(), depth + 1));
                }
                found_all.push(referrer);
            }
        }
        Ok((found_all, problems))
    }
}

/// The digests an index lists for the platforms `platforms` keeps (all, when empty); none
/// for any other manifest.
pub fn children_of(manifest: &Manifest, platforms: &PlatformFilter) -> Vec<Digest> {
    match ManifestBody::parse(&manifest.media_type, &manifest.bytes) {
        Ok(ManifestBody::Index(index)) => index
            .manifests
            .iter()
            .filter(|child| platforms.matches(&child.platform()))
            .filter_map(|child| child.digest.as_deref()?.parse().ok())
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether the listing holds a referrer tag of `digest` (its fallback index or cosign's).
fn has_referrer_tags(listing: &HashSet<String>, digest: &Digest) -> bool {
    let tag = fallback_tag(digest);
    listing.contains(&tag)
        || COSIGN_SUFFIXES
            .iter()
            .any(|suffix| listing.contains(&format!("{tag}.{suffix}")))
}

fn not_an_index(repository: &Repository, tag: &str, where_: &str) -> Trouble {
    Trouble::Note(format!(
        "fallback tag {} {where_} is not an index; its referrers not copied",
        repository.at(Locator::Tag(tag.to_string()))
    ))
}

/// The `manifests` of an index document, `None` when it is not one.
pub fn entries_of(bytes: &[u8]) -> Option<Vec<Value>> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    value.get("manifests")?.as_array().cloned()
}

fn entry_digest(entry: &Value) -> Option<String> {
    entry
        .get("digest")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Whether a target's fallback index (`target`) lacks an entry of the source's (`source`)
/// that the run wants (by its `artifactType`): a source that is no index lacks nothing
/// worth copying; a target that is none lacks all.
pub fn index_lacks_entries(source: &[u8], target: &[u8], wanted: &Referrers) -> bool {
    let Some(entries) = entries_of(source) else {
        return false;
    };
    let entries: Vec<Value> = entries
        .into_iter()
        .filter(|entry| is_wanted(entry, wanted))
        .collect();
    lacks_entries(&entries, &entries_of(target).unwrap_or_default())
}

/// Whether `held` (a target's referrers, as descriptors) lacks any of `entries`, by digest.
pub fn lacks_entries(entries: &[Value], held: &[Value]) -> bool {
    let held: HashSet<String> = held.iter().filter_map(entry_digest).collect();
    entries
        .iter()
        .filter_map(entry_digest)
        .any(|digest| !held.contains(&digest))
}

/// Whether a referrer, as a referrers index lists it, is one the run copies (by its
/// `artifactType`).
pub fn is_wanted(entry: &Value, wanted: &Referrers) -> bool {
    let types = entry.get("artifactType").and_then(Value::as_str);
    wanted.wants(types.into_iter())
}

/// The fallback index ferry writes: what the target had, in its order, then what was
/// added, each digest once.
fn merged_index(existing: Vec<Value>, added: Vec<Value>) -> Bytes {
    let mut seen = HashSet::new();
    let manifests: Vec<Value> = existing
        .into_iter()
        .chain(added)
        .filter(|entry| entry_digest(entry).is_none_or(|d| seen.insert(d)))
        .collect();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_INDEX,
        "manifests": manifests,
    });
    Bytes::from(serde_json::to_vec(&index).expect("a JSON value serialises"))
}

/// The references an image's copy brings along: the digests of `tree` and its children.
pub(super) fn subjects(tree: &ManifestTree) -> Vec<Digest> {
    let mut digests = vec![tree.manifest.digest.clone()];
    for child in &tree.children {
        digests.extend(subjects(child));
    }
    digests
}

/// The target repositories of an image's targets, each once.
pub fn repositories(targets: &[Reference]) -> Vec<Repository> {
    let mut seen = HashSet::new();
    targets
        .iter()
        .map(|t| t.repository.clone())
        .filter(|r| seen.insert(r.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merge_keeps_what_the_target_had() {
        let entry =
            |c: char| json!({"digest": format!("sha256:{}", c.to_string().repeat(64)), "size": 1});
        let bytes = merged_index(vec![entry('a'), entry('b')], vec![entry('b'), entry('c')]);
        let entries = entries_of(&bytes).unwrap();
        let digests: Vec<String> = entries.iter().filter_map(entry_digest).collect();
        assert_eq!(digests.len(), 3);
        assert!(digests[0].ends_with('a') && digests[2].ends_with('c'));
        assert!(entries_of(b"{\"layers\":[]}").is_none());
        assert!(entries_of(b"not json").is_none());
        let source = merged_index(vec![entry('a')], vec![entry('c')]);
        let all = Referrers::default();
        assert!(!index_lacks_entries(&source, &bytes, &all));
        assert!(index_lacks_entries(&bytes, &source, &all));
        assert!(index_lacks_entries(&source, b"not json", &all));
        assert!(!index_lacks_entries(b"not json", &source, &all));
        // Only entries of a wanted type count.
        let typed = |c: char, kind: &str| json!({"digest": format!("sha256:{}", c.to_string().repeat(64)), "artifactType": kind});
        let source = merged_index(vec![typed('b', "sbom"), typed('c', "sig")], Vec::new());
        let target = merged_index(vec![typed('c', "sig")], Vec::new());
        let signatures = Referrers {
            enabled: true,
            types: vec!["sig".into()],
        };
        assert!(!index_lacks_entries(&source, &target, &signatures));
        assert!(index_lacks_entries(&source, &target, &all));
        assert!(index_lacks_entries(&source, b"", &signatures));
    }
}
