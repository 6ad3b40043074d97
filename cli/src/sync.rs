//! `ferry sync` (also ferry with no subcommand, as image-syncer's command line has none):
//! resolve the rules, copy every image to its targets, then summarise. Planning does not HEAD
//! the sources, since the copier does, so a run with nothing to copy costs at most a HEAD
//! per source and target.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Instant;

use ferry::copy::Copier;
use ferry::plan::{resolve, Plan, PlanOptions, RuleFailure, SourceHeads};
use ferry::registry::Registries;
use ferry::report::Report;
use ferry::rules::{ImmutableTags, Rule, TargetCollision};

use crate::args::SyncArgs;
use crate::exit::Status;
use crate::inputs::load;
use crate::interrupt::{self, Interrupts};
use crate::outputs;
use crate::progress::CliProgress;
use crate::settings::{Outputs, SyncSettings};
use crate::summary::Summary;

pub async fn run(args: SyncArgs) -> anyhow::Result<Status> {
    let mut settings = SyncSettings::try_from(args)?;
    let referrers = settings.copy.image.referrers.enabled;
    let (rules, registries) = load(&settings.input).await?;
    settings.copy.immutable = ImmutableTags::new(settings.immutable_tags.take(), &rules);
    let started = Instant::now();
    let progress = Arc::new(progress_for(&settings));
    let copier = Arc::new(Copier::new(
        Arc::clone(&registries),
        settings.copy,
        progress.clone(),
    ));
    let mut interrupts = interrupt::watch(Arc::clone(&copier));
    let (plan, unresolved) = plan(&rules, &registries, referrers, &mut interrupts).await?;
    for (repository, tags) in &plan.listings {
        copier.know_tags(repository, tags);
    }
    let images = plan.images;
    let images = copier.copy_all(images, settings.retries).await;
    progress.finish();
    let report = Report::new(images, started.elapsed()).with_registries(registries.usage());
    let status = conclude(&report, &unresolved, &settings.outputs);
    // Ctrl-C stays handled until the output files are complete.
    drop(interrupts);
    Ok(status)
}

/// What planning leaves for the summary once its images are handed to the copier.
struct Unresolved {
    rule_failures: Vec<RuleFailure>,
    /// Ctrl-C came while the rules were being resolved.
    interrupted: bool,
}

/// Resolves the rules without HEADing sources (the copier does), unless Ctrl-C comes first:
/// then planning is abandoned, as nothing has been copied yet. Two rules writing one target
/// tag stop the run here, before any copy.
async fn plan(
    rules: &[Rule],
    registries: &Arc<Registries>,
    referrers: bool,
    interrupts: &mut Interrupts,
) -> Result<(Plan, Unresolved), TargetCollision> {
    let options = PlanOptions {
        source_heads: SourceHeads::None,
        referrers,
        ..PlanOptions::default()
    };
    let plan = tokio::select! {
        plan = resolve(rules, registries, &options) => Some(plan),
        () = interrupts.stopped() => None,
    };
    let interrupted = plan.is_none();
    let mut plan = plan.unwrap_or_default();
    if let Some(collision) = plan.collision.take() {
        return Err(*collision);
    }
    for rule in &plan.empty_rules {
        tracing::warn!(rule = %rule, "rule selects no image");
    }
    let unresolved = Unresolved {
        rule_failures: std::mem::take(&mut plan.failures),
        interrupted,
    };
    Ok((plan, unresolved))
}

/// Prints the summary, writes the output files, and decides the exit status.
fn conclude(report: &Report, unresolved: &Unresolved, outputs: &Outputs) -> Status {
    Summary {
        report,
        rule_failures: &unresolved.rule_failures,
        interrupted_planning: unresolved.interrupted,
    }
    .print();
    let written = outputs::write(outputs, report);
    let failed =
        unresolved.interrupted || !unresolved.rule_failures.is_empty() || report.totals.failed > 0;
    if failed || !written {
        Status::Failed
    } else {
        Status::Success
    }
}

/// A bar when standard error is a terminal; a log line per image when there is no bar to
/// watch or when the logs go to a file, which should tell every image's fate.
fn progress_for(settings: &SyncSettings) -> CliProgress {
    let terminal = std::io::stderr().is_terminal();
    CliProgress::new(terminal, !terminal || settings.input.log.is_some())
}
