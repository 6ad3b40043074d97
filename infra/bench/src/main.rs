//! `ferry-bench`: ferry against `skopeo sync --all` and a raw copy floor, on two local
//! `docker-registry` processes speaking TLS (test CA) with Basic auth (or token auth), on
//! deterministic corpora. Several runs per figure, medians reported; a table on standard
//! output, JSON and Markdown in `infra/bench/results/`. Nothing asserts timings, but every
//! copy is checked (every tag at its source digest, every child manifest, every blob with
//! its size) and a wrong copy stops the benchmark. The `planner` scenario measures
//! `ferry plan --queue-url` on 10,000 tags into a local SQS (`moto_server`), checked too
//! (see `planner.rs`). See `infra/bench/run.sh`.

mod corpus;
mod counts;
mod floor;
mod planner;
mod report;
mod runner;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;
use support::{Mode, Pki, Registry};

use corpus::{Corpus, Seeded};
use counts::SideCounts;
use runner::{clean_command, run_measured, Measured};

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

impl Bench {
    fn wants(&self, id: ScenarioId) -> bool {
        self.args.only.is_empty() || self.args.only.contains(&id)
    }

    /// `tools` rotated by `round` (so no tool always runs first, on a cold page cache, or
    /// last), without those `--tools` leaves out.
    fn order(&self, tools: &[Tool], round: usize) -> Vec<Tool> {
        let mut v: Vec<Tool> = tools
            .iter()
            .copied()
            .filter(|t| self.args.tools.is_empty() || self.args.tools.contains(t))
            .collect();
        if !v.is_empty() {
            let n = v.len();
            v.rotate_left(round % n);
        }
        v
    }

    async fn run_all(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let load_start = report::load_average();
        let machine = report::Machine::probe(&self.ferry, self.args.ferry_commit.as_deref());
        eprintln!(
            "ferry-bench: {} runs per figure, --proc {}, {:?} registries, ferry {}",
            self.args.runs,
            self.args.proc,
            self.mode,
            self.ferry.display()
        );
        Pki::get();
        let source = Registry::start(self.mode);
        eprintln!("source registry: {}", source.base_url());
        let mut scenarios = Vec::new();
        let calibration = if self.wants(ScenarioId::Calibrate) {
            calibrate().await?
        } else {
            Vec::new()
        };
        if self.wants(ScenarioId::Cold) {
            scenarios.push(self.cold(&source).await?);
        }
        if self.wants(ScenarioId::Warm) {
            scenarios.push(self.warm(&source).await?);
        }
        if self.wants(ScenarioId::Big) {
            let (one, two) = if self.args.quick {
                (64 << 20, 128 << 20)
            } else {
                (1 << 30, 2 << 30)
            };
            scenarios.push(self.big(&source, "1g", one).await?);
            scenarios.push(self.big(&source, "2g", two).await?);
        }
        // ferry is the only contender here.
        if self.wants(ScenarioId::Planner) && !self.order(&[Tool::Ferry], 0).is_empty() {
            scenarios.extend(self.planner(&source).await?);
        }
        let settings = report::Settings {
            runs: self.args.runs,
            proc: self.args.proc,
            quick: self.args.quick,
            auth: match self.mode {
                Mode::Token => "Bearer token".into(),
                _ => "Basic".into(),
            },
            // run.sh names itself; otherwise our own command line.
            command: std::env::var("FERRY_BENCH_COMMAND")
                .unwrap_or_else(|_| std::env::args().collect::<Vec<_>>().join(" ")),
            duration_s: started.elapsed().as_secs_f64(),
            load_start,
            load_end: report::load_average(),
        };
        let report = report::Report::new(machine, settings, calibration, scenarios);
        print!("{}", report.text_table());
        std::fs::create_dir_all(&self.args.out)?;
        let json = self.args.out.join("latest.json");
        std::fs::write(&json, serde_json::to_vec_pretty(&report)?)?;
        let md = self.args.out.join("latest.md");
        std::fs::write(&md, report.markdown())?;
        eprintln!("wrote {} and {}", json.display(), md.display());
        Ok(())
    }

    fn next_dir(&mut self, what: &str) -> anyhow::Result<PathBuf> {
        self.seq += 1;
        let dir = self.work.path().join(format!("{:03}-{what}", self.seq));
        std::fs::create_dir_all(dir.join("home"))?;
        Ok(dir)
    }

    /// Seed `corpus` into `source`, timing it.
    async fn seed(&self, source: &Registry, corpus: &Corpus) -> (Seeded, f64) {
        let t = Instant::now();
        let seeded = corpus::seed(source, corpus, 8).await;
        let secs = t.elapsed().as_secs_f64();
        let (n, bytes) = seeded.unique_blobs();
        eprintln!(
            "seeded {}: {} tags, {} unique blobs, {:.1} MiB in {secs:.1} s",
            corpus.name,
            seeded.tags.len(),
            n,
            bytes as f64 / 1048576.0
        );
        (seeded, secs)
    }

    fn scenario(
        &self,
        id: &str,
        title: String,
        corpus: &Corpus,
        seeded: &Seeded,
        seed_s: f64,
    ) -> ScenarioResult {
        let (unique_blobs, unique_bytes) = seeded.unique_blobs();
        ScenarioResult {
            id: id.into(),
            title,
            corpus: Some(corpus.stats()),
            placements: seeded.placements.len(),
            unique_blobs,
            unique_bytes,
            tags: seeded.tags.len(),
            manifests: seeded.tags.len() + seeded.children.len(),
            seed_s,
            runs: Vec::new(),
        }
    }

    /// Cold sync of C1 into a fresh target registry per run.
    async fn cold(&mut self, source: &Registry) -> anyhow::Result<ScenarioResult> {
        let corpus = corpus::c1(if self.args.quick { 64 } else { 1 });
        let (seeded, seed_s) = self.seed(source, &corpus).await;
        let stats = corpus.stats();
        let title = format!(
            "cold sync C1 ({} tags, {} repos, {:.0} MiB unique)",
            stats.tags,
            stats.repositories,
            seeded.unique_blobs().1 as f64 / 1048576.0
        );
        let mut result = self.scenario("cold_c1", title, &corpus, &seeded, seed_s);
        for round in 0..self.args.runs {
            let tools = [Tool::Floor, Tool::Ferry, Tool::Skopeo, Tool::FloorH2];
            for tool in self.order(&tools, round) {
                let run = self
                    .cold_run(source, &corpus, &seeded, tool, round, "c1")
                    .await?;
                result.runs.push(run);
            }
        }
        Ok(result)
    }

    /// One copy of `corpus` by `tool` into a fresh target; verified.
    async fn cold_run(
        &mut self,
        source: &Registry,
        corpus: &Corpus,
        seeded: &Seeded,
        tool: Tool,
        round: usize,
        what: &str,
    ) -> anyhow::Result<Run> {
        let target = Registry::start(self.mode);
        let run = self
            .run_tool(source, &target, corpus, seeded, tool, round, what)
            .await?;
        let problems = if matches!(tool, Tool::Floor | Tool::FloorH2) {
            let blobs_only = Seeded {
                placements: seeded.placements.clone(),
                ..Seeded::default()
            };
            corpus::verify(&target, &blobs_only, true, 8).await?
        } else {
            corpus::verify(&target, seeded, true, 8).await?
        };
        if !problems.is_empty() {
            anyhow::bail!(
                "{} copied {what} wrongly (round {round}), {} problems:\n  {}",
                tool.name(),
                problems.len(),
                sample(&problems).join("\n  ")
            );
        }
        eprintln!(
            "  {what} round {round} {:<6} {:>7.2} s  cpu {:>6.2} s  rss {:>7.1} MiB  registries cpu {:>6.2} s  requests {:>6}  (verified)",
            tool.name(),
            run.measured.wall_s,
            run.measured.cpu_s(),
            run.measured.max_rss_kib as f64 / 1024.0,
            run.registry_cpu_s,
            run.requests.total()
        );
        Ok(run)
    }

    /// Run `tool` copying `corpus` from `source` to `target`, measured and counted (not
    /// verified).
    #[allow(clippy::too_many_arguments)]
    async fn run_tool(
        &mut self,
        source: &Registry,
        target: &Registry,
        corpus: &Corpus,
        seeded: &Seeded,
        tool: Tool,
        round: usize,
        what: &str,
    ) -> anyhow::Result<Run> {
        let dir = self.next_dir(&format!("{what}-{}-{round}", tool.name()))?;
        let home = dir.join("home");
        let cmd = match tool {
            Tool::Ferry => self.ferry_command(source, target, corpus, &dir, &home)?,
            Tool::Skopeo => self.skopeo_command(source, target, corpus, &dir, &home)?,
            Tool::Floor => self.floor_command(source, target, seeded, &dir, &home, false)?,
            Tool::FloorH2 => self.floor_command(source, target, seeded, &dir, &home, true)?,
        };
        let log = dir.join("output.log");
        // Write back what earlier runs left dirty (a copy writes gigabytes), so that
        // writeback does not overlap this run.
        tokio::task::block_in_place(|| {
            // SAFETY: sync(2) has no preconditions.
            unsafe { libc::sync() }
        });
        source.clear_requests();
        target.clear_requests();
        let cpu_before = runner::process_cpu_s(source.pid()) + runner::process_cpu_s(target.pid());
        let measured = tokio::task::block_in_place(|| run_measured(cmd, &log))?;
        let registry_cpu_s =
            runner::process_cpu_s(source.pid()) + runner::process_cpu_s(target.pid()) - cpu_before;
        if !measured.success {
            anyhow::bail!(
                "{} failed on {what} ({}); its output ({}):\n{}",
                tool.name(),
                measured.exit,
                log.display(),
                runner::tail(&log, 40)
            );
        }
        let requests = SideCounts::of(source, target);
        Ok(Run {
            tool,
            round,
            measured,
            registry_cpu_s,
            requests,
            extra: BTreeMap::new(),
        })
    }

    fn credentials(&self) -> (&'static str, &'static str) {
        self.mode
            .credentials()
            .expect("auth modes have credentials")
    }

    /// ferry's auth file for `registries`: the mode's credentials and the test CA.
    fn auth_yaml(&self, registries: &[&Registry]) -> String {
        let (user, password) = self.credentials();
        let ca = Pki::get().ca_cert.display().to_string();
        let mut auth = String::new();
        for reg in registries {
            auth += &format!(
                "{:?}:\n  username: {user:?}\n  password: {password:?}\n  ca: {ca:?}\n",
                reg.host()
            );
        }
        auth
    }

    fn ferry_command(
        &self,
        source: &Registry,
        target: &Registry,
        corpus: &Corpus,
        dir: &Path,
        home: &Path,
    ) -> anyhow::Result<std::process::Command> {
        let auth = self.auth_yaml(&[source, target]);
        let mut images = String::new();
        for repo in corpus.repos() {
            images += &format!("{:?}: {:?}\n", source.image(&repo), target.image(&repo));
        }
        std::fs::write(dir.join("auth.yaml"), auth)?;
        std::fs::write(dir.join("images.yaml"), images)?;
        let mut cmd = clean_command(&self.ferry, home);
        cmd.arg("sync")
            .arg(format!("--auth={}", dir.join("auth.yaml").display()))
            .arg(format!("--images={}", dir.join("images.yaml").display()))
            .arg(format!("--proc={}", self.args.proc))
            .arg(format!("--report={}", dir.join("report.json").display()));
        Ok(cmd)
    }

    fn skopeo_command(
        &self,
        source: &Registry,
        target: &Registry,
        corpus: &Corpus,
        dir: &Path,
        home: &Path,
    ) -> anyhow::Result<std::process::Command> {
        let (user, password) = self.credentials();
        let ca_dir = Pki::get().ca_dir().display().to_string();
        // All repositories in one skopeo process, like ferry's one run: a YAML source.
        let prefix = corpus
            .repos()
            .first()
            .and_then(|r| r.rsplit_once('/').map(|(p, _)| p.to_string()))
            .expect("corpus repositories have a prefix");
        let mut yaml = format!("{:?}:\n  images:\n", source.host());
        for repo in corpus.repos() {
            yaml += &format!("    {repo:?}: []\n");
        }
        yaml += &format!(
            "  credentials:\n    username: {user:?}\n    password: {password:?}\n  tls-verify: true\n  cert-dir: {ca_dir:?}\n"
        );
        std::fs::write(dir.join("sync.yaml"), yaml)?;
        let mut cmd = clean_command("skopeo", home);
        cmd.args([
            "--insecure-policy",
            "sync",
            "--all",
            "--src",
            "yaml",
            "--dest",
            "docker",
        ])
        .arg(format!("--dest-cert-dir={ca_dir}"))
        .arg(format!("--dest-creds={user}:{password}"))
        .arg(dir.join("sync.yaml"))
        .arg(target.image(&prefix));
        Ok(cmd)
    }

    fn floor_command(
        &self,
        source: &Registry,
        target: &Registry,
        seeded: &Seeded,
        dir: &Path,
        home: &Path,
        http2: bool,
    ) -> anyhow::Result<std::process::Command> {
        let (user, password) = self.credentials();
        let mut by_digest: BTreeMap<&str, (u64, Vec<String>)> = BTreeMap::new();
        for p in &seeded.placements {
            let e = by_digest
                .entry(p.digest.as_str())
                .or_insert((p.size, Vec::new()));
            e.1.push(p.repo.clone());
        }
        let spec = floor::Spec {
            source: source.base_url(),
            target: target.base_url(),
            ca: Pki::get().ca_cert.clone(),
            username: user.into(),
            password: password.into(),
            token: target
                .issuer()
                .map(|i| (i.realm().to_string(), support::TOKEN_SERVICE.to_string())),
            parallel: self.args.proc,
            http2,
            blobs: by_digest
                .into_iter()
                .map(|(digest, (size, repos))| floor::FloorBlob {
                    digest: digest.into(),
                    size,
                    from: repos[0].clone(),
                    to: repos,
                })
                .collect(),
        };
        std::fs::write(dir.join("floor.json"), serde_json::to_vec(&spec)?)?;
        let mut cmd = clean_command(std::env::current_exe()?, home);
        cmd.arg("floor").arg(dir.join("floor.json"));
        Ok(cmd)
    }

    /// Warm no-op re-sync: C1's shape at 1,000 small tags, already in the target.
    async fn warm(&mut self, source: &Registry) -> anyhow::Result<ScenarioResult> {
        let tags = if self.args.quick { 100 } else { 1000 };
        let corpus = corpus::warm(tags);
        let (seeded, seed_s) = self.seed(source, &corpus).await;
        let title = format!("warm no-op re-sync, {tags} tags");
        let mut result = self.scenario("warm", title, &corpus, &seeded, seed_s);
        let target = Registry::start(self.mode);
        // Fill the target once (not measured), then check it.
        let initial = self
            .run_tool(
                source,
                &target,
                &corpus,
                &seeded,
                Tool::Ferry,
                0,
                "warm-fill",
            )
            .await?;
        let problems = corpus::verify(&target, &seeded, true, 8).await?;
        anyhow::ensure!(
            problems.is_empty(),
            "initial fill of the warm target is wrong:\n  {}",
            sample(&problems).join("\n  ")
        );
        eprintln!(
            "  warm target filled by ferry in {:.2} s (verified)",
            initial.measured.wall_s
        );
        for round in 0..self.args.runs {
            for tool in self.order(&[Tool::Ferry, Tool::Skopeo], round) {
                let run = self
                    .run_tool(source, &target, &corpus, &seeded, tool, round, "warm")
                    .await?;
                let problems = corpus::verify(&target, &seeded, false, 8).await?;
                anyhow::ensure!(
                    problems.is_empty(),
                    "{} left the warm target wrong:\n  {}",
                    tool.name(),
                    sample(&problems).join("\n  ")
                );
                eprintln!(
                    "  warm round {round} {:<6} {:>7.2} s  cpu {:>6.2} s  requests {:>6} ({:.2}/tag)  (verified)",
                    tool.name(),
                    run.measured.wall_s,
                    run.measured.cpu_s(),
                    run.requests.total(),
                    run.requests.total() as f64 / tags as f64
                );
                result.runs.push(run);
            }
        }
        Ok(result)
    }

    /// One image with a single layer of `size` bytes: peak RSS (and time) of each copier.
    async fn big(
        &mut self,
        source: &Registry,
        name: &str,
        size: u64,
    ) -> anyhow::Result<ScenarioResult> {
        let corpus = corpus::big(name, size);
        let (seeded, seed_s) = self.seed(source, &corpus).await;
        let title = format!("one image, single {} MiB layer", size / (1 << 20));
        let mut result = self.scenario(&format!("big_{name}"), title, &corpus, &seeded, seed_s);
        let what = format!("big-{name}");
        for round in 0..self.args.runs {
            for tool in self.order(&[Tool::Ferry, Tool::Skopeo, Tool::Floor], round) {
                let run = self
                    .cold_run(source, &corpus, &seeded, tool, round, &what)
                    .await?;
                result.runs.push(run);
            }
        }
        Ok(result)
    }
}

/// The registries' own cost per request: `HEAD` of one manifest, 8 at a time over
/// keep-alive connections, against a registry in each mode.
async fn calibrate() -> anyhow::Result<Vec<report::Calibration>> {
    use futures::StreamExt;
    const N: usize = 2000;
    let mut rows = Vec::new();
    for mode in [Mode::Http, Mode::BasicHttp, Mode::BasicTls, Mode::Token] {
        let reg = Registry::start(mode);
        let image = support::ImageSpec::with_layers(7, 1, 1024);
        reg.seed_image("cal/img", "1", &image).await;
        let http = support::net::client_builder().build()?;
        let url = format!("{}/v2/cal/img/manifests/1", reg.base_url());
        let auth = match (mode.credentials(), reg.issuer()) {
            (_, Some(issuer)) => Some(format!(
                "Bearer {}",
                issuer.mint(&["repository:cal/img:pull"])
            )),
            (Some((u, p)), None) => Some(format!(
                "Basic {}",
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("{u}:{p}")
                )
            )),
            (None, None) => None,
        };
        let head = |_| {
            let (http, url, auth) = (http.clone(), url.clone(), auth.clone());
            async move {
                let mut req = http.head(url).header("accept", support::ALL_MANIFEST_TYPES);
                if let Some(a) = auth {
                    req = req.header("authorization", a);
                }
                let resp = req.send().await?;
                anyhow::ensure!(resp.status() == 200, "HEAD answered {}", resp.status());
                Ok::<_, anyhow::Error>(())
            }
        };
        let run = |n: usize| {
            futures::stream::iter(0..n)
                .map(head)
                .buffer_unordered(8)
                .collect::<Vec<_>>()
        };
        for r in run(100).await {
            r?;
        }
        let cpu0 = runner::process_cpu_s(reg.pid());
        let t = Instant::now();
        for r in run(N).await {
            r?;
        }
        let wall = t.elapsed().as_secs_f64();
        let cpu = runner::process_cpu_s(reg.pid()) - cpu0;
        let row = report::Calibration {
            mode: format!("{mode:?}"),
            requests: N,
            wall_s: wall,
            requests_per_s: N as f64 / wall,
            registry_cpu_ms_per_request: cpu * 1000.0 / N as f64,
        };
        eprintln!(
            "calibration {:<10} {:>7.0} HEAD/s, registry CPU {:.2} ms per request",
            row.mode, row.requests_per_s, row.registry_cpu_ms_per_request
        );
        rows.push(row);
    }
    Ok(rows)
}

/// Up to 10 problems of each kind (missing tag, wrong digest, missing blob...).
fn sample(problems: &[String]) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for p in problems {
        let kind: String = p
            .split_whitespace()
            .filter(|w| !w.contains('/') && !w.contains(':'))
            .collect::<Vec<_>>()
            .join(" ");
        let n = seen.entry(kind).or_default();
        *n += 1;
        if *n <= 10 {
            out.push(p.clone());
        }
    }
    out
}
