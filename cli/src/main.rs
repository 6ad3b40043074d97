//! `ferry`: the command line. It parses flags, loads the input files through `shared`, and
//! wires the library's planner (and, later, copier) together; no domain logic lives here.

mod args;
mod exit;
mod logging;
mod plan;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _log_guard = match logging::init(cli.log_file()) {
        Ok(guard) => guard,
        Err(error) => return exit::report(&error),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return exit::report(&anyhow::Error::from(error)),
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Some(Command::Plan(args)) => plan::run(args).await,
            None => {
                use clap::CommandFactory;
                Cli::command().print_help()?;
                Ok(exit::Status::BadInput)
            }
        }
    });
    match outcome {
        Ok(status) => status.into(),
        Err(error) => exit::report(&error),
    }
}
