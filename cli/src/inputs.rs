//! Loading the input files every command shares: flags and environment → validated rules and
//! the registry clients. Nothing here contacts a registry, so bad input fails before any
//! request (exit status 2).

use std::sync::Arc;

use shared::env::ProcessEnv;
use shared::input::{load_inputs, InputPaths};
use shared::registry::{ClientOptions, Registries, RetryPolicy};
use shared::rules::{Defaults, Rule};

use crate::args::InputArgs;

/// Reads the inputs and builds the registry clients.
pub fn load(input: &InputArgs) -> anyhow::Result<(Vec<Rule>, Arc<Registries>)> {
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
