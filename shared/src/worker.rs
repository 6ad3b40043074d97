//! Running queued jobs: what the copier Lambda does with one SQS batch, and what
//! `ferry worker` does in a loop on any machine. A message is a job; a job that cannot be
//! parsed, fails, or does not finish in time is a failed message, left for the queue to
//! deliver again (and in the end to its dead-letter queue). Running a job twice is harmless:
//! the copier skips targets already in sync and blobs already present.
//!
//! A plan job is expanded rather than copied: its rules, once allowed by the [`JobPolicy`],
//! are resolved and checked by `dispatch::expand` and the copy jobs sent to the queue (a
//! [`PlanExpander`]'s). It fails, and is delivered again, when the queue refused the jobs or
//! a registry failed in a way worth retrying; expanding again sends copies only for what is
//! still stale.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::copy::Copier;
use crate::dispatch::{expand, DispatchOptions, DispatchSummary};
use crate::error::{HasKind, Kind};
use crate::image::{ImageOptions, PlannedImage};
use crate::job::{PlanJob, QueuedJob};
use crate::queue::{Delivery, Queue, QueueError};
use crate::registry::Registries;
use crate::report::{Failure, ImageReport, Status};
use crate::rules::{targets_of, within, Rule};

/// One message to run: its id (for `batchItemFailures`) and body.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub body: String,
}

/// How one message went.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub message_id: String,
    /// The copy's report; `None` when the message never became a copy (malformed, or not
    /// started before the deadline).
    pub report: Option<ImageReport>,
    /// Why the message failed; `None` when it succeeded.
    pub failure: Option<Failure>,
    /// What expanding a plan job did; `None` for a copy job.
    pub expansion: Option<Expansion>,
}

/// A plan job's expansion: what was sent, and how long it took.
#[derive(Debug, Clone)]
pub struct Expansion {
    pub summary: DispatchSummary,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.failure.is_none()
    }

    /// Failed, and worth delivering again (see `Kind::is_permanent`).
    pub fn should_retry(&self) -> bool {
        self.failure
            .as_ref()
            .is_some_and(|f| !f.kind.is_permanent())
    }
}

/// Which jobs a worker runs. A queue's messages come from whoever can send to it, so a
/// worker with rules runs only what they select, whatever credentials it holds.
#[derive(Debug, Clone, Default)]
pub enum JobPolicy {
    /// Only jobs whose every target is one the rules give the job's source.
    Rules(Arc<[Rule]>),
    /// Any well-formed job: `ferry worker` without `--images`, or a stack that lets planner
    /// invocations bring their own rules.
    #[default]
    Any,
}

impl JobPolicy {
    /// The serverless copier's policy: its stack's rules, unless the stack lets planner
    /// invocations bring their own (then the copier cannot know them, and runs any job).
    pub fn for_service(rules: Vec<Rule>, inline_rules: bool) -> JobPolicy {
        if inline_rules {
            return JobPolicy::Any;
        }
        if rules.is_empty() {
            tracing::warn!(
                "no rules configured (FERRY_IMAGES, FERRY_IMAGES_FILE): every job will be refused"
            );
        }
        JobPolicy::Rules(rules.into())
    }

    /// Why a plan job's `rules` may not be resolved, if they may not: each must select only
    /// copies the worker's rules make (`rules::within`), or a queue sender could make the
    /// worker list and HEAD any repository with its credentials.
    fn plan_refusal(&self, rules: &[Rule]) -> Option<Failure> {
        let JobPolicy::Rules(allowed) = self else {
            return None;
        };
        let refused: Vec<&str> = rules
            .iter()
            .filter(|rule| !within(allowed, rule))
            .map(|rule| rule.text.as_str())
            .collect();
        (!refused.is_empty()).then(|| Failure {
            kind: Kind::Denied,
            message: format!(
                "plan job rule(s) {} are not among this worker's rules; the job was not run",
                crate::error::truncate(&refused.join(", "), 300)
            ),
        })
    }

    /// Why `image` may not be copied, if it may not.
    fn refusal(&self, image: &PlannedImage) -> Option<Failure> {
        let JobPolicy::Rules(rules) = self else {
            return None;
        };
        let allowed = targets_of(rules, &image.source);
        let refused: Vec<String> = image
            .targets
            .iter()
            .filter(|t| !allowed.contains(*t))
            .map(ToString::to_string)
            .collect();
        (!refused.is_empty()).then(|| Failure {
            kind: Kind::Denied,
            message: format!(
                "no rule copies {} to {}; the job was not run",
                image.source,
                refused.join(", ")
            ),
        })
    }
}

/// What a worker needs to expand plan jobs: the queue the copy jobs go to (the one the plan
/// job came from), the registries to resolve against, and the planner's settings.
#[derive(Clone)]
pub struct PlanExpander {
    pub queue: Arc<dyn Queue>,
    pub registries: Arc<Registries>,
    /// Concurrency and fan-out; each job's own image options replace `image`.
    pub options: DispatchOptions,
}

impl std::fmt::Debug for PlanExpander {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanExpander")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl PlanExpander {
    /// Expands an allowed plan job; a failure when something went wrong worth reporting.
    async fn run(
        &self,
        job: &PlanJob,
        rules: &[Rule],
        image: ImageOptions,
    ) -> (Option<Expansion>, Option<Failure>) {
        let started = Instant::now();
        let expanded = expand(
            job,
            rules,
            image,
            &self.registries,
            self.queue.as_ref(),
            &self.options,
        )
        .await;
        match expanded {
            Err(error) => (None, Some(Failure::of(&error))),
            Ok(summary) => {
                // A registry that failed in passing is worth another delivery; a tag that
                // does not exist or a refusal is not, and the rest of the plan went.
                let worst = summary
                    .errors
                    .iter()
                    .find(|e| !e.kind.is_permanent())
                    .or(summary.errors.first());
                let failure = worst.map(|first| Failure {
                    kind: first.kind,
                    message: format!(
                        "{} planning error(s) expanding plan job {}; the first: {}",
                        summary.errors.len(),
                        summary.plan_id,
                        first.message
                    ),
                });
                let elapsed = started.elapsed();
                (Some(Expansion { summary, elapsed }), failure)
            }
        }
    }
}

/// When a run must wrap up.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    /// From here no new image or blob is started.
    pub stop_starting: Instant,
    /// From here whatever is unfinished is abandoned and reported as failed.
    pub give_up: Instant,
}

impl Deadline {
    /// For a Lambda invocation ending at `end`: stop starting work with a fifth of the time
    /// (at most a minute, at least 2 s) left, give up with 2 s left to answer.
    pub fn before(end: Instant) -> Deadline {
        let left = end.saturating_duration_since(Instant::now());
        let margin = (left / 5).clamp(Duration::from_secs(2), Duration::from_secs(60));
        let answer = Duration::from_secs(2).min(left / 2);
        Deadline {
            stop_starting: end.checked_sub(margin).unwrap_or(end),
            give_up: end.checked_sub(answer).unwrap_or(end),
        }
    }
}

/// Runs every message at once (the copier's `--proc` bounds the transfers) and reports each;
/// logging how each copy went is the caller's. With a deadline, the copier stops starting new work at `stop_starting` (so it should be
/// a copier of this run alone) and messages unfinished at `give_up` are failed.
pub async fn run_messages(
    copier: &Copier,
    messages: Vec<Message>,
    deadline: Option<Deadline>,
    policy: &JobPolicy,
    plans: Option<&PlanExpander>,
) -> Vec<Outcome> {
    let mut pending: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
    let mut running: FuturesUnordered<_> = messages
        .into_iter()
        .map(|message| run_message(copier, message, policy, plans))
        .collect();
    let mut outcomes = Vec::new();
    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let stop_at = deadline.map_or(far, |d| d.stop_starting);
    let give_up_at = deadline.map_or(far, |d| d.give_up);
    let mut stop_sent = false;
    loop {
        tokio::select! {
            next = running.next() => match next {
                Some(outcome) => {
                    pending.retain(|id| *id != outcome.message_id);
                    outcomes.push(outcome);
                }
                None => break,
            },
            () = tokio::time::sleep_until(stop_at), if !stop_sent => {
                tracing::warn!("invocation deadline near: starting no new work");
                copier.stop();
                stop_sent = true;
            }
            () = tokio::time::sleep_until(give_up_at) => {
                tracing::warn!(unfinished = pending.len(), "invocation deadline: giving up");
                break;
            }
        }
    }
    drop(running);
    outcomes.extend(pending.into_iter().map(|message_id| Outcome {
        message_id,
        report: None,
        failure: Some(Failure {
            kind: Kind::Interrupted,
            message: "not finished before the invocation deadline; it will be redelivered".into(),
        }),
        expansion: None,
    }));
    outcomes
}

/// A copy's outcome as one structured log line (`ferry worker`'s; the copier Lambda logs
/// its own, with metrics, through `metrics`).
pub fn log_finished(message_id: &str, report: &ImageReport) {
    tracing::info!(
        message_id = %message_id,
        source = %report.source,
        targets = ?report.targets,
        status = ?report.status,
        reason = report.reason.as_deref().unwrap_or(""),
        kind = report.kind.map_or("", |k| k.as_str()),
        bytes = report.bytes,
        blobs_copied = report.blobs_copied,
        blobs_mounted = report.blobs_mounted,
        duration_ms = report.duration_ms,
        "job finished"
    );
}

/// Parses and runs one message. Malformed and refused messages are logged here; how a
/// copy went is left to the caller ([`log_finished`], or a metrics line).
async fn run_message(
    copier: &Copier,
    message: Message,
    policy: &JobPolicy,
    plans: Option<&PlanExpander>,
) -> Outcome {
    let failed = |id: String, failure: Failure| Outcome {
        message_id: id,
        report: None,
        failure: Some(failure),
        expansion: None,
    };
    let job = match QueuedJob::parse(&message.body) {
        Ok(job) => job,
        Err(error) => {
            tracing::error!(message_id = %message.id, kind = %error.kind(), reason = %error, "malformed job message");
            return failed(message.id, Failure::of(&error));
        }
    };
    let plan = match job {
        QueuedJob::Plan(plan) => plan,
        QueuedJob::Copy(job) => {
            // Parsing validated it.
            let (image, options) = match job.work() {
                Ok(work) => work,
                Err(error) => return failed(message.id, Failure::of(&error)),
            };
            if let Some(refusal) = policy.refusal(&image) {
                tracing::error!(message_id = %message.id, kind = %refusal.kind, reason = %refusal, "job refused");
                return failed(message.id, refusal);
            }
            let (report, _retryable) = copier.copy_image_with(&image, &options).await;
            let failure = (report.status == Status::Failed).then(|| Failure {
                kind: report.kind.unwrap_or(Kind::Transport),
                message: report.reason.clone().unwrap_or_else(|| "failed".into()),
            });
            return Outcome {
                message_id: message.id,
                report: Some(report),
                failure,
                expansion: None,
            };
        }
    };
    // Parsing validated it.
    let (rules, image) = match plan.work() {
        Ok(work) => work,
        Err(error) => return failed(message.id, Failure::of(&error)),
    };
    if let Some(refusal) = policy.plan_refusal(&rules) {
        tracing::error!(message_id = %message.id, kind = %refusal.kind, reason = %refusal, "plan job refused");
        return failed(message.id, refusal);
    }
    let Some(plans) = plans else {
        let failure = Failure {
            kind: Kind::BadInput,
            message: "a plan job, and this worker has no queue to send its copy jobs to".into(),
        };
        tracing::error!(message_id = %message.id, reason = %failure, "plan job refused");
        return failed(message.id, failure);
    };
    let (expansion, failure) = plans.run(&plan, &rules, image).await;
    if let Some(Expansion { summary, .. }) = &expansion {
        tracing::info!(
            message_id = %message.id,
            plan_id = %summary.plan_id,
            rules = summary.rules,
            tags_seen = summary.tags_seen,
            jobs_enqueued = summary.jobs_enqueued,
            plan_jobs_enqueued = summary.plan_jobs_enqueued,
            already_in_sync = summary.already_in_sync,
            errors = summary.errors.len(),
            "plan job expanded"
        );
    }
    if let Some(failure) = &failure {
        tracing::warn!(message_id = %message.id, kind = %failure.kind, reason = %failure, "plan job failed");
    }
    Outcome {
        message_id: message.id,
        report: None,
        failure,
        expansion,
    }
}

/// How `ferry worker` consumes a queue.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Messages received per call (at most 10) and jobs in flight at most.
    pub batch: usize,
    pub max_in_flight: usize,
    /// Long-polling wait per receive.
    pub wait: Duration,
    /// How long a received message stays hidden; renewed at half of it while its job runs.
    pub visibility: Duration,
    /// Return once a receive comes back empty with nothing in flight (batch use, tests).
    pub exit_when_empty: bool,
    /// Which jobs are run.
    pub policy: JobPolicy,
    /// Delete a failed message after this many receives. SQS's redrive policy does this
    /// (to a dead-letter queue); an in-memory queue has none, so its worker gives up itself.
    pub max_receives: Option<u32>,
    /// How plan jobs are expanded; without, a plan job fails for good.
    pub plans: Option<PlanExpander>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            batch: 10,
            max_in_flight: 20,
            wait: Duration::from_secs(20),
            visibility: Duration::from_secs(120),
            exit_when_empty: false,
            policy: JobPolicy::Any,
            max_receives: None,
            plans: None,
        }
    }
}

/// What a worker did before it returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerSummary {
    pub succeeded: usize,
    /// Jobs that failed for good (dropped: too many receives, or a permanent failure).
    pub failed: usize,
    /// Attempts that failed and were left for another delivery (a job that then succeeds
    /// counts once in `succeeded` too).
    pub retried: usize,
}

/// "2 jobs succeeded, 0 failed", and how many attempts were left for another delivery.
impl std::fmt::Display for WorkerSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} jobs succeeded, {} failed",
            self.succeeded, self.failed
        )?;
        match self.retried {
            0 => Ok(()),
            1 => f.write_str(" (1 failed attempt left for redelivery)"),
            n => write!(f, " ({n} failed attempts left for redelivery)"),
        }
    }
}

/// Consumes `queue` until `stop` turns true (then receives nothing more and lets jobs in
/// flight finish) or, with `exit_when_empty`, until it is drained. Succeeded messages are
/// deleted; failed ones are left to reappear after their visibility timeout.
pub async fn work(
    queue: Arc<dyn Queue>,
    copier: Arc<Copier>,
    options: WorkerOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<WorkerSummary, QueueError> {
    let mut summary = WorkerSummary::default();
    let mut running = FuturesUnordered::new();
    let max_in_flight = options.max_in_flight.max(1);
    let mut stopping = *stop.borrow();
    let mut stop_closed = false;
    // One receive at a time, polled together with the jobs in flight so both progress.
    let mut receiving: Option<BoxFuture<'_, Result<Vec<Delivery>, QueueError>>> = None;
    // Each round handles one event; it ends once stopping (or drained) with nothing in flight.
    loop {
        let room = max_in_flight.saturating_sub(running.len());
        if receiving.is_none() && !stopping && room > 0 {
            receiving = Some(queue.receive(room.min(options.batch), options.wait));
        }
        if receiving.is_none() && running.is_empty() {
            break;
        }
        tokio::select! {
            Some(succeeded) = running.next(), if !running.is_empty() => {
                tally(&mut summary, succeeded);
            }
            received = async { receiving.as_mut().expect("guarded").await }, if receiving.is_some() => {
                receiving = None;
                let deliveries = received?;
                if deliveries.is_empty() && running.is_empty() && options.exit_when_empty {
                    stopping = true;
                }
                for delivery in deliveries {
                    running.push(run_delivery(&queue, &copier, delivery, &options));
                }
            }
            changed = stop.changed(), if !stopping && !stop_closed => {
                // A dropped sender means nobody can ask for a stop any more: carry on.
                stop_closed = changed.is_err();
                if !stop_closed && *stop.borrow() {
                    stopping = true;
                    // A receive cut short leaves its messages hidden until they time out.
                    receiving = None;
                }
            }
        }
    }
    Ok(summary)
}

/// Runs a worker on `queue` alongside `task` (a server feeding the queue, say). When the
/// task completes, the worker receives nothing more, lets its jobs finish, then drains what
/// is still queued, and the task's output comes back with what the worker did. A worker
/// error (the queue failed) ends it at once, dropping the task.
pub async fn work_alongside<T>(
    queue: Arc<dyn Queue>,
    copier: Arc<Copier>,
    options: WorkerOptions,
    task: impl std::future::Future<Output = T>,
) -> Result<(T, WorkerSummary), QueueError> {
    let (stop_tx, stop) = watch::channel(false);
    let worker = work(
        Arc::clone(&queue),
        Arc::clone(&copier),
        options.clone(),
        stop,
    );
    tokio::pin!(worker);
    tokio::pin!(task);
    let (output, mut summary) = tokio::select! {
        output = &mut task => {
            let _ = stop_tx.send(true);
            (output, worker.await?)
        }
        worked = &mut worker => {
            let worked = worked?;
            (task.await, worked)
        }
    };
    let (_keep, never) = watch::channel(false);
    let drain = WorkerOptions {
        exit_when_empty: true,
        wait: Duration::ZERO,
        ..options
    };
    let drained = work(queue, copier, drain, never).await?;
    summary.succeeded += drained.succeeded;
    summary.failed += drained.failed;
    summary.retried += drained.retried;
    Ok((output, summary))
}

fn tally(summary: &mut WorkerSummary, delivered: Delivered) {
    match delivered {
        Delivered::Succeeded => summary.succeeded += 1,
        Delivered::Retrying => summary.retried += 1,
        Delivered::Dropped => summary.failed += 1,
    }
}

/// What became of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivered {
    Succeeded,
    /// Failed; left in the queue to be delivered again.
    Retrying,
    /// Failed for good, and deleted.
    Dropped,
}

/// Runs one delivery, keeping it hidden while it runs, and deletes it when it succeeded.
async fn run_delivery(
    queue: &Arc<dyn Queue>,
    copier: &Copier,
    delivery: Delivery,
    options: &WorkerOptions,
) -> Delivered {
    let visibility = options.visibility;
    let Delivery {
        message_id,
        receipt,
        body,
        receive_count,
    } = delivery;
    tracing::debug!(message_id = %message_id, receive_count, "job received");
    let message = Message {
        id: message_id.clone(),
        body,
    };
    let outcome = {
        let run = run_message(copier, message, &options.policy, options.plans.as_ref());
        tokio::pin!(run);
        let mut renew = tokio::time::interval_at(Instant::now() + visibility / 2, visibility / 2);
        loop {
            tokio::select! {
                outcome = &mut run => {
                    if let Some(report) = &outcome.report {
                        log_finished(&message_id, report);
                    }
                    break outcome;
                }
                _ = renew.tick() => {
                    if let Err(error) = queue.extend_visibility(&receipt, visibility).await {
                        tracing::warn!(message_id = %message_id, error = %error, "could not extend visibility");
                    }
                }
            }
        }
    };
    let give_up = options.max_receives.is_some_and(|max| receive_count >= max);
    if outcome.should_retry() && !give_up {
        // Back soon rather than after the whole visibility timeout: 5 s, 10 s, 20 s...
        let retry_in = (Duration::from_secs(5)
            * 2u32.saturating_pow(receive_count.saturating_sub(1)))
        .min(visibility);
        if let Err(error) = queue.extend_visibility(&receipt, retry_in).await {
            tracing::warn!(message_id = %message_id, error = %error, "could not schedule the retry");
        }
        return Delivered::Retrying;
    }
    if let Some(failure) = &outcome.failure {
        match outcome.should_retry() {
            true => {
                tracing::error!(message_id = %message_id, receive_count, "job failed too often; dropping it")
            }
            false => {
                tracing::error!(message_id = %message_id, kind = %failure.kind, reason = %failure, "job failed for good; dropping it")
            }
        }
    }
    if let Err(error) = queue.delete(&receipt).await {
        // The copy is done (or failed for good); a redelivery will find everything in sync.
        tracing::warn!(message_id = %message_id, error = %error, "could not delete message");
    }
    match outcome.succeeded() {
        true => Delivered::Succeeded,
        false => Delivered::Dropped,
    }
}
