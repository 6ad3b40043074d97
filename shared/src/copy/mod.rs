//! The copy engine: one planned source image → its targets, registry to registry through
//! memory only. This file holds the `Copier` and the flow of one image; the rest of the
//! module is split by concern: `tree` (the source's manifests and the platform filter),
//! `referrers` (what refers to the image's manifests), `pushed` (a webhook's pushed referrer),
//! `blob` (one blob into one target), `fanout` (one blob read once for several target
//! registries), `verify` (checking a blob as it streams) and `scheduler` (permits,
//! placements and once-cells shared by every image of a run, on `permits`).
//!
//! Order of work for an image: targets that have a tag declared immutable (in their one
//! `tags/list` of the run) are done without a request; HEAD every other target, then (only
//! when every target has a manifest) the source: equal digests and no `--force` means
//! skipped, no GET spent. Else GET the source manifest tree; apply the platform filter; then
//! copy every blob to every target repository (mount when source and target share a
//! registry, else a streamed GET verified by digest and size while it streams, one GET for
//! all the target registries), push each target's child manifests by digest, and only then
//! its top manifest, so no tag ever points at an incomplete image. Manifests are pushed
//! byte-identical unless a filter dropped entries.
//!
//! A webhook's job for a pushed referrer (`PushedReferrer`) first makes sure of it at the
//! source, or is only about it (`pushed`).
//!
//! Blob transfers across all images share `--proc` permits, handed out largest blob first;
//! blobs under 1 MiB have as many permits again, so configs and small layers do not queue
//! behind the big ones. The same blob wanted twice for one target repository is transferred
//! once, and read once for all target registries (other repositories there mount it). A
//! blob is HEADed on the target before it is sent, unless the target repository was found
//! not to exist.

mod blob;
mod fanout;
mod permits;
mod pushed;
mod referrers;
mod scheduler;
mod tree;
mod verify;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{self, StreamExt};
use thiserror::Error;

use crate::error::{HasKind, Kind};
use crate::image::{stale, ImageOptions, PlannedImage, PushedReferrer, Referrers};
use crate::reference::{Digest, Locator, Reference, Repository};
use crate::registry::{
    Actions, Client, ErrorKind, Manifest, ManifestHead, Registries, RegistryError,
};
use crate::report::{ImageReport, Status};
use crate::rules::ImmutableTags;
use blob::BlobOutcome;
use referrers::{ReferrerMemory, ReferrerSearch};
use scheduler::{round_backoff, Scheduler, HEADS_IN_FLIGHT, IMAGES_IN_FLIGHT};
use tree::ManifestTree;

pub use referrers::{
    children_of, entries_of, index_lacks_entries, is_wanted, lacks_entries, repositories,
    SourceReferrer,
};
pub use tree::ManifestProblem;
pub use verify::Mismatch;

/// How the copier works.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Blob transfers in flight across all images (`--proc`).
    pub proc: usize,
    /// What every image gets unless its job says otherwise.
    pub image: ImageOptions,
    /// Upload in PATCH chunks of this many bytes instead of one streaming PUT.
    pub chunk_size: Option<u64>,
    /// Copies of tags declared immutable: a target that lists the tag has it (unless
    /// forced), and neither registry is asked about the tag.
    pub immutable: ImmutableTags,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            proc: 5,
            image: ImageOptions::default(),
            chunk_size: None,
            immutable: ImmutableTags::default(),
        }
    }
}

/// Progress as the copier sees it; the CLI draws bars, the Lambdas log.
pub trait Progress: Send + Sync {
    fn planned(&self, _images: usize) {}
    fn bytes_transferred(&self, _n: u64) {}
    fn image_finished(&self, _report: &ImageReport) {}
}

/// Progress nobody watches.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Why an image could not be copied.
#[derive(Debug, Clone, Error)]
pub enum CopyError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{0} does not exist")]
    SourceMissing(Reference),
    #[error("blob {digest} from {source_repo}: {mismatch}")]
    BlobMismatch {
        source_repo: Repository,
        digest: Digest,
        mismatch: Mismatch,
    },
    #[error("manifest {reference}: {problem}")]
    BadManifest {
        reference: Reference,
        problem: ManifestProblem,
    },
    #[error("interrupted")]
    Interrupted,
    /// A referrer tag a push announced that the source does not show yet (see `pushed`).
    #[error("{0} is not served by the source yet (announced before); worth another try")]
    NotYetServed(Reference),
}

impl HasKind for CopyError {
    fn kind(&self) -> Kind {
        match self {
            CopyError::Registry(error) => error.kind.class(),
            CopyError::SourceMissing(_) => Kind::NotFound,
            CopyError::BlobMismatch { .. } => Kind::DigestMismatch,
            CopyError::BadManifest { .. } => Kind::Protocol,
            CopyError::Interrupted => Kind::Interrupted,
            // The registry has not caught up with its own notification: like a 5xx, it
            // passes.
            CopyError::NotYetServed(_) => Kind::Transport,
        }
    }
}

impl CopyError {
    /// Whether another round of the run may do better: not for a missing source, nor for a
    /// spent pull budget (it lasts until the time it names; its rounds would only add
    /// requests).
    fn worth_another_round(&self) -> bool {
        !self.kind().is_permanent()
            && !matches!(
                self,
                CopyError::SourceMissing(_)
                    | CopyError::Registry(RegistryError {
                        kind: ErrorKind::BudgetSpent { .. },
                        ..
                    })
            )
    }
}

/// Copies images; shared by every image of a run so `proc` bounds them all.
pub struct Copier {
    registries: Arc<Registries>,
    options: CopyOptions,
    progress: Arc<dyn Progress>,
    scheduler: Scheduler<BlobOutcome, CopyError>,
    stopped: AtomicBool,
    referrer_memory: ReferrerMemory,
}

/// Adds one target's blob outcomes to the report (a copy counts as found there already
/// when `again`: another tag of the repository brought it); the first failure stops it.
fn count_blobs(
    outcomes: impl Iterator<Item = Result<BlobOutcome, CopyError>>,
    again: bool,
    report: &mut ImageReport,
) -> Result<(), CopyError> {
    for outcome in outcomes {
        match outcome? {
            BlobOutcome::Copied(_) if again => report.blobs_existing += 1,
            BlobOutcome::Copied(bytes) => {
                report.blobs_copied += 1;
                report.bytes += bytes;
            }
            BlobOutcome::Mounted => report.blobs_mounted += 1,
            BlobOutcome::Existing => report.blobs_existing += 1,
        }
    }
    Ok(())
}

/// What an image needs.
enum Work {
    Skip(&'static str),
    /// Every target has the image: these manifests' referrers are still checked.
    InSync(Vec<Digest>),
    Push {
        tree: Box<ManifestTree>,
        targets: Vec<Reference>,
    },
}

impl Work {
    fn for_targets(tree: ManifestTree, targets: Vec<Reference>) -> Work {
        if targets.is_empty() {
            Work::InSync(referrers::subjects(&tree))
        } else {
            Work::Push {
                tree: Box::new(tree),
                targets,
            }
        }
    }
}

impl Copier {
    pub fn new(
        registries: Arc<Registries>,
        options: CopyOptions,
        progress: Arc<dyn Progress>,
    ) -> Self {
        Copier {
            registries,
            scheduler: Scheduler::new(options.proc),
            options,
            progress,
            stopped: AtomicBool::new(false),
            referrer_memory: ReferrerMemory::default(),
        }
    }

    /// Tags of a source repository someone listed already (the planner), so looking for
    /// referrer tags next to its images lists it no second time.
    pub fn know_tags(&self, repository: &Repository, tags: &[String]) {
        self.referrer_memory.know_tags(repository, tags);
    }

    /// Stop starting new images and blobs; transfers in flight finish.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Copies every image, then retries the failed ones up to `retries` more rounds.
    pub async fn copy_all(&self, images: Vec<PlannedImage>, retries: u32) -> Vec<ImageReport> {
        self.progress.planned(images.len());
        let concurrency = IMAGES_IN_FLIGHT;
        let mut pending = images;
        let mut done = Vec::new();
        for round in 0..=retries {
            if round > 0 {
                tokio::time::sleep(round_backoff(round)).await;
            }
            let last_round = round == retries;
            let mut results = stream::iter(pending)
                .map(|image| async move {
                    let options = image.rule_options.over(&self.options.image);
                    let (report, retryable) = self.copy_image_once(&image, &options).await;
                    (image, report, retryable)
                })
                .buffer_unordered(concurrency);
            pending = Vec::new();
            // Each image is reported as it ends, so progress moves while a round runs.
            while let Some((image, mut report, retryable)) = results.next().await {
                report.attempts = round + 1;
                if retryable && !last_round && !self.is_stopped() {
                    tracing::warn!(source = %image.source, reason = report.reason.as_deref().unwrap_or(""), "image failed; will retry");
                    pending.push(image);
                } else {
                    self.progress.image_finished(&report);
                    done.push(report);
                }
            }
            if pending.is_empty() {
                break;
            }
        }
        done
    }

    /// Copies one image to all its targets and says how it went.
    pub async fn copy_image(&self, image: &PlannedImage) -> ImageReport {
        let options = image.rule_options.over(&self.options.image);
        self.copy_image_once(image, &options).await.0
    }

    /// Copies one image with its own options (a queued job's) and says how it went, and
    /// whether a failure is worth another attempt.
    pub async fn copy_image_with(
        &self,
        image: &PlannedImage,
        options: &ImageOptions,
    ) -> (ImageReport, bool) {
        self.copy_image_once(image, options).await
    }

    /// The report, and whether a failure is worth another round (a missing source or a spent
    /// pull budget is not).
    async fn copy_image_once(
        &self,
        image: &PlannedImage,
        options: &ImageOptions,
    ) -> (ImageReport, bool) {
        let started = Instant::now();
        let mut report = ImageReport::new(
            image.source.to_string(),
            image.targets.iter().map(ToString::to_string).collect(),
        );
        // A copier told `--referrers=false` copies none, whatever a job asks.
        let overruled;
        let options = if self.options.image.referrers.enabled {
            options
        } else {
            overruled = ImageOptions {
                referrers: Referrers::off(),
                ..options.clone()
            };
            &overruled
        };
        let outcome = if self.is_stopped() {
            Err(CopyError::Interrupted)
        } else {
            self.copy_image_to_targets(image, options, &mut report)
                .await
        };
        let retryable = matches!(&outcome, Err(e) if e.worth_another_round());
        match outcome {
            Ok(None) => report.status = Status::Copied,
            Ok(Some(reason)) => {
                report.status = Status::Skipped;
                report.reason = Some(reason);
            }
            Err(error) => {
                report.status = Status::Failed;
                report.reason = Some(error.to_string());
                report.kind = Some(error.kind());
            }
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        if report.manifests_pushed == 0 && report.status == Status::Copied {
            report.status = Status::Skipped;
            report.reason = Some("already in sync".into());
        }
        (report, retryable)
    }

    /// `Ok(None)` copied, `Ok(Some(reason))` skipped.
    async fn copy_image_to_targets(
        &self,
        image: &PlannedImage,
        options: &ImageOptions,
        report: &mut ImageReport,
    ) -> Result<Option<String>, CopyError> {
        // A tag is copied at the digest it points at when the copy runs, whatever digest
        // the planner or a push event saw then: a replayed or late job never moves a target
        // tag backwards (the newest state wins). Only a digest source is pinned.
        let source = image.source.clone();
        // A job by digest may be a webhook's for a signature just pushed: listed anew.
        let relist = matches!(source.locator, Locator::Digest(_));
        let search = ReferrerSearch {
            wanted: &options.referrers,
            listed_since: relist.then(Instant::now),
            pushed: None,
        };
        match (&image.pushed_referrer, &source.locator) {
            (Some(PushedReferrer::Manifest), Locator::Digest(_)) => {
                return self.copy_pushed_manifest(image, search, report).await
            }
            (Some(PushedReferrer::Tag(tag)), _) if options.referrers.enabled => {
                self.check_pushed_tag(&source.repository, tag, search.listed_since)
                    .await?
            }
            _ => {}
        }
        let left = self.targets_to_check(image, options.force).await;
        if left.is_empty() {
            return Ok(Some("immutable tag already on every target".into()));
        }
        let narrowed;
        let image = if left.len() == image.targets.len() {
            image
        } else {
            narrowed = PlannedImage {
                targets: left,
                ..image.clone()
            };
            &narrowed
        };
        let pinned = match &source.locator {
            Locator::Digest(digest) => Some(digest),
            Locator::Tag(_) => None,
        };
        let work = {
            let _lookup = self
                .scheduler
                .lookup()
                .await
                .map_err(|_| CopyError::Interrupted)?;
            self.work_for(image, &source, pinned, options).await?
        };
        let everywhere = referrers::repositories(&image.targets);
        match work {
            Work::Skip(reason) => Ok(Some(reason.into())),
            Work::InSync(subjects) => {
                self.copy_referrers(&source.repository, subjects, &everywhere, search, report)
                    .await?;
                Ok((report.referrers_copied == 0).then(|| "already in sync".into()))
            }
            Work::Push { tree, targets } => {
                self.push_to(&tree, &source.repository, &targets, options.force, report)
                    .await?;
                // Every target, not only those that lacked the image: one in sync may
                // still lack a signature.
                self.copy_referrers(
                    &source.repository,
                    referrers::subjects(&tree),
                    &everywhere,
                    search,
                    report,
                )
                .await?;
                Ok(None)
            }
        }
    }

    /// The targets of `image` that must be checked (see `TargetTags::targets_to_check`).
    async fn targets_to_check(&self, image: &PlannedImage, force: bool) -> Vec<Reference> {
        let immutable = &self.options.immutable;
        self.scheduler
            .target_tags
            .targets_to_check(
                &image.source,
                &image.targets,
                immutable,
                force,
                &self.registries,
            )
            .await
    }

    /// What an image needs: its manifest tree and the targets that lack it, or why nothing.
    async fn work_for(
        &self,
        image: &PlannedImage,
        source: &Reference,
        pinned: Option<&Digest>,
        options: &ImageOptions,
    ) -> Result<Work, CopyError> {
        if options.force || !options.platforms.is_empty() {
            let tree = ManifestTree::fetch(&self.registries, source).await?;
            let Some(tree) = tree
                .filter(&self.registries, source, &options.platforms)
                .await?
            else {
                return Ok(Work::Skip("no platform matches the --os/--arch filter"));
            };
            let targets = if options.force {
                image.targets.clone()
            } else {
                let heads = self.target_heads(&image.targets).await?;
                stale(
                    &image.targets,
                    heads.iter().map(ManifestHead::digest_of),
                    &tree.manifest.digest,
                )
            };
            return Ok(Work::for_targets(tree, targets));
        }
        // The targets first: when one lacks the image, a copy is certain and the source
        // manifest is fetched straight away. Only when every target has a manifest does a
        // HEAD of the source decide, which spends no pull quota: no-op runs stay free.
        let heads = self.target_heads(&image.targets).await?;
        let known = match pinned {
            Some(digest) => Some(digest.clone()),
            None if heads.iter().all(Option::is_some) => {
                self.client(source.repository.registry())?
                    .manifest_head(source)
                    .await?
                    .ok_or_else(|| CopyError::SourceMissing(source.clone()))?
                    .digest
            }
            None => None,
        };
        if let Some(digest) = &known {
            if stale(
                &image.targets,
                heads.iter().map(ManifestHead::digest_of),
                digest,
            )
            .is_empty()
            {
                let index = ManifestHead::any_index(&heads);
                let subjects = self
                    .in_sync_subjects(&source.repository, digest, index, options)
                    .await?;
                return Ok(Work::InSync(subjects));
            }
        }
        let tree = match &known {
            Some(digest) => {
                let by_digest = source.repository.at(Locator::Digest(digest.clone()));
                ManifestTree::fetch(&self.registries, &by_digest).await?
            }
            None => ManifestTree::fetch(&self.registries, source).await?,
        };
        let targets = stale(
            &image.targets,
            heads.iter().map(ManifestHead::digest_of),
            &tree.manifest.digest,
        );
        Ok(Work::for_targets(tree, targets))
    }

    /// HEADs the targets, with the push token the copy will need anyway.
    async fn target_heads(
        &self,
        targets: &[Reference],
    ) -> Result<Vec<Option<ManifestHead>>, CopyError> {
        Ok(self
            .registries
            .manifest_heads(targets, Actions::PullPush, HEADS_IN_FLIGHT)
            .await?)
    }

    fn client(&self, registry: &str) -> Result<Arc<Client>, CopyError> {
        Ok(self.registries.client(registry)?)
    }

    /// Whether `target` is known not to exist (see `Scheduler::known_absent`).
    async fn known_absent(&self, target: &Repository) -> bool {
        self.scheduler.known_absent(&self.registries, target).await
    }

    /// Pushes the tree to every target: blobs, then children, then the manifest itself.
    /// Every blob goes to every target repository at once (`fanout`), so the transfer
    /// permits see them all and can start the largest first, and a blob several target
    /// registries need is read once. A target whose blobs failed gets no manifest; the
    /// others still get theirs, and the first error is the image's.
    async fn push_to(
        &self,
        tree: &ManifestTree,
        source: &Repository,
        targets: &[Reference],
        force: bool,
        report: &mut ImageReport,
    ) -> Result<(), CopyError> {
        let mut repositories: Vec<&Repository> = Vec::new();
        for target in targets {
            if !repositories.contains(&&target.repository) {
                repositories.push(&target.repository);
            }
        }
        let blobs = tree.collect_blobs();
        let placed = futures::future::join_all(
            blobs
                .iter()
                .map(|blob| self.blob_everywhere(source, &repositories, blob)),
        )
        .await;
        let mut first_error = None;
        let mut counted = Vec::new();
        for target in targets {
            let at = repositories
                .iter()
                .position(|r| **r == target.repository)
                .unwrap_or_default();
            // A second tag in one repository finds the blobs there.
            let again = counted.contains(&at);
            counted.push(at);
            let outcomes = placed.iter().map(|outcomes| {
                outcomes
                    .get(at)
                    .cloned()
                    .unwrap_or(Err(CopyError::Interrupted))
            });
            let pushed = match count_blobs(outcomes, again, report) {
                Ok(()) => self.push_manifests(tree, target, force, report).await,
                Err(error) => Err(error),
            };
            if let Err(error) = pushed {
                tracing::debug!(%error, %target, "target failed");
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The tree's children, then its manifest, into `target`.
    async fn push_manifests(
        &self,
        tree: &ManifestTree,
        target: &Reference,
        force: bool,
        report: &mut ImageReport,
    ) -> Result<(), CopyError> {
        self.push_children(tree, &target.repository, force, report)
            .await?;
        let client = self.client(target.repository.registry())?;
        self.put_manifest(&client, target, &tree.manifest, report)
            .await
    }

    /// The tree's child manifests into `target` by digest, deepest first (its own manifest
    /// excluded); a child already there is not pushed again unless forced.
    fn push_children<'a>(
        &'a self,
        tree: &'a ManifestTree,
        target: &'a Repository,
        force: bool,
        report: &'a mut ImageReport,
    ) -> futures::future::BoxFuture<'a, Result<(), CopyError>> {
        Box::pin(async move {
            for child in &tree.children {
                self.push_children(child, target, force, report).await?;
                let client = self.client(target.registry())?;
                let by_digest = target.at(Locator::Digest(child.manifest.digest.clone()));
                let exists = !force
                    && !self.known_absent(target).await
                    && client
                        .manifest_head_as(&by_digest, Actions::PullPush)
                        .await?
                        .is_some_and(|h| {
                            h.digest
                                .as_ref()
                                .is_none_or(|d| *d == child.manifest.digest)
                        });
                if !exists {
                    self.put_manifest(&client, &by_digest, &child.manifest, report)
                        .await?;
                }
            }
            Ok(())
        })
    }

    async fn put_manifest(
        &self,
        client: &Client,
        target: &Reference,
        manifest: &Manifest,
        report: &mut ImageReport,
    ) -> Result<(), CopyError> {
        let pushed = client
            .manifest_put(target, &manifest.media_type, &manifest.bytes)
            .await?;
        let same_algorithm = pushed
            .as_ref()
            .is_some_and(|d| d.algorithm() == manifest.digest.algorithm());
        if let (true, Some(digest)) = (same_algorithm, pushed) {
            if digest != manifest.digest {
                return Err(RegistryError::new(
                    format!("PUT manifest {target}"),
                    ErrorKind::DigestMismatch {
                        expected: manifest.digest.clone(),
                        actual: digest,
                    },
                )
                .into());
            }
        }
        report.manifests_pushed += 1;
        Ok(())
    }
}
