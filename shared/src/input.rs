//! The second half of input handling: which files to read (`--auth`, `--images`, or the
//! legacy `--config` with both; each a local path or `s3://BUCKET/KEY`) and turning them
//! into validated rules and credentials. Nothing here contacts a registry; S3 is asked only
//! for a document given as an `s3://` URI. The serverless functions' settings from their
//! environment, and the defaults of the settings every command shares, live here too.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::auth::{AuthConfig, AuthError};
use crate::env::Env;
use crate::error::{HasKind, Kind};
use crate::files::{load_document, local_directory, parse_inline, DocumentSource, FileError};
use crate::image::Referrers;
use crate::platform::{PlatformError, PlatformFilter};
use crate::rules::{
    parse_immutable_pattern, rules_from_value, Defaults, ImmutableTags, Rule, RulesError,
};
use crate::s3::S3;

/// The input files as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct InputPaths {
    pub auth: Option<DocumentSource>,
    pub images: Option<DocumentSource>,
    /// Legacy image-syncer config: `{"auth": {…}, "images": {…}}`.
    pub config: Option<DocumentSource>,
}

/// Validated inputs, ready to plan.
#[derive(Debug)]
pub struct Inputs {
    pub auth: AuthConfig,
    pub rules: Vec<Rule>,
    /// A document came from S3, so it may change without a redeploy or a restart.
    pub from_s3: bool,
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
    #[error("no rules: set FERRY_IMAGES (inline YAML or JSON) or FERRY_IMAGES_FILE (a path or s3://BUCKET/KEY)")]
    NoImagesInEnvironment,
    #[error("{name}: {value:?} is not a positive whole number")]
    NotPositive { name: &'static str, value: String },
    #[error("{name}: {value:?} is neither true nor false")]
    NotABool { name: &'static str, value: String },
    #[error("FERRY_OS/FERRY_ARCH: {0}")]
    Platform(#[from] PlatformError),
    #[error("{IMMUTABLE_TAGS_VARIABLE}: {0}")]
    ImmutableTags(String),
}

impl HasKind for InputError {
    fn kind(&self) -> Kind {
        match self {
            // A credential helper that fails at load time is not the file's fault, nor is
            // S3 out of reach.
            InputError::Auth(error) => error.kind(),
            InputError::Rules(error) => error.kind(),
            InputError::File(error) => error.kind(),
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
/// Docker config is always the fallback for repositories no entry covers. Documents in S3 are
/// read through `s3`.
pub async fn load_inputs(
    paths: &InputPaths,
    defaults: &Defaults,
    env: &dyn Env,
    s3: &S3,
) -> Result<Inputs, InputError> {
    let config = match &paths.config {
        Some(source) => Some(read_legacy_config(source, s3).await?),
        None => None,
    };
    let default_images = DocumentSource::Local(PathBuf::from(DEFAULT_IMAGES));
    let rules = match (&paths.images, &config) {
        (Some(images), _) => load_images_file(images, defaults, env, s3).await?,
        (None, Some(config)) => rules_from_value(&config.file, &config.images, defaults, env)?,
        (None, None) if Path::new(DEFAULT_IMAGES).exists() => {
            load_images_file(&default_images, defaults, env, s3).await?
        }
        (None, None) => return Err(InputError::NoImages),
    };
    let default_auth = DocumentSource::Local(PathBuf::from(DEFAULT_AUTH));
    let auth = match (&paths.auth, &config) {
        (Some(auth), _) => load_auth_file(auth, env, s3).await?,
        (None, Some(config)) => match &config.auth {
            Some(value) => AuthConfig::from_value(&config.file, value, env)?,
            None => AuthConfig::empty(),
        },
        (None, None) if Path::new(DEFAULT_AUTH).exists() => {
            load_auth_file(&default_auth, env, s3).await?
        }
        (None, None) => AuthConfig::empty(),
    };
    let auth = auth.with_docker_config(env)?;
    let from_s3 = [&paths.images, &paths.auth, &paths.config]
        .into_iter()
        .any(|source| matches!(source, Some(DocumentSource::S3(_))));
    Ok(Inputs {
        auth,
        rules,
        from_s3,
    })
}

/// An images file, local or in S3, validated; its rules name it as their file.
pub async fn load_images_file(
    source: &DocumentSource,
    defaults: &Defaults,
    env: &dyn Env,
    s3: &S3,
) -> Result<Vec<Rule>, InputError> {
    let document = load_document(source, s3).await?;
    Ok(rules_from_value(&source.label(), &document, defaults, env)?)
}

/// An auth file, local or in S3, with its `${NAME}` references filled from `env` (so an
/// auth file in S3 still holds no secret: the environment brings them).
pub async fn load_auth_file(
    source: &DocumentSource,
    env: &dyn Env,
    s3: &S3,
) -> Result<AuthConfig, InputError> {
    let document = load_document(source, s3).await?;
    Ok(AuthConfig::from_value(&source.label(), &document, env)?)
}

/// The serverless functions' configuration, from their environment: the rules from
/// `FERRY_IMAGES` (inline YAML or JSON) or `FERRY_IMAGES_FILE`, the auth from `FERRY_AUTH` or
/// `FERRY_AUTH_FILE` (whose `${NAME}` values are filled from other variables, which the
/// template resolves from Secrets Manager), and `FERRY_REGISTRY`/`FERRY_NAMESPACE` as the
/// defaults for empty targets. A `…_FILE` is a local path or `s3://BUCKET/KEY`, read through
/// `s3`. Rules are optional where a function only runs queued jobs.
pub async fn load_inputs_from_env(
    env: &dyn Env,
    rules_required: bool,
    s3: &S3,
) -> Result<Inputs, InputError> {
    EnvDocuments::read(env, s3)
        .await?
        .into_inputs(env, rules_required)
}

/// The functions' two documents as read, before validation: `FERRY_IMAGES` or
/// `FERRY_IMAGES_FILE`, and `FERRY_AUTH` or `FERRY_AUTH_FILE`, each with the label its
/// errors name. A function that reads them again (a warm one, files in S3) compares
/// [`EnvDocuments::fingerprint`]s and builds only when they differ.
#[derive(Debug, Clone)]
pub struct EnvDocuments {
    images: Option<(PathBuf, serde_json::Value)>,
    auth: Option<(PathBuf, serde_json::Value)>,
}

impl EnvDocuments {
    /// Reads both documents (files in S3 through `s3`); nothing is validated yet.
    pub async fn read(env: &dyn Env, s3: &S3) -> Result<EnvDocuments, InputError> {
        Ok(EnvDocuments {
            images: document_from_env(env, "FERRY_IMAGES", "FERRY_IMAGES_FILE", s3).await?,
            auth: document_from_env(env, "FERRY_AUTH", "FERRY_AUTH_FILE", s3).await?,
        })
    }

    /// Whether a document came from S3, so it may change without a redeploy or a restart.
    pub fn from_s3(&self) -> bool {
        [&self.images, &self.auth]
            .into_iter()
            .flatten()
            .any(|(file, _)| !is_local(file))
    }

    /// SHA-256 over the documents' JSON, each after a marker of whether it is there (so an
    /// images file moved to the auth slot is not taken for the same inputs). `${NAME}`
    /// references are hashed as written: a function's environment does not change.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for document in [&self.images, &self.auth] {
            match document {
                Some((_, value)) => {
                    hasher.update(b"+");
                    // Serialising a `Value` cannot fail; its maps keep the document's order.
                    hasher.update(serde_json::to_vec(value).unwrap_or_default());
                    hasher.update(b"\n");
                }
                None => hasher.update(b"-\n"),
            }
        }
        hasher.finalize().into()
    }

    /// The documents validated: rules (`FERRY_REGISTRY`/`FERRY_NAMESPACE` the defaults for
    /// empty targets), and credentials with their `${NAME}` references filled from `env`.
    pub fn into_inputs(self, env: &dyn Env, rules_required: bool) -> Result<Inputs, InputError> {
        let from_s3 = self.from_s3();
        let defaults = Defaults {
            registry: non_empty(env, "FERRY_REGISTRY"),
            namespace: non_empty(env, "FERRY_NAMESPACE"),
        };
        let rules = match self.images {
            Some((file, value)) => rules_from_value(&file, &value, &defaults, env)?,
            None if rules_required => return Err(InputError::NoImagesInEnvironment),
            None => Vec::new(),
        };
        let auth = match self.auth {
            Some((file, value)) => AuthConfig::from_value(&file, &value, env)?,
            None => AuthConfig::empty(),
        };
        Ok(Inputs {
            auth,
            rules,
            from_s3,
        })
    }
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
    /// `FERRY_REFERRERS` (`false` turns referrers off) and `FERRY_REFERRERS_TYPE`
    /// (comma-separated artifact types), as `--referrers`/`--referrers-type`.
    pub referrers: Referrers,
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
        referrers: Referrers {
            enabled: env
                .var("FERRY_REFERRERS")
                .is_none_or(|v| v.trim().is_empty())
                || flag(env, "FERRY_REFERRERS")?,
            types: list("FERRY_REFERRERS_TYPE"),
        },
    })
}

/// The variable that is the functions' `--immutable-tags`.
pub const IMMUTABLE_TAGS_VARIABLE: &str = "FERRY_IMMUTABLE_TAGS";

/// The immutable tags of a function: [`IMMUTABLE_TAGS_VARIABLE`]'s pattern (none when unset
/// or empty) and the `immutable:` patterns of `rules`.
pub fn immutable_tags_from_env(env: &dyn Env, rules: &[Rule]) -> Result<ImmutableTags, InputError> {
    let pattern = env
        .var(IMMUTABLE_TAGS_VARIABLE)
        .filter(|text| !text.trim().is_empty())
        .map(|text| parse_immutable_pattern(&text))
        .transpose()
        .map_err(InputError::ImmutableTags)?;
    Ok(ImmutableTags::new(pattern, rules))
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

/// A document from `inline` (its text) or else `file` (a path or an S3 URI), and what names
/// it in messages.
async fn document_from_env(
    env: &dyn Env,
    inline: &'static str,
    file: &'static str,
    s3: &S3,
) -> Result<Option<(PathBuf, serde_json::Value)>, InputError> {
    if let Some(text) = env.var(inline).filter(|t| !t.trim().is_empty()) {
        let label = PathBuf::from(format!("${inline}"));
        return Ok(Some((label.clone(), parse_inline(&label, &text)?)));
    }
    match env.var(file).filter(|p| !p.trim().is_empty()) {
        Some(text) => {
            let source: DocumentSource = text.trim().parse()?;
            let document = load_document(&source, s3).await?;
            Ok(Some((source.label(), document)))
        }
        None => Ok(None),
    }
}

/// Whether a document's label names something local (a file, or a variable's text).
fn is_local(label: &Path) -> bool {
    local_directory(label).is_some()
}

struct LegacyConfig {
    file: PathBuf,
    auth: Option<serde_json::Value>,
    images: serde_json::Value,
}

async fn read_legacy_config(source: &DocumentSource, s3: &S3) -> Result<LegacyConfig, InputError> {
    let file = source.label();
    let config_error = |problem: ConfigProblem| InputError::Config {
        file: file.clone(),
        problem,
    };
    let serde_json::Value::Object(mut map) = load_document(source, s3).await? else {
        return Err(config_error(ConfigProblem::NotAMap));
    };
    if let Some(unknown) = map.keys().find(|k| *k != "auth" && *k != "images") {
        return Err(config_error(ConfigProblem::UnknownKey(unknown.clone())));
    }
    let images = map
        .remove("images")
        .ok_or(config_error(ConfigProblem::NoImages))?;
    Ok(LegacyConfig {
        file,
        auth: map.remove("auth"),
        images,
    })
}
