//! Exit statuses, decided once: 0 all done, 1 a registry failed us, 2 bad input.

use std::process::ExitCode;

use shared::input::InputError;

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

/// Prints an error that ended the run and picks its exit status.
pub fn report(error: &anyhow::Error) -> ExitCode {
    eprintln!("ferry: {error:#}");
    let bad_input = error.downcast_ref::<InputError>().is_some();
    if bad_input {
        Status::BadInput.into()
    } else {
        Status::Failed.into()
    }
}
