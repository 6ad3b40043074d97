//! Exit statuses, decided once: 0 all done, 1 a registry, an image or S3 failed, 2 bad input
//! (bad files, missing or refused S3 objects, or bad flags: no registry was contacted), 130 a
//! second Ctrl-C; `ferry status`
//! adds 3 (jobs still queued) and 4 (only dead jobs left), which are not errors. The
//! library's error kinds (`ferry::error::Kind`) map to statuses here and nowhere else.

use std::process::ExitCode;

use ferry::copy::CopyError;
use ferry::discover::DiscoverError;
use ferry::error::{HasKind, Kind};
use ferry::input::InputError;
use ferry::job::JobError;
use ferry::platform::PlatformError;
use ferry::queue::QueueError;
use ferry::registry::RegistryError;
use ferry::rules::TargetCollision;
use ferry::webhook::WebhookConfigError;
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Failed,
    BadInput,
    /// `ferry status`: jobs are waiting, in flight or delayed on the queue.
    Pending,
    /// `ferry status`: the queue is empty, but its dead-letter queue is not.
    DeadJobs,
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> Self {
        match status {
            Status::Success => ExitCode::SUCCESS,
            Status::Failed => ExitCode::from(1),
            Status::BadInput => ExitCode::from(2),
            Status::Pending => ExitCode::from(3),
            Status::DeadJobs => ExitCode::from(4),
        }
    }
}

/// The shell's status for a process ended by SIGINT, used when a second Ctrl-C quits at once.
pub const INTERRUPTED: i32 = 130;

/// A flag value clap accepted but ferry cannot use (checked before any request).
#[derive(Debug, Error)]
pub enum UsageError {
    #[error(transparent)]
    Platform(#[from] PlatformError),
}

impl HasKind for UsageError {
    fn kind(&self) -> Kind {
        Kind::BadInput
    }
}

impl Status {
    /// The status for a run that ended with an error of this kind: bad input is 2 (nothing
    /// was contacted), everything else 1.
    pub fn of(kind: Option<Kind>) -> Status {
        match kind {
            Some(Kind::BadInput) => Status::BadInput,
            _ => Status::Failed,
        }
    }
}

/// The kind of the outermost library error in the chain; `None` for errors of the edge
/// itself (a file that could not be written, say).
fn kind_of(error: &anyhow::Error) -> Option<Kind> {
    fn kind<E: HasKind + std::error::Error + 'static>(
        cause: &(dyn std::error::Error + 'static),
    ) -> Option<Kind> {
        cause.downcast_ref::<E>().map(HasKind::kind)
    }
    error.chain().find_map(|cause| {
        kind::<UsageError>(cause)
            .or_else(|| kind::<InputError>(cause))
            .or_else(|| kind::<PlatformError>(cause))
            .or_else(|| kind::<QueueError>(cause))
            .or_else(|| kind::<JobError>(cause))
            .or_else(|| kind::<RegistryError>(cause))
            .or_else(|| kind::<CopyError>(cause))
            .or_else(|| kind::<WebhookConfigError>(cause))
            .or_else(|| kind::<DiscoverError>(cause))
            .or_else(|| kind::<TargetCollision>(cause))
    })
}

/// Prints an error that ended the run and picks its exit status from its kind.
pub fn report(error: &anyhow::Error) -> ExitCode {
    eprintln!("ferry: {error:#}");
    Status::of(kind_of(error)).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_kind_anywhere_in_the_chain() {
        let bad = anyhow::Error::from(InputError::NoImages).context("loading inputs");
        assert_eq!(kind_of(&bad), Some(Kind::BadInput));
        assert_eq!(Status::of(kind_of(&bad)), Status::BadInput);
        let queue = anyhow::Error::from(QueueError::InvalidReceipt);
        assert_eq!(Status::of(kind_of(&queue)), Status::Failed);
        let no_dlq = anyhow::Error::from(QueueError::NoDeadLetterQueue { queue: "q".into() });
        assert_eq!(Status::of(kind_of(&no_dlq)), Status::BadInput);
        let edge = anyhow::anyhow!("cannot write the report");
        assert_eq!(kind_of(&edge), None);
        assert_eq!(Status::of(kind_of(&edge)), Status::Failed);
    }
}
