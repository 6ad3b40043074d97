//! The job queue of ferry's serverless mode: the planner sends [`Job`]s (and, for a large
//! migration, [`PlanJob`]s that workers expand into more), workers receive, execute and
//! delete them. This file owns the [`Queue`] abstraction, its errors and SQS's
//! limits; [`SqsQueue`] (`sqs.rs`) talks to Amazon SQS (or anything speaking its API, such
//! as moto), [`MemoryQueue`] (`memory.rs`) is an in-process queue with the same delivery
//! semantics for `ferry serve`, tests and local runs; `watch.rs` reads an SQS queue's counts
//! and its dead-letter queue for `ferry status` and `ferry dlq`. What a job is belongs to
//! `job`.
//!
//! Semantics shared by both: delivery is at least once. A received message is hidden for
//! the queue's visibility timeout and comes back (with a higher `receive_count`) unless it
//! is deleted first; a worker that needs longer extends the timeout.

mod journal;
mod memory;
mod sqs;
mod watch;

use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

use crate::error::{HasKind, Kind};
use crate::job::{Job, PlanJob};

pub use journal::{JournalQueue, JOURNAL_FILE};
pub use memory::MemoryQueue;
pub use sqs::{queue_url_from_env, SqsQueue, QUEUE_URL_VARIABLE};
pub use watch::{
    DeadBody, DeadJob, DeadJobs, DeadLetterQueue, DeadLetterState, JobCounts, Progress, QueueState,
    QueueStatus, Redriven,
};

/// SQS's limits: messages per batch call, seconds of long polling, the largest message and
/// batch payload, the longest visibility timeout.
pub const SQS_MAX_BATCH: usize = 10;
pub const SQS_MAX_WAIT: Duration = Duration::from_secs(20);
pub const SQS_MAX_PAYLOAD: usize = 256 * 1024;
pub const SQS_MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);

/// What [`Queue::send`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendSummary {
    pub sent: usize,
}

/// One received message. `receipt` is what [`Queue::delete`] and
/// [`Queue::extend_visibility`] need; it changes with every delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: String,
    pub receipt: String,
    pub body: String,
    /// How many times the message was received, this delivery included.
    pub receive_count: u32,
}

/// Why a queue operation failed.
#[derive(Debug, Error)]
pub enum QueueError {
    #[error("{not_sent} of {total} jobs were not sent to the queue: {reason}")]
    NotSent {
        total: usize,
        not_sent: usize,
        reason: String,
    },
    #[error("queue {operation} failed: {message}")]
    Service {
        operation: &'static str,
        message: String,
    },
    #[error("receipt handle is not valid (the message was deleted or received again)")]
    InvalidReceipt,
    #[error("{QUEUE_URL_VARIABLE} is not set")]
    NoQueueUrl,
    #[error(
        "queue {queue} has no redrive policy, so no dead-letter queue (name the queue jobs are \
         sent to, not a dead-letter queue)"
    )]
    NoDeadLetterQueue { queue: String },
    #[error("queue {queue} has a redrive policy ferry cannot read: {reason}")]
    BadRedrivePolicy { queue: String, reason: String },
    #[error("job journal {}: cannot {operation}: {message}", path.display())]
    Journal {
        path: std::path::PathBuf,
        operation: &'static str,
        message: String,
    },
}

impl HasKind for QueueError {
    fn kind(&self) -> Kind {
        match self {
            QueueError::NoQueueUrl | QueueError::NoDeadLetterQueue { .. } => Kind::BadInput,
            _ => Kind::Queue,
        }
    }
}

/// A job queue. Object safe, so the Lambda functions can hold a `Box<dyn Queue>`.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends one message per body (a [`Job`]'s or a [`PlanJob`]'s). Fails if any could not
    /// be sent, naming how many.
    async fn send_bodies(&self, bodies: &[String]) -> Result<SendSummary, QueueError>;

    /// Sends one message per copy job.
    async fn send(&self, jobs: &[Job]) -> Result<SendSummary, QueueError> {
        let bodies: Vec<String> = jobs.iter().map(Job::to_body).collect();
        self.send_bodies(&bodies).await
    }

    /// Sends one message per plan job.
    async fn send_plans(&self, jobs: &[PlanJob]) -> Result<SendSummary, QueueError> {
        let bodies: Vec<String> = jobs.iter().map(PlanJob::to_body).collect();
        self.send_bodies(&bodies).await
    }

    /// Up to `max` (at most 10) messages, waiting up to `wait` for the first one; an empty
    /// list when none arrived in time.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError>;

    /// Removes a received message for good.
    async fn delete(&self, receipt: &str) -> Result<(), QueueError>;

    /// Hides a received message for `timeout` from now (zero: visible again at once).
    async fn extend_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError>;
}

/// Jobs for the queues' tests.
#[cfg(test)]
mod testing {
    use crate::job::Job;

    /// `n` distinct, valid jobs.
    pub(super) fn jobs(n: usize) -> Vec<Job> {
        (0..n)
            .map(|i| {
                Job::parse(&format!(
                    r#"{{"v":1,"plan_id":"t","source":"a.io/x:{i}","targets":["b.io/x:{i}"]}}"#
                ))
                .unwrap()
            })
            .collect()
    }
}
