//! `ferry plan`: load and validate the inputs, resolve the rules against the live source
//! registries, print one JSON object per copy on standard output, sorted, naming the rules
//! that selected it; with `--explain`, per rule, every tag seen and why each was dropped, and
//! what refers to each selected image at the source (as a copy would find it), on standard
//! error. With `--queue-url`
//! it is the planner Lambda from a machine: copy jobs (or, with `--fan-out`, plan jobs for
//! the workers to expand) sent to the queue, and the summary printed.

use std::collections::BTreeMap;
use std::io::Write as _;

use futures::stream::{self, StreamExt};

use serde::Serialize;
use std::sync::Arc;

use ferry::copy::{Copier, CopyOptions, NoProgress};
use ferry::dispatch::{dispatch, DispatchOptions, FanOut};
use ferry::image::ImageOptions;
use ferry::plan::{resolve, Plan, PlanOptions, RuleSelection};
use ferry::queue::SqsQueue;
use ferry::reference::Reference;
use ferry::registry::Registries;
use ferry::rules::{ImmutableTags, Rule};

use crate::args::PlanArgs;
use crate::exit::{Status, UsageError};
use crate::inputs::load;

#[derive(Serialize)]
struct PlanLine<'a> {
    source: String,
    target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a str>,
    /// The rules (as written) that send this source to this target.
    rules: Vec<&'a str>,
}

pub async fn run(args: PlanArgs) -> anyhow::Result<Status> {
    let image = ImageOptions {
        force: args.force,
        platforms: args.platforms.filter().map_err(UsageError::from)?,
        referrers: args.referrer_args.options(),
    };
    let (rules, registries) = load(&args.input).await?;
    if let Some(url) = &args.queue_url {
        let options = DispatchOptions {
            image,
            concurrency: PlanOptions::default().concurrency,
            fan_out: args.fan_out.unwrap_or(FanOut::Never),
            immutable: ImmutableTags::new(args.immutable.immutable_tags, &rules),
        };
        return enqueue(options, url, &rules, &registries).await;
    }
    let options = PlanOptions {
        explain: args.explain,
        referrers: image.referrers.enabled,
        ..PlanOptions::default()
    };
    let plan = resolve(&rules, &registries, &options).await;
    if let Some(collision) = plan.collision {
        return Err((*collision).into());
    }
    let mut by_pair: BTreeMap<(&Reference, &Reference), Vec<&str>> = BTreeMap::new();
    for selection in &plan.selections {
        for (source, targets) in &selection.images {
            for target in targets {
                by_pair
                    .entry((source, target))
                    .or_default()
                    .push(&selection.rule);
            }
        }
    }
    let mut out = std::io::stdout().lock();
    for (image, target) in plan.pairs() {
        let line = PlanLine {
            source: image.source.to_string(),
            target: target.to_string(),
            digest: image.digest.as_ref().map(|d| d.as_str()),
            rules: by_pair
                .get(&(&image.source, target))
                .cloned()
                .unwrap_or_default(),
        };
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    if args.explain {
        let referrers = referrers_of(&plan, &registries, image).await;
        explain(&plan.selections, &referrers)?;
    }
    for rule in &plan.empty_rules {
        tracing::warn!(rule = %rule, "rule selects no image");
    }
    for failure in &plan.failures {
        eprintln!("ferry: {failure}");
    }
    Ok(if plan.failures.is_empty() {
        Status::Success
    } else {
        Status::Failed
    })
}

/// What refers to each planned image at its source, as a copy would find it (`--explain`
/// with referrers on): one line each, or why they could not be read.
async fn referrers_of(
    plan: &Plan,
    registries: &Arc<Registries>,
    image: ImageOptions,
) -> BTreeMap<Reference, Vec<String>> {
    let mut lines = BTreeMap::new();
    if !image.referrers.enabled {
        return lines;
    }
    let copier = Copier::new(
        Arc::clone(registries),
        CopyOptions {
            image,
            ..CopyOptions::default()
        },
        Arc::new(NoProgress),
    );
    for (repository, tags) in &plan.listings {
        copier.know_tags(repository, tags);
    }
    let found = stream::iter(&plan.images)
        .map(|planned| async {
            let source = &planned.source;
            (source, copier.referrers_at_source(source).await)
        })
        .buffer_unordered(PlanOptions::default().concurrency)
        .collect::<Vec<_>>()
        .await;
    for (source, result) in found {
        let described = match result {
            Ok((referrers, problems)) => referrers
                .iter()
                .map(|r| {
                    let indent = "  ".repeat(r.depth);
                    let kind = r.artifact_type.as_deref().unwrap_or("no artifact type");
                    let skipped = if r.wanted {
                        ""
                    } else {
                        "; not of a --referrers-type, not copied"
                    };
                    format!(
                        "{indent}referrer {} of {} ({kind}), in {}{skipped}",
                        r.digest, r.subject, r.found_in
                    )
                })
                .chain(problems.iter().map(|p| format!("  referrer problem: {p}")))
                .collect(),
            Err(error) => vec![format!("  referrers not read: {error}")],
        };
        if !described.is_empty() {
            lines.insert(source.clone(), described);
        }
    }
    lines
}

/// `--explain`: per rule, what it selected of the tags it saw, then each tag and its fate,
/// and under each selected image what refers to it.
fn explain(
    selections: &[RuleSelection],
    referrers: &BTreeMap<Reference, Vec<String>>,
) -> std::io::Result<()> {
    let mut err = std::io::stderr().lock();
    for selection in selections {
        let taken = selection
            .explained
            .iter()
            .filter(|(_, dropped)| dropped.is_none())
            .count();
        writeln!(
            err,
            "{}: rule {:?}: {} image(s) selected; {taken} of {} tag(s) seen taken",
            selection.file.display(),
            selection.rule,
            selection.images.len(),
            selection.explained.len(),
        )?;
        for (tag, dropped) in &selection.explained {
            match dropped {
                None => writeln!(err, "  {tag}: selected")?,
                Some(reason) => writeln!(err, "  {tag}: dropped, {reason}")?,
            }
        }
        for (source, _) in &selection.images {
            let Some(lines) = referrers.get(source) else {
                continue;
            };
            writeln!(err, "  referrers of {source}:")?;
            for line in lines {
                writeln!(err, "  {line}")?;
            }
        }
    }
    err.flush()
}

/// `--queue-url`: enqueue jobs for the images not yet in sync (or plan jobs, fanning out)
/// and print what was done, as the planner Lambda answers it.
async fn enqueue(
    options: DispatchOptions,
    url: &str,
    rules: &[Rule],
    registries: &Arc<Registries>,
) -> anyhow::Result<Status> {
    let queue = SqsQueue::from_env(url).await;
    let summary = dispatch(rules, registries, &queue, &options).await?;
    println!("{}", serde_json::to_string(&summary)?);
    for error in &summary.errors {
        eprintln!("ferry: {error}");
    }
    Ok(if summary.errors.is_empty() {
        Status::Success
    } else {
        Status::Failed
    })
}
