//! `ferry-bench`: ferry against `skopeo sync --all` and a raw copy floor, on two local
//! `docker-registry` processes speaking TLS (test CA) with Basic auth (or token auth), on
//! deterministic corpora. Several runs per figure, medians reported; a table on standard
//! output, JSON and Markdown in `infra/bench/results/`. Nothing asserts timings, but every
//! copy is checked (every tag at its source digest, every child manifest, every blob with
//! its size) and a wrong copy stops the benchmark. The `planner` scenario measures
//! `ferry plan --queue-url` on 10,000 tags into a local SQS (`moto_server`), checked too
//! (see `planner.rs`). See `infra/bench/run.sh`.
//!
//! This file owns the command line and the shapes of the results; the scenarios are
//! `scenarios.rs`'s, how each contender is run `contenders.rs`'s, the registries'
//! per-request cost `calibrate.rs`'s. Registries, the test CA, seeding and ferry's auth
//! file come from the integration tests' harness (`support`, package `ferry-tests`).

mod calibrate;
mod contenders;
mod corpus;
mod counts;
mod figures;
mod floor;
mod machine;
mod planner;
mod purge;
mod report;
mod runner;
mod scenarios;
mod seeding;

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;
use support::Mode;

use counts::SideCounts;
use runner::Measured;

#[derive(Debug, Parser)]
#[command(
    name = "ferry-bench",
    about = "Benchmark ferry against skopeo sync and a raw copy floor"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Runs per figure (medians are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Smoke test: a small corpus (C1 at 1/64 size, 100 warm tags, 64/128 MiB layers, 1,000
    /// planner tags) and one run unless --runs is given.
    #[arg(long)]
    quick: bool,
    /// Blob transfers in flight for ferry (--proc) and the floor.
    #[arg(long, default_value_t = 5)]
    proc: usize,
    /// Scenarios to run (all by default).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<ScenarioId>,
    /// Contenders to run (all by default): ferry, skopeo, floor, floor-h2.
    #[arg(long, value_enum, value_delimiter = ',')]
    tools: Vec<Tool>,
    /// Registry authentication.
    #[arg(long, value_enum, default_value_t = AuthMode::Basic)]
    auth: AuthMode,
    /// The ferry binary (default: `ferry` next to this executable).
    #[arg(long)]
    ferry: Option<PathBuf>,
    /// The commit the ferry binary was built from, for the report (default: this
    /// checkout's HEAD, marked when the tree has uncommitted changes).
    #[arg(long)]
    ferry_commit: Option<String>,
    /// Where to write latest.json and latest.md.
    #[arg(long, default_value = "infra/bench/results")]
    out: PathBuf,
    /// Keep the work directory (logs, input files) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// The raw floor copier (run by the benchmark itself).
    Floor { spec: PathBuf },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum ScenarioId {
    Cold,
    Warm,
    /// The warm run again by ferry with every tag immutable (`--immutable-tags=.`), in the
    /// warm scenario's rounds, on its target (filled as for warm).
    WarmImmutable,
    /// The warm run again by ferry with `--referrers=false`, in the warm scenario's rounds:
    /// what looking for referrers costs a no-op re-sync.
    WarmNoReferrers,
    /// Cold C1 by ferry into three target registries at once, against one.
    ThreeTargets,
    Big,
    /// What one request costs the registries (HEAD manifest, keep-alive), per mode.
    Calibrate,
    /// `ferry plan --queue-url` on one repository of 10,000 tags into moto_server, cold
    /// (target empty) and warm (target in sync).
    Planner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum AuthMode {
    /// TLS + htpasswd Basic auth.
    Basic,
    /// TLS + Bearer tokens from an HTTPS token issuer.
    Token,
}

impl AuthMode {
    fn mode(self) -> Mode {
        match self {
            AuthMode::Basic => Mode::BasicTls,
            AuthMode::Token => Mode::Token,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    Ferry,
    Skopeo,
    Floor,
    /// The floor over HTTP/2 (one multiplexed connection per registry, as ferry's client
    /// negotiates), to separate the protocol's cost from the copier's.
    FloorH2,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Ferry => "ferry",
            Tool::Skopeo => "skopeo",
            Tool::Floor => "floor",
            Tool::FloorH2 => "floor-h2",
        }
    }
}

/// One measured run.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub tool: Tool,
    pub round: usize,
    #[serde(flatten)]
    pub measured: Measured,
    /// CPU the source and target registry processes used during the run.
    pub registry_cpu_s: f64,
    pub requests: SideCounts,
    /// Figures particular to a scenario (the planner's phases, moto's CPU, purges).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, f64>,
}

/// Every run of one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioResult {
    pub id: String,
    pub title: String,
    pub corpus: Option<corpus::Stats>,
    /// Blobs a complete copy places: (repository, blob) pairs, and unique blobs/bytes.
    pub placements: usize,
    pub unique_blobs: usize,
    pub unique_bytes: u64,
    pub tags: usize,
    pub manifests: usize,
    pub seed_s: f64,
    pub runs: Vec<Run>,
}

impl ScenarioResult {
    pub fn runs_of(&self, tool: Tool) -> impl Iterator<Item = &Run> {
        self.runs.iter().filter(move |r| r.tool == tool)
    }
}

struct Bench {
    args: Args,
    mode: Mode,
    ferry: PathBuf,
    work: tempfile::TempDir,
    seq: usize,
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if let Some(Cmd::Floor { spec }) = &args.command {
        return floor::main(spec);
    }
    if args.quick && !std::env::args().any(|a| a.starts_with("--runs")) {
        args.runs = 1;
    }
    args.runs = args.runs.max(1);
    let ferry = args.ferry.clone().unwrap_or_else(runner::default_ferry_bin);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let work = tempfile::Builder::new().prefix("ferry-bench-").tempdir()?;
    let mut bench = Bench {
        mode: args.auth.mode(),
        args,
        ferry,
        work,
        seq: 0,
    };
    let result = rt.block_on(bench.run_all());
    if bench.args.keep {
        let kept = bench.work.keep();
        eprintln!("work directory kept: {}", kept.display());
    }
    result
}
