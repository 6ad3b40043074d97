//! Watching a migration from its queue: how many jobs wait, run and died (`ferry status`),
//! the dead-letter queue found from the queue's redrive policy, its dead jobs listed without
//! being consumed (`ferry dlq list`) and sent back to the queue (`ferry dlq redrive`). Only
//! SQS has dead-letter queues, so this is [`SqsQueue`]'s alone; printing is the CLI's.
//!
//! Counts are SQS's approximate attributes, which cannot be split by what a message holds:
//! they count every kind of job. Listing and redriving read the bodies, so each dead job
//! says its kind. Both receive from the dead-letter queue (SQS has no way to look without
//! receiving), which adds one to each message's receive count; a listing hides what it saw
//! for a few seconds and then makes it visible again. A redrive sends each message to the
//! queue before deleting it from the dead-letter queue, so an interruption can at worst
//! leave a job in both: running a job twice is harmless (a copy already in sync is a no-op).

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use serde::{Serialize, Serializer};
use serde_json::Value;

use super::sqs::{batches, receive_count, service_error, system_attribute};
use super::{QueueError, SqsQueue, SQS_MAX_BATCH};
use crate::error::truncate;
use crate::job::{Job, PlanJob, QueuedJob};

/// Receives that may find nothing new before a listing or redrive ends.
const QUIET_RECEIVES: usize = 2;
/// Long polling per receive: an empty answer then means empty on every SQS server.
const RECEIVE_WAIT: Duration = Duration::from_secs(1);
/// Messages beyond SQS's approximate count a listing or redrive goes on looking for.
const COUNT_MARGIN: usize = 10;
/// How long a listed message stays hidden before the listing shows it again.
const LIST_VISIBILITY: Duration = Duration::from_secs(30);
/// How long a message being redriven stays hidden between its send and its delete.
const REDRIVE_VISIBILITY: Duration = Duration::from_secs(60);
/// A redrive policy longer than this is not SQS's.
const MAX_POLICY_LEN: usize = 4096;
/// Characters of an unreadable body shown in a listing.
const BODY_PREVIEW: usize = 200;

/// Jobs on one queue, as SQS approximates them (every kind of job counted together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JobCounts {
    /// Visible, ready to be received.
    pub waiting: u64,
    /// Received and not yet deleted: running, or abandoned until their timeout.
    pub in_flight: u64,
    /// Sent with a delay not yet over.
    pub delayed: u64,
}

impl JobCounts {
    pub fn total(&self) -> u64 {
        self.waiting
            .saturating_add(self.in_flight)
            .saturating_add(self.delayed)
    }

    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }
}

/// Where a migration stands, from its queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Progress {
    /// The queue and its dead-letter queue are empty.
    Done,
    /// Jobs are waiting, running or delayed on the queue.
    Running,
    /// The queue is empty, but jobs are left in the dead-letter queue.
    DeadJobs,
}

/// One queue and its counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueState {
    pub url: String,
    pub jobs: JobCounts,
}

/// The dead-letter queue of a queue, and its counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterState {
    pub url: String,
    /// Receives of a job before SQS moves it here.
    pub max_receive_count: u32,
    pub jobs: JobCounts,
}

/// What `ferry status` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStatus {
    pub progress: Progress,
    pub queue: QueueState,
    /// `None` when the queue has no redrive policy.
    pub dead_letter_queue: Option<DeadLetterState>,
}

impl QueueStatus {
    pub fn new(queue: QueueState, dead_letter_queue: Option<DeadLetterState>) -> QueueStatus {
        let dead = dead_letter_queue.as_ref().map_or(0, |d| d.jobs.total());
        let progress = if !queue.jobs.is_empty() {
            Progress::Running
        } else if dead > 0 {
            Progress::DeadJobs
        } else {
            Progress::Done
        };
        QueueStatus {
            progress,
            queue,
            dead_letter_queue,
        }
    }
}

/// A queue's dead-letter queue.
#[derive(Debug, Clone)]
pub struct DeadLetterQueue {
    pub queue: SqsQueue,
    pub max_receive_count: u32,
}

/// What a dead message holds, tagged by `kind`: a copy job, a plan job, or unreadable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeadBody {
    Copy(Job),
    Plan(PlanJob),
    /// Not a job this ferry reads: why, and the start of the body.
    Unreadable {
        error: String,
        body: String,
    },
}

impl DeadBody {
    fn parse(body: &str) -> DeadBody {
        match QueuedJob::parse(body) {
            Ok(QueuedJob::Copy(job)) => DeadBody::Copy(job),
            Ok(QueuedJob::Plan(job)) => DeadBody::Plan(job),
            Err(error) => DeadBody::Unreadable {
                error: error.to_string(),
                body: truncate(body, BODY_PREVIEW),
            },
        }
    }
}

/// One message of the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadJob {
    pub message_id: String,
    #[serde(flatten)]
    pub body: DeadBody,
    /// SQS's receive count, the listing's own receive included.
    pub receive_count: u32,
    /// When the job was first sent, in milliseconds since the epoch (a message keeps its
    /// sent time when it moves to the dead-letter queue).
    pub sent_timestamp_ms: Option<u64>,
    /// The same, as RFC 3339 UTC.
    pub sent_at: Option<String>,
}

impl DeadJob {
    fn of(message: &Message) -> DeadJob {
        let sent_timestamp_ms: Option<u64> =
            system_attribute(message, MessageSystemAttributeName::SentTimestamp);
        DeadJob {
            message_id: message.message_id.clone().unwrap_or_default(),
            body: DeadBody::parse(message.body.as_deref().unwrap_or_default()),
            receive_count: receive_count(message),
            sent_timestamp_ms,
            sent_at: sent_timestamp_ms.map(rfc3339),
        }
    }
}

/// What `ferry dlq list` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadJobs {
    pub dead_letter_queue: String,
    /// The dead-letter queue's counts before the listing.
    pub counted: JobCounts,
    pub jobs: Vec<DeadJob>,
    /// Whether every dead job was seen.
    pub complete: bool,
    /// Why some may be missing, when `complete` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What `ferry dlq redrive` did.
#[derive(Debug, Serialize)]
pub struct Redriven {
    pub queue: String,
    pub dead_letter_queue: String,
    /// Jobs sent to the queue and deleted from the dead-letter queue.
    pub moved: usize,
    /// Jobs sent to the queue but still in the dead-letter queue too (the delete failed).
    pub not_deleted: usize,
    /// The dead-letter queue's counts afterwards.
    pub left: JobCounts,
    /// What stopped the redrive early, if anything did.
    #[serde(serialize_with = "display_error")]
    pub error: Option<QueueError>,
}

fn display_error<S: Serializer>(error: &Option<QueueError>, s: S) -> Result<S::Ok, S::Error> {
    match error {
        Some(error) => s.serialize_str(&error.to_string()),
        None => s.serialize_none(),
    }
}

/// A queue's redrive policy: where its dead jobs go, after how many receives.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RedrivePolicy {
    /// The dead-letter queue's account and name, from its ARN.
    account: String,
    name: String,
    max_receive_count: u32,
}

impl RedrivePolicy {
    /// The `RedrivePolicy` attribute: `{"deadLetterTargetArn": "arn:aws:sqs:REGION:ACCOUNT:NAME",
    /// "maxReceiveCount": 5}` (the count a number or a string of one).
    fn parse(text: &str) -> Result<RedrivePolicy, String> {
        if text.len() > MAX_POLICY_LEN {
            return Err(format!("{} bytes long", text.len()));
        }
        let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let arn = value
            .get("deadLetterTargetArn")
            .and_then(Value::as_str)
            .ok_or("no deadLetterTargetArn")?;
        let max_receive_count = match value.get("maxReceiveCount") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or("no positive maxReceiveCount")?;
        // arn:PARTITION:sqs:REGION:ACCOUNT:NAME
        let parts: Vec<&str> = arn.split(':').collect();
        let valid_name = |name: &str| {
            !name.is_empty()
                && name.len() <= 80
                && name
                    .trim_end_matches(".fifo")
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        match parts.as_slice() {
            ["arn", _, "sqs", _, account, name]
                if !account.is_empty()
                    && account.chars().all(|c| c.is_ascii_digit())
                    && valid_name(name) =>
            {
                Ok(RedrivePolicy {
                    account: account.to_string(),
                    name: name.to_string(),
                    max_receive_count,
                })
            }
            _ => Err(format!(
                "deadLetterTargetArn {:?} is not an SQS queue ARN",
                truncate(arn, 120)
            )),
        }
    }
}

impl SqsQueue {
    /// The queue's counts and its raw `RedrivePolicy`, in one call.
    async fn attributes(&self) -> Result<(JobCounts, Option<String>), QueueError> {
        let output = self
            .client()
            .get_queue_attributes()
            .queue_url(self.url())
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| service_error("GetQueueAttributes", e))?;
        let mut attributes = output.attributes.unwrap_or_default();
        let mut count = |name: QueueAttributeName| -> Result<u64, QueueError> {
            match attributes.remove(&name) {
                None => Ok(0),
                Some(text) => text.trim().parse().map_err(|_| QueueError::Service {
                    operation: "GetQueueAttributes",
                    message: format!(
                        "{} is not a count: {:?}",
                        name.as_str(),
                        truncate(&text, 40)
                    ),
                }),
            }
        };
        let counts = JobCounts {
            waiting: count(QueueAttributeName::ApproximateNumberOfMessages)?,
            in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?,
            delayed: count(QueueAttributeName::ApproximateNumberOfMessagesDelayed)?,
        };
        let policy = attributes
            .remove(&QueueAttributeName::RedrivePolicy)
            .filter(|p| !p.trim().is_empty());
        Ok((counts, policy))
    }

    /// The queue's counts.
    pub async fn job_counts(&self) -> Result<JobCounts, QueueError> {
        Ok(self.attributes().await?.0)
    }

    /// The dead-letter queue the redrive policy names, looked up by name and account; `None`
    /// without a redrive policy. Also returns the queue's own counts.
    async fn with_dead_letter_queue(
        &self,
    ) -> Result<(JobCounts, Option<DeadLetterQueue>), QueueError> {
        let (counts, policy) = self.attributes().await?;
        let Some(policy) = policy else {
            return Ok((counts, None));
        };
        let policy =
            RedrivePolicy::parse(&policy).map_err(|reason| QueueError::BadRedrivePolicy {
                queue: self.url().to_string(),
                reason,
            })?;
        let url = self
            .client()
            .get_queue_url()
            .queue_name(&policy.name)
            .queue_owner_aws_account_id(&policy.account)
            .send()
            .await
            .map_err(|e| service_error("GetQueueUrl", e))?
            .queue_url
            .ok_or_else(|| QueueError::Service {
                operation: "GetQueueUrl",
                message: format!("no URL for dead-letter queue {}", policy.name),
            })?;
        let dead_letter = DeadLetterQueue {
            queue: SqsQueue::with_client(self.client().clone(), url),
            max_receive_count: policy.max_receive_count,
        };
        Ok((counts, Some(dead_letter)))
    }

    /// The dead-letter queue from the redrive policy; an error naming the queue without one.
    pub async fn dead_letter_queue(&self) -> Result<DeadLetterQueue, QueueError> {
        self.with_dead_letter_queue()
            .await?
            .1
            .ok_or_else(|| QueueError::NoDeadLetterQueue {
                queue: self.url().to_string(),
            })
    }

    /// Jobs waiting, in flight and delayed on the queue and on its dead-letter queue.
    pub async fn status(&self) -> Result<QueueStatus, QueueError> {
        let (jobs, dead_letter) = self.with_dead_letter_queue().await?;
        let dead_letter_queue = match dead_letter {
            Some(dead) => Some(DeadLetterState {
                jobs: dead.queue.job_counts().await?,
                url: dead.queue.url().to_string(),
                max_receive_count: dead.max_receive_count,
            }),
            None => None,
        };
        let queue = QueueState {
            url: self.url().to_string(),
            jobs,
        };
        Ok(QueueStatus::new(queue, dead_letter_queue))
    }

    /// Up to `limit` jobs of the dead-letter queue, without consuming them: each is received
    /// (hidden for a few seconds, de-duplicated by message id) and made visible again at the
    /// end. Looks for at most SQS's approximate count plus a margin.
    pub async fn list_dead_jobs(&self, limit: usize) -> Result<DeadJobs, QueueError> {
        let dead = self.dead_letter_queue().await?.queue;
        let counted = dead.job_counts().await?;
        let visible = usize::try_from(counted.waiting).unwrap_or(usize::MAX);
        let want = visible.saturating_add(COUNT_MARGIN).min(limit);
        let mut seen = HashSet::new();
        let mut jobs = Vec::new();
        let mut receipts = Vec::new();
        let mut quiet = 0;
        let mut drained = false;
        let mut failure = None;
        // Every receive finds something new or spends one of the few quiet ones.
        for _ in 0..want.saturating_add(QUIET_RECEIVES) {
            if jobs.len() >= want {
                break;
            }
            let batch = match dead
                .receive_messages(want - jobs.len(), RECEIVE_WAIT, Some(LIST_VISIBILITY))
                .await
            {
                Ok(batch) => batch,
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            };
            let before = jobs.len();
            for message in &batch {
                receipts.extend(message.receipt_handle.clone());
                if seen.insert(message.message_id.clone().unwrap_or_default()) {
                    jobs.push(DeadJob::of(message));
                }
            }
            if jobs.len() == before {
                quiet += 1;
                if jobs.len() >= visible || quiet >= QUIET_RECEIVES {
                    drained = true;
                    break;
                }
            }
        }
        dead.release(&receipts).await;
        if let Some(error) = failure {
            return Err(error);
        }
        let hidden = counted.in_flight.saturating_add(counted.delayed);
        let note = if !drained && jobs.len() >= limit {
            Some(format!(
                "listed the first {limit}; about {} dead jobs are in the queue",
                counted.total()
            ))
        } else if !drained {
            Some(format!(
                "SQS counted about {visible} dead jobs, and more kept coming: there may be others"
            ))
        } else if hidden > 0 {
            Some(format!(
                "{hidden} dead jobs were hidden (received by another reader, or delayed) and \
                 could not be listed"
            ))
        } else if (jobs.len() as u64) < counted.waiting {
            Some(format!(
                "SQS counted about {} dead jobs, but only {} could be received",
                counted.waiting,
                jobs.len()
            ))
        } else {
            None
        };
        Ok(DeadJobs {
            dead_letter_queue: dead.url().to_string(),
            counted,
            jobs,
            complete: note.is_none(),
            note,
        })
    }

    /// Sends the dead-letter queue's jobs back to this queue: each is sent here first and
    /// deleted there after, and a message seen again within the run (its delete failed, or
    /// SQS delivered it twice) is deleted without being sent again. Looks for at most SQS's
    /// approximate count plus a margin; stops at the first failed send.
    pub async fn redrive_dead_jobs(&self) -> Result<Redriven, QueueError> {
        let dead = self.dead_letter_queue().await?.queue;
        let counted = dead.job_counts().await?;
        let want = usize::try_from(counted.waiting.saturating_add(counted.delayed))
            .unwrap_or(usize::MAX)
            .saturating_add(COUNT_MARGIN);
        let mut sent_ids: HashSet<String> = HashSet::new();
        let mut deleted_ids: HashSet<String> = HashSet::new();
        let mut handled = 0;
        let mut quiet = 0;
        let mut error = None;
        for _ in 0..want.saturating_add(QUIET_RECEIVES) {
            if handled >= want || quiet >= QUIET_RECEIVES {
                break;
            }
            let batch = match dead
                .receive_messages(SQS_MAX_BATCH, RECEIVE_WAIT, Some(REDRIVE_VISIBILITY))
                .await
            {
                Ok(batch) => batch,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            };
            // Without an id a message cannot be told from another, nor deleted without a
            // receipt: such a message is left where it is.
            let batch: Vec<(&str, &str, &Message)> = batch
                .iter()
                .filter_map(|m| {
                    let id = m.message_id.as_deref().filter(|id| !id.is_empty())?;
                    Some((id, m.receipt_handle.as_deref()?, m))
                })
                .collect();
            if batch.is_empty() {
                quiet += 1;
                continue;
            }
            handled += batch.len();
            let mut fresh_ids = HashSet::new();
            let fresh: Vec<(&str, &Message)> = batch
                .iter()
                .filter(|(id, _, _)| !sent_ids.contains(*id) && fresh_ids.insert(*id))
                .map(|(id, _, m)| (*id, *m))
                .collect();
            let messages: Vec<&Message> = fresh.iter().map(|(_, m)| *m).collect();
            let (sent, reason) = self.send_messages(&messages).await;
            for ((id, _), _) in fresh.iter().zip(&sent).filter(|(_, sent)| **sent) {
                sent_ids.insert(id.to_string());
            }
            // Deleted only once in the queue: a repeat of a message sent in this run too.
            let (delete, unsent): (Vec<_>, Vec<_>) =
                batch.iter().partition(|(id, _, _)| sent_ids.contains(*id));
            let receipts: Vec<String> = delete.iter().map(|(_, r, _)| r.to_string()).collect();
            let failed = dead.delete_all(&receipts).await;
            for (i, (id, _, _)) in delete.iter().enumerate() {
                if !failed.contains(&i) {
                    deleted_ids.insert(id.to_string());
                }
            }
            if !unsent.is_empty() {
                let receipts: Vec<String> = unsent.iter().map(|(_, r, _)| r.to_string()).collect();
                dead.release(&receipts).await;
                error = Some(QueueError::NotSent {
                    total: fresh.len(),
                    not_sent: unsent.len(),
                    reason: reason.unwrap_or_else(|| "no reason given".into()),
                });
                break;
            }
        }
        let moved = deleted_ids.len();
        let not_deleted = sent_ids.len() - moved;
        let left = dead.job_counts().await.unwrap_or_default();
        Ok(Redriven {
            queue: self.url().to_string(),
            dead_letter_queue: dead.url().to_string(),
            moved,
            not_deleted,
            left,
            error,
        })
    }

    /// Sends `messages`' bodies unchanged to this queue; which were sent, in order, and
    /// why some were not.
    async fn send_messages(&self, messages: &[&Message]) -> (Vec<bool>, Option<String>) {
        let bodies: Vec<String> = messages
            .iter()
            .map(|m| m.body.clone().unwrap_or_default())
            .collect();
        let (groups, too_large) = batches(&bodies);
        let mut sent = vec![false; bodies.len()];
        let mut reason = (!too_large.is_empty()).then(|| "a message is too large".to_string());
        for group in groups {
            let entries = group
                .iter()
                .map(|&i| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&bodies[i])
                        .build()
                        .expect("id and body are set")
                })
                .collect();
            let (ids, why) = self.send_batch(entries).await;
            for id in ids {
                if let Some(flag) = id.parse::<usize>().ok().and_then(|i| sent.get_mut(i)) {
                    *flag = true;
                }
            }
            if let Some(why) = why {
                reason.get_or_insert(why);
            }
        }
        (sent, reason)
    }

    /// Deletes received messages by receipt, ten per call; returns the indexes of those
    /// that could not be deleted.
    async fn delete_all(&self, receipts: &[String]) -> Vec<usize> {
        let mut failed = Vec::new();
        for (chunk_index, chunk) in receipts.chunks(SQS_MAX_BATCH).enumerate() {
            let offset = chunk_index * SQS_MAX_BATCH;
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id((offset + i).to_string())
                        .receipt_handle(receipt)
                        .build()
                        .expect("id and receipt are set")
                })
                .collect();
            match self
                .client()
                .delete_message_batch()
                .queue_url(self.url())
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(output) => failed.extend(
                    output
                        .failed
                        .iter()
                        .filter_map(|f| f.id.parse::<usize>().ok()),
                ),
                Err(error) => {
                    tracing::warn!(error = %service_error("DeleteMessageBatch", error), "could not delete redriven messages from the dead-letter queue");
                    failed.extend(offset..offset + chunk.len());
                }
            }
        }
        failed
    }

    /// Makes received messages visible again at once; one that stays hidden comes back when
    /// its visibility timeout ends, so a failure here is only logged.
    async fn release(&self, receipts: &[String]) {
        for chunk in receipts.chunks(SQS_MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(0)
                        .build()
                        .expect("id and receipt are set")
                })
                .collect();
            if let Err(error) = self
                .client()
                .change_message_visibility_batch()
                .queue_url(self.url())
                .set_entries(Some(entries))
                .send()
                .await
            {
                tracing::warn!(error = %service_error("ChangeMessageVisibilityBatch", error), "could not make listed messages visible again; they will be after their timeout");
            }
        }
    }
}

/// `ms` milliseconds since the epoch as RFC 3339 UTC, to the second.
fn rfc3339(ms: u64) -> String {
    crate::timestamp::rfc3339(ms / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_redrive_policies() {
        let policy = RedrivePolicy::parse(
            r#"{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:123456789012:ferry-dlq","maxReceiveCount":"5"}"#,
        )
        .unwrap();
        assert_eq!(
            policy,
            RedrivePolicy {
                account: "123456789012".into(),
                name: "ferry-dlq".into(),
                max_receive_count: 5
            }
        );
        let numeric = RedrivePolicy::parse(
            r#"{"deadLetterTargetArn":"arn:aws-cn:sqs:cn-north-1:1:q.fifo","maxReceiveCount":3}"#,
        )
        .unwrap();
        assert_eq!(
            (numeric.name.as_str(), numeric.max_receive_count),
            ("q.fifo", 3)
        );
    }

    #[test]
    fn refuses_redrive_policies_that_are_not_sqs_s() {
        for bad in [
            "",
            "not json",
            "[]",
            r#"{"maxReceiveCount":5}"#,
            r#"{"deadLetterTargetArn":"arn:aws:sqs:r:1:q"}"#,
            r#"{"deadLetterTargetArn":"arn:aws:sqs:r:1:q","maxReceiveCount":0}"#,
            r#"{"deadLetterTargetArn":"arn:aws:sqs:r:1:q","maxReceiveCount":-1}"#,
            r#"{"deadLetterTargetArn":"arn:aws:sqs:r:1:q","maxReceiveCount":99999999999}"#,
            r#"{"deadLetterTargetArn":"arn:aws:sns:r:1:q","maxReceiveCount":5}"#,
            r#"{"deadLetterTargetArn":"arn:aws:sqs:r:acct:q","maxReceiveCount":5}"#,
            r#"{"deadLetterTargetArn":"arn:aws:sqs:r:1:q/../x","maxReceiveCount":5}"#,
            r#"{"deadLetterTargetArn":"arn:aws:sqs:r:1:","maxReceiveCount":5}"#,
        ] {
            assert!(RedrivePolicy::parse(bad).is_err(), "{bad}");
        }
        let long = format!(r#"{{"deadLetterTargetArn":"{}"}}"#, "a".repeat(10_000));
        let error = RedrivePolicy::parse(&long).unwrap_err();
        assert!(error.len() < 100, "{error}");
    }

    #[test]
    fn progress_follows_the_counts() {
        let queue = |waiting| QueueState {
            url: "q".into(),
            jobs: JobCounts {
                waiting,
                ..JobCounts::default()
            },
        };
        let dead = |in_flight| DeadLetterState {
            url: "d".into(),
            max_receive_count: 1,
            jobs: JobCounts {
                in_flight,
                ..JobCounts::default()
            },
        };
        assert_eq!(QueueStatus::new(queue(0), None).progress, Progress::Done);
        assert_eq!(
            QueueStatus::new(queue(0), Some(dead(0))).progress,
            Progress::Done
        );
        assert_eq!(
            QueueStatus::new(queue(2), Some(dead(1))).progress,
            Progress::Running
        );
        assert_eq!(
            QueueStatus::new(queue(0), Some(dead(1))).progress,
            Progress::DeadJobs
        );
        let json = serde_json::to_value(QueueStatus::new(queue(3), None)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "progress": "running",
                "queue": {"url": "q", "jobs": {"waiting": 3, "in_flight": 0, "delayed": 0}},
                "dead_letter_queue": null,
            })
        );
    }

    #[test]
    fn dead_jobs_say_their_kind() {
        let body = r#"{"v":1,"plan_id":"p","source":"a.io/x:1","targets":["b.io/x:1"]}"#;
        let copy = DeadJob {
            message_id: "m1".into(),
            body: DeadBody::parse(body),
            receive_count: 3,
            sent_timestamp_ms: Some(1_700_000_000_123),
            sent_at: Some(rfc3339(1_700_000_000_123)),
        };
        let json = serde_json::to_value(&copy).unwrap();
        assert_eq!(json["kind"], "copy");
        assert_eq!(json["source"], "a.io/x:1");
        assert_eq!(json["targets"], serde_json::json!(["b.io/x:1"]));
        assert_eq!(json["receive_count"], 3);
        assert_eq!(json["sent_at"], "2023-11-14T22:13:20Z");

        let garbage = DeadBody::parse(&format!("{{not json{}", "x".repeat(1000)));
        let json = serde_json::to_value(&garbage).unwrap();
        assert_eq!(json["kind"], "unreadable");
        assert!(json["error"].as_str().unwrap().contains("not JSON"));
        assert!(json["body"].as_str().unwrap().chars().count() <= BODY_PREVIEW + 1);
    }

    #[test]
    fn formats_timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_999), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
    }
}
