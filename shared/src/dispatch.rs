//! Dispatch: what the planner Lambda and `ferry plan --queue-url` do. Resolves the rules
//! (`plan`), HEADs each image's targets to drop those already in sync, and sends one job per
//! remaining image to the queue while later images are still being checked, so the
//! registries and the queue work at once. Resolving is `plan`'s; the job's shape is `job`'s.

use std::sync::Arc;

use futures::channel::mpsc;
use futures::stream::{self, StreamExt};
use futures::SinkExt;
use serde::Serialize;

use crate::error::HasKind;
use crate::image::{stale, ImageOptions, PlannedImage};
use crate::job::{new_plan_id, Job};
use crate::plan::{head_source, resolve, PlanError, PlanOptions, SourceHeads};
use crate::queue::{Queue, QueueError, SQS_MAX_BATCH};
use crate::reference::{Digest, Reference};
use crate::registry::{Actions, ManifestHead, Registries, RegistryError};
use crate::report::Failure;
use crate::rules::Rule;

/// What the planner is asked to do beyond resolving the rules.
#[derive(Debug, Clone, Default)]
pub struct DispatchOptions {
    /// Carried by every job. `force` enqueues every image, even those already in sync, and
    /// asks copiers to push again.
    pub image: ImageOptions,
    /// Registry requests kept in flight while resolving and checking targets.
    pub concurrency: usize,
}

/// What a planner run did: the planner Lambda's answer and `ferry plan --queue-url`'s summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DispatchSummary {
    pub plan_id: String,
    pub rules: usize,
    /// Source images (tags or digests) the rules selected.
    pub tags_seen: usize,
    pub jobs_enqueued: usize,
    pub already_in_sync: usize,
    /// Rules that could not be resolved and target checks that failed, one each.
    pub errors: Vec<Failure>,
}

/// Resolves `rules`, drops the images every target already has (unless forced; a platform
/// filter rewrites indexes, so then digests cannot be compared and every image goes), and
/// enqueues one job per remaining image with only its stale targets. Jobs are sent while
/// later images are still being checked, so the registries and the queue work at once.
pub async fn dispatch(
    rules: &[Rule],
    registries: &Arc<Registries>,
    queue: &dyn Queue,
    options: &DispatchOptions,
) -> Result<DispatchSummary, QueueError> {
    let concurrency = options.concurrency.max(1);
    let started = std::time::Instant::now();
    let plan = resolve(
        rules,
        registries,
        &PlanOptions {
            concurrency,
            source_heads: SourceHeads::Named,
        },
    )
    .await;
    let mut summary = DispatchSummary {
        plan_id: new_plan_id(),
        rules: rules.len(),
        tags_seen: plan.images.len(),
        errors: plan.failures.iter().map(Failure::of).collect(),
        ..DispatchSummary::default()
    };
    for rule in &plan.empty_rules {
        tracing::warn!(rule = %rule, "rule selects no image");
    }
    let compare = !options.image.force && options.image.platforms.is_empty();
    let (jobs, ready) = mpsc::channel::<Job>(JOBS_AHEAD);
    let plan_id = summary.plan_id.clone();
    let check = async move {
        let mut jobs = jobs;
        let mut outcome = CheckOutcome::default();
        let mut checked = stream::iter(plan.images)
            .map(|image| async move {
                let stale = stale_targets_of(&image, compare, registries).await;
                (image, stale)
            })
            .buffer_unordered(concurrency);
        while let Some((mut image, stale)) = checked.next().await {
            match stale {
                Ok(Staleness::InSync) => {
                    outcome.in_sync += 1;
                    continue;
                }
                Ok(Staleness::Stale { targets, digest }) => {
                    image.targets = targets;
                    image.digest = image.digest.or(digest);
                }
                Err(CheckError::SourceGone(error)) => {
                    outcome.errors.push(Failure::of(&error));
                    continue;
                }
                // The copier checks again and retries; the job still goes.
                Err(CheckError::Registry(error)) => {
                    outcome.errors.push(Failure {
                        kind: error.kind(),
                        message: format!("{}: {error}", image.source),
                    });
                }
            }
            let job = Job::from_planned(&image, &plan_id, &options.image);
            // The sender stops only when the queue failed; its error is reported.
            if jobs.send(job).await.is_err() {
                break;
            }
        }
        outcome.checked_at = started.elapsed();
        outcome
    };
    let send = async move {
        let mut sent = 0;
        let mut batches = ready
            .chunks(SQS_MAX_BATCH)
            .map(|batch| async move { queue.send(&batch).await })
            .buffer_unordered(BATCHES_IN_FLIGHT);
        while let Some(result) = batches.next().await {
            sent += result?.sent;
        }
        Ok::<usize, QueueError>(sent)
    };
    let (outcome, sent) = futures::join!(check, send);
    summary.jobs_enqueued = sent?;
    summary.already_in_sync = outcome.in_sync;
    summary.errors.extend(outcome.errors);
    tracing::info!(
        plan_id = %summary.plan_id,
        resolve_and_check_ms = outcome.checked_at.as_millis() as u64,
        enqueue_ms = (started.elapsed().saturating_sub(outcome.checked_at)).as_millis() as u64,
        jobs = summary.jobs_enqueued,
        "planned"
    );
    Ok(summary)
}

/// Jobs checked but not yet sent, at most.
const JOBS_AHEAD: usize = 1000;
/// SendMessageBatch calls in flight while checking goes on.
const BATCHES_IN_FLIGHT: usize = 8;

#[derive(Default)]
struct CheckOutcome {
    in_sync: usize,
    errors: Vec<Failure>,
    checked_at: std::time::Duration,
}

/// What checking an image's targets found.
enum Staleness {
    InSync,
    /// These targets need the image; `digest` is the source's, when it had to be HEADed.
    Stale {
        targets: Vec<Reference>,
        digest: Option<Digest>,
    },
}

enum CheckError {
    /// The source was listed, but is gone: no job.
    SourceGone(PlanError),
    Registry(RegistryError),
}

impl From<RegistryError> for CheckError {
    fn from(error: RegistryError) -> Self {
        CheckError::Registry(error)
    }
}

/// Which of an image's targets lack it. A source whose digest is known is compared against
/// the targets' HEADs. A listed tag was not HEADed: the targets are HEADed first, and when
/// none has the tag the job goes without a source request at all (a first copy of a large
/// repository costs one HEAD per tag); otherwise the source is HEADed to compare.
async fn stale_targets_of(
    image: &PlannedImage,
    compare: bool,
    registries: &Registries,
) -> Result<Staleness, CheckError> {
    if !compare {
        return Ok(Staleness::Stale {
            targets: image.targets.clone(),
            digest: None,
        });
    }
    let in_flight = image.targets.len();
    let heads = registries
        .manifest_heads(&image.targets, Actions::Pull, in_flight)
        .await?;
    let digest = match &image.digest {
        Some(digest) => digest.clone(),
        None if heads.iter().all(Option::is_none) => {
            return Ok(Staleness::Stale {
                targets: image.targets.clone(),
                digest: None,
            })
        }
        None => match head_source(&image.source, registries).await {
            Ok(Some(digest)) => digest,
            Ok(None) => {
                return Ok(Staleness::Stale {
                    targets: image.targets.clone(),
                    digest: None,
                })
            }
            Err(PlanError::Registry(error)) => return Err(error.into()),
            Err(gone) => return Err(CheckError::SourceGone(gone)),
        },
    };
    let targets = stale(
        &image.targets,
        heads.iter().map(ManifestHead::digest_of),
        &digest,
    );
    Ok(if targets.is_empty() {
        Staleness::InSync
    } else {
        Staleness::Stale {
            targets,
            digest: Some(digest),
        }
    })
}
