//! `ferry`: the command line. It parses flags, loads the input files through `shared`, and
//! wires the library's planner and copier together; no domain logic lives here.

mod args;
mod discover;
mod dlq;
mod exit;
mod inputs;
mod interrupt;
mod logging;
mod outputs;
mod plan;
mod progress;
mod serve;
mod settings;
mod status;
mod summary;
mod sync;
mod webhook_http;
mod worker;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

fn main() -> ExitCode {
    let command = Cli::parse().into_command();
    let _log_guard = match logging::init(command.log_file()) {
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
        match command {
            Command::Sync(args) => sync::run(args).await,
            Command::Plan(args) => plan::run(args).await,
            Command::Worker(args) => worker::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::Dlq(command) => dlq::run(command).await,
            Command::Discover(args) => discover::run(args).await,
        }
    });
    match outcome {
        Ok(status) => status.into(),
        Err(error) => exit::report(&error),
    }
}
