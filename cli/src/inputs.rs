//! Loading the input files every command shares: flags and environment → validated rules and
//! the registry clients. Nothing here contacts a registry (only S3, for a file given as
//! `s3://BUCKET/KEY`), so bad input fails before any request (exit status 2).

use std::sync::Arc;

use ferry::auth::AuthConfig;
use ferry::copy::{Copier, CopyOptions, NoProgress};
use ferry::env::ProcessEnv;
use ferry::files::DocumentSource;
use ferry::image::{ImageOptions, Referrers};
use ferry::input::{load_auth_file, load_inputs, InputError, InputPaths};
use ferry::registry::{ClientOptions, Registries};
use ferry::rules::{Defaults, ImmutableTags, Rule};
use ferry::s3::S3;

use crate::args::InputArgs;

/// Reads the inputs and builds the registry clients.
pub async fn load(input: &InputArgs) -> anyhow::Result<(Vec<Rule>, Arc<Registries>)> {
    let env = ProcessEnv;
    let defaults =
        Defaults::from_flags_or_env(input.registry.clone(), input.namespace.clone(), &env);
    let paths = InputPaths {
        auth: input.auth.clone(),
        images: input.images.clone(),
        config: input.config.clone(),
    };
    let inputs = load_inputs(&paths, &defaults, &env, &S3::new()).await?;
    let registries = registries(inputs.auth, input.tags_page_size);
    Ok((inputs.rules, registries))
}

/// Only the auth file (`ferry worker`: its jobs name their sources and targets).
pub async fn load_auth(auth: Option<&DocumentSource>, s3: &S3) -> anyhow::Result<Arc<Registries>> {
    let env = ProcessEnv;
    let config = match auth {
        Some(source) => load_auth_file(source, &env, s3).await?,
        None => AuthConfig::empty(),
    };
    let config = config.with_docker_config(&env).map_err(InputError::from)?;
    Ok(registries(config, None))
}

fn registries(auth: AuthConfig, tags_page_size: Option<usize>) -> Arc<Registries> {
    let options = ClientOptions {
        tags_page_size,
        ..ClientOptions::from_env(&ProcessEnv)
    };
    Arc::new(Registries::new(Arc::new(auth), options))
}

/// A copier for queued jobs (`ferry worker`, `ferry serve`): each job brings its own
/// platform filter and `force`, so only the transfer bound, the immutable tags and whether
/// referrers may be copied at all (`--referrers=false` overrules every job) are set here.
pub fn job_copier(
    registries: Arc<Registries>,
    proc: usize,
    referrers: Referrers,
    immutable: ImmutableTags,
) -> Arc<Copier> {
    Arc::new(Copier::new(
        registries,
        CopyOptions {
            proc,
            image: ImageOptions {
                referrers,
                ..ImageOptions::default()
            },
            immutable,
            ..CopyOptions::default()
        },
        Arc::new(NoProgress),
    ))
}
