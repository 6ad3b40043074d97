//! Dispatch: what the planner Lambda and `ferry plan --queue-url` do, and what a worker does
//! with a plan job. Resolves the rules (`plan`), HEADs each image's targets to drop those
//! already in sync, and sends one copy job per remaining image to the queue while later
//! images are still being checked, so the registries and the queue work at once. Resolving
//! is `plan`'s; the jobs' shapes are `job`'s. A copy of a tag declared immutable to a target
//! that lists it is in sync without a HEAD on either side: one `tags/list` per target
//! repository instead, as the copier does (`target_tags`); only when the plan's listing of
//! its source shows a referrer tag that listing lacks is its source HEADed, for the referrer
//! check below.
//!
//! A migration larger than one invocation should carry fans out ([`FanOut`]): rather than
//! resolving and checking it all, the planner sends *plan jobs* to the same queue, each a
//! slice of the rules, and the workers receiving them run this same code on their slice
//! ([`expand`]). Two cuts, both bounded by the fan-out's threshold `T` (1,000 images unless
//! configured):
//!
//! - before any registry request, when the rules would cost more than `T` requests to
//!   resolve (each named tag or digest one HEAD, each listing at least one request): the
//!   rules are cut by source repository (one repository's rules stay together, so an image
//!   two rules select is still one copy job with both targets), a repository that lists
//!   tags alone in its plan job, named tags packed up to `T` a job;
//! - after resolving, when more than `T` images came out (a repository of 10,000 tags):
//!   the images are cut into plan jobs of `T`, each naming its tags (`listed`, so they are
//!   neither HEADed again nor cut again).
//!
//! So a plan job costs a worker at most a few listings or `T` images' checks, and no single
//! invocation plans the whole migration. The default `T` of 1,000: one invocation checks
//! 400–550 images a second against the benchmark's local registries, and perhaps 10 a
//! second against a distant, throttling one, which is still under two minutes for 1,000
//! images and far under Lambda's 15; below `T` a migration keeps the single-invocation path
//! and pays no queue round trip, above it the round trip is small next to the work.
//!
//! An image in sync may still lack referrers on its targets (a signature pushed since):
//! `ReferrerCheck` checks the referrer tags its repository's listing shows for its digest
//! (the plan's listing, or one made for the check, once per repository and plan), so an
//! image with none costs nothing more, and, at a source with the referrers API, asks it
//! once per image; it sends the job when a target lacks one. An index whose children may
//! have referrers of their own is checked once every image has been (see `referrers`).
//!
//! Expanding is idempotent: copy jobs go only for targets that lack the image, so a plan job
//! delivered again after its copies ran enqueues no copy job. (One delivered again whose
//! listing is too large sends its slices again, as plan jobs: a listing and no HEAD, and
//! their expansions find everything in sync.)

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::stream::{self, StreamExt};
use futures::SinkExt;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::env::Env;
use crate::error::HasKind;
use crate::image::{stale, ImageOptions, PlannedImage};
use crate::job::{new_plan_id, Job, PlanJob};
use crate::plan::{head_source, resolve, PlanError, PlanOptions, SourceHeads};
use crate::queue::{Queue, QueueError, SQS_MAX_BATCH, SQS_MAX_PAYLOAD};
use crate::reference::{Digest, Locator, Reference, Repository};
use crate::registry::{Actions, ManifestHead, Registries, RegistryError};
use crate::report::Failure;
use crate::rules::{ImmutableTags, Naming, Rule, Selector};
use crate::target_tags::ImmutableCheck;

mod referrers;
use referrers::{ReferrerCheck, ReferrerTags};

/// The images (or resolving requests) above which planning fans out, unless configured.
pub const FAN_OUT_IMAGES: usize = 1000;

/// A plan job's body is kept under this, well inside SQS's 256 KiB.
const PLAN_BODY_BUDGET: usize = SQS_MAX_PAYLOAD * 3 / 4;

/// When planning fans out into plan jobs (`--fan-out`, `FERRY_FAN_OUT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FanOut {
    /// Above [`FAN_OUT_IMAGES`].
    Auto,
    /// Always: the planner only cuts the rules into plan jobs, of [`FAN_OUT_IMAGES`] each.
    Always,
    /// Never: one invocation resolves, checks and enqueues everything (as before fan-out).
    #[default]
    Never,
    /// Above this many images, in plan jobs of this many.
    Above(usize),
}

impl FanOut {
    /// `(threshold, images per plan job)`, or `None` when planning never fans out.
    fn bounds(self) -> Option<(usize, usize)> {
        match self {
            FanOut::Auto => Some((FAN_OUT_IMAGES, FAN_OUT_IMAGES)),
            FanOut::Always => Some((0, FAN_OUT_IMAGES)),
            FanOut::Never => None,
            FanOut::Above(n) => Some((n, n.max(1))),
        }
    }
}

/// `auto`, `always`, `never` or a positive number of images.
impl FromStr for FanOut {
    type Err = String;

    fn from_str(text: &str) -> Result<FanOut, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(FanOut::Auto),
            "always" => Ok(FanOut::Always),
            "never" => Ok(FanOut::Never),
            number => match number.parse::<usize>() {
                Ok(n) if n > 0 => Ok(FanOut::Above(n)),
                _ => Err(format!(
                    "fan-out {:?} is none of auto, always, never or a positive number of images",
                    crate::error::truncate(text, 40)
                )),
            },
        }
    }
}

/// The variable that sets the functions' fan-out: `auto` (the default), `always`, `never`
/// or a number of images.
pub const FAN_OUT_VARIABLE: &str = "FERRY_FAN_OUT";

/// The functions' fan-out from [`FAN_OUT_VARIABLE`]; `auto` when unset.
pub fn fan_out_from_env(env: &dyn Env) -> Result<FanOut, String> {
    match env.var(FAN_OUT_VARIABLE) {
        None => Ok(FanOut::Auto),
        Some(text) => text
            .parse()
            .map_err(|e: String| format!("{FAN_OUT_VARIABLE}: {e}")),
    }
}

/// What the planner is asked to do beyond resolving the rules.
#[derive(Debug, Clone, Default)]
pub struct DispatchOptions {
    /// Carried by every job. `force` enqueues every image, even those already in sync, and
    /// asks copiers to push again.
    pub image: ImageOptions,
    /// Registry requests kept in flight while resolving and checking targets.
    pub concurrency: usize,
    /// When to send plan jobs instead of resolving everything here.
    pub fan_out: FanOut,
    /// Tags declared immutable: the run's pattern and the rules' (those of the migration at
    /// the planner; a worker expanding plan jobs gives its copier's, whose configured rules
    /// cover every slice). A copy of one to a target whose listing has the tag is in sync
    /// without a HEAD on either side, unless forced (see `targets_to_check`).
    pub immutable: ImmutableTags,
}

/// What a planner run did: the planner Lambda's answer and `ferry plan --queue-url`'s summary
/// (and a plan job's expansion, in the worker's log).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DispatchSummary {
    pub plan_id: String,
    pub rules: usize,
    /// Source images (tags or digests) the rules selected; 0 when the rules were cut into
    /// plan jobs before resolving.
    pub tags_seen: usize,
    /// Copy jobs sent.
    pub jobs_enqueued: usize,
    /// Plan jobs sent, for workers to expand into copy jobs.
    pub plan_jobs_enqueued: usize,
    pub already_in_sync: usize,
    /// Rules that could not be resolved and target checks that failed, one each.
    pub errors: Vec<Failure>,
}

/// Who is dispatching: the planner, with the whole migration, or a worker with a plan job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Planner,
    Expansion { listed: bool },
}

/// Resolves `rules`, drops the images every target already has (unless forced; a platform
/// filter rewrites indexes, so then digests cannot be compared and every image goes), and
/// enqueues one job per remaining image with only its stale targets, or, for a migration
/// above the fan-out threshold, plan jobs (see the module's comment).
pub async fn dispatch(
    rules: &[Rule],
    registries: &Arc<Registries>,
    queue: &dyn Queue,
    options: &DispatchOptions,
) -> Result<DispatchSummary, QueueError> {
    dispatch_as(
        Stage::Planner,
        rules,
        new_plan_id(),
        registries,
        queue,
        options,
    )
    .await
}

/// A plan job's part of the plan: its rules resolved and checked like the planner's, the
/// copy jobs (or, for a listing too large, plan jobs of its slices) sent to `queue` with
/// the job's plan id. `job` must have been validated, and its rules allowed, by the caller;
/// `options.image` is ignored for the job's own.
pub async fn expand(
    job: &PlanJob,
    rules: &[Rule],
    image: ImageOptions,
    registries: &Arc<Registries>,
    queue: &dyn Queue,
    options: &DispatchOptions,
) -> Result<DispatchSummary, QueueError> {
    let options = DispatchOptions {
        image,
        ..options.clone()
    };
    let stage = Stage::Expansion { listed: job.listed };
    dispatch_as(
        stage,
        rules,
        job.plan_id.clone(),
        registries,
        queue,
        &options,
    )
    .await
}

async fn dispatch_as(
    stage: Stage,
    rules: &[Rule],
    plan_id: String,
    registries: &Arc<Registries>,
    queue: &dyn Queue,
    options: &DispatchOptions,
) -> Result<DispatchSummary, QueueError> {
    let concurrency = options.concurrency.max(1);
    let started = std::time::Instant::now();
    let mut summary = DispatchSummary {
        plan_id,
        rules: rules.len(),
        ..DispatchSummary::default()
    };
    let bounds = options.fan_out.bounds();
    if let (Stage::Planner, Some((threshold, per_job))) = (stage, bounds) {
        if resolving_cost(rules) > threshold {
            let jobs = rule_slices(rules, per_job, &summary.plan_id, &options.image);
            summary.plan_jobs_enqueued = queue.send_plans(&jobs).await?.sent;
            log_planned(&summary, started.elapsed(), started.elapsed());
            return Ok(summary);
        }
    }
    let listed = stage == Stage::Expansion { listed: true };
    let immutable = ImmutableCheck {
        tags: options.immutable.clone(),
        force: options.image.force,
        ..ImmutableCheck::default()
    };
    let mut plan = resolve(
        rules,
        registries,
        &PlanOptions {
            concurrency,
            // Tags a listing found exist; the copy HEADs its source when it must.
            source_heads: if listed {
                SourceHeads::None
            } else {
                SourceHeads::Named
            },
            explain: false,
            referrers: options.image.referrers.enabled,
            immutable: immutable.clone(),
        },
    )
    .await;
    summary.tags_seen = plan.images.len();
    // Immutable tags every target lists: no target left, nothing to check or slice.
    plan.images.retain(|image| !image.targets.is_empty());
    summary.already_in_sync = summary.tags_seen - plan.images.len();
    summary.errors = plan.failures.iter().map(Failure::of).collect();
    if let Some(collision) = &plan.collision {
        // Bad input: no copy job for any of it.
        summary.errors.push(Failure::of(collision.as_ref()));
        log_planned(&summary, started.elapsed(), started.elapsed());
        return Ok(summary);
    }
    for rule in &plan.empty_rules {
        tracing::warn!(rule = %rule, "rule selects no image");
    }
    if let (false, Some((threshold, per_job))) = (listed, bounds) {
        if plan.images.len() > threshold {
            let jobs = image_slices(&plan.images, per_job, &summary.plan_id, &options.image);
            summary.plan_jobs_enqueued = queue.send_plans(&jobs).await?.sent;
            log_planned(&summary, started.elapsed(), started.elapsed());
            return Ok(summary);
        }
    }
    let referrer_tags = ReferrerTags::new(&plan.listings, &options.image);
    let referrers = ReferrerCheck::new(&referrer_tags);
    let (outcome, sent) = check_and_send(
        plan.images,
        &summary.plan_id,
        (registries, &referrers),
        queue,
        options,
        &immutable,
    )
    .await;
    summary.jobs_enqueued = sent?;
    summary.already_in_sync += outcome.in_sync;
    summary.errors.extend(outcome.errors);
    log_planned(&summary, outcome.checked_at, started.elapsed());
    Ok(summary)
}

fn log_planned(summary: &DispatchSummary, checked_at: Duration, elapsed: Duration) {
    tracing::info!(
        plan_id = %summary.plan_id,
        resolve_and_check_ms = checked_at.as_millis() as u64,
        enqueue_ms = elapsed.saturating_sub(checked_at).as_millis() as u64,
        jobs = summary.jobs_enqueued,
        plan_jobs = summary.plan_jobs_enqueued,
        "planned"
    );
}

/// Checks each image's targets and sends a copy job for each image some target lacks, while
/// later images are still being checked (the indexes `referrers` leaves for later, last).
async fn check_and_send(
    images: Vec<PlannedImage>,
    plan_id: &str,
    (registries, referrers): (&Arc<Registries>, &ReferrerCheck<'_>),
    queue: &dyn Queue,
    options: &DispatchOptions,
    immutable: &ImmutableCheck,
) -> (CheckOutcome, Result<usize, QueueError>) {
    let started = std::time::Instant::now();
    let concurrency = options.concurrency.max(1);
    let run = &options.image;
    let (jobs, ready) = mpsc::channel::<Job>(JOBS_AHEAD);
    let check = async move {
        let mut jobs = jobs;
        let mut outcome = CheckOutcome::default();
        let checked = stream::iter(images)
            .map(|mut image| async move {
                let own = image.rule_options.over(run);
                // Copies of immutable tags the targets list are done: no HEAD at all, unless
                // the listings show a referrer tag a target lacks.
                let targets = immutable
                    .targets_to_check(
                        &image.source,
                        &image.targets,
                        &image.rule_options,
                        registries,
                    )
                    .await;
                if targets.is_empty() {
                    if !own.referrers.enabled {
                        return (image, Ok(Staleness::InSync(None)));
                    }
                    let listed = &immutable.listed;
                    let wanted = &own.referrers;
                    return referrers
                        .immutable_behind(image, wanted, listed, registries)
                        .await;
                }
                image.targets = targets;
                let compare = !own.force && own.platforms.is_empty();
                let stale = stale_targets_of(&image, compare, registries).await;
                let stale = referrers
                    .check(&image, stale, &own.referrers, registries)
                    .await;
                (image, stale)
            })
            .buffer_unordered(concurrency)
            .chain(referrers.indexes_checked(registries, concurrency));
        let mut checked = std::pin::pin!(checked);
        while let Some((mut image, stale)) = checked.next().await {
            match stale {
                Ok(Staleness::InSync(_)) => {
                    outcome.in_sync += 1;
                    continue;
                }
                // Back from `indexes_checked`, after the others.
                Ok(Staleness::Later) => continue,
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
            let job = Job::from_planned(&image, plan_id, &options.image);
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
    futures::join!(check, send)
}

/// Registry requests resolving `rules` takes at least: one HEAD per named tag or digest,
/// one listing per rule that lists tags.
fn resolving_cost(rules: &[Rule]) -> usize {
    rules
        .iter()
        .map(|rule| match &rule.selector {
            Selector::Tags(tags) => tags.len(),
            Selector::Digest(_) | Selector::All | Selector::Regex(_) => 1,
        })
        .sum()
}

/// Plan jobs for `rules`, cut by source repository: a repository with a rule that lists
/// tags goes alone (with its other rules), named tags are packed `per_job` images a job,
/// a repository naming more cut by tag (each rule keeping the positions of its slice's tags,
/// so renamed targets still pair up).
fn rule_slices(
    rules: &[Rule],
    per_job: usize,
    plan_id: &str,
    image: &ImageOptions,
) -> Vec<PlanJob> {
    let mut by_repository: BTreeMap<&Repository, Vec<&Rule>> = BTreeMap::new();
    for rule in rules {
        by_repository.entry(&rule.source).or_default().push(rule);
    }
    let mut packer = Packer::new(per_job, plan_id, image, false);
    for group in by_repository.values() {
        if group.iter().any(|rule| rule.selector.lists()) {
            let mut entries = Vec::new();
            for rule in group {
                add_rule(&mut entries, rule, None);
            }
            for part in entries {
                packer.alone(part);
            }
            continue;
        }
        // The images this repository's rules name, in the order first named.
        let mut locators: Vec<Locator> = Vec::new();
        for rule in group {
            for locator in named(rule) {
                if !locators.contains(&locator) {
                    locators.push(locator);
                }
            }
        }
        for slice in locators.chunks(per_job) {
            let mut entries = Vec::new();
            for rule in group {
                add_rule(&mut entries, rule, Some(slice));
            }
            // Rarely more than one part: two long-form rules written alike (see `add_entry`).
            for (i, part) in entries.into_iter().enumerate() {
                if i == 0 {
                    let size = body_size(&part);
                    packer.add(part, slice.len(), size);
                } else {
                    packer.alone(part);
                }
            }
        }
    }
    packer.finish()
}

/// What a rule that names its images names and selects (its `tags:` filters applied), in
/// position order.
fn named(rule: &Rule) -> Vec<Locator> {
    match &rule.selector {
        Selector::Tags(_) => rule
            .select_from(&[])
            .into_iter()
            .map(|(_, tag)| Locator::Tag(tag))
            .collect(),
        Selector::Digest(digest) => vec![Locator::Digest(digest.clone())],
        Selector::All | Selector::Regex(_) => Vec::new(),
    }
}

/// Adds `rule` to a plan job's rules: whole, or (a rule naming tags) only the positions it
/// selects whose image is in `only`. A rule that lists tags is written as its source was, so
/// a worker can find the rule it came from; the others as normalised references. A long-form
/// rule keeps its keys (filters, platforms, force, …) as written, so the worker's selection
/// is the planner's.
fn add_rule(entries: &mut Vec<Map<String, Value>>, rule: &Rule, only: Option<&[Locator]>) {
    let (key, targets): (String, Vec<String>) = match &rule.selector {
        Selector::All | Selector::Regex(_) => (
            rule.text.clone(),
            rule.targets.iter().map(ToString::to_string).collect(),
        ),
        Selector::Digest(digest) => {
            if only.is_some_and(|o| !o.contains(&Locator::Digest(digest.clone()))) {
                return;
            }
            (
                rule.source.at(Locator::Digest(digest.clone())).to_string(),
                rule.targets.iter().map(ToString::to_string).collect(),
            )
        }
        Selector::Tags(tags) => {
            let positions: Vec<usize> = rule
                .select_from(&[])
                .into_iter()
                .map(|(i, _)| i)
                .filter(|&i| only.is_none_or(|o| o.contains(&Locator::Tag(tags[i].clone()))))
                .collect();
            if positions.is_empty() {
                return;
            }
            let pick = |list: &[String]| -> String {
                positions
                    .iter()
                    .map(|&i| list[i].as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let targets = rule
                .targets
                .iter()
                .map(|target| match &target.naming {
                    Naming::Tags(renamed) => format!("{}:{}", target.repository, pick(renamed)),
                    Naming::Keep | Naming::Digest(_) => target.to_string(),
                })
                .collect();
            (format!("{}:{}", rule.source, pick(tags)), targets)
        }
    };
    add_entry(entries, key, rule_value(targets, &rule.long_form));
}

/// A rule's value in an images map: its targets, or the long form with them as `to`.
fn rule_value(targets: Vec<String>, long_form: &Map<String, Value>) -> Value {
    let targets = Value::Array(targets.into_iter().map(Value::String).collect());
    if long_form.is_empty() {
        return targets;
    }
    let mut map = long_form.clone();
    map.insert("to".into(), targets);
    Value::Object(map)
}

/// Adds `source → value` to the first part that can take it: targets merge with an entry of
/// the same source, as a worker would; a long-form entry whose key another rule already
/// has goes to a later part (a plan job of its own), as one map cannot hold both.
fn add_entry(entries: &mut Vec<Map<String, Value>>, key: String, value: Value) {
    for part in entries.iter_mut() {
        if merge_entry(part, &key, &value) {
            return;
        }
    }
    let mut part = Map::new();
    part.insert(key, value);
    entries.push(part);
}

/// Puts `key → value` in `part` (merging target lists) if it fits there.
fn merge_entry(part: &mut Map<String, Value>, key: &str, value: &Value) -> bool {
    match (part.get_mut(key), value) {
        (None, _) => {
            part.insert(key.to_string(), value.clone());
            true
        }
        (Some(Value::Array(list)), Value::Array(more)) => {
            for target in more {
                if !list.contains(target) {
                    list.push(target.clone());
                }
            }
            true
        }
        (Some(existing), _) => existing == value,
    }
}

/// Plan jobs naming `images` (resolved, sorted by source), `per_job` a job: an image whose
/// targets keep its tag joins the others of its repository going to the same repositories
/// in one rule (`repo:t1,t2,… → [repos]`), any other is a rule of its own.
fn image_slices(
    images: &[PlannedImage],
    per_job: usize,
    plan_id: &str,
    image: &ImageOptions,
) -> Vec<PlanJob> {
    let mut packer = Packer::new(per_job, plan_id, image, true);
    for slice in images.chunks(per_job) {
        // Keyed by the rule options too (written as JSON), which travel as the long form.
        type Kept<'a> = BTreeMap<(&'a Repository, Vec<String>, String), Vec<String>>;
        let mut kept: Kept = BTreeMap::new();
        let mut entries = Vec::new();
        for planned in slice {
            let source = &planned.source;
            let options = planned.rule_options.long_form();
            let keeps = planned.targets.iter().all(|t| t.locator == source.locator);
            match (&source.locator, keeps) {
                (Locator::Tag(tag), true) => {
                    let repositories = planned
                        .targets
                        .iter()
                        .map(|t| t.repository.to_string())
                        .collect();
                    let options = Value::Object(options).to_string();
                    kept.entry((&source.repository, repositories, options))
                        .or_default()
                        .push(tag.clone());
                }
                _ => add_entry(
                    &mut entries,
                    source.to_string(),
                    rule_value(
                        planned.targets.iter().map(ToString::to_string).collect(),
                        &options,
                    ),
                ),
            }
        }
        for ((repository, targets, options), tags) in kept {
            let options = match serde_json::from_str(&options) {
                Ok(Value::Object(map)) => map,
                _ => Map::new(),
            };
            add_entry(
                &mut entries,
                format!("{repository}:{}", tags.join(",")),
                rule_value(targets, &options),
            );
        }
        // A job per slice, cut by size too: long names and many targets make a large body.
        for part in entries.into_iter().flat_map(split_by_size) {
            packer.alone(part);
        }
    }
    packer.finish()
}

/// `entries` in parts whose bodies stay under [`PLAN_BODY_BUDGET`]; an entry larger than
/// that alone is a part of its own (and SQS will refuse it, which is reported).
fn split_by_size(entries: Map<String, Value>) -> Vec<Map<String, Value>> {
    let mut parts = vec![Map::new()];
    let mut size = 0;
    for (key, value) in entries {
        let entry_size = key.len() + value.to_string().len() + 4;
        if size + entry_size > PLAN_BODY_BUDGET && !parts.last().is_some_and(Map::is_empty) {
            parts.push(Map::new());
            size = 0;
        }
        size += entry_size;
        parts.last_mut().expect("never empty").insert(key, value);
    }
    parts.retain(|part| !part.is_empty());
    parts
}

fn body_size(entries: &Map<String, Value>) -> usize {
    entries
        .iter()
        .map(|(key, value)| key.len() + value.to_string().len() + 4)
        .sum()
}

/// Packs rule entries into plan jobs of at most `per_job` images and
/// [`PLAN_BODY_BUDGET`] bytes.
struct Packer<'a> {
    per_job: usize,
    plan_id: &'a str,
    image: &'a ImageOptions,
    listed: bool,
    jobs: Vec<PlanJob>,
    open: Map<String, Value>,
    images: usize,
    size: usize,
}

impl<'a> Packer<'a> {
    fn new(per_job: usize, plan_id: &'a str, image: &'a ImageOptions, listed: bool) -> Self {
        Packer {
            per_job,
            plan_id,
            image,
            listed,
            jobs: Vec::new(),
            open: Map::new(),
            images: 0,
            size: 0,
        }
    }

    /// Entries that go in a plan job of their own.
    fn alone(&mut self, entries: Map<String, Value>) {
        self.jobs
            .push(PlanJob::new(entries, self.plan_id, self.image, self.listed));
    }

    fn add(&mut self, entries: Map<String, Value>, images: usize, size: usize) {
        let full = self.images + images > self.per_job || self.size + size > PLAN_BODY_BUDGET;
        if full && !self.open.is_empty() {
            self.close();
        }
        // The same source written by two slices merges, as a worker would; a long-form rule
        // another has written differently waits for the next job.
        let clashes = entries.iter().any(|(key, value)| {
            self.open
                .get(key)
                .is_some_and(|open| open != value && !(open.is_array() && value.is_array()))
        });
        if clashes {
            self.close();
        }
        for (key, value) in entries {
            merge_entry(&mut self.open, &key, &value);
        }
        self.images += images;
        self.size += size;
    }

    fn close(&mut self) {
        let entries = std::mem::take(&mut self.open);
        self.alone(entries);
        self.images = 0;
        self.size = 0;
    }

    fn finish(mut self) -> Vec<PlanJob> {
        if !self.open.is_empty() {
            self.close();
        }
        self.jobs
    }
}

/// Jobs checked but not yet sent, at most.
const JOBS_AHEAD: usize = 1000;
/// SendMessageBatch calls in flight while checking goes on.
const BATCHES_IN_FLIGHT: usize = 8;

#[derive(Default)]
struct CheckOutcome {
    in_sync: usize,
    errors: Vec<Failure>,
    checked_at: Duration,
}

/// What checking an image's targets found.
enum Staleness {
    /// Every target has the source's manifest, as their HEADs told (not for an immutable
    /// tag the targets list, unless the listings showed a referrer to check).
    InSync(Option<Synced>),
    /// In sync, but an index whose children's referrers are checked once every image is.
    Later,
    /// These targets need the image; `digest` is the source's, when it had to be HEADed.
    Stale {
        targets: Vec<Reference>,
        digest: Option<Digest>,
    },
}

/// What the targets' HEADs told of an image they all hold.
struct Synced {
    digest: Digest,
    /// Its manifest is an index (or a manifest list).
    index: bool,
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

impl From<PlanError> for CheckError {
    fn from(error: PlanError) -> Self {
        match error {
            PlanError::Registry(error) => CheckError::Registry(error),
            gone => CheckError::SourceGone(gone),
        }
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
        None => match head_source(&image.source, registries).await? {
            Some(digest) => digest,
            None => {
                return Ok(Staleness::Stale {
                    targets: image.targets.clone(),
                    digest: None,
                })
            }
        },
    };
    let targets = stale(
        &image.targets,
        heads.iter().map(ManifestHead::digest_of),
        &digest,
    );
    Ok(if targets.is_empty() {
        let index = ManifestHead::any_index(&heads);
        Staleness::InSync(Some(Synced { digest, index }))
    } else {
        Staleness::Stale {
            targets,
            digest: Some(digest),
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::env::MapEnv;
    use crate::job::QueuedJob;
    use crate::rules::{targets_of, within};

    fn rules(yaml: &str) -> Vec<Rule> {
        crate::rules::rules_from_yaml(yaml).unwrap()
    }

    /// Every (source, target) a set of rules naming their images selects, by source.
    fn named_pairs(rules: &[Rule]) -> BTreeMap<Reference, BTreeSet<Reference>> {
        let mut pairs: BTreeMap<Reference, BTreeSet<Reference>> = BTreeMap::new();
        for rule in rules {
            for locator in named(rule) {
                let source = rule.source.at(locator);
                pairs
                    .entry(source.clone())
                    .or_default()
                    .extend(targets_of(rules, &source));
            }
        }
        pairs
    }

    /// Each job's body parses back, within `configured`; the rules of each, in turn.
    fn parsed(jobs: &[PlanJob], configured: &[Rule]) -> Vec<Vec<Rule>> {
        jobs.iter()
            .map(|job| {
                let body = job.to_body();
                assert!(body.len() < PLAN_BODY_BUDGET + 1024, "{} bytes", body.len());
                let QueuedJob::Plan(again) = QueuedJob::parse(&body).unwrap() else {
                    panic!("not a plan job: {body}");
                };
                let (rules, _) = again.work().unwrap();
                for rule in &rules {
                    assert!(within(configured, rule), "{} not within", rule.text);
                }
                rules
            })
            .collect()
    }

    #[test]
    fn long_form_rules_travel_whole_in_plan_jobs() {
        let configured = rules(
            "a.io/x:\n  to: b.io/x\n  tags: {semver: '>=1', exclude: ['/-rc/']}\n  \
             platforms: [linux/arm64/v8]\n  force: true\n  referrers: false\n\
             a.io/y:1.0.0,2.0.0,3.0.0-rc1,0.9.0:\n  to: b.io/y\n  tags: {semver: '>=1', latest: 2}\n\
             a.io/y:1.0.0: b.io/short\n",
        );
        let jobs = rule_slices(&configured, 1, "p", &ImageOptions::default());
        let all: Vec<Rule> = parsed(&jobs, &configured).into_iter().flatten().collect();
        // The listing rule keeps its filters and options.
        let x = all.iter().find(|r| r.text == "a.io/x").expect("a.io/x");
        assert_eq!(x.long_form, configured[0].long_form);
        assert_eq!(x.options.force, Some(true));
        assert_eq!(x.options.referrers, Some(false));
        assert!(x.select("1.2.0-rc1").is_empty() && !x.select("1.2.0").is_empty());
        // The named tags: only what the filters select, sliced one a job; the same key
        // written once short, once long, in separate jobs.
        let mut y: Vec<(String, bool)> = all
            .iter()
            .filter(|r| r.source.path() == "y")
            .map(|r| (r.text.clone(), r.long_form.is_empty()))
            .collect();
        y.sort();
        assert_eq!(
            y,
            [
                ("a.io/y:1.0.0".to_string(), false),
                ("a.io/y:1.0.0".to_string(), true),
                ("a.io/y:2.0.0".to_string(), false),
            ]
        );
        // A listed image slice carries its rule's options.
        let image = PlannedImage {
            source: Reference::parse("a.io/x:1.2.0").unwrap(),
            digest: None,
            targets: vec![Reference::parse("b.io/x:1.2.0").unwrap()],
            rule_options: configured[0].options.clone(),
            pushed_referrer: None,
        };
        let jobs = image_slices(&[image], 10, "p", &ImageOptions::default());
        let again = &parsed_unchecked(&jobs)[0][0];
        assert_eq!(again.options, configured[0].options);
    }

    fn parsed_unchecked(jobs: &[PlanJob]) -> Vec<Vec<Rule>> {
        jobs.iter()
            .map(|job| {
                let QueuedJob::Plan(again) = QueuedJob::parse(&job.to_body()).unwrap() else {
                    panic!("not a plan job");
                };
                again.work().unwrap().0
            })
            .collect()
    }

    #[test]
    fn fan_out_settings_parse() {
        assert_eq!("auto".parse(), Ok(FanOut::Auto));
        assert_eq!(" Always".parse(), Ok(FanOut::Always));
        assert_eq!("never".parse(), Ok(FanOut::Never));
        assert_eq!("250".parse(), Ok(FanOut::Above(250)));
        for bad in ["0", "-3", "lots", "1e3"] {
            assert!(bad.parse::<FanOut>().is_err(), "{bad}");
        }
        assert_eq!(FanOut::Never.bounds(), None);
        assert_eq!(FanOut::Always.bounds(), Some((0, FAN_OUT_IMAGES)));
        let env = MapEnv::new([(FAN_OUT_VARIABLE, "12")]);
        assert_eq!(fan_out_from_env(&env), Ok(FanOut::Above(12)));
        assert_eq!(fan_out_from_env(&MapEnv::default()), Ok(FanOut::Auto));
        let error = fan_out_from_env(&MapEnv::new([(FAN_OUT_VARIABLE, "x")])).unwrap_err();
        assert!(error.starts_with("FERRY_FAN_OUT: fan-out \"x\""), "{error}");
    }

    /// Named rules cut into plan jobs select exactly what they selected together: each image
    /// in one job, with every target the rules give it, renamed tags still paired.
    #[test]
    fn rule_slices_keep_every_copy_once() {
        let mut yaml = String::new();
        for repo in 0..7 {
            let tags: Vec<String> = (0..9).map(|t| format!("t{t}")).collect();
            yaml += &format!("a.io/r{repo}:{}: b.io/r{repo}\n", tags.join(","));
            // A second rule on the same repository: the same images get another target.
            yaml += &format!("'a.io/r{repo}:t1,t8': 'c.io/r{repo}:one,eight'\n");
        }
        yaml += &format!("a.io/d@sha256:{}: b.io/d\n", "1".repeat(64));
        yaml += "a.io/listed: b.io/listed\n'a.io/listed:extra': c.io/listed\n";
        yaml += "a.io/re:/^v/: b.io/re\n";
        let configured = rules(&yaml);
        assert_eq!(resolving_cost(&configured), 7 * 9 + 7 * 2 + 1 + 1 + 1 + 1);
        let jobs = rule_slices(&configured, 10, "p", &ImageOptions::default());
        let slices = parsed(&jobs, &configured);
        assert!(jobs.iter().all(|j| j.plan_id == "p" && !j.listed));
        // Each listing repository alone, with its other rules.
        let listing: Vec<&Vec<Rule>> = slices
            .iter()
            .filter(|rules| rules.iter().any(|r| r.selector.lists()))
            .collect();
        assert_eq!(listing.len(), 2);
        assert!(listing
            .iter()
            .all(|rules| rules.iter().all(|r| r.source == rules[0].source)));
        // Named images: each in exactly one job, with the same targets, at most 10 a job.
        let named_configured: Vec<Rule> = configured
            .iter()
            .filter(|r| !r.selector.lists())
            .cloned()
            .collect();
        let expected = named_pairs(&named_configured);
        let mut seen: BTreeMap<Reference, BTreeSet<Reference>> = BTreeMap::new();
        for rules in &slices {
            let rules: Vec<Rule> = rules
                .iter()
                .filter(|r| !r.selector.lists())
                .cloned()
                .collect();
            let pairs = named_pairs(&rules);
            assert!(
                pairs.len() <= 10 || rules.iter().any(|r| r.source.to_string() == "a.io/listed")
            );
            for (source, targets) in pairs {
                assert!(
                    seen.insert(source.clone(), targets).is_none(),
                    "{source} twice"
                );
            }
        }
        assert_eq!(seen, expected);
    }

    /// A large listing's images cut into `listed` plan jobs, each image once with its targets,
    /// same-target tags of a repository in one rule.
    #[test]
    fn image_slices_keep_every_image_once() {
        let configured =
            rules("a.io/x: [b.io/x, c.io/x]\na.io/y:/./: b.io/y\n'a.io/y:q': 'b.io/y:renamed'\n");
        let mut images: Vec<PlannedImage> = Vec::new();
        for i in 0..25 {
            let source = Reference::parse(&format!("a.io/x:t{i:02}")).unwrap();
            images.push(PlannedImage {
                targets: targets_of(&configured, &source).into_iter().collect(),
                source,
                digest: None,
                rule_options: Default::default(),
                pushed_referrer: None,
            });
        }
        let q = Reference::parse("a.io/y:q").unwrap();
        images.push(PlannedImage {
            targets: targets_of(&configured, &q).into_iter().collect(),
            source: q,
            digest: None,
            rule_options: Default::default(),
            pushed_referrer: None,
        });
        images.sort_by(|a, b| a.source.cmp(&b.source));
        let jobs = image_slices(&images, 10, "p", &ImageOptions::default());
        assert_eq!(jobs.len(), 3);
        assert!(jobs.iter().all(|j| j.listed));
        let slices = parsed(&jobs, &configured);
        let mut seen: BTreeMap<Reference, BTreeSet<Reference>> = BTreeMap::new();
        for rules in &slices {
            for (source, targets) in named_pairs(rules) {
                assert!(
                    seen.insert(source.clone(), targets).is_none(),
                    "{source} twice"
                );
            }
        }
        let expected: BTreeMap<Reference, BTreeSet<Reference>> = images
            .iter()
            .map(|i| (i.source.clone(), i.targets.iter().cloned().collect()))
            .collect();
        assert_eq!(seen, expected);
        // Ten tags to the same two repositories: one rule.
        assert_eq!(jobs[0].rules.len(), 1, "{:?}", jobs[0].rules);
    }

    #[test]
    fn large_bodies_are_cut_by_size() {
        let long = "x".repeat(120);
        let mut entries = Map::new();
        for i in 0..3000 {
            entries.insert(
                format!("a.io/{long}:t{i}"),
                Value::from(vec![format!("b.io/{long}:u{i}")]),
            );
        }
        let parts = split_by_size(entries);
        assert!(parts.len() > 1);
        assert_eq!(parts.iter().map(Map::len).sum::<usize>(), 3000);
        assert!(parts.iter().all(|p| body_size(p) <= PLAN_BODY_BUDGET));
    }
}
