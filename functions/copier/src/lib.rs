//! The copier function: each SQS record is one copy job; the answer lists only the records
//! that failed (`ReportBatchItemFailures`), so SQS deletes the rest and redelivers those.
//!
//! A record may instead be a plan job (a large migration's slice, see `ferry::dispatch`): it
//! is resolved with the planner's code and its copy jobs sent to the function's own queue,
//! `FERRY_QUEUE_URL` (with `FERRY_FAN_OUT` and `FERRY_CONCURRENCY` as the planner's), once
//! the stack's rules are seen to make every copy its rules select. Without a queue URL a
//! plan job fails for good.
//!
//! The invocation's deadline is watched: with little time left no new image or blob is
//! started, and jobs still unfinished are reported failed, so the next delivery resumes them
//! (blobs already copied are skipped). `FERRY_PROC` bounds transfers in flight, and with them
//! memory. Credentials come from the function's own configuration (`FERRY_AUTH` or
//! `FERRY_AUTH_FILE`), never from the messages, and a job runs only if the stack's rules
//! select its source and every target (unless `FERRY_ALLOW_INLINE_RULES` is true). Files
//! in S3 are read again between batches, at most every `FERRY_RELOAD_SECONDS` (60), so an
//! uploaded images or auth file reaches warm copiers too (`ferry::reload`).
//!
//! Each job's outcome is one line on standard output in CloudWatch's Embedded Metric Format
//! (`ferry::metrics::job_line`): images copied, skipped and failed, bytes and seconds, for
//! dashboards and alarms, with the image and any failure as properties. A plan job's is the
//! planner's line (`ferry::metrics::plan_line`): copy and plan jobs sent.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use ferry::copy::{Copier, CopyOptions, NoProgress};
use ferry::dispatch::{fan_out_from_env, DispatchOptions};
use ferry::ecr::Ecr;
use ferry::env::Env;
use ferry::image::{ImageOptions, Referrers};
use ferry::input::{immutable_tags_from_env, service_settings_from_env, Inputs};
use ferry::metrics::{job_line, now_ms, plan_line, MetricSource};
use ferry::queue::Queue;
use ferry::registry::Registries;
use ferry::reload::Reloading;
use ferry::rules::ImmutableTags;
use ferry::s3::S3;
use ferry::worker::{run_messages, Deadline, JobPolicy, Message, PlanExpander};
use tokio::time::Instant;

/// What outlives one invocation: the registry clients, with their cached tokens, and the
/// stack's rules; both rebuilt when the files in S3 they come from change.
pub struct CopierFunction {
    configured: Reloading<Configured, anyhow::Error>,
    proc: usize,
    /// `FERRY_REFERRERS=false` keeps referrers from every job, whatever the job says.
    referrers: Referrers,
    /// The dimensions of its metrics.
    metrics: MetricSource,
    /// Where plan jobs' copy jobs go: set by [`CopierFunction::with_queue`]; without it, plan
    /// jobs are refused.
    queue: Option<Arc<dyn Queue>>,
    /// The planner's settings for expanding plan jobs.
    dispatch: DispatchOptions,
}

/// What the function's files make: registry clients, and the policy of the stack's rules.
struct Configured {
    registries: Arc<Registries>,
    /// `FERRY_IMMUTABLE_TAGS` and the rules' `immutable:` patterns.
    immutable: ImmutableTags,
    /// The stack's rules: a job none of them selects is refused.
    policy: JobPolicy,
}

impl CopierFunction {
    pub async fn from_env(env: Arc<dyn Env>) -> anyhow::Result<CopierFunction> {
        CopierFunction::with_aws(env, Arc::new(Ecr::new()), Arc::new(S3::new())).await
    }

    /// As `from_env`, asking ECR through `ecr` and reading files in S3 through `s3` (tests
    /// give ones with an explicit AWS configuration; `from_env`'s read the process
    /// environment, as every AWS SDK does). Files in S3 are read again between batches
    /// (`ferry::reload`).
    pub async fn with_aws(
        env: Arc<dyn Env>,
        ecr: Arc<Ecr>,
        s3: Arc<S3>,
    ) -> anyhow::Result<CopierFunction> {
        let settings = service_settings_from_env(env.as_ref())?;
        let fan_out = fan_out_from_env(env.as_ref()).map_err(anyhow::Error::msg)?;
        let inline_rules = settings.inline_rules;
        let build = move |inputs: Inputs, env: &dyn Env| {
            let auth = inputs.auth.with_ecr(Arc::clone(&ecr));
            Ok(Configured {
                registries: Arc::new(Registries::from_env(Arc::new(auth), env)),
                immutable: immutable_tags_from_env(env, &inputs.rules)?,
                policy: JobPolicy::for_service(inputs.rules, inline_rules),
            })
        };
        Ok(CopierFunction {
            configured: Reloading::load(Arc::clone(&env), s3, false, Box::new(build)).await?,
            proc: settings.proc,
            referrers: settings.referrers.clone(),
            metrics: MetricSource::from_env(env.as_ref(), "copier"),
            queue: None,
            dispatch: DispatchOptions {
                image: ImageOptions {
                    referrers: settings.referrers,
                    ..ImageOptions::default()
                },
                concurrency: settings.concurrency,
                fan_out,
                // Set per batch from the configuration (`Configured::immutable`).
                immutable: ImmutableTags::default(),
            },
        })
    }

    /// Plan jobs are expanded, their copy jobs sent to `queue` (the function's own).
    pub fn with_queue(mut self, queue: Arc<dyn Queue>) -> CopierFunction {
        self.queue = Some(queue);
        self
    }

    /// One batch. `deadline_ms` is the invocation's deadline in milliseconds since the epoch,
    /// as the Lambda context gives it; `None` runs without one.
    pub async fn handle(&self, event: SqsEvent, deadline_ms: Option<u64>) -> SqsBatchResponse {
        let messages: Vec<Message> = event
            .records
            .into_iter()
            .enumerate()
            .map(|(i, record)| Message {
                // A record without an id cannot be reported back; it still runs.
                id: record.message_id.unwrap_or_else(|| format!("record-{i}")),
                body: record.body.unwrap_or_default(),
            })
            .collect();
        let configured = self.configured.current().await;
        let plans = self.queue.as_ref().map(|queue| PlanExpander {
            queue: Arc::clone(queue),
            registries: Arc::clone(&configured.registries),
            // The configured rules cover every slice a plan job can hold.
            options: DispatchOptions {
                immutable: configured.immutable.clone(),
                ..self.dispatch.clone()
            },
        });
        // A copier per invocation: its stop (at the deadline) must not outlive this batch.
        let copier = Copier::new(
            Arc::clone(&configured.registries),
            CopyOptions {
                proc: self.proc,
                image: ImageOptions {
                    referrers: self.referrers.clone(),
                    ..ImageOptions::default()
                },
                immutable: configured.immutable.clone(),
                ..CopyOptions::default()
            },
            Arc::new(NoProgress),
        );
        let end = deadline_ms.map(instant_at);
        tracing::info!(
            records = messages.len(),
            deadline_ms,
            time_left_ms =
                end.map(|e| e.saturating_duration_since(Instant::now()).as_millis() as u64),
            "batch received"
        );
        let deadline = end.map(Deadline::before);
        let outcomes = run_messages(
            &copier,
            messages,
            deadline,
            &configured.policy,
            plans.as_ref(),
        )
        .await;
        let mut response = SqsBatchResponse::default();
        for outcome in outcomes {
            // A raw line of JSON on standard output is what CloudWatch reads EMF from.
            let line = match &outcome.expansion {
                Some(expansion) => plan_line(
                    &self.metrics,
                    &expansion.summary,
                    expansion.elapsed,
                    now_ms(),
                ),
                None => job_line(&self.metrics, &outcome, now_ms()),
            };
            println!("{line}");
            if outcome.should_retry() {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = outcome.message_id;
                response.batch_item_failures.push(failure);
            } else if let Some(reason) = &outcome.failure {
                // An immutable tag: a redelivery would fail the same way.
                tracing::error!(message_id = %outcome.message_id, kind = %reason.kind, reason = %reason, "job failed for good; not redelivered");
            }
        }
        response
    }
}

/// Epoch milliseconds of September 2001: anything smaller is not a wall-clock deadline.
const PLAUSIBLE_EPOCH_MS: u64 = 1_000_000_000_000;

/// The monotonic instant of a wall-clock deadline in epoch milliseconds. The cargo-lambda
/// emulator sends the function's timeout (e.g. 600000) instead of a time, so a value too
/// small to be one is read as milliseconds from now.
fn instant_at(deadline_ms: u64) -> Instant {
    if deadline_ms < PLAUSIBLE_EPOCH_MS {
        return Instant::now() + Duration::from_millis(deadline_ms);
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_in_epoch_milliseconds_and_emulator_durations() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let left = |at: Instant| at.saturating_duration_since(Instant::now());
        let epoch = left(instant_at(now_ms + 30_000));
        assert!(epoch > Duration::from_secs(25) && epoch <= Duration::from_secs(30));
        let emulated = left(instant_at(600_000));
        assert!(emulated > Duration::from_secs(595) && emulated <= Duration::from_secs(600));
        assert_eq!(left(instant_at(now_ms - 1_000)), Duration::ZERO);
    }
}
