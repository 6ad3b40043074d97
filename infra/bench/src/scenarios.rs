//! The scenarios: seeding each corpus into the source registry (timed), then the measured
//! runs of each contender, rotated per round, into fresh or filled target registries, and
//! every copy checked against what was seeded. Running one contender is `contenders.rs`'s,
//! the planner scenario `planner.rs`'s, the request cost calibration `calibrate.rs`'s.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use support::{Mode, Pki, Registry};

use crate::calibrate::calibrate;
use crate::contenders::CopyJob;
use crate::corpus::{self, Corpus};
use crate::seeding::{self, Seeded};
use crate::{machine, report, Bench, Run, ScenarioId, ScenarioResult, Tool};

impl Bench {
    pub(crate) fn wants(&self, id: ScenarioId) -> bool {
        self.args.only.is_empty() || self.args.only.contains(&id)
    }

    /// `tools` rotated by `round` (so no tool always runs first, on a cold page cache, or
    /// last), without those `--tools` leaves out.
    pub(crate) fn order(&self, tools: &[Tool], round: usize) -> Vec<Tool> {
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

    pub(crate) async fn run_all(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let load_start = machine::load_average();
        let machine = machine::Machine::probe(&self.ferry, self.args.ferry_commit.as_deref());
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
        if self.wants(ScenarioId::Warm)
            || self.wants(ScenarioId::WarmImmutable)
            || self.wants(ScenarioId::WarmNoReferrers)
        {
            scenarios.extend(self.warm(&source).await?);
        }
        if self.wants(ScenarioId::ThreeTargets) {
            scenarios.push(self.three_targets(&source).await?);
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
        let settings = machine::Settings {
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
            load_end: machine::load_average(),
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

    pub(crate) fn next_dir(&mut self, what: &str) -> anyhow::Result<PathBuf> {
        self.seq += 1;
        let dir = self.work.path().join(format!("{:03}-{what}", self.seq));
        std::fs::create_dir_all(dir.join("home"))?;
        Ok(dir)
    }

    /// Seed `corpus` into `source`, timing it.
    async fn seed(&self, source: &Registry, corpus: &Corpus) -> (Seeded, f64) {
        let t = Instant::now();
        let seeded = seeding::seed(source, corpus, 8).await;
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
        let job = CopyJob {
            source,
            target: &target,
            corpus,
            seeded,
            also: &[],
            flags: &[],
        };
        let run = self.run_tool(&job, tool, round, what).await?;
        let problems = if matches!(tool, Tool::Floor | Tool::FloorH2) {
            let blobs_only = Seeded {
                placements: seeded.placements.clone(),
                ..Seeded::default()
            };
            seeding::verify(&target, &blobs_only, true, 8).await?
        } else {
            seeding::verify(&target, seeded, true, 8).await?
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

    /// Warm no-op re-sync: C1's shape at 1,000 small tags, already in the target; and the
    /// same by ferry with every tag declared immutable (`warm_immutable`), and with
    /// referrers off (`warm_no_referrers`), each in the same rounds.
    async fn warm(&mut self, source: &Registry) -> anyhow::Result<Vec<ScenarioResult>> {
        let tags = if self.args.quick { 100 } else { 1000 };
        let corpus = corpus::warm(tags);
        let (seeded, seed_s) = self.seed(source, &corpus).await;
        let title = format!("warm no-op re-sync, {tags} tags");
        let mut result = self.scenario("warm", title, &corpus, &seeded, seed_s);
        let target = Registry::start(self.mode);
        // Fill the target once (not measured), then check it.
        let job = CopyJob {
            source,
            target: &target,
            corpus: &corpus,
            seeded: &seeded,
            also: &[],
            flags: &[],
        };
        let initial = self.run_tool(&job, Tool::Ferry, 0, "warm-fill").await?;
        let problems = seeding::verify(&target, &seeded, true, 8).await?;
        anyhow::ensure!(
            problems.is_empty(),
            "initial fill of the warm target is wrong:\n  {}",
            sample(&problems).join("\n  ")
        );
        eprintln!(
            "  warm target filled by ferry in {:.2} s (verified)",
            initial.measured.wall_s
        );
        // ferry again with other flags, in the same rounds, on the same target: each a
        // scenario of its own, so its runs are not averaged with the default warm run's.
        let variants: Vec<(ScenarioId, &str, &str, &[&str])> = vec![
            (
                ScenarioId::WarmImmutable,
                "warm_immutable",
                "every tag immutable",
                &["--immutable-tags=."],
            ),
            (
                ScenarioId::WarmNoReferrers,
                "warm_no_referrers",
                "referrers off",
                &["--referrers=false"],
            ),
        ];
        let variants: Vec<(CopyJob, ScenarioResult)> = variants
            .into_iter()
            .filter(|(id, ..)| self.wants(*id))
            .map(|(_, id, what, flags)| {
                let title = format!("warm no-op re-sync, {tags} tags, {what}");
                let result = self.scenario(id, title, &corpus, &seeded, seed_s);
                (CopyJob { flags, ..job }, result)
            })
            .collect();
        let mut variants = variants;
        for round in 0..self.args.runs {
            // (tool, which variant: None for the default warm run)
            let mut runs: Vec<(Tool, Option<usize>)> = Vec::new();
            for tool in self.order(&[Tool::Ferry, Tool::Skopeo], round) {
                if self.wants(ScenarioId::Warm) {
                    runs.push((tool, None));
                }
                if tool == Tool::Ferry {
                    runs.extend((0..variants.len()).map(|v| (tool, Some(v))));
                }
            }
            for (tool, variant) in runs {
                let (job, what) = match variant {
                    Some(v) => (&variants[v].0, variants[v].1.id.replace('_', "-")),
                    None => (&job, "warm".to_string()),
                };
                let run = self.run_tool(job, tool, round, &what).await?;
                let problems = seeding::verify(&target, &seeded, false, 8).await?;
                anyhow::ensure!(
                    problems.is_empty(),
                    "{} left the warm target wrong:\n  {}",
                    tool.name(),
                    sample(&problems).join("\n  ")
                );
                eprintln!(
                    "  {what} round {round} {:<6} {:>7.2} s  cpu {:>6.2} s  requests {:>6} ({:.2}/tag)  (verified)",
                    tool.name(),
                    run.measured.wall_s,
                    run.measured.cpu_s(),
                    run.requests.total(),
                    run.requests.total() as f64 / tags as f64
                );
                match variant {
                    Some(v) => variants[v].1.runs.push(run),
                    None => result.runs.push(run),
                }
            }
        }
        Ok(std::iter::once(result)
            .chain(variants.into_iter().map(|(_, r)| r))
            .filter(|r| !r.runs.is_empty())
            .collect())
    }

    /// Cold sync of C1 by ferry into three fresh target registries at once, and into one in
    /// the same rounds: wall time, peak RSS, and the source's blob bytes read ÷ the corpus's
    /// unique bytes (`source_read_ratio`; 1.00 is one read per blob whatever the targets).
    async fn three_targets(&mut self, source: &Registry) -> anyhow::Result<ScenarioResult> {
        let corpus = corpus::c1(if self.args.quick { 64 } else { 1 });
        let (seeded, seed_s) = self.seed(source, &corpus).await;
        let title = format!(
            "cold sync C1 into 3 target registries ({:.0} MiB unique)",
            seeded.unique_blobs().1 as f64 / 1048576.0
        );
        let mut result = self.scenario("cold_c1_3_targets", title, &corpus, &seeded, seed_s);
        let unique_bytes = seeded.unique_blobs().1.max(1) as f64;
        for round in 0..self.args.runs {
            for targets in [3usize, 1] {
                if self.order(&[Tool::Ferry], round).is_empty() {
                    continue;
                }
                let target = Registry::start(self.mode);
                let also: Vec<Registry> =
                    (1..targets).map(|_| Registry::start(self.mode)).collect();
                let job = CopyJob {
                    source,
                    target: &target,
                    corpus: &corpus,
                    seeded: &seeded,
                    also: &also,
                    flags: &[],
                };
                let what = format!("c1-{targets}-targets");
                let mut run = self.run_tool(&job, Tool::Ferry, round, &what).await?;
                for registry in std::iter::once(&target).chain(also.iter()) {
                    let problems = seeding::verify(registry, &seeded, true, 8).await?;
                    anyhow::ensure!(
                        problems.is_empty(),
                        "ferry copied {what} wrongly (round {round}):\n  {}",
                        sample(&problems).join("\n  ")
                    );
                }
                let ratio = run.requests.source.blob_bytes_served as f64 / unique_bytes;
                run.extra.insert("target_registries".into(), targets as f64);
                run.extra.insert("source_read_ratio".into(), ratio);
                eprintln!(
                    "  {what} round {round} ferry {:>7.2} s  rss {:>7.1} MiB  source read {ratio:.2}x unique bytes  (verified)",
                    run.measured.wall_s,
                    run.measured.max_rss_kib as f64 / 1024.0,
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

/// Up to 10 problems of each kind (missing tag, wrong digest, missing blob...).
pub(crate) fn sample(problems: &[String]) -> Vec<String> {
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
