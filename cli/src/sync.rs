//! `ferry sync` (also ferry with no subcommand, as image-syncer's command line has none):
//! resolve the rules, copy every image to its targets, then summarise. Planning does not HEAD
//! the sources, since the copier does, so a run with nothing to copy costs at most a HEAD
//! per source and target.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Instant;

use shared::copy::{Copier, Progress as _};
use shared::plan::{resolve, Plan, PlanOptions};
use shared::report::Report;

use crate::args::SyncArgs;
use crate::exit::Status;
use crate::inputs::load;
use crate::interrupt;
use crate::outputs;
use crate::progress::CliProgress;
use crate::settings::SyncSettings;
use crate::summary::Summary;

pub async fn run(args: SyncArgs) -> anyhow::Result<Status> {
    let settings = SyncSettings::try_from(args)?;
    let (rules, registries) = load(&settings.input)?;
    let started = Instant::now();
    let progress = Arc::new(progress_for(&settings));
    let copier = Arc::new(Copier::new(
        Arc::clone(&registries),
        settings.copy,
        progress.clone(),
    ));
    let mut interrupts = interrupt::watch(Arc::clone(&copier));
    let options = PlanOptions {
        head_sources: false,
        ..PlanOptions::default()
    };
    // Ctrl-C while listing tags abandons planning; nothing has been copied yet.
    let plan = tokio::select! {
        plan = resolve(&rules, &registries, &options) => Some(plan),
        () = interrupts.stopped() => None,
    };
    let interrupted_planning = plan.is_none();
    let Plan {
        images,
        failures: rule_failures,
        empty_rules,
    } = plan.unwrap_or_default();
    for rule in &empty_rules {
        tracing::warn!(rule = %rule, "rule selects no image");
    }
    let images = if images.is_empty() {
        Vec::new()
    } else {
        progress.planned(images.len());
        copier.copy_all(images, settings.retries).await
    };
    progress.finish();
    let report = Report::new(images, started.elapsed());
    Summary {
        report: &report,
        rule_failures: &rule_failures,
        interrupted_planning,
    }
    .print();
    let written = outputs::write(&settings.outputs, &report);
    // Ctrl-C stays handled until the files above are complete.
    drop(interrupts);
    let failed = interrupted_planning || !rule_failures.is_empty() || report.totals.failed > 0;
    Ok(if failed || !written {
        Status::Failed
    } else {
        Status::Success
    })
}

/// A bar when standard error is a terminal; a log line per image when there is no bar to
/// watch or when the logs go to a file, which should tell every image's fate.
fn progress_for(settings: &SyncSettings) -> CliProgress {
    let terminal = std::io::stderr().is_terminal();
    CliProgress::new(terminal, !terminal || settings.input.log.is_some())
}
