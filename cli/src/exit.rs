//! Exit statuses, decided once: 0 all done, 1 a registry or an image failed, 2 bad input
//! (bad files or bad flags: nothing was contacted), 130 a second Ctrl-C.

use std::process::ExitCode;

use ferry::input::InputError;
use ferry::platform::PlatformError;
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Failed,
    BadInput,
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> Self {
        match status {
            Status::Success => ExitCode::SUCCESS,
            Status::Failed => ExitCode::from(1),
            Status::BadInput => ExitCode::from(2),
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

/// Prints an error that ended the run and picks its exit status.
pub fn report(error: &anyhow::Error) -> ExitCode {
    eprintln!("ferry: {error:#}");
    let bad_input = error.downcast_ref::<InputError>().is_some()
        || error.downcast_ref::<UsageError>().is_some();
    if bad_input {
        Status::BadInput.into()
    } else {
        Status::Failed.into()
    }
}
