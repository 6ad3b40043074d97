//! The planner at scale: `ferry plan --queue-url`, which runs the planner Lambda's code (list
//! the tags, HEAD every target and, where a target has the tag, the source; send one JSON job
//! per image not in sync, ten per SendMessageBatch call, while checking goes on), on one
//! repository of N tags (10,000; 1,000 with `--quick`) that
//! all point at one tiny image (a config blob and a manifest), against the benchmark's
//! registries (same mode and auth) and a local SQS (`moto_server`).
//!
//! Cold plans go to an empty target registry (every tag is enqueued), warm plans to one
//! seeded with the same manifests and blobs (every tag in sync, nothing sent).
//!
//! Each is measured twice: in one invocation, and fanned out (`--fan-out=N/10`): the planner
//! lists the tags and sends ten plan jobs, which [`expand_plan_jobs`] then expands all at once
//! with the copier's code (`ferry::dispatch::expand`) in this process, as ten copier
//! invocations would; the figures are the planner's and the expansions' together.
//!
//! moto 5.2.5 spends O(queue length) per message sent (each send computes the queue's
//! attributes by scanning every queued message), so 10,000 jobs into one moto queue take
//! well over ten minutes, and a receive/delete drainer cannot keep up (receiving is O(n)
//! too). During cold plans a [`Purger`](crate::purge::Purger) (`purge.rs`) therefore
//! empties the queue every [`PURGE_EVERY`](crate::purge::PURGE_EVERY), so the figures
//! measure ferry rather than moto's scan. moto enforces SQS's one purge per 60 s unless
//! `MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR=false`, which the server is started with
//! (and which is checked before the measured runs).
//!
//! Correctness is checked, not assumed: before the measured runs a plan of
//! [`VERIFY_TAGS`] tags (a regex rule over the same repository) is enqueued without
//! purging, and every message is received, parsed with [`Job::parse`] and matched against
//! the seeded tags (each tag exactly once, to its target, with no digest or the source's); every cold
//! plan must report N jobs enqueued and every warm plan none, N in sync, and no errors.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use ferry::job::Job;
use ferry::queue::Queue as _;
use serde::Deserialize;
use support::{auth_yaml, ImageSpec, Moto, Registry, MOTO_ACCESS_KEY, MOTO_REGION};

use crate::purge::{purge, Purger};
use crate::runner::{self, clean_command, run_measured, Between};
use crate::{Bench, Run, ScenarioResult, Tool};

/// The source repository (and the target repository in both target registries).
const REPO: &str = "planner/app";
/// Tags of the verification plan: the first 200 (`t00000`..`t00199`), selected by
/// [`VERIFY_REGEX`].
pub const VERIFY_TAGS: usize = 200;
const VERIFY_REGEX: &str = "^t00[01][0-9][0-9]$";
const QUEUE: &str = "ferry-bench-planner";

/// Tags in the repository: 10,000, or 1,000 with `--quick`. Fanned out, the planner cuts
/// them into ten plan jobs (`--fan-out=1000`, auto's slice, for 10,000).
fn tag_count(quick: bool) -> usize {
    if quick {
        1_000
    } else {
        10_000
    }
}

/// Tag `i`: `t00000`, `t00001`, ... (sorted as numbered).
fn tag(i: usize) -> String {
    format!("t{i:05}")
}

/// `ferry plan --queue-url`'s summary on standard output (`ferry::plan::DispatchSummary`).
#[derive(Clone, Debug, Deserialize)]
struct Summary {
    plan_id: String,
    tags_seen: usize,
    jobs_enqueued: usize,
    /// Plan jobs sent (`--fan-out`); absent from older ferry builds.
    #[serde(default)]
    plan_jobs_enqueued: usize,
    already_in_sync: usize,
    /// Each `{kind, message}`; only counted.
    errors: Vec<serde_json::Value>,
}

/// 12345 → `12,345`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Bench {
    /// The `planner` scenario: two results, `planner_cold` and `planner_warm`.
    pub(crate) async fn planner(
        &mut self,
        source: &Registry,
    ) -> anyhow::Result<Vec<ScenarioResult>> {
        let n = tag_count(self.args.quick);
        let tags: Vec<String> = (0..n).map(tag).collect();
        let spec = ImageSpec::default().label("ferry.bench", "planner");
        let config_len = spec.config_json().len() as u64;

        // One image under N tags: a config blob and a manifest, then N - 1 manifest PUTs
        // (eight in flight over keep-alive connections).
        let t = Instant::now();
        let image = source.seed_image(REPO, &tags[0], &spec).await;
        source.tag_many(REPO, &tags[1..], &image).await;
        let seed_s = t.elapsed().as_secs_f64();
        ensure!(
            source.list_tags(REPO).await == tags,
            "seeding {REPO} in the source did not leave exactly the {n} tags"
        );
        eprintln!(
            "seeded {REPO}: {n} tags of one image ({}) in {seed_s:.1} s",
            image.digest
        );

        // Targets: one left empty (cold plans), one holding the same manifests and blobs
        // (warm plans), seeded directly rather than copied by ferry.
        let cold = Registry::start(self.mode);
        let warm = Registry::start(self.mode);
        let t = Instant::now();
        let in_sync = warm.seed_image(REPO, &tags[0], &spec).await;
        ensure!(
            in_sync.digest == image.digest,
            "the warm target's image is {}, the source's {}",
            in_sync.digest,
            image.digest
        );
        warm.tag_many(REPO, &tags[1..], &in_sync).await;
        let warm_seed_s = t.elapsed().as_secs_f64();
        ensure!(
            warm.list_tags(REPO).await == tags,
            "seeding {REPO} in the warm target did not leave exactly the {n} tags"
        );
        eprintln!("seeded the warm target with the same {n} tags in {warm_seed_s:.1} s");

        let moto = tokio::task::block_in_place(|| {
            Moto::start_with_env(&[("MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR", "false")])
        });
        let (url, _) = moto.create_queue(QUEUE, None).await;
        eprintln!("moto_server: {} (queue {url})", moto.endpoint());

        self.verify_plan(source, &cold, &moto, &url, &image.digest)
            .await?;

        let result = |id: &str, title: String, seed_s: f64| ScenarioResult {
            id: id.into(),
            title,
            corpus: None,
            placements: 0,
            unique_blobs: 1,
            unique_bytes: config_len,
            tags: n,
            manifests: 1,
            seed_s,
            runs: Vec::new(),
        };
        let mut cold_result = result(
            "planner_cold",
            format!(
                "planner, cold ({} tags, target empty, all enqueued)",
                thousands(n)
            ),
            seed_s,
        );
        let mut warm_result = result(
            "planner_warm",
            format!(
                "planner, warm ({} tags, target in sync, nothing enqueued)",
                thousands(n)
            ),
            seed_s + warm_seed_s,
        );
        let fan_cold_title = format!(
            "planner fanned out, cold ({} tags, target empty, all enqueued)",
            thousands(n)
        );
        let fan_warm_title = format!(
            "planner fanned out, warm ({} tags, target in sync, nothing enqueued)",
            thousands(n)
        );
        let mut fan_cold_result = result("planner_fanout_cold", fan_cold_title, seed_s);
        let mut fan_warm_result =
            result("planner_fanout_warm", fan_warm_title, seed_s + warm_seed_s);
        let cold_images = format!("{:?}: {:?}\n", source.image(REPO), cold.image(REPO));
        let warm_images = format!("{:?}: {:?}\n", source.image(REPO), warm.image(REPO));
        for round in 0..self.args.runs {
            // Alternate which goes first.
            let order = if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for (fan_out, is_cold) in [false, true]
                .into_iter()
                .flat_map(|f| order.map(|c| (f, c)))
            {
                let label = if fan_out { "fanout-" } else { "" };
                let (run, summary) = if is_cold {
                    let what = format!("planner-{label}cold-{round}");
                    let (run, summary) = self
                        .plan_run(
                            source,
                            &cold,
                            &moto,
                            &url,
                            &cold_images,
                            &what,
                            round,
                            true,
                            fan_out,
                        )
                        .await?;
                    ensure!(
                        summary.tags_seen == n
                            && summary.jobs_enqueued == n
                            && summary.already_in_sync == 0
                            && summary.errors.is_empty(),
                        "cold plan (round {round}) should have enqueued all {n} tags: {summary:?}"
                    );
                    // What was sent after the last purge.
                    purge(&moto, &url).await?;
                    (run, summary)
                } else {
                    let what = format!("planner-{label}warm-{round}");
                    let (run, summary) = self
                        .plan_run(
                            source,
                            &warm,
                            &moto,
                            &url,
                            &warm_images,
                            &what,
                            round,
                            false,
                            fan_out,
                        )
                        .await?;
                    ensure!(
                        summary.tags_seen == n
                            && summary.jobs_enqueued == 0
                            && summary.already_in_sync == n
                            && summary.errors.is_empty(),
                        "warm plan (round {round}) should have found all {n} tags in sync: {summary:?}"
                    );
                    let left = moto.message_count(&url).await;
                    ensure!(
                        left == 0,
                        "warm plan (round {round}) left {left} messages in the queue"
                    );
                    (run, summary)
                };
                if fan_out {
                    let extra = |k: &str| run.extra.get(k).copied().unwrap_or(0.0);
                    eprintln!(
                        "  planner round {round} fanned out {:<5} planner {:>6.2} s + expanding {:>6.2} s = {:>6.2} s  requests {:>6}  plan jobs {}  copy jobs {}  in sync {}  (checked)",
                        if is_cold { "cold" } else { "warm" },
                        run.measured.wall_s,
                        extra("expand_s"),
                        extra("total_s"),
                        run.requests.total(),
                        extra("plan_jobs"),
                        extra("copy_jobs"),
                        extra("in_sync"),
                    );
                    match is_cold {
                        true => fan_cold_result.runs.push(run),
                        false => fan_warm_result.runs.push(run),
                    }
                    continue;
                }
                eprintln!(
                    "  planner round {round} {:<5} {:>7.2} s  {:>6.0} tags/s  cpu {:>6.2} s  rss {:>6.1} MiB  registries cpu {:>6.2} s  moto cpu {:>6.2} s  requests {:>6} ({:.2}/tag)  enqueued {}{}  (checked)",
                    if is_cold { "cold" } else { "warm" },
                    run.measured.wall_s,
                    n as f64 / run.measured.wall_s,
                    run.measured.cpu_s(),
                    run.measured.max_rss_kib as f64 / 1024.0,
                    run.registry_cpu_s,
                    run.extra.get("moto_cpu_s").copied().unwrap_or(0.0),
                    run.requests.total(),
                    run.requests.total() as f64 / n as f64,
                    summary.jobs_enqueued,
                    match run.extra.get("purges") {
                        Some(p) => format!(", {p} purges"),
                        None => String::new(),
                    },
                );
                if is_cold {
                    cold_result.runs.push(run);
                } else {
                    warm_result.runs.push(run);
                }
            }
        }
        Ok(vec![
            cold_result,
            warm_result,
            fan_cold_result,
            fan_warm_result,
        ])
    }

    /// A plan of the first [`VERIFY_TAGS`] tags into the empty target, not purged: every
    /// message must be a valid job for exactly one of those tags, with no digest or the source's.
    /// Then checks that moto lets the queue be purged twice in a row.
    async fn verify_plan(
        &mut self,
        source: &Registry,
        target: &Registry,
        moto: &Moto,
        url: &str,
        digest: &str,
    ) -> anyhow::Result<()> {
        let rule = format!("{}:/{VERIFY_REGEX}/", source.image(REPO));
        let images = format!("{rule:?}: {:?}\n", target.image(REPO));
        let (run, summary) = self
            .plan_run(
                source,
                target,
                moto,
                url,
                &images,
                "planner-verify",
                0,
                false,
                false,
            )
            .await?;
        ensure!(
            summary.tags_seen == VERIFY_TAGS
                && summary.jobs_enqueued == VERIFY_TAGS
                && summary.already_in_sync == 0
                && summary.errors.is_empty(),
            "the verification plan should have enqueued {VERIFY_TAGS} tags: {summary:?}"
        );
        let mut seen: BTreeMap<String, usize> = (0..VERIFY_TAGS).map(|i| (tag(i), 0)).collect();
        let mut problems = Vec::new();
        let source_prefix = format!("{}:", source.image(REPO));
        let queue = moto.queue(url);
        let mut received = 0;
        // Ten at most per call; the bound leaves room for short answers.
        for _ in 0..(VERIFY_TAGS / 10) * 3 + 10 {
            let deliveries = queue.receive(10, Duration::from_secs(1)).await?;
            if deliveries.is_empty() {
                break;
            }
            for d in deliveries {
                received += 1;
                match Job::parse(&d.body) {
                    Err(e) => problems.push(format!("message {}: {e}", d.message_id)),
                    Ok(job) => {
                        let tag = job.source.strip_prefix(&source_prefix).unwrap_or_default();
                        match seen.get_mut(tag) {
                            Some(count) => *count += 1,
                            None => problems.push(format!("unexpected job source {}", job.source)),
                        }
                        let target_ref = format!("{}:{tag}", target.image(REPO));
                        // A tag no target has goes without a source HEAD, so without a
                        // digest; a digest that is there must be the source's.
                        if job.digest.as_deref().is_some_and(|d| d != digest) {
                            problems.push(format!(
                                "{} has digest {:?}, the source's is {digest}",
                                job.source, job.digest
                            ));
                        }
                        if job.targets != [target_ref.clone()] {
                            problems.push(format!(
                                "{} goes to {:?}, not [{target_ref}]",
                                job.source, job.targets
                            ));
                        }
                        if job.plan_id != summary.plan_id || job.force {
                            problems.push(format!(
                                "{} has plan_id {:?} (the plan's is {:?}), force {}",
                                job.source, job.plan_id, summary.plan_id, job.force
                            ));
                        }
                    }
                }
                queue.delete(&d.receipt).await?;
            }
        }
        for (tag, count) in &seen {
            if *count != 1 {
                problems.push(format!("{tag} was enqueued {count} times"));
            }
        }
        let left = moto.message_count(url).await;
        if left != 0 {
            problems.push(format!(
                "{left} messages still in the queue after receiving"
            ));
        }
        if !problems.is_empty() {
            bail!(
                "the verification plan enqueued wrong jobs ({received} received), {} problems:\n  {}",
                problems.len(),
                crate::scenarios::sample(&problems).join("\n  ")
            );
        }
        eprintln!(
            "  planner verification: {VERIFY_TAGS} tags planned in {:.2} s, {received} jobs received, each tag once, no digest or the source's (verified)",
            run.measured.wall_s
        );
        // The purger needs purges closer together than SQS's 60 s.
        purge(moto, url).await?;
        purge(moto, url).await?;
        Ok(())
    }

    /// One `ferry plan --queue-url` of `images` into `target`, measured and counted; with
    /// `purge`, the queue is purged every [`PURGE_EVERY`](crate::purge::PURGE_EVERY) meanwhile. Fails if ferry fails,
    /// prints no summary, or a purge fails.
    #[allow(clippy::too_many_arguments)]
    async fn plan_run(
        &mut self,
        source: &Registry,
        target: &Registry,
        moto: &Moto,
        url: &str,
        images: &str,
        what: &str,
        round: usize,
        purge: bool,
        fan_out: bool,
    ) -> anyhow::Result<(Run, Summary)> {
        let dir = self.next_dir(what)?;
        let home = dir.join("home");
        std::fs::write(dir.join("auth.yaml"), auth_yaml(&[source, target]))?;
        std::fs::write(dir.join("images.yaml"), images)?;
        let mut cmd = clean_command(&self.ferry, &home);
        cmd.arg("plan")
            .arg(format!("--auth={}", dir.join("auth.yaml").display()))
            .arg(format!("--images={}", dir.join("images.yaml").display()))
            .arg(format!("--queue-url={url}"))
            .args(fan_out.then(|| format!("--fan-out={}", tag_count(self.args.quick) / 10)))
            .env("AWS_ENDPOINT_URL_SQS", moto.endpoint())
            .env("AWS_REGION", MOTO_REGION)
            .env("AWS_ACCESS_KEY_ID", MOTO_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", MOTO_ACCESS_KEY);
        let log = dir.join("output.log");
        let between = Between { source, target };
        between.prepare();
        let cpu_before = between.cpu_s();
        let moto_before = runner::process_cpu_s(moto.pid());
        // Fanning out, the planner's few plan jobs must stay until they are expanded.
        let purger = (purge && !fan_out).then(|| Purger::start(moto.client(), url.to_string()));
        let measured = tokio::task::block_in_place(|| run_measured(cmd, &log));
        let mut purged = match purger {
            Some(p) => Some(p.stop().await?),
            None => None,
        };
        let measured = measured?;
        let mut fanned = None;
        if fan_out && measured.success {
            let plans = receive_plan_jobs(moto, url).await?;
            // Purging only once they are received: their copy jobs are what would pile up.
            let purger = purge.then(|| Purger::start(moto.client(), url.to_string()));
            let expanded = expand_plan_jobs(&dir, moto, url, plans).await;
            if let Some(p) = purger {
                purged = Some(p.stop().await?);
            }
            fanned = Some(expanded?);
        }
        let registry_cpu_s = between.cpu_s() - cpu_before;
        let moto_cpu_s = runner::process_cpu_s(moto.pid()) - moto_before;
        if !measured.success {
            bail!(
                "ferry plan failed on {what} ({}); its output ({}):\n{}",
                measured.exit,
                log.display(),
                runner::tail(&log, 40)
            );
        }
        let mut summary = summary(&log)?;
        let requests = between.requests();
        let mut extra = BTreeMap::new();
        extra.insert("moto_cpu_s".to_string(), moto_cpu_s);
        if let Some(fanned) = fanned {
            ensure!(
                fanned.plan_jobs == summary.plan_jobs_enqueued && fanned.errors == 0,
                "{what}: the planner sent {} plan jobs, {} were expanded, with {} errors",
                summary.plan_jobs_enqueued,
                fanned.plan_jobs,
                fanned.errors
            );
            extra.insert("plan_jobs".to_string(), summary.plan_jobs_enqueued as f64);
            extra.insert("copy_jobs".to_string(), fanned.copy_jobs as f64);
            extra.insert("in_sync".to_string(), fanned.in_sync as f64);
            extra.insert("expand_s".to_string(), fanned.wall_s);
            extra.insert("total_s".to_string(), measured.wall_s + fanned.wall_s);
            // What the plan as a whole did, planner and expansions together.
            summary.jobs_enqueued += fanned.copy_jobs;
            summary.already_in_sync += fanned.in_sync;
            summary.tags_seen = summary.tags_seen.max(fanned.tags_seen);
        }
        if let Some((resolve_s, enqueue_s)) = phases(&log) {
            extra.insert("resolve_and_check_s".to_string(), resolve_s);
            extra.insert("enqueue_s".to_string(), enqueue_s);
        }
        if let Some((purges, errors)) = purged {
            if let Some(first) = errors.first() {
                bail!(
                    "{} of {} queue purges failed during {what} (so the figure would be moto's); the first: {first}",
                    errors.len(),
                    purges + errors.len()
                );
            }
            extra.insert("purges".to_string(), purges as f64);
        }
        let run = Run {
            tool: Tool::Ferry,
            round,
            measured,
            registry_cpu_s,
            requests,
            extra,
        };
        Ok((run, summary))
    }
}

/// What expanding a fanned-out plan's plan jobs did.
struct Fanned {
    plan_jobs: usize,
    copy_jobs: usize,
    in_sync: usize,
    tags_seen: usize,
    errors: usize,
    wall_s: f64,
}

/// Every plan job `ferry plan --fan-out` sent (ten; the bound leaves room).
async fn receive_plan_jobs(moto: &Moto, url: &str) -> anyhow::Result<Vec<ferry::job::PlanJob>> {
    use ferry::job::QueuedJob;
    let queue = moto.queue(url);
    let mut plans = Vec::new();
    for _ in 0..100 {
        let got = queue.receive(10, Duration::from_secs(1)).await?;
        if got.is_empty() {
            break;
        }
        for d in got {
            match QueuedJob::parse(&d.body) {
                Ok(QueuedJob::Plan(plan)) => plans.push(plan),
                other => bail!("expected only plan jobs on the queue, found {other:?}"),
            }
            queue.delete(&d.receipt).await?;
        }
    }
    Ok(plans)
}

/// Expands `plans` all at once, as that many copier invocations would, with the copier's
/// code (`ferry::dispatch::expand`) in this process, their copy jobs sent to the same queue.
async fn expand_plan_jobs(
    dir: &Path,
    moto: &Moto,
    url: &str,
    plans: Vec<ferry::job::PlanJob>,
) -> anyhow::Result<Fanned> {
    use ferry::dispatch::{expand, DispatchOptions, FanOut};
    use std::sync::Arc;

    let env = ferry::env::MapEnv::default();
    let auth = ferry::auth::AuthConfig::load(&dir.join("auth.yaml"), &env)?;
    let registries = Arc::new(ferry::registry::Registries::from_env(Arc::new(auth), &env));
    let queue = moto.queue(url);
    let options = DispatchOptions {
        concurrency: ferry::input::DEFAULT_CONCURRENCY,
        fan_out: FanOut::Auto,
        ..DispatchOptions::default()
    };
    let started = Instant::now();
    let mut fanned = Fanned {
        plan_jobs: 0,
        copy_jobs: 0,
        in_sync: 0,
        tags_seen: 0,
        errors: 0,
        wall_s: 0.0,
    };
    let expansions = plans.iter().map(|plan| {
        let (registries, queue, options) = (&registries, &queue, &options);
        async move {
            let (rules, image) = plan.work()?;
            Ok::<_, anyhow::Error>(expand(plan, &rules, image, registries, queue, options).await?)
        }
    });
    for summary in futures::future::join_all(expansions).await {
        let summary = summary?;
        fanned.plan_jobs += 1;
        fanned.copy_jobs += summary.jobs_enqueued;
        fanned.in_sync += summary.already_in_sync;
        fanned.tags_seen += summary.tags_seen;
        fanned.errors += summary.errors.len();
        // A slice is never cut again; a plan job that was would be lost here.
        ensure!(
            summary.plan_jobs_enqueued == 0,
            "a slice sent plan jobs: {summary:?}"
        );
    }
    fanned.wall_s = started.elapsed().as_secs_f64();
    Ok(fanned)
}

/// The one JSON summary line `ferry plan --queue-url` printed into `log` (standard output
/// and standard error together).
fn summary(log: &Path) -> anyhow::Result<Summary> {
    let text = std::fs::read_to_string(log)?;
    let found: Vec<Summary> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "expected one JSON summary from ferry plan in {}, found {}:\n{}",
            log.display(),
            found.len(),
            runner::tail(log, 20)
        ),
    }
}

/// The planner's own timing from its `planned` log line: seconds resolving and checking
/// (tag list, HEADs), and seconds enqueueing. `None` when the line is not there (`RUST_LOG`
/// can hide it).
fn phases(log: &Path) -> Option<(f64, f64)> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains("resolve_and_check_ms="))?;
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|ms| ms / 1000.0)
    };
    Some((field("resolve_and_check_ms=")?, field("enqueue_ms=")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_numbers() {
        assert_eq!(tag(7), "t00007");
        assert_eq!(tag(9999), "t09999");
        let re = |t: &str| {
            t.len() == 6
                && t.starts_with("t00")
                && matches!(t.as_bytes()[3], b'0' | b'1')
                && t[4..].bytes().all(|b| b.is_ascii_digit())
        };
        // VERIFY_REGEX selects exactly the first VERIFY_TAGS tags.
        assert_eq!(VERIFY_REGEX, "^t00[01][0-9][0-9]$");
        assert_eq!((0..10_000).filter(|&i| re(&tag(i))).count(), VERIFY_TAGS);
        assert!((0..VERIFY_TAGS).all(|i| re(&tag(i))));
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn reads_the_planned_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("output.log");
        std::fs::write(
            &log,
            "2025-01-01T00:00:00.000000Z  INFO planned plan_id=1-ab resolve_and_check_ms=1500 enqueue_ms=250 jobs=3\n\
             {\"plan_id\":\"1-ab\",\"rules\":1,\"tags_seen\":3,\"jobs_enqueued\":3,\"already_in_sync\":0,\"errors\":[]}\n",
        )
        .unwrap();
        assert_eq!(phases(&log), Some((1.5, 0.25)));
        let s = summary(&log).unwrap();
        assert_eq!(
            (s.tags_seen, s.jobs_enqueued, s.plan_id.as_str()),
            (3, 3, "1-ab")
        );
    }
}
