//! `ferry plan`: load and validate the inputs, resolve the rules against the live source
//! registries, print one JSON object per copy on standard output, sorted.

use std::io::Write as _;

use serde::Serialize;
use shared::plan::{resolve, PlanOptions};

use crate::args::PlanArgs;
use crate::exit::Status;
use crate::inputs::load;

#[derive(Serialize)]
struct PlanLine<'a> {
    source: String,
    target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a str>,
}

pub async fn run(args: PlanArgs) -> anyhow::Result<Status> {
    let (rules, registries) = load(&args.input)?;
    let plan = resolve(&rules, &registries, &PlanOptions::default()).await;
    let mut out = std::io::stdout().lock();
    for (image, target) in plan.pairs() {
        let line = PlanLine {
            source: image.source.to_string(),
            target: target.to_string(),
            digest: image.digest.as_ref().map(|d| d.as_str()),
        };
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
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
