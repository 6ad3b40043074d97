//! Command-line flags, image-syncer's names and meanings kept (`--auth`, `--images`,
//! `--config`, `--registry`, `--namespace`, `--log`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Copy container images between Docker Registry V2 / OCI registries",
    long_about = None,
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    pub fn log_file(&self) -> Option<&std::path::Path> {
        match &self.command {
            Some(Command::Plan(args)) => args.input.log.as_deref(),
            None => None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Resolve the rules against the source registries and print one JSON line per copy.
    Plan(PlanArgs),
}

/// The input files and defaults every command reads.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Auth file (YAML or JSON): registry or registry/namespace → username, password, insecure, ca.
    /// Defaults to ./auth.json if it exists.
    #[arg(long, value_name = "FILE")]
    pub auth: Option<PathBuf>,
    /// Images file (YAML or JSON): source → target or [targets]. Defaults to ./images.json.
    #[arg(long, value_name = "FILE")]
    pub images: Option<PathBuf>,
    /// Legacy image-syncer config (JSON or YAML) with "auth" and "images" keys.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Default target registry for rules with an empty target [env: DEFAULT_REGISTRY].
    #[arg(long, value_name = "REGISTRY")]
    pub registry: Option<String>,
    /// Default target namespace for rules with an empty target [env: DEFAULT_NAMESPACE].
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Write logs to FILE instead of standard error.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Page size asked of tags/list (the registry's own default when unset).
    #[arg(long, value_name = "N", hide = true)]
    pub tags_page_size: Option<usize>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub input: InputArgs,
}
