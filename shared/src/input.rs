//! The second half of input handling: which files to read (`--auth`, `--images`, or the
//! legacy `--config` with both) and turning them into validated rules and credentials.
//! Nothing here contacts a registry. The serverless functions' settings from their
//! environment, and the defaults of the settings every command shares, live here too.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::auth::{AuthConfig, AuthError};
use crate::env::Env;
use crate::error::{HasKind, Kind};
use crate::files::{parse_inline, read_document, FileError};
use crate::platform::{PlatformError, PlatformFilter};
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
    #[error("{}: {problem}", file.display())]
    Config {
        file: PathBuf,
        problem: ConfigProblem,
    },
    #[error("no images file: pass --images FILE (or --config FILE); ./images.json does not exist")]
    NoImages,
    #[error("no rules: set FERRY_IMAGES (inline YAML or JSON) or FERRY_IMAGES_FILE")]
    NoImagesInEnvironment,
    #[error("{name}: {value:?} is not a positive whole number")]
    NotPositive { name: &'static str, value: String },
    #[error("{name}: {value:?} is neither true nor false")]
    NotABool { name: &'static str, value: String },
    #[error("FERRY_OS/FERRY_ARCH: {0}")]
    Platform(#[from] PlatformError),
}

impl HasKind for InputError {
    fn kind(&self) -> Kind {
        match self {
            // A credential helper that fails at load time is not the file's fault.
            InputError::Auth(error) => error.kind(),
            _ => Kind::BadInput,
        }
    }
}

/// What is wrong with a legacy `--config` file's shape.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigProblem {
    #[error("expected a map with \"auth\" and \"images\"")]
    NotAMap,
    #[error("unknown key {0:?} (expected \"auth\" and \"images\")")]
    UnknownKey(String),
    #[error("no \"images\" key")]
    NoImages,
}

/// Registry requests kept in flight while planning, unless configured otherwise.
pub const DEFAULT_CONCURRENCY: usize = 32;

/// Blob transfers in flight (`--proc`, `FERRY_PROC`), unless configured otherwise.
pub const DEFAULT_PROC: usize = 5;

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

/// The serverless functions' configuration, from their environment: the rules from
/// `FERRY_IMAGES` (inline YAML or JSON) or `FERRY_IMAGES_FILE`, the auth from `FERRY_AUTH` or
/// `FERRY_AUTH_FILE` (whose `${NAME}` values are filled from other variables, which the
/// template resolves from Secrets Manager), and `FERRY_REGISTRY`/`FERRY_NAMESPACE` as the
/// defaults for empty targets. Rules are optional where a function only runs queued jobs.
pub fn load_inputs_from_env(env: &dyn Env, rules_required: bool) -> Result<Inputs, InputError> {
    let defaults = Defaults {
        registry: non_empty(env, "FERRY_REGISTRY"),
        namespace: non_empty(env, "FERRY_NAMESPACE"),
    };
    let rules = match document_from_env(env, "FERRY_IMAGES", "FERRY_IMAGES_FILE")? {
        Some((file, value)) => rules_from_value(&file, &value, &defaults, env)?,
        None if rules_required => return Err(InputError::NoImagesInEnvironment),
        None => Vec::new(),
    };
    let auth = match document_from_env(env, "FERRY_AUTH", "FERRY_AUTH_FILE")? {
        Some((file, value)) => AuthConfig::from_value(&file, &value, env)?,
        None => AuthConfig::empty(),
    };
    Ok(Inputs { auth, rules })
}

/// Rules given inline (an invocation's `"images"` override), validated like a file's.
pub fn rules_from_inline(
    label: &str,
    value: &serde_json::Value,
    env: &dyn Env,
) -> Result<Vec<Rule>, InputError> {
    let defaults = Defaults {
        registry: non_empty(env, "FERRY_REGISTRY"),
        namespace: non_empty(env, "FERRY_NAMESPACE"),
    };
    // A string holds a YAML or JSON document; anything else is the rules map itself.
    let label = Path::new(label);
    let value = match value {
        serde_json::Value::String(text) => parse_inline(label, text)?,
        other => other.clone(),
    };
    Ok(rules_from_value(label, &value, &defaults, env)?)
}

/// The serverless functions' copy settings from their environment: `FERRY_OS`/`FERRY_ARCH`
/// (comma-separated, as the flags), `FERRY_PROC` (blob transfers in flight, which bounds
/// memory), `FERRY_CONCURRENCY` (registry requests in flight while planning) and
/// `FERRY_ALLOW_INLINE_RULES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSettings {
    pub platforms: PlatformFilter,
    /// `FERRY_ALLOW_INLINE_RULES`: planner invocations may bring their own rules, and the
    /// copier then runs any well-formed job. Off by default: only the stack's rules count.
    pub inline_rules: bool,
    pub proc: usize,
    pub concurrency: usize,
}

pub fn service_settings_from_env(env: &dyn Env) -> Result<ServiceSettings, InputError> {
    let list = |name: &str| -> Vec<String> {
        env.var(name)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    Ok(ServiceSettings {
        platforms: PlatformFilter::parse(&list("FERRY_OS"), &list("FERRY_ARCH"))?,
        inline_rules: flag(env, "FERRY_ALLOW_INLINE_RULES")?,
        proc: positive(env, "FERRY_PROC", DEFAULT_PROC)?,
        concurrency: positive(env, "FERRY_CONCURRENCY", DEFAULT_CONCURRENCY)?,
    })
}

fn positive(env: &dyn Env, name: &'static str, default: usize) -> Result<usize, InputError> {
    match env.var(name).map(|v| v.trim().to_string()) {
        None => Ok(default),
        Some(v) if v.is_empty() => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(InputError::NotPositive { name, value: v }),
        },
    }
}

fn flag(env: &dyn Env, name: &'static str) -> Result<bool, InputError> {
    match env
        .var(name)
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("" | "false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(InputError::NotABool {
            name,
            value: env.var(name).unwrap_or_default(),
        }),
    }
}

fn non_empty(env: &dyn Env, name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.trim().trim_matches('/').to_string())
        .filter(|v| !v.is_empty())
}

/// A document from `inline` (its text) or else `file` (a path); the path names it in messages.
fn document_from_env(
    env: &dyn Env,
    inline: &'static str,
    file: &'static str,
) -> Result<Option<(PathBuf, serde_json::Value)>, InputError> {
    if let Some(text) = env.var(inline).filter(|t| !t.trim().is_empty()) {
        let label = PathBuf::from(format!("${inline}"));
        return Ok(Some((label.clone(), parse_inline(&label, &text)?)));
    }
    match env.var(file).filter(|p| !p.trim().is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path.trim());
            Ok(Some((path.clone(), read_document(&path)?)))
        }
        None => Ok(None),
    }
}

struct LegacyConfig {
    file: PathBuf,
    auth: Option<serde_json::Value>,
    images: serde_json::Value,
}

fn read_legacy_config(file: &Path) -> Result<LegacyConfig, InputError> {
    let config_error = |problem: ConfigProblem| InputError::Config {
        file: file.to_path_buf(),
        problem,
    };
    let serde_json::Value::Object(mut map) = read_document(file)? else {
        return Err(config_error(ConfigProblem::NotAMap));
    };
    if let Some(unknown) = map.keys().find(|k| *k != "auth" && *k != "images") {
        return Err(config_error(ConfigProblem::UnknownKey(unknown.clone())));
    }
    let images = map
        .remove("images")
        .ok_or(config_error(ConfigProblem::NoImages))?;
    Ok(LegacyConfig {
        file: file.to_path_buf(),
        auth: map.remove("auth"),
        images,
    })
}
