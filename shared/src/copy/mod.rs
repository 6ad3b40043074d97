//! The copy engine: one planned source image → its targets, registry to registry through
//! memory only.
//!
//! Order of work for an image: HEAD every target, then (only when every target has a
//! manifest) the source: equal digests and no `--force` means skipped, no GET spent. Else
//! GET the source manifest tree; apply the platform filter; then per target copy every blob
//! (mount when source and target share a registry, else a streamed GET → PUT verified by
//! digest and size while it streams), push child manifests by digest, and only then the
//! top manifest, so no tag ever points at an incomplete image. Manifests are pushed
//! byte-identical unless a filter dropped entries.
//!
//! Blob transfers across all images share `--proc` permits, handed out largest blob first;
//! blobs under 1 MiB have as many permits again, so configs and small layers do not queue
//! behind the big ones. The same blob wanted twice for one target repository is transferred
//! once, and once per target registry (other repositories there mount it). A blob is HEADed
//! on the target before it is sent, unless the target repository was found not to exist.

mod permits;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::Value;
use sha2::Digest as _;
use thiserror::Error;
use tokio::sync::{OnceCell, Semaphore};

use crate::error::{HasKind, Kind};
use crate::image::{stale, ImageOptions, PlannedImage};
use crate::platform::{Platform, PlatformFilter};
use crate::reference::{Algorithm, Digest, Locator, Reference, Repository};
use crate::registry::{
    media_types, Actions, Client, ErrorKind, Manifest, ManifestHead, Registries, RegistryError,
    UploadStart,
};
use crate::report::{ImageReport, Status};
use permits::PriorityPermits;

/// How the copier works.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Blob transfers in flight across all images (`--proc`).
    pub proc: usize,
    /// What every image gets unless its job says otherwise.
    pub image: ImageOptions,
    /// Upload in PATCH chunks of this many bytes instead of one streaming PUT.
    pub chunk_size: Option<u64>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            proc: 5,
            image: ImageOptions::default(),
            chunk_size: None,
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
    #[error("blob {digest} from {source_repo}: expected {expected}, received {actual}")]
    BlobMismatch {
        source_repo: String,
        digest: Digest,
        expected: String,
        actual: String,
    },
    #[error("manifest {reference}: {message}")]
    BadManifest { reference: String, message: String },
    #[error("interrupted")]
    Interrupted,
}

impl HasKind for CopyError {
    fn kind(&self) -> Kind {
        match self {
            CopyError::Registry(error) => error.kind.class(),
            CopyError::SourceMissing(_) => Kind::NotFound,
            CopyError::BlobMismatch { .. } => Kind::DigestMismatch,
            CopyError::BadManifest { .. } => Kind::Protocol,
            CopyError::Interrupted => Kind::Interrupted,
        }
    }
}

/// How a blob reached a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlobOutcome {
    Copied(u64),
    Mounted,
    Existing,
}

/// A blob a manifest references.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BlobRef {
    digest: Digest,
    size: Option<u64>,
}

/// One manifest with what it references: blobs, or child manifests.
struct ManifestTree {
    manifest: Manifest,
    blobs: Vec<BlobRef>,
    children: Vec<ManifestTree>,
}

impl ManifestTree {
    /// Every blob of this tree and its children, each digest once.
    fn collect_blobs<'a>(&'a self, into: &mut Vec<&'a BlobRef>) {
        for blob in &self.blobs {
            if !into.iter().any(|b| b.digest == blob.digest) {
                into.push(blob);
            }
        }
        for child in &self.children {
            child.collect_blobs(into);
        }
    }
}

type BlobCell = Arc<OnceCell<Result<BlobOutcome, CopyError>>>;
type PlacementCell = Arc<OnceCell<Repository>>;
type AbsentCell = Arc<OnceCell<Option<Instant>>>;

/// Copies images; shared by every image of a run so `proc` bounds them all.
pub struct Copier {
    registries: Arc<Registries>,
    options: CopyOptions,
    progress: Arc<dyn Progress>,
    /// Blob transfers in flight, largest blob first.
    transfers: PriorityPermits,
    /// The same number again for blobs under `SMALL_BLOB`: they are bound by round trips,
    /// not bandwidth, and queued behind the large ones they would end a run as a long tail.
    small_transfers: PriorityPermits,
    in_flight: Mutex<HashMap<(Repository, Digest), BlobCell>>,
    /// Per target registry and digest, the first repository the blob was placed in, so every
    /// other repository of that registry mounts it instead of transferring it again.
    placements: Mutex<HashMap<(String, Digest), PlacementCell>>,
    /// Images looking up manifests at once; the rest wait, or move blobs.
    lookups: Semaphore,
    /// Target repositories found not to exist, and when (see `known_absent`).
    absent: Mutex<HashMap<Repository, AbsentCell>>,
    stopped: AtomicBool,
}

/// What an image needs.
enum Work {
    Skip(&'static str),
    Push {
        tree: ManifestTree,
        targets: Vec<Reference>,
    },
}

impl Work {
    fn for_targets(tree: ManifestTree, targets: Vec<Reference>) -> Work {
        if targets.is_empty() {
            Work::Skip("already in sync")
        } else {
            Work::Push { tree, targets }
        }
    }
}

/// Nested indexes deeper than this are refused rather than followed forever.
const MAX_DEPTH: usize = 4;
/// Attempts at one blob transfer (each a fresh GET → PUT) on transient faults.
const BLOB_ATTEMPTS: u32 = 3;
/// Blobs below this size (configs, small layers) have transfer permits of their own.
const SMALL_BLOB: u64 = 1 << 20;
/// Target manifests HEADed at once for one image.
const HEADS_IN_FLIGHT: usize = 8;
/// Images in flight in `copy_all`. Most of them just wait for transfer permits, which is
/// what lets the permits start the largest blobs of the whole run first; `lookups` bounds
/// how many talk to registries about manifests at once.
const IMAGES_IN_FLIGHT: usize = 256;
/// How long a repository found absent is trusted to hold only what this copier put there.
/// Other copiers (Lambdas, workers) may push to it meanwhile; past this, blobs get HEADs.
const ABSENT_TRUSTED_FOR: Duration = Duration::from_secs(120);
/// Config blobs are read to check a single image's platform; they are small.
const MAX_CONFIG_BYTES: usize = 8 << 20;

impl Copier {
    pub fn new(
        registries: Arc<Registries>,
        options: CopyOptions,
        progress: Arc<dyn Progress>,
    ) -> Self {
        let proc = options.proc.max(1);
        Copier {
            registries,
            options,
            progress,
            transfers: PriorityPermits::new(proc),
            small_transfers: PriorityPermits::new(proc),
            in_flight: Mutex::new(HashMap::new()),
            placements: Mutex::new(HashMap::new()),
            lookups: Semaphore::new(proc * 4),
            absent: Mutex::new(HashMap::new()),
            stopped: AtomicBool::new(false),
        }
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
                    let (report, retryable) =
                        self.copy_image_once(&image, &self.options.image).await;
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
        self.copy_image_once(image, &self.options.image).await.0
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

    /// The report, and whether a failure is worth another round (a missing source is not).
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
        let outcome = if self.is_stopped() {
            Err(CopyError::Interrupted)
        } else {
            self.copy_image_to_targets(image, options, &mut report)
                .await
        };
        let retryable = matches!(&outcome, Err(e) if !matches!(e, CopyError::SourceMissing(_)));
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
        // A job that names the digest its planner or push event saw copies exactly that
        // image: a registry may announce a push before the tag points at it, and a tag that
        // moved since planning is the next plan's business.
        let source = match &image.digest {
            Some(digest) => image.source.repository.at(Locator::Digest(digest.clone())),
            None => image.source.clone(),
        };
        let work = {
            let _lookup = self
                .lookups
                .acquire()
                .await
                .map_err(|_| CopyError::Interrupted)?;
            self.work_for(image, &source, options).await?
        };
        match work {
            Work::Skip(reason) => Ok(Some(reason.into())),
            Work::Push { tree, targets } => self
                .push_to(&tree, &source.repository, &targets, options.force, report)
                .await
                .map(|()| None),
        }
    }

    /// What an image needs: its manifest tree and the targets that lack it, or why nothing.
    async fn work_for(
        &self,
        image: &PlannedImage,
        source: &Reference,
        options: &ImageOptions,
    ) -> Result<Work, CopyError> {
        if options.force || !options.platforms.is_empty() {
            let tree = self.fetch_tree(source).await?;
            let Some(tree) = self.filter(tree, source, &options.platforms).await? else {
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
        let known = match &image.digest {
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
                return Ok(Work::Skip("already in sync"));
            }
        }
        let tree = match &known {
            Some(digest) => {
                self.fetch_tree(&source.repository.at(Locator::Digest(digest.clone())))
                    .await?
            }
            None => self.fetch_tree(source).await?,
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

    /// GETs a manifest and, for an index, every child manifest (recursively, by digest, so
    /// a tag moving mid-copy cannot mix two images). A missing top manifest is
    /// `SourceMissing`.
    async fn fetch_tree(&self, reference: &Reference) -> Result<ManifestTree, CopyError> {
        self.fetch_tree_at(reference, 0).await
    }

    fn fetch_tree_at<'a>(
        &'a self,
        reference: &'a Reference,
        depth: usize,
    ) -> futures::future::BoxFuture<'a, Result<ManifestTree, CopyError>> {
        Box::pin(async move {
            let client = self.client(reference.repository.registry())?;
            let manifest = match client.manifest_get(reference).await {
                Err(e) if depth == 0 && matches!(e.kind, ErrorKind::NotFound(_)) => {
                    return Err(CopyError::SourceMissing(reference.clone()))
                }
                other => other?,
            };
            let bad = |message: String| CopyError::BadManifest {
                reference: reference.to_string(),
                message,
            };
            let references = parse_references(&manifest).map_err(bad)?;
            let mut children = Vec::new();
            if media_types::is_index(&manifest.media_type) {
                if depth >= MAX_DEPTH {
                    return Err(bad(format!("indexes nested deeper than {MAX_DEPTH}")));
                }
                let child_refs: Vec<Reference> = references
                    .children
                    .iter()
                    .map(|child| {
                        reference
                            .repository
                            .at(Locator::Digest(child.digest.clone()))
                    })
                    .collect();
                children = futures::future::try_join_all(
                    child_refs
                        .iter()
                        .map(|child| self.fetch_tree_at(child, depth + 1)),
                )
                .await?;
            }
            Ok(ManifestTree {
                manifest,
                blobs: references.blobs,
                children,
            })
        })
    }

    /// Applies the platform filter: `None` when nothing matches.
    async fn filter(
        &self,
        tree: ManifestTree,
        source: &Reference,
        filter: &PlatformFilter,
    ) -> Result<Option<ManifestTree>, CopyError> {
        if filter.is_empty() {
            return Ok(Some(tree));
        }
        if !media_types::is_index(&tree.manifest.media_type) {
            let platform = self.image_platform(&tree, &source.repository).await?;
            return Ok(platform.is_none_or(|p| filter.matches(&p)).then_some(tree));
        }
        let index: Value =
            serde_json::from_slice(&tree.manifest.bytes).map_err(|e| CopyError::BadManifest {
                reference: source.to_string(),
                message: e.to_string(),
            })?;
        let entries = index["manifests"].as_array().cloned().unwrap_or_default();
        let keep: Vec<bool> = entries
            .iter()
            .map(|e| filter.matches(&Platform::from_json(&e["platform"])))
            .collect();
        if !keep.contains(&true) {
            return Ok(None);
        }
        if !keep.contains(&false) {
            return Ok(Some(tree));
        }
        let mut rebuilt = index;
        let mut flags = keep.iter();
        if let Some(list) = rebuilt["manifests"].as_array_mut() {
            list.retain(|_| *flags.next().unwrap_or(&false));
        }
        let bytes = Bytes::from(serde_json::to_vec(&rebuilt).expect("a JSON value serialises"));
        let mut flags = keep.iter();
        let children = tree
            .children
            .into_iter()
            .filter(|_| *flags.next().unwrap_or(&false))
            .collect();
        let digest = Digest::sha256(&bytes);
        Ok(Some(ManifestTree {
            manifest: Manifest {
                bytes,
                media_type: tree.manifest.media_type,
                digest,
            },
            blobs: Vec::new(),
            children,
        }))
    }

    /// A single image's platform: from its config blob, or schema 1's `architecture`.
    async fn image_platform(
        &self,
        tree: &ManifestTree,
        repository: &Repository,
    ) -> Result<Option<Platform>, CopyError> {
        let manifest: Value = serde_json::from_slice(&tree.manifest.bytes).unwrap_or(Value::Null);
        if media_types::is_schema1(&tree.manifest.media_type) {
            // Schema 1 has no os; image-syncer's --os does not apply to it either.
            return Ok(manifest["architecture"].as_str().map(|arch| Platform {
                architecture: arch.to_string(),
                ..Platform::default()
            }));
        }
        let Some(config) = manifest["config"]["digest"]
            .as_str()
            .and_then(|d| d.parse::<Digest>().ok())
        else {
            return Ok(None);
        };
        let client = self.client(repository.registry())?;
        let blob = client.blob_get(repository, &config).await?;
        let bytes: Vec<u8> = blob
            .chunks
            .try_fold(Vec::new(), |mut acc, chunk| async move {
                acc.extend_from_slice(&chunk);
                Ok(acc)
            })
            .await?;
        if bytes.len() > MAX_CONFIG_BYTES {
            return Ok(None);
        }
        let config: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(config
            .get("architecture")
            .map(|_| Platform::from_json(&config)))
    }

    /// Pushes the tree to every target: blobs, then children, then the manifest itself.
    async fn push_to(
        &self,
        tree: &ManifestTree,
        source: &Repository,
        targets: &[Reference],
        force: bool,
        report: &mut ImageReport,
    ) -> Result<(), CopyError> {
        for target in targets {
            self.push_blobs(tree, source, &target.repository, report)
                .await?;
            self.push_children(tree, &target.repository, force, report)
                .await?;
            let client = self.client(target.repository.registry())?;
            self.put_manifest(&client, target, &tree.manifest, report)
                .await?;
        }
        Ok(())
    }

    /// Every blob of the tree (of all its platforms) into `target` at once, so the transfer
    /// permits see them all and can start the largest first.
    async fn push_blobs(
        &self,
        tree: &ManifestTree,
        source: &Repository,
        target: &Repository,
        report: &mut ImageReport,
    ) -> Result<(), CopyError> {
        let mut blobs = Vec::new();
        tree.collect_blobs(&mut blobs);
        let outcomes =
            futures::future::join_all(blobs.iter().map(|blob| self.blob(source, target, blob)))
                .await;
        for outcome in outcomes {
            match outcome? {
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

    /// Whether `target` was found not to exist, recently enough that only what this copier
    /// put there since can be in it: blobs and manifests need no HEAD to know they are
    /// missing. Asked once per repository; an error just means "not known".
    async fn known_absent(&self, target: &Repository) -> bool {
        let cell = cell_for(&self.absent, target.clone());
        let found = cell
            .get_or_init(|| async {
                let client = self.client(target.registry()).ok()?;
                match client.repository_absent(target).await {
                    Ok(true) => Some(Instant::now()),
                    Ok(false) => None,
                    Err(error) => {
                        tracing::debug!(%error, "cannot tell whether the repository exists");
                        None
                    }
                }
            })
            .await;
        found.is_some_and(|at| at.elapsed() < ABSENT_TRUSTED_FOR)
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

    /// One blob into `target`, transferred at most once at a time per target repository.
    async fn blob(
        &self,
        source: &Repository,
        target: &Repository,
        blob: &BlobRef,
    ) -> Result<BlobOutcome, CopyError> {
        let key = (target.clone(), blob.digest.clone());
        let cell = cell_for(&self.in_flight, key.clone());
        let mut first = false;
        let outcome = cell
            .get_or_init(|| {
                first = true;
                self.place(source, target, blob)
            })
            .await
            .clone();
        if outcome.is_err() {
            // A failed transfer must not be remembered: the next round tries again.
            self.in_flight
                .lock()
                .expect("in-flight map poisoned")
                .remove(&key);
        }
        match outcome {
            Ok(BlobOutcome::Copied(_)) if !first => Ok(BlobOutcome::Existing),
            other => other,
        }
    }

    /// Puts a blob into `target`. From a source on the same registry it is mounted (or
    /// copied when the registry declines). Otherwise the first placement of a digest on the
    /// target registry transfers it, and every later one, in another repository, mounts it
    /// from there: a base layer shared by many images crosses the network once.
    async fn place(
        &self,
        source: &Repository,
        target: &Repository,
        blob: &BlobRef,
    ) -> Result<BlobOutcome, CopyError> {
        if source.registry() == target.registry() {
            return self.blob_with_retries(source, target, blob, None).await;
        }
        let cell = cell_for(
            &self.placements,
            (target.registry().to_string(), blob.digest.clone()),
        );
        let mut transferred = None;
        let placed = cell
            .get_or_try_init(|| async {
                let outcome = self.blob_with_retries(source, target, blob, None).await;
                let placed = outcome
                    .as_ref()
                    .map(|_| target.clone())
                    .map_err(Clone::clone);
                transferred = Some(outcome);
                placed
            })
            .await;
        if let Some(outcome) = transferred {
            return outcome;
        }
        match placed {
            Ok(placed) if placed != target => {
                let placed = placed.clone();
                self.blob_with_retries(source, target, blob, Some(&placed))
                    .await
            }
            Ok(_) => Ok(BlobOutcome::Existing),
            Err(error) => Err(error),
        }
    }

    async fn blob_with_retries(
        &self,
        source: &Repository,
        target: &Repository,
        blob: &BlobRef,
        mount_from: Option<&Repository>,
    ) -> Result<BlobOutcome, CopyError> {
        let size = blob.size.unwrap_or(u64::MAX);
        let lane = if size < SMALL_BLOB {
            &self.small_transfers
        } else {
            &self.transfers
        };
        let _permit = lane.acquire(size).await;
        let mut attempt = 1;
        loop {
            if self.is_stopped() {
                return Err(CopyError::Interrupted);
            }
            match self.transfer(source, target, blob, mount_from).await {
                Err(CopyError::Registry(e)) if e.kind.is_transient() && attempt < BLOB_ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "blob transfer failed; retrying");
                    tokio::time::sleep(round_backoff(attempt) / 4).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// HEAD (unless the repository is known absent), then mount (from `mount_from`, or from
    /// the source on the same registry) or stream the blob.
    async fn transfer(
        &self,
        source: &Repository,
        target: &Repository,
        blob: &BlobRef,
        mount_from: Option<&Repository>,
    ) -> Result<BlobOutcome, CopyError> {
        let target_client = self.client(target.registry())?;
        if !self.known_absent(target).await
            && target_client
                .blob_head(target, &blob.digest, Actions::PullPush)
                .await?
                .is_some()
        {
            return Ok(BlobOutcome::Existing);
        }
        let same_registry = source.registry() == target.registry() && source != target;
        let mount = mount_from
            .or(same_registry.then_some(source))
            .map(|from| (&blob.digest, from));
        let session = match target_client.upload_start(target, mount).await? {
            UploadStart::Mounted => return Ok(BlobOutcome::Mounted),
            UploadStart::Session(session) => session,
        };
        let source_client = self.client(source.registry())?;
        let stream = source_client.blob_get(source, &blob.digest).await?;
        let expected_size = blob.size.or(stream.size);
        let started = Instant::now();
        let verifier = Arc::new(Mutex::new(Verifier::new(&blob.digest)));
        let progress = self.progress.clone();
        let tap = verifier.clone();
        let checked = stream
            .chunks
            .map_ok(move |chunk| {
                tap.lock().expect("verifier poisoned").update(&chunk);
                progress.bytes_transferred(chunk.len() as u64);
                chunk
            })
            .chain(stream::once({
                let verifier = verifier.clone();
                let digest = blob.digest.clone();
                async move {
                    verifier
                        .lock()
                        .expect("verifier poisoned")
                        .finish(&digest, expected_size)
                }
            }))
            .try_filter(|chunk| futures::future::ready(!chunk.is_empty()))
            .boxed();
        let chunk_size = self.options.chunk_size.or(session.min_chunk);
        let result = match chunk_size {
            Some(size) => {
                target_client
                    .upload_chunked(target, session, &blob.digest, size, checked)
                    .await
            }
            None => {
                let body = reqwest::Body::wrap_stream(checked);
                target_client
                    .upload_put(target, session, &blob.digest, expected_size, body)
                    .await
            }
        };
        // A mismatch seen while streaming explains any upload error that followed it.
        let verifier = verifier.lock().expect("verifier poisoned");
        if let Some((expected, actual)) = &verifier.mismatch {
            return Err(CopyError::BlobMismatch {
                source_repo: source.to_string(),
                digest: blob.digest.clone(),
                expected: expected.clone(),
                actual: actual.clone(),
            });
        }
        result?;
        tracing::debug!(
            digest = %blob.digest,
            bytes = verifier.bytes,
            chunks = verifier.chunks,
            ms = started.elapsed().as_millis() as u64,
            "blob copied"
        );
        Ok(BlobOutcome::Copied(verifier.bytes))
    }
}

/// The once-cell for `key`, created empty on first use: every caller asking for the same
/// key shares one piece of work.
fn cell_for<K: Eq + std::hash::Hash, V>(
    map: &Mutex<HashMap<K, Arc<OnceCell<V>>>>,
    key: K,
) -> Arc<OnceCell<V>> {
    map.lock()
        .expect("cell map poisoned")
        .entry(key)
        .or_default()
        .clone()
}

/// Hashes and counts a blob as it streams past.
struct Verifier {
    hasher: Hasher,
    bytes: u64,
    chunks: u64,
    mismatch: Option<(String, String)>,
}

enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Verifier {
    fn new(digest: &Digest) -> Self {
        let hasher = match digest.algorithm() {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        };
        Verifier {
            hasher,
            bytes: 0,
            chunks: 0,
            mismatch: None,
        }
    }

    fn update(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        self.chunks += 1;
        match &mut self.hasher {
            Hasher::Sha256(h) => h.update(chunk),
            Hasher::Sha512(h) => h.update(chunk),
        }
    }

    /// At the end of the stream: an empty chunk if all is well, else an error that aborts
    /// the upload before the registry can commit it.
    fn finish(&mut self, digest: &Digest, size: Option<u64>) -> Result<Bytes, RegistryError> {
        let actual = match std::mem::replace(&mut self.hasher, Hasher::Sha256(sha2::Sha256::new()))
        {
            Hasher::Sha256(h) => format!("sha256:{}", hex(&h.finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", hex(&h.finalize())),
        };
        if let Some(size) = size.filter(|s| *s != self.bytes) {
            self.mismatch = Some((format!("{size} bytes"), format!("{} bytes", self.bytes)));
        } else if actual != digest.as_str() {
            self.mismatch = Some((digest.to_string(), actual));
        }
        match &self.mismatch {
            None => Ok(Bytes::new()),
            Some((expected, actual)) => Err(RegistryError::new(
                format!("verify blob {digest}"),
                ErrorKind::Protocol(format!("expected {expected}, received {actual}")),
            )),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a manifest references.
struct References {
    blobs: Vec<BlobRef>,
    children: Vec<BlobRef>,
}

/// Blobs (config, layers; schema 1 `fsLayers`) or child manifests (index entries).
/// Non-distributable (foreign) layers are not copied: registries do not hold them.
fn parse_references(manifest: &Manifest) -> Result<References, String> {
    let value: Value =
        serde_json::from_slice(&manifest.bytes).map_err(|e| format!("not JSON: {e}"))?;
    let descriptor = |d: &Value| -> Result<Option<BlobRef>, String> {
        let media_type = d["mediaType"].as_str().unwrap_or_default();
        if media_type.contains("foreign") || media_type.contains("nondistributable") {
            return Ok(None);
        }
        let digest = d["digest"]
            .as_str()
            .ok_or("descriptor without digest")?
            .parse::<Digest>()
            .map_err(|e| e.to_string())?;
        Ok(Some(BlobRef {
            digest,
            size: d["size"].as_u64(),
        }))
    };
    let list = |key: &str| -> Result<Vec<BlobRef>, String> {
        value[key]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(descriptor)
                    .filter_map(Result::transpose)
                    .collect()
            })
            .unwrap_or(Ok(Vec::new()))
    };
    if media_types::is_index(&manifest.media_type) {
        return Ok(References {
            blobs: Vec::new(),
            children: list("manifests")?,
        });
    }
    let mut blobs = Vec::new();
    if media_types::is_schema1(&manifest.media_type) {
        for layer in value["fsLayers"].as_array().into_iter().flatten() {
            let digest = layer["blobSum"]
                .as_str()
                .ok_or("fsLayer without blobSum")?
                .parse::<Digest>()
                .map_err(|e| e.to_string())?;
            blobs.push(BlobRef { digest, size: None });
        }
    } else {
        if let Some(config) = descriptor(&value["config"])? {
            blobs.push(config);
        }
        blobs.extend(list("layers")?);
    }
    // The same layer twice in one image is copied once.
    let mut seen = std::collections::HashSet::new();
    blobs.retain(|b| seen.insert(b.digest.clone()));
    Ok(References {
        blobs,
        children: Vec::new(),
    })
}

/// Backoff between rounds of image retries: 1 s, 2 s, 4 s … capped at 30 s, with jitter.
fn round_backoff(round: u32) -> Duration {
    crate::backoff::jittered(
        Duration::from_secs(1),
        round.saturating_sub(1),
        Duration::from_secs(30),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_of_each_manifest_kind() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let image = Manifest {
            bytes: Bytes::from(format!(
                r#"{{"config":{{"digest":"{}","size":1}},"layers":[{{"digest":"{}","size":2}},{{"digest":"{}","size":2}},{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{}"}}]}}"#,
                d('a'),
                d('b'),
                d('b'),
                d('c')
            )),
            media_type: media_types::DOCKER_MANIFEST.into(),
            digest: Digest::sha256(b""),
        };
        let refs = parse_references(&image).unwrap();
        assert_eq!(refs.blobs.len(), 2);
        let schema1 = Manifest {
            bytes: Bytes::from(format!(
                r#"{{"schemaVersion":1,"fsLayers":[{{"blobSum":"{}"}}]}}"#,
                d('e')
            )),
            media_type: media_types::DOCKER_SCHEMA1_SIGNED.into(),
            digest: Digest::sha256(b""),
        };
        assert_eq!(
            parse_references(&schema1).unwrap().blobs[0]
                .digest
                .to_string(),
            d('e')
        );
    }
}
