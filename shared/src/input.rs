//! The second half of input handling: which files to read (`--auth`, `--images`, or the
//! legacy `--config` with both) and turning them into validated rules and credentials.
//! Nothing here contacts a registry.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::auth::{AuthConfig, AuthError};
use crate::env::Env;
use crate::files::{read_document, FileError};
use crate::rules::{load_rules, rules_from_value, Defaults, Rule, RulesError};

/// The input files as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct InputPaths {
    pub auth: Option<PathBuf>,
    pub images: Option<PathBuf>,
    /// Legacy image-syncer config: `{"auth": {…}, "images": {…}}`.
    pub config: Option<PathBuf>,
}

/// Validated inputs, ready to plan.
#[derive(Debug)]
pub struct Inputs {
    pub auth: AuthConfig,
    pub rules: Vec<Rule>,
}

/// Bad input: every message names the file (and rule or key) at fault.
#[derive(Debug, Error)]
pub enum InputError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error("{}: {message}", file.display())]
    Config { file: PathBuf, message: String },
    #[error("no images file: pass --images FILE (or --config FILE); ./images.json does not exist")]
    NoImages,
}

/// image-syncer's defaults when neither `--images` nor `--config` is given.
const DEFAULT_IMAGES: &str = "images.json";
const DEFAULT_AUTH: &str = "auth.json";

/// Reads and validates everything. `--auth`/`--images` override the legacy config's parts.
/// Without any auth file, `./auth.json` is used if present (image-syncer's default), and the
/// Docker config is always the fallback for repositories no entry covers.
pub fn load_inputs(
    paths: &InputPaths,
    defaults: &Defaults,
    env: &dyn Env,
) -> Result<Inputs, InputError> {
    let config = paths
        .config
        .as_deref()
        .map(read_legacy_config)
        .transpose()?;
    let rules = match (&paths.images, &config) {
        (Some(images), _) => load_rules(images, defaults, env)?,
        (None, Some(config)) => rules_from_value(&config.file, &config.images, defaults, env)?,
        (None, None) if Path::new(DEFAULT_IMAGES).exists() => {
            load_rules(Path::new(DEFAULT_IMAGES), defaults, env)?
        }
        (None, None) => return Err(InputError::NoImages),
    };
    let auth = match (&paths.auth, &config) {
        (Some(auth), _) => AuthConfig::load(auth, env)?,
        (None, Some(config)) => match &config.auth {
            Some(value) => AuthConfig::from_value(&config.file, value, env)?,
            None => AuthConfig::empty(),
        },
        (None, None) if Path::new(DEFAULT_AUTH).exists() => {
            AuthConfig::load(Path::new(DEFAULT_AUTH), env)?
        }
        (None, None) => AuthConfig::empty(),
    };
    let auth = auth.with_docker_config(env)?;
    Ok(Inputs { auth, rules })
}

struct LegacyConfig {
    file: PathBuf,
    auth: Option<serde_json::Value>,
    images: serde_json::Value,
}

fn read_legacy_config(file: &Path) -> Result<LegacyConfig, InputError> {
    let config_error = |message: String| InputError::Config {
        file: file.to_path_buf(),
        message,
    };
    let serde_json::Value::Object(mut map) = read_document(file)? else {
        return Err(config_error(
            "expected a map with \"auth\" and \"images\"".into(),
        ));
    };
    if let Some(unknown) = map.keys().find(|k| *k != "auth" && *k != "images") {
        return Err(config_error(format!(
            "unknown key {unknown:?} (expected \"auth\" and \"images\")"
        )));
    }
    let images = map
        .remove("images")
        .ok_or_else(|| config_error("no \"images\" key".into()))?;
    Ok(LegacyConfig {
        file: file.to_path_buf(),
        auth: map.remove("auth"),
        images,
    })
}
