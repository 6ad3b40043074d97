//! Planning: resolving validated rules against the live source registries into one
//! `PlannedImage` per source image (a tag or digest) with every target it goes to.
//!
//! Tag lists come from `tags/list`. Sources are HEAD-checked (which spends no pull quota) as
//! `SourceHeads` says: a tag named in a rule but missing from the registry is reported here,
//! with its rule, and the digest seen is recorded. A rule that cannot be resolved is a
//! failure of its own; the other rules still resolve. `dispatch` then checks the targets and
//! enqueues a job per image some target lacks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use futures::channel::mpsc;
use futures::stream::{self, StreamExt};
use futures::SinkExt;
use thiserror::Error;

use serde::Serialize;

use crate::job::{new_plan_id, Job};
use crate::queue::{Queue, QueueError};
use crate::reference::{Digest, Locator, Reference, Repository};
use crate::registry::{stale, Actions, Registries, RegistryError};
use crate::rules::{Naming, Rule, Selector};

/// One source image and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedImage {
    pub source: Reference,
    /// The source manifest digest seen while planning, when the registry told it.
    pub digest: Option<Digest>,
    pub targets: Vec<Reference>,
}

/// A rule that could not be resolved.
#[derive(Debug, Error)]
#[error("{}: rule {rule:?}: {error}", file.display())]
pub struct RuleFailure {
    pub file: PathBuf,
    pub rule: String,
    pub error: PlanError,
}

/// Why a rule could not be resolved.
#[derive(Debug, Error)]
pub enum PlanError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{0} does not exist")]
    Missing(Reference),
}

/// The resolved plan, sorted by source; targets sorted within each image.
#[derive(Debug, Default)]
pub struct Plan {
    pub images: Vec<PlannedImage>,
    pub failures: Vec<RuleFailure>,
    /// Rules that resolved to no image at all (empty repository, regex matching nothing).
    pub empty_rules: Vec<String>,
}

impl Plan {
    /// Every (source, target) pair, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&PlannedImage, &Reference)> {
        self.images
            .iter()
            .flat_map(|image| image.targets.iter().map(move |t| (image, t)))
    }
}

/// How planning talks to registries.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Registry requests kept in flight.
    pub concurrency: usize,
    /// Which sources are HEADed while resolving.
    pub source_heads: SourceHeads,
}

/// Registry requests kept in flight while planning, unless configured otherwise.
pub const DEFAULT_CONCURRENCY: usize = 32;

/// Which sources `resolve` HEADs (which spends no pull quota).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceHeads {
    /// Every one: `ferry plan` prints each image with its digest.
    All,
    /// Those a rule names by tag or digest, so one that does not exist is reported with its
    /// rule; tags just listed exist, and `dispatch` HEADs them only if it must.
    Named,
    /// None: `ferry sync`, whose copier HEADs each source itself when it must.
    None,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            concurrency: DEFAULT_CONCURRENCY,
            source_heads: SourceHeads::All,
        }
    }
}

/// A source image one rule selects, with the targets that rule gives it.
struct Selected {
    rule: usize,
    source: Reference,
    targets: Vec<Reference>,
    /// Named by the rule (a tag or digest), not found by listing tags.
    named: bool,
}

/// Resolves `rules` against their source registries.
pub async fn resolve(rules: &[Rule], registries: &Arc<Registries>, options: &PlanOptions) -> Plan {
    let concurrency = options.concurrency.max(1);
    let source_heads = options.source_heads;
    let mut plan = Plan::default();
    let listed: Vec<(usize, Result<Vec<Selected>, PlanError>)> =
        stream::iter(rules.iter().enumerate())
            .map(|(i, rule)| async move { (i, select(i, rule, registries).await) })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    let mut selected = Vec::new();
    let mut failed_rules = BTreeSet::new();
    for (i, result) in listed {
        match result {
            Ok(images) if images.is_empty() => plan.empty_rules.push(rules[i].text.clone()),
            Ok(images) => selected.extend(images),
            Err(error) => {
                failed_rules.insert(i);
                plan.failures.push(failure(&rules[i], error));
            }
        }
    }
    let checked: Vec<(Selected, Result<Option<Digest>, PlanError>)> = stream::iter(selected)
        .map(|s| async move {
            let head = match source_heads {
                SourceHeads::All => true,
                SourceHeads::Named => s.named,
                SourceHeads::None => false,
            };
            let digest = if head {
                head_source(&s.source, registries).await
            } else {
                Ok(None)
            };
            (s, digest)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut images: BTreeMap<Reference, (Option<Digest>, BTreeSet<Reference>)> = BTreeMap::new();
    for (s, result) in checked {
        match result {
            Ok(digest) => {
                let entry = images.entry(s.source).or_default();
                entry.0 = entry.0.take().or(digest);
                entry.1.extend(s.targets);
            }
            Err(error) => {
                failed_rules.insert(s.rule);
                plan.failures.push(failure(&rules[s.rule], error));
            }
        }
    }
    plan.images = images
        .into_iter()
        .map(|(source, (digest, targets))| PlannedImage {
            source,
            digest,
            targets: targets.into_iter().collect(),
        })
        .collect();
    plan.failures.sort_by(|a, b| a.rule.cmp(&b.rule));
    plan.empty_rules.sort();
    plan
}

fn failure(rule: &Rule, error: PlanError) -> RuleFailure {
    RuleFailure {
        file: rule.file.clone(),
        rule: rule.text.clone(),
        error,
    }
}

/// The source images a rule selects (listing tags when it needs them) and their targets.
async fn select(
    index: usize,
    rule: &Rule,
    registries: &Registries,
) -> Result<Vec<Selected>, PlanError> {
    let named = matches!(rule.selector, Selector::Digest(_) | Selector::Tags(_));
    let sources: Vec<(usize, Locator)> = match &rule.selector {
        Selector::Digest(d) => vec![(0, Locator::Digest(d.clone()))],
        Selector::Tags(tags) => tags.iter().cloned().map(Locator::Tag).enumerate().collect(),
        Selector::All | Selector::Regex(_) => {
            let client = registries.client(rule.source.registry())?;
            let tags = client.tag_list(&rule.source).await?;
            let wanted = |t: &String| match &rule.selector {
                Selector::Regex(regex) => regex.is_match(t),
                _ => true,
            };
            tags.into_iter()
                .filter(wanted)
                .map(Locator::Tag)
                .enumerate()
                .collect()
        }
    };
    Ok(sources
        .into_iter()
        .map(|(position, locator)| Selected {
            rule: index,
            targets: rule
                .targets
                .iter()
                .map(|t| target_reference(&t.repository, &t.naming, position, &locator))
                .collect(),
            source: rule.source.at(locator),
            named,
        })
        .collect())
}

/// What the planner is asked to do beyond resolving the rules.
#[derive(Debug, Clone, Default)]
pub struct DispatchOptions {
    /// Raw `--os`/`--arch` entries, carried by every job.
    pub os: Vec<String>,
    pub arch: Vec<String>,
    /// Enqueue every image, even those already in sync, and ask copiers to push again.
    pub force: bool,
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
    /// Rules that could not be resolved and target checks that failed, one line each.
    pub errors: Vec<String>,
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
        errors: plan.failures.iter().map(ToString::to_string).collect(),
        ..DispatchSummary::default()
    };
    for rule in &plan.empty_rules {
        tracing::warn!(rule = %rule, "rule selects no image");
    }
    let compare = !options.force && options.os.is_empty() && options.arch.is_empty();
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
                    outcome.errors.push(error.to_string());
                    continue;
                }
                // The copier checks again and retries; the job still goes.
                Err(CheckError::Registry(error)) => {
                    outcome.errors.push(format!("{}: {error}", image.source));
                }
            }
            let job =
                Job::from_planned(&image, &plan_id, &options.os, &options.arch, options.force);
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
            .chunks(SQS_BATCH)
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
/// Messages per SendMessageBatch, SQS's maximum.
const SQS_BATCH: usize = 10;
/// SendMessageBatch calls in flight while checking goes on.
const BATCHES_IN_FLIGHT: usize = 8;

#[derive(Default)]
struct CheckOutcome {
    in_sync: usize,
    errors: Vec<String>,
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
    let targets = stale(&image.targets, &heads, &digest);
    Ok(if targets.is_empty() {
        Staleness::InSync
    } else {
        Staleness::Stale {
            targets,
            digest: Some(digest),
        }
    })
}

/// The target reference for the source at `position` of the rule's selection. Shared with
/// `webhook`, so a pushed image is named exactly as a planned one would be.
pub(crate) fn target_reference(
    repository: &Repository,
    naming: &Naming,
    position: usize,
    source: &Locator,
) -> Reference {
    let locator = match naming {
        Naming::Keep => source.clone(),
        // Validation guaranteed the counts match.
        Naming::Tags(tags) => Locator::Tag(tags[position].clone()),
        Naming::Digest(d) => Locator::Digest(d.clone()),
    };
    repository.at(locator)
}

/// The source's digest (`None` when the registry does not say); a missing source is an error.
async fn head_source(
    source: &Reference,
    registries: &Registries,
) -> Result<Option<Digest>, PlanError> {
    let client = registries.client(source.repository.registry())?;
    match client.manifest_head(source).await? {
        Some(head) => Ok(head.digest),
        None => Err(PlanError::Missing(source.clone())),
    }
}
