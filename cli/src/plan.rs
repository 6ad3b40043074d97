//! `ferry plan`: load and validate the inputs, resolve the rules against the live source
//! registries, print one JSON object per copy on standard output, sorted.

use std::io::Write as _;
use std::sync::Arc;

use serde::Serialize;
use shared::env::ProcessEnv;
use shared::input::{load_inputs, InputPaths};
use shared::plan::{resolve, DEFAULT_PLAN_CONCURRENCY};
use shared::registry::{ClientOptions, Registries, RetryPolicy};
use shared::rules::Defaults;

use crate::args::{InputArgs, PlanArgs};
use crate::exit::Status;

#[derive(Serialize)]
struct PlanLine<'a> {
    source: String,
    target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a str>,
}

pub async fn run(args: PlanArgs) -> anyhow::Result<Status> {
    let (rules, registries) = load(&args.input)?;
    let plan = resolve(&rules, &registries, DEFAULT_PLAN_CONCURRENCY).await;
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

/// Reads the inputs and builds the registry clients every command shares.
pub fn load(input: &InputArgs) -> anyhow::Result<(Vec<shared::rules::Rule>, Arc<Registries>)> {
    let env = ProcessEnv;
    let defaults =
        Defaults::from_flags_or_env(input.registry.clone(), input.namespace.clone(), &env);
    let paths = InputPaths {
        auth: input.auth.clone(),
        images: input.images.clone(),
        config: input.config.clone(),
    };
    let inputs = load_inputs(&paths, &defaults, &env)?;
    let options = ClientOptions {
        retry: RetryPolicy::from_env(&env),
        tags_page_size: input.tags_page_size,
        ..ClientOptions::default()
    };
    let registries = Arc::new(Registries::new(Arc::new(inputs.auth), options));
    Ok((inputs.rules, registries))
}
