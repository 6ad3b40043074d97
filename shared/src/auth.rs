//! Registry credentials and per-host TLS settings. This module owns image-syncer's auth file
//! (`--auth`, or the legacy `--config` file's `auth` object): what its keys mean, the fields an
//! entry may have, `$VAR` references, and which entry applies to a repository (the longest
//! key that is a prefix on a `/` boundary, deterministically). When the auth file has no
//! credentials for a repository, the Docker config (`auths`, `credHelpers`, `credsStore`) is
//! asked instead. The registry client only calls `credentials_for` and `tls_for`.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};
use thiserror::Error;

use crate::credentials::{CredentialStore, Credentials, CredentialsError, Secret, TlsSettings};
use crate::env::Env;
use crate::files::{read_document, scalar_string, FileError};
use crate::reference::{canonical_registry, Repository, DOCKER_HUB};

/// The server URL Docker uses for Docker Hub in its config and with credential helpers.
const DOCKER_HUB_SERVER_URL: &str = "https://index.docker.io/v1/";

/// What a credential helper prints on stdout when it has nothing for a server.
const HELPER_NOT_FOUND: &str = "credentials not found";

/// Why credentials could not be loaded or resolved. Messages never contain secrets.
#[derive(Debug, Error)]
pub enum AuthError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{}: expected a map from registry (or registry/namespace) to username, password, insecure, ca", file.display())]
    NotAMap { file: PathBuf },
    #[error("{}: entry {key:?}: {message}", file.display())]
    Shape {
        file: PathBuf,
        key: String,
        message: String,
    },
    #[error("{}: entry {key:?}: unknown field {field:?} (expected username, password, insecure or ca)", file.display())]
    UnknownField {
        file: PathBuf,
        key: String,
        field: String,
    },
    #[error("{}: entry {key:?}: {field} is \"${{{variable}}}\" but environment variable {variable} is not set", file.display())]
    MissingVariable {
        file: PathBuf,
        key: String,
        field: String,
        variable: String,
    },
    #[error("{}: key {key:?} is not a registry or registry/namespace: {reason}", file.display())]
    BadKey {
        file: PathBuf,
        key: String,
        reason: String,
    },
    #[error("{}: keys {first:?} and {second:?} both mean {normalised}; keep one", file.display())]
    DuplicateKey {
        file: PathBuf,
        first: String,
        second: String,
        normalised: String,
    },
    #[error("{}: entry {key:?}: CA file {}: {source}", file.display(), path.display())]
    CaFile {
        file: PathBuf,
        key: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Docker config {}: {message}", file.display())]
    DockerConfig { file: PathBuf, message: String },
    #[error("credential helper docker-credential-{helper}: {message}")]
    Helper { helper: String, message: String },
}

// ---------------------------------------------------------------------------------------
// Keys and matching

/// A key as written and in normalised form (`https://Quay.io/coreos/` → `quay.io/coreos`).
#[derive(Debug, Clone)]
struct Key {
    raw: String,
    /// `registry` or `registry/namespace…`, comparable with `Repository`'s `registry/path`.
    normalised: String,
    registry: String,
}

impl Key {
    fn parse(raw: &str) -> Result<Key, String> {
        let text = raw.trim();
        let text = strip_scheme(text).trim_end_matches('/');
        let (host, path) = match text.split_once('/') {
            Some((host, path)) => (host.to_ascii_lowercase(), Some(path)),
            None => (text.to_ascii_lowercase(), None),
        };
        // `https://index.docker.io/v1/` names Docker's API version, not a namespace.
        let path = path.filter(|p| !matches!(*p, "v1" | "v2"));
        if host.is_empty() {
            return Err("no registry host".to_string());
        }
        // Let reference parsing decide what a registry host and a path are.
        let probe = format!("{host}/{}", path.unwrap_or("x"));
        let repository = Repository::parse(&probe).map_err(|e| e.to_string())?;
        if repository.registry() != canonical_registry(&host) {
            return Err(format!(
                "{host:?} is not a registry host (it needs a '.' or ':' or must be localhost; \
                 Docker Hub namespaces are written docker.io/{host})"
            ));
        }
        let registry = repository.registry().to_string();
        let normalised = match path {
            Some(path) => format!("{registry}/{path}"),
            None => registry.clone(),
        };
        Ok(Key {
            raw: raw.to_string(),
            normalised,
            registry,
        })
    }

    /// Whether this key is a prefix of `target` (`registry/path`) on a `/` boundary.
    fn matches(&self, target: &str) -> bool {
        target
            .strip_prefix(&self.normalised)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

fn strip_scheme(text: &str) -> &str {
    for scheme in ["https://", "http://"] {
        if text.len() >= scheme.len() && text[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return &text[scheme.len()..];
        }
    }
    text
}

/// What keys are matched against.
fn target_of(repository: &Repository) -> String {
    format!("{}/{}", repository.registry(), repository.path())
}

trait Keyed {
    fn key(&self) -> &Key;
}

/// Orders longest key first (ties by raw key), so the first match is the most specific.
fn sort_longest_first<T: Keyed>(items: &mut [T]) {
    items.sort_by(|a, b| {
        let (a, b) = (a.key(), b.key());
        b.normalised
            .len()
            .cmp(&a.normalised.len())
            .then_with(|| a.raw.cmp(&b.raw))
    });
}

/// Items whose key matches `target`, most specific first (items must be sorted).
fn matching<'a, 't, T: Keyed>(
    items: &'a [T],
    target: &'t str,
) -> impl Iterator<Item = &'a T> + use<'a, 't, T> {
    items.iter().filter(move |item| item.key().matches(target))
}

// ---------------------------------------------------------------------------------------
// Auth-file entries

#[derive(Debug)]
struct Entry {
    key: Key,
    credentials: Option<Credentials>,
    insecure: bool,
    ca: Option<PathBuf>,
}

impl Keyed for Entry {
    fn key(&self) -> &Key {
        &self.key
    }
}

/// Where a value came from, for error messages.
struct Origin<'a> {
    file: &'a Path,
    key: &'a str,
}

impl Origin<'_> {
    fn shape(&self, message: impl Into<String>) -> AuthError {
        AuthError::Shape {
            file: self.file.to_path_buf(),
            key: self.key.to_string(),
            message: message.into(),
        }
    }
}

fn parse_entry(
    origin: &Origin,
    key: Key,
    value: &Value,
    env: &dyn Env,
) -> Result<Entry, AuthError> {
    let empty = Map::new();
    let fields = match value {
        // `quay.io:` with nothing under it.
        Value::Null => &empty,
        Value::Object(fields) => fields,
        _ => return Err(origin.shape("expected a map with username, password, insecure, ca")),
    };
    let (mut username, mut password) = (None, None);
    let mut entry = Entry {
        key,
        credentials: None,
        insecure: false,
        ca: None,
    };
    for (field, value) in fields {
        match field.as_str() {
            "username" => username = text_field(origin, field, value, env)?,
            "password" => password = text_field(origin, field, value, env)?,
            "insecure" => entry.insecure = bool_field(origin, field, value)?,
            "ca" => entry.ca = ca_field(origin, value)?,
            _ => {
                return Err(AuthError::UnknownField {
                    file: origin.file.to_path_buf(),
                    key: origin.key.to_string(),
                    field: field.clone(),
                })
            }
        }
    }
    entry.credentials = basic_credentials(username, password);
    Ok(entry)
}

/// Basic credentials unless both parts are absent or empty (which means "none here").
fn basic_credentials(username: Option<String>, password: Option<String>) -> Option<Credentials> {
    let username = username.unwrap_or_default();
    let password = password.unwrap_or_default();
    if username.is_empty() && password.is_empty() {
        return None;
    }
    Some(Credentials::Basic {
        username,
        password: Secret::new(password),
    })
}

fn text_field(
    origin: &Origin,
    field: &str,
    value: &Value,
    env: &dyn Env,
) -> Result<Option<String>, AuthError> {
    if value.is_null() {
        return Ok(None);
    }
    let text = scalar_string(value).ok_or_else(|| origin.shape(format!("{field} must be text")))?;
    expand_variable(origin, field, text, env).map(Some)
}

fn bool_field(origin: &Origin, field: &str, value: &Value) -> Result<bool, AuthError> {
    match value {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        _ => Err(origin.shape(format!("{field} must be true or false"))),
    }
}

/// Resolves `ca` against the auth file's directory and checks it holds a PEM certificate,
/// so a wrong path fails at startup rather than as a TLS error mid-copy.
fn ca_field(origin: &Origin, value: &Value) -> Result<Option<PathBuf>, AuthError> {
    let text = match value {
        Value::Null => return Ok(None),
        Value::String(text) if !text.trim().is_empty() => text.trim(),
        _ => return Err(origin.shape("ca must be the path of a PEM file")),
    };
    let base = origin.file.parent().unwrap_or(Path::new(""));
    let path = base.join(text);
    let ca_error = |source| AuthError::CaFile {
        file: origin.file.to_path_buf(),
        key: origin.key.to_string(),
        path: path.clone(),
        source,
    };
    let pem = std::fs::read(&path).map_err(ca_error)?;
    let marker = b"-----BEGIN CERTIFICATE-----";
    if !pem.windows(marker.len()).any(|w| w == marker) {
        let message = "no PEM certificate (-----BEGIN CERTIFICATE-----) in it";
        return Err(ca_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            message,
        )));
    }
    Ok(Some(path))
}

/// `${NAME}` must be set; `$NAME` is replaced only if set, since literal values such as
/// Quay's `$oauthtoken` username look the same; anything else (`robot$name`) is literal.
fn expand_variable(
    origin: &Origin,
    field: &str,
    text: String,
    env: &dyn Env,
) -> Result<String, AuthError> {
    let braced = text
        .strip_prefix("${")
        .and_then(|rest| rest.strip_suffix('}'))
        .filter(|name| is_variable_name(name));
    if let Some(name) = braced {
        return env.var(name).ok_or_else(|| AuthError::MissingVariable {
            file: origin.file.to_path_buf(),
            key: origin.key.to_string(),
            field: field.to_string(),
            variable: name.to_string(),
        });
    }
    let Some(name) = text.strip_prefix('$').filter(|name| is_variable_name(name)) else {
        return Ok(text);
    };
    if let Some(value) = env.var(name) {
        return Ok(value);
    }
    // Naming the variable would reveal a literal password, so only usernames are shown.
    let shown = if field == "password" {
        "(value hidden)"
    } else {
        text.as_str()
    };
    tracing::warn!(
        file = %origin.file.display(),
        key = origin.key,
        "{field} {shown} looks like an environment variable that is not set; using it literally"
    );
    Ok(text)
}

fn is_variable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// TLS per host: insecure if any entry on the host says so; `ca` from the longest entry
/// that has one (entries are sorted longest first).
fn tls_by_host(entries: &[Entry]) -> HashMap<String, TlsSettings> {
    let mut tls: HashMap<String, TlsSettings> = HashMap::new();
    for entry in entries {
        let settings = tls.entry(entry.key.registry.clone()).or_default();
        settings.insecure |= entry.insecure;
        if settings.ca.is_none() {
            settings.ca.clone_from(&entry.ca);
        }
    }
    tls
}

// ---------------------------------------------------------------------------------------
// AuthConfig

/// Credentials and TLS settings for every registry ferry talks to. Cheap to query; share it
/// behind an `Arc`. Debug output never contains secrets.
#[derive(Debug, Default)]
pub struct AuthConfig {
    /// Longest key first.
    entries: Vec<Entry>,
    tls: HashMap<String, TlsSettings>,
    docker: Option<DockerConfig>,
}

impl AuthConfig {
    /// No auth file: every registry anonymous and verified over HTTPS.
    pub fn empty() -> Self {
        AuthConfig::default()
    }

    /// Reads an auth file (`.yaml`, `.yml` or `.json`), expanding `$VAR` references through `env`.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Self, AuthError> {
        let document = read_document(path)?;
        AuthConfig::from_value(path, &document, env)
    }

    /// For the legacy `--config` file's `auth` object: `file` is used in messages and as the
    /// base of relative `ca` paths.
    pub fn from_value(file: &Path, value: &Value, env: &dyn Env) -> Result<Self, AuthError> {
        let map = match value {
            Value::Null => return Ok(AuthConfig::empty()),
            Value::Object(map) => map,
            _ => {
                return Err(AuthError::NotAMap {
                    file: file.to_path_buf(),
                })
            }
        };
        let mut entries: Vec<Entry> = Vec::with_capacity(map.len());
        for (raw_key, value) in map {
            let key = parse_auth_key(file, raw_key, &entries)?;
            let origin = Origin { file, key: raw_key };
            entries.push(parse_entry(&origin, key, value, env)?);
        }
        sort_longest_first(&mut entries);
        let tls = tls_by_host(&entries);
        Ok(AuthConfig {
            entries,
            tls,
            docker: None,
        })
    }

    /// Adds the Docker config fallback found through `env`: `$DOCKER_CONFIG/config.json`, else
    /// `$HOME/.docker/config.json`. A missing file means no fallback. Credential helpers are
    /// looked up in `env`'s `PATH`.
    pub fn with_docker_config(mut self, env: &dyn Env) -> Result<Self, AuthError> {
        self.docker = match docker_config_path(env) {
            Some(path) => DockerConfig::load(path, env.var("PATH"))?,
            None => None,
        };
        Ok(self)
    }

    /// The credentials for `repository`: the auth file's longest matching entry that has a
    /// username or password, else the Docker config, else `None` (anonymous).
    ///
    /// Blocking: may run a Docker credential helper (once per registry per process; the result
    /// is cached). Call it from `spawn_blocking` or before the copy starts.
    pub fn credentials_for(
        &self,
        repository: &Repository,
    ) -> Result<Option<Credentials>, AuthError> {
        let target = target_of(repository);
        if let Some(entry) = self.entry_with_credentials(&target) {
            return Ok(entry.credentials.clone());
        }
        match &self.docker {
            Some(docker) => docker.credentials_for(repository.registry(), &target),
            None => Ok(None),
        }
    }

    /// TLS settings for a registry host as in `Repository::registry()`.
    pub fn tls_for(&self, registry: &str) -> TlsSettings {
        self.tls
            .get(&canonical_registry(registry))
            .cloned()
            .unwrap_or_default()
    }

    /// Where `repository`'s credentials come from, for log lines; never secrets, never runs
    /// a helper.
    pub fn describe_match(&self, repository: &Repository) -> String {
        let target = target_of(repository);
        if let Some(entry) = self.entry_with_credentials(&target) {
            return format!("auth file entry {}", entry.key.raw);
        }
        self.docker
            .as_ref()
            .and_then(|docker| docker.describe(repository.registry(), &target))
            .unwrap_or_else(|| "anonymous".to_string())
    }

    /// An entry without credentials (say, only `insecure`) does not hide a shorter one
    /// that has them.
    fn entry_with_credentials(&self, target: &str) -> Option<&Entry> {
        matching(&self.entries, target).find(|entry| entry.credentials.is_some())
    }
}

impl CredentialStore for AuthConfig {
    fn credentials_for(
        &self,
        repository: &Repository,
    ) -> Result<Option<Credentials>, CredentialsError> {
        AuthConfig::credentials_for(self, repository).map_err(|e| CredentialsError {
            source_name: self.describe_match(repository),
            message: e.to_string(),
        })
    }

    fn tls_for(&self, registry: &str) -> TlsSettings {
        AuthConfig::tls_for(self, registry)
    }
}

fn parse_auth_key(file: &Path, raw: &str, seen: &[Entry]) -> Result<Key, AuthError> {
    let key = Key::parse(raw).map_err(|reason| AuthError::BadKey {
        file: file.to_path_buf(),
        key: raw.to_string(),
        reason,
    })?;
    // Two spellings of one key would make the choice between them arbitrary.
    if let Some(other) = seen.iter().find(|e| e.key.normalised == key.normalised) {
        return Err(AuthError::DuplicateKey {
            file: file.to_path_buf(),
            first: other.key.raw.clone(),
            second: raw.to_string(),
            normalised: key.normalised,
        });
    }
    Ok(key)
}

// ---------------------------------------------------------------------------------------
// Docker config fallback

fn docker_config_path(env: &dyn Env) -> Option<PathBuf> {
    let non_empty = |name| env.var(name).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    non_empty("HOME").map(|home| PathBuf::from(home).join(".docker").join("config.json"))
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawDockerConfig {
    auths: HashMap<String, RawDockerAuth>,
    cred_helpers: HashMap<String, String>,
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawDockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

#[derive(Debug)]
struct DockerAuth {
    key: Key,
    credentials: Option<Credentials>,
}

impl Keyed for DockerAuth {
    fn key(&self) -> &Key {
        &self.key
    }
}

#[derive(Debug)]
struct HelperRoute {
    key: Key,
    helper: String,
}

impl Keyed for HelperRoute {
    fn key(&self) -> &Key {
        &self.key
    }
}

type HelperResult = Result<Option<Credentials>, String>;

#[derive(Debug)]
struct DockerConfig {
    file: PathBuf,
    /// Longest key first, as are `helpers`.
    auths: Vec<DockerAuth>,
    helpers: Vec<HelperRoute>,
    store: Option<String>,
    /// `PATH` from the `Env`, where `docker-credential-*` executables are looked up.
    search_path: Option<String>,
    /// Keyed by (helper, server URL); failures are cached too, so a helper runs once.
    cache: Mutex<HashMap<(String, String), HelperResult>>,
}

/// Where the Docker config says a registry's credentials are.
enum DockerSource<'a> {
    Inline(&'a DockerAuth),
    Helper {
        helper: &'a str,
        server_url: String,
        /// From `credsStore` rather than `credHelpers`.
        default: bool,
    },
}

impl DockerConfig {
    fn load(file: PathBuf, search_path: Option<String>) -> Result<Option<Self>, AuthError> {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(docker_error(&file, format!("cannot read: {e}"))),
        };
        // Docker itself accepts an empty config file.
        let raw: RawDockerConfig = if text.trim().is_empty() {
            RawDockerConfig::default()
        } else {
            serde_json::from_str(&text).map_err(|e| docker_error(&file, malformed(&e)))?
        };
        let auths = docker_auths(&file, raw.auths)?;
        let helpers = helper_routes(&file, raw.cred_helpers);
        Ok(Some(DockerConfig {
            file,
            auths,
            helpers,
            store: raw.creds_store.filter(|s| !s.is_empty()),
            search_path,
            cache: Mutex::new(HashMap::new()),
        }))
    }

    /// Docker's order is `credHelpers`, then `credsStore`, then `auths`; credentials written
    /// inline in `auths` are taken before `credsStore`, since a store's `auths` entries are
    /// empty and inline ones were put there deliberately.
    fn source(&self, registry: &str, target: &str) -> Option<DockerSource<'_>> {
        if let Some(route) = matching(&self.helpers, target).next() {
            return Some(DockerSource::Helper {
                helper: &route.helper,
                server_url: server_url(registry, Some(&route.key)),
                default: false,
            });
        }
        if let Some(auth) = matching(&self.auths, target).find(|a| a.credentials.is_some()) {
            return Some(DockerSource::Inline(auth));
        }
        let store = self.store.as_deref()?;
        let key = matching(&self.auths, target).next().map(|a| &a.key);
        Some(DockerSource::Helper {
            helper: store,
            server_url: server_url(registry, key),
            default: true,
        })
    }

    fn credentials_for(
        &self,
        registry: &str,
        target: &str,
    ) -> Result<Option<Credentials>, AuthError> {
        match self.source(registry, target) {
            None => Ok(None),
            Some(DockerSource::Inline(auth)) => Ok(auth.credentials.clone()),
            Some(DockerSource::Helper {
                helper, server_url, ..
            }) => self.ask_helper(helper, server_url),
        }
    }

    fn describe(&self, registry: &str, target: &str) -> Option<String> {
        let file = self.file.display();
        Some(match self.source(registry, target)? {
            DockerSource::Inline(auth) => format!("Docker config {file} entry {}", auth.key.raw),
            DockerSource::Helper {
                helper, default, ..
            } => {
                let setting = if default { "credsStore" } else { "credHelpers" };
                format!("credential helper docker-credential-{helper} ({setting} in {file})")
            }
        })
    }

    /// Holds the lock while the helper runs so that concurrent callers wait for one run.
    fn ask_helper(
        &self,
        helper: &str,
        server_url: String,
    ) -> Result<Option<Credentials>, AuthError> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let search_path = self.search_path.as_deref();
        let result = cache
            .entry((helper.to_string(), server_url))
            .or_insert_with_key(|(helper, url)| run_helper(helper, url, search_path))
            .clone();
        result.map_err(|message| AuthError::Helper {
            helper: helper.to_string(),
            message,
        })
    }
}

fn docker_error(file: &Path, message: String) -> AuthError {
    AuthError::DockerConfig {
        file: file.to_path_buf(),
        message,
    }
}

/// serde's data errors can quote values, and values here may be secrets: give only the place.
fn malformed(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Data => format!(
            "malformed: unexpected value at line {}, column {}",
            e.line(),
            e.column()
        ),
        _ => format!("malformed JSON: {e}"),
    }
}

/// Helpers are asked with the URL Docker would use: Docker Hub's legacy index URL, else the
/// key as written in the config, else the bare host.
fn server_url(registry: &str, key: Option<&Key>) -> String {
    if registry == DOCKER_HUB {
        return DOCKER_HUB_SERVER_URL.to_string();
    }
    key.map_or_else(|| registry.to_string(), |key| key.raw.trim().to_string())
}

/// Keys Docker wrote that ferry cannot read (say, a Docker Desktop bookkeeping entry) are
/// skipped with a warning: the config belongs to Docker, not to ferry.
fn docker_key(file: &Path, raw: &str) -> Option<Key> {
    Key::parse(raw)
        .inspect_err(|reason| {
            tracing::warn!(file = %file.display(), key = raw, "ignoring Docker config key: {reason}");
        })
        .ok()
}

fn docker_auths(
    file: &Path,
    raw: HashMap<String, RawDockerAuth>,
) -> Result<Vec<DockerAuth>, AuthError> {
    let mut auths = Vec::with_capacity(raw.len());
    for (raw_key, entry) in raw {
        let Some(key) = docker_key(file, &raw_key) else {
            continue;
        };
        let credentials = inline_credentials(entry)
            .map_err(|message| docker_error(file, format!("auths entry {raw_key:?}: {message}")))?;
        auths.push(DockerAuth { key, credentials });
    }
    sort_longest_first(&mut auths);
    Ok(auths)
}

fn helper_routes(file: &Path, raw: HashMap<String, String>) -> Vec<HelperRoute> {
    let mut routes: Vec<HelperRoute> = raw
        .into_iter()
        .filter(|(_, helper)| !helper.is_empty())
        .filter_map(|(raw_key, helper)| {
            Some(HelperRoute {
                key: docker_key(file, &raw_key)?,
                helper,
            })
        })
        .collect();
    sort_longest_first(&mut routes);
    routes
}

/// `identitytoken` wins, as in Docker; then `auth` (base64 `user:password`); then the fields.
fn inline_credentials(entry: RawDockerAuth) -> Result<Option<Credentials>, String> {
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    if let Some(token) = non_empty(entry.identitytoken) {
        return Ok(Some(Credentials::IdentityToken(Secret::new(token))));
    }
    if let Some(auth) = non_empty(entry.auth) {
        let (username, password) =
            decode_auth(&auth).ok_or("`auth` is not base64 of username:password")?;
        return Ok(basic_credentials(Some(username), Some(password)));
    }
    Ok(basic_credentials(entry.username, entry.password))
}

fn decode_auth(auth: &str) -> Option<(String, String)> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    let auth = auth.trim();
    let bytes = STANDARD
        .decode(auth)
        .or_else(|_| STANDARD_NO_PAD.decode(auth))
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (username, password) = text.split_once(':')?;
    Some((username.to_string(), password.to_string()))
}

// ---------------------------------------------------------------------------------------
// Credential helpers

#[derive(Deserialize)]
struct HelperReply {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Runs `docker-credential-<helper> get` with `server_url` on stdin. Errors are messages
/// for `AuthError::Helper` and never contain the helper's successful output.
fn run_helper(helper: &str, server_url: &str, search_path: Option<&str>) -> HelperResult {
    let program = find_helper(helper, search_path)?;
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading stdin closes the pipe; its exit status tells.
        let _ = stdin.write_all(server_url.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if !output.status.success() {
        let stdout = String::from_utf8_lossy(&output.stdout);
        if stdout.contains(HELPER_NOT_FOUND) {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let detail = [stderr.trim(), stdout.trim()]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or("no output");
        let detail: String = detail.chars().take(300).collect();
        return Err(format!(
            "get {server_url} failed ({}): {detail}",
            output.status
        ));
    }
    parse_helper_reply(&output.stdout)
}

fn parse_helper_reply(stdout: &[u8]) -> HelperResult {
    let reply: HelperReply = serde_json::from_slice(stdout).map_err(|e| {
        format!(
            "output is not {{\"ServerURL\",\"Username\",\"Secret\"}} JSON (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    if reply.username == "<token>" {
        return Ok(Some(Credentials::IdentityToken(Secret::new(reply.secret))));
    }
    Ok(basic_credentials(Some(reply.username), Some(reply.secret)))
}

/// Looks `docker-credential-<helper>` up in `search_path` (a `PATH` value from `Env`, so
/// tests need not change the process environment).
fn find_helper(helper: &str, search_path: Option<&str>) -> Result<PathBuf, String> {
    if helper.contains(['/', '\\']) {
        return Err("helper names cannot contain path separators".to_string());
    }
    let program = format!("docker-credential-{helper}");
    let dirs = search_path.map(std::env::split_paths).into_iter().flatten();
    dirs.filter(|dir| !dir.as_os_str().is_empty())
        .flat_map(|dir| executable_names(&program).map(move |name| dir.join(name)))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| format!("{program} not found in PATH"))
}

fn executable_names(program: &str) -> impl Iterator<Item = String> {
    let windows = cfg!(windows).then(|| format!("{program}.exe"));
    std::iter::once(program.to_string()).chain(windows)
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::MapEnv;

    fn repo(name: &str) -> Repository {
        Repository::parse(name).unwrap()
    }

    fn basic(username: &str, password: &str) -> Option<Credentials> {
        Some(Credentials::Basic {
            username: username.to_string(),
            password: Secret::new(password),
        })
    }

    /// Writes `name` with `text` into `dir` and returns its path.
    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn load_yaml(text: &str, env: &MapEnv) -> Result<AuthConfig, AuthError> {
        let dir = tempfile::tempdir().unwrap();
        AuthConfig::load(&write(dir.path(), "auth.yaml", text), env)
    }

    fn username_for(auth: &AuthConfig, name: &str) -> Option<String> {
        match auth.credentials_for(&repo(name)).unwrap()? {
            Credentials::Basic { username, .. } => Some(username),
            Credentials::IdentityToken(_) => Some("<token>".to_string()),
        }
    }

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let auth = load_yaml(
            "quay.io: {username: top, password: a}\n\
             quay.io/coreos: {username: coreos, password: b}\n\
             quay.io/coreos/etcd/sub: {username: deep, password: c}\n",
            &MapEnv::default(),
        )
        .unwrap();
        assert_eq!(
            username_for(&auth, "quay.io/coreos/etcd").as_deref(),
            Some("coreos")
        );
        assert_eq!(
            username_for(&auth, "quay.io/coreos").as_deref(),
            Some("coreos")
        );
        assert_eq!(
            username_for(&auth, "quay.io/coreosx/etcd").as_deref(),
            Some("top")
        );
        assert_eq!(
            username_for(&auth, "quay.io/coreos/etcd/sub/x").as_deref(),
            Some("deep")
        );
        assert_eq!(username_for(&auth, "quay.io.evil.com/coreos/x"), None);
        assert_eq!(username_for(&auth, "nginx"), None);
        assert_eq!(
            auth.describe_match(&repo("quay.io/coreos/etcd")),
            "auth file entry quay.io/coreos"
        );
        assert_eq!(auth.describe_match(&repo("nginx")), "anonymous");
    }

    #[test]
    fn entry_without_credentials_does_not_hide_a_shorter_one() {
        let auth = load_yaml(
            "quay.io: {username: top, password: a}\nquay.io/coreos: {insecure: true}\nghcr.io:\n",
            &MapEnv::default(),
        )
        .unwrap();
        assert_eq!(
            username_for(&auth, "quay.io/coreos/etcd").as_deref(),
            Some("top")
        );
        assert_eq!(username_for(&auth, "ghcr.io/a/b"), None);
    }

    #[test]
    fn keys_are_normalised() {
        let auth = load_yaml(
            "https://registry.hub.docker.com/: {username: hub, password: a}\n\
             index.docker.io/bitnami: {username: bitnami, password: b}\n\
             HTTP://Quay.IO/coreos/: {username: quay, password: c}\n\
             localhost:5000: {username: local, password: d}\n",
            &MapEnv::default(),
        )
        .unwrap();
        assert_eq!(username_for(&auth, "nginx").as_deref(), Some("hub"));
        assert_eq!(
            username_for(&auth, "docker.io/library/nginx").as_deref(),
            Some("hub")
        );
        assert_eq!(
            username_for(&auth, "bitnami/redis").as_deref(),
            Some("bitnami")
        );
        assert_eq!(
            username_for(&auth, "quay.io/coreos/etcd").as_deref(),
            Some("quay")
        );
        assert_eq!(
            username_for(&auth, "localhost:5000/a").as_deref(),
            Some("local")
        );
        let legacy = load_yaml(
            "https://index.docker.io/v1/: {username: v1, password: a}\n",
            &MapEnv::default(),
        )
        .unwrap();
        assert_eq!(username_for(&legacy, "nginx").as_deref(), Some("v1"));
    }

    #[test]
    fn bad_and_duplicate_keys_are_errors() {
        let env = MapEnv::default();
        for (text, expected) in [
            ("myregistry/team: {}\n", "not a registry host"),
            ("quay.io/Coreos: {}\n", "invalid repository path"),
            ("quay.io//x: {}\n", "invalid repository path"),
            ("\"https://\": {}\n", "no registry host"),
            ("bad_host.io:x: {}\n", "invalid registry host"),
            (
                "docker.io: {}\nindex.docker.io: {}\n",
                "keys \"docker.io\" and \"index.docker.io\" both mean docker.io",
            ),
        ] {
            let err = load_yaml(text, &env).unwrap_err().to_string();
            assert!(
                err.contains("auth.yaml") && err.contains(expected),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn yaml_and_json_with_numbers_as_text() {
        let dir = tempfile::tempdir().unwrap();
        let env = MapEnv::default();
        let yaml = write(
            dir.path(),
            "auth.yml",
            "hub.kce.ksyun.com:\n  username: 12345\n  password: 12345678\n",
        );
        let auth = AuthConfig::load(&yaml, &env).unwrap();
        assert_eq!(
            auth.credentials_for(&repo("hub.kce.ksyun.com/ns/repo"))
                .unwrap(),
            basic("12345", "12345678")
        );
        let json = write(
            dir.path(),
            "auth.json",
            r#"{"quay.io": {"username": "u", "password": 42, "insecure": true}}"#,
        );
        let auth = AuthConfig::load(&json, &env).unwrap();
        assert_eq!(
            auth.credentials_for(&repo("quay.io/a/b")).unwrap(),
            basic("u", "42")
        );
        assert!(auth.tls_for("quay.io").insecure);
    }

    #[test]
    fn from_value_names_the_given_file() {
        let value = serde_json::json!({"quay.io": {"usrname": "u"}});
        let err = AuthConfig::from_value(Path::new("config.json"), &value, &MapEnv::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("config.json") && err.contains("usrname"),
            "{err}"
        );
        let err = AuthConfig::from_value(
            Path::new("c.json"),
            &serde_json::json!([1]),
            &MapEnv::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("c.json") && err.contains("expected a map"),
            "{err}"
        );
        let none = AuthConfig::from_value(Path::new("c.json"), &Value::Null, &MapEnv::default());
        assert!(none.unwrap().entries.is_empty());
    }

    #[test]
    fn braced_variables_must_be_set() {
        let env = MapEnv::new([("HUB_USER", "alice"), ("HUB_PASS", "s3cret")]);
        let auth = load_yaml(
            "docker.io:\n  username: \"${HUB_USER}\"\n  password: \"${HUB_PASS}\"\n",
            &env,
        )
        .unwrap();
        assert_eq!(
            auth.credentials_for(&repo("nginx")).unwrap(),
            basic("alice", "s3cret")
        );

        let err = load_yaml("quay.io:\n  username: u\n  password: \"${NOPE}\"\n", &env)
            .unwrap_err()
            .to_string();
        for part in ["auth.yaml", "\"quay.io\"", "password", "NOPE"] {
            assert!(err.contains(part), "{part} missing from: {err}");
        }
    }

    #[test]
    fn bare_variables_are_optional_and_other_dollars_literal() {
        let env = MapEnv::new([("QUAY_PASS", "from-env")]);
        let auth = load_yaml(
            "quay.io:\n  username: $oauthtoken\n  password: $QUAY_PASS\n\
             harbor.example.com:\n  username: robot$name\n  password: pa$$word\n\
             ghcr.io:\n  username: \"${lower case}\"\n  password: \"$\"\n",
            &env,
        )
        .unwrap();
        assert_eq!(
            auth.credentials_for(&repo("quay.io/a/b")).unwrap(),
            basic("$oauthtoken", "from-env")
        );
        assert_eq!(
            auth.credentials_for(&repo("harbor.example.com/p/r"))
                .unwrap(),
            basic("robot$name", "pa$$word")
        );
        assert_eq!(
            auth.credentials_for(&repo("ghcr.io/a/b")).unwrap(),
            basic("${lower case}", "$")
        );
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_errors() {
        let env = MapEnv::default();
        let err = load_yaml("quay.io/coreos:\n  username: u\n  pasword: p\n", &env)
            .unwrap_err()
            .to_string();
        for part in ["auth.yaml", "quay.io/coreos", "pasword", "unknown field"] {
            assert!(err.contains(part), "{part} missing from: {err}");
        }
        let err = load_yaml("quay.io: {insecure: \"yes\"}\n", &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("insecure must be true or false"), "{err}");
        let err = load_yaml("quay.io: {username: [a]}\n", &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("username must be text"), "{err}");
        let err = load_yaml("quay.io: [a]\n", &env).unwrap_err().to_string();
        assert!(err.contains("expected a map"), "{err}");
    }

    #[test]
    fn tls_is_per_host() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("certs")).unwrap();
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        write(&dir.path().join("certs"), "team.pem", pem);
        let host_ca = write(dir.path(), "host.pem", pem);
        let file = write(
            dir.path(),
            "auth.yaml",
            &format!(
                "127.0.0.1:5000: {{insecure: true}}\n\
                 127.0.0.1:5000/team: {{username: u, password: p, ca: certs/team.pem}}\n\
                 registry.example.com: {{ca: {}}}\n",
                host_ca.display()
            ),
        );
        let auth = AuthConfig::load(&file, &MapEnv::default()).unwrap();
        let local = auth.tls_for(repo("127.0.0.1:5000/team/x").registry());
        assert!(local.insecure);
        assert_eq!(local.ca, Some(dir.path().join("certs/team.pem")));
        assert_eq!(
            auth.tls_for("registry.example.com"),
            TlsSettings {
                insecure: false,
                ca: Some(host_ca)
            }
        );
        assert_eq!(auth.tls_for("quay.io"), TlsSettings::default());
        assert_eq!(auth.tls_for("index.docker.io"), TlsSettings::default());

        let missing = write(dir.path(), "bad.yaml", "quay.io: {ca: nope.pem}\n");
        let err = AuthConfig::load(&missing, &MapEnv::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.yaml") && err.contains("nope.pem"),
            "{err}"
        );
        write(dir.path(), "empty.pem", "not a cert");
        let not_pem = write(dir.path(), "bad2.yaml", "quay.io: {ca: empty.pem}\n");
        let err = AuthConfig::load(&not_pem, &MapEnv::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
    }

    fn docker_env(dir: &Path, config: &str) -> MapEnv {
        write(dir, "config.json", config);
        let dir = dir.to_str().unwrap();
        MapEnv::new([("DOCKER_CONFIG", dir), ("PATH", dir)])
    }

    #[test]
    fn docker_config_auths() {
        let dir = tempfile::tempdir().unwrap();
        let env = docker_env(
            dir.path(),
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "aHViOmh1Yi1wYXNz"},
                "quay.io": {"username": "q", "password": "qp"},
                "http://127.0.0.1:5000": {"auth": "bG9jYWw6bG9jYWwtcGFzcw=="},
                "ghcr.io/team": {"identitytoken": "refresh-me"},
                "https://index.docker.io/v1/access-token": {},
                "gcr.io": {}
            }}"#,
        );
        let auth = AuthConfig::empty().with_docker_config(&env).unwrap();
        assert_eq!(
            auth.credentials_for(&repo("nginx")).unwrap(),
            basic("hub", "hub-pass")
        );
        assert_eq!(
            auth.credentials_for(&repo("quay.io/a/b")).unwrap(),
            basic("q", "qp")
        );
        assert_eq!(
            auth.credentials_for(&repo("127.0.0.1:5000/x")).unwrap(),
            basic("local", "local-pass")
        );
        assert_eq!(
            auth.credentials_for(&repo("ghcr.io/team/app")).unwrap(),
            Some(Credentials::IdentityToken(Secret::new("refresh-me")))
        );
        assert_eq!(
            auth.credentials_for(&repo("ghcr.io/other/app")).unwrap(),
            None
        );
        assert_eq!(auth.credentials_for(&repo("gcr.io/p/i")).unwrap(), None);
        assert!(auth
            .describe_match(&repo("quay.io/a/b"))
            .contains("entry quay.io"));

        // The auth file wins; an entry there without credentials falls through.
        let file = write(
            dir.path(),
            "auth.yaml",
            "quay.io/a: {username: file, password: f}\nquay.io/b: {insecure: true}\n",
        );
        let auth = AuthConfig::load(&file, &env)
            .unwrap()
            .with_docker_config(&env)
            .unwrap();
        assert_eq!(username_for(&auth, "quay.io/a/x").as_deref(), Some("file"));
        assert_eq!(username_for(&auth, "quay.io/b/x").as_deref(), Some("q"));
    }

    #[test]
    fn docker_config_missing_or_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_str().unwrap();
        let none = AuthConfig::empty()
            .with_docker_config(&MapEnv::new([("HOME", home)]))
            .unwrap();
        assert_eq!(none.credentials_for(&repo("nginx")).unwrap(), None);
        assert!(AuthConfig::empty()
            .with_docker_config(&MapEnv::default())
            .is_ok());

        std::fs::create_dir(dir.path().join(".docker")).unwrap();
        write(&dir.path().join(".docker"), "config.json", "{\"auths\": ");
        let err = AuthConfig::empty()
            .with_docker_config(&MapEnv::new([("HOME", home)]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(".docker/config.json") && err.contains("malformed"),
            "{err}"
        );

        let env = docker_env(
            dir.path(),
            r#"{"auths": {"quay.io": {"auth": "!!notbase64"}}}"#,
        );
        let err = AuthConfig::empty()
            .with_docker_config(&env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("config.json") && err.contains("\"quay.io\""),
            "{err}"
        );
        assert!(!err.contains("notbase64"), "{err}");

        let env = docker_env(dir.path(), r#"{"auths": {"quay.io": {"auth": 123456}}}"#);
        let err = AuthConfig::empty()
            .with_docker_config(&env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1") && !err.contains("123456"), "{err}");
    }

    /// A fake helper: answers per server URL and counts its runs per URL.
    const HELPER: &str = r#"#!/bin/sh
[ "$1" = get ] || exit 3
read -r url
dir=$(dirname "$0")
echo run >> "$dir/calls-$(echo "$url" | tr -c 'a-z0-9\n' _)"
case "$url" in
  https://index.docker.io/v1/) echo '{"ServerURL":"x","Username":"<token>","Secret":"hub-token"}' ;;
  quay.io) echo '{"ServerURL":"quay.io","Username":"helper","Secret":"helper-pass"}' ;;
  https://ghcr.io) echo '{"ServerURL":"https://ghcr.io","Username":"gh","Secret":"gh-pass"}' ;;
  broken.example.com) echo "keychain locked" >&2; exit 2 ;;
  garbage.example.com) echo 'Secret=leaked' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
"#;

    fn calls(dir: &Path, url_slug: &str) -> usize {
        std::fs::read_to_string(dir.join(format!("calls-{url_slug}")))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    #[cfg(unix)]
    #[test]
    fn credential_helpers() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = write(dir.path(), "docker-credential-ferrytest", HELPER);
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = docker_env(
            dir.path(),
            r#"{"auths": {"https://ghcr.io": {}, "inline.example.com": {"username": "i", "password": "ip"}},
                "credHelpers": {"quay.io": "ferrytest", "broken.example.com": "ferrytest",
                                "garbage.example.com": "ferrytest", "missing.example.com": "absent"},
                "credsStore": "ferrytest"}"#,
        );
        let auth = AuthConfig::empty().with_docker_config(&env).unwrap();

        assert_eq!(
            auth.credentials_for(&repo("quay.io/a/b")).unwrap(),
            basic("helper", "helper-pass")
        );
        assert_eq!(
            auth.credentials_for(&repo("quay.io/c/d")).unwrap(),
            basic("helper", "helper-pass")
        );
        assert_eq!(
            calls(dir.path(), "quay_io"),
            1,
            "helper runs once per registry"
        );
        assert!(auth
            .describe_match(&repo("quay.io/a/b"))
            .contains("docker-credential-ferrytest (credHelpers"));

        // credsStore: Docker Hub is asked for by its legacy URL, others by their auths key.
        assert_eq!(
            auth.credentials_for(&repo("nginx")).unwrap(),
            Some(Credentials::IdentityToken(Secret::new("hub-token")))
        );
        assert_eq!(
            auth.credentials_for(&repo("ghcr.io/o/r")).unwrap(),
            basic("gh", "gh-pass")
        );
        assert_eq!(
            auth.credentials_for(&repo("inline.example.com/o/r"))
                .unwrap(),
            basic("i", "ip")
        );
        assert_eq!(
            auth.credentials_for(&repo("unknown.example.com/o/r"))
                .unwrap(),
            None
        );
        assert!(auth.describe_match(&repo("nginx")).contains("credsStore"));

        let err = auth
            .credentials_for(&repo("broken.example.com/o/r"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("docker-credential-ferrytest") && err.contains("keychain locked"),
            "{err}"
        );
        assert!(auth
            .credentials_for(&repo("broken.example.com/o/r"))
            .is_err());
        assert_eq!(
            calls(dir.path(), "broken_example_com"),
            1,
            "failures are cached too"
        );

        let err = auth
            .credentials_for(&repo("garbage.example.com/o/r"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not {") && !err.contains("leaked"), "{err}");

        let err = auth
            .credentials_for(&repo("missing.example.com/o/r"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("docker-credential-absent not found in PATH"),
            "{err}"
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let env = MapEnv::new([("P", "hunter2-env")]);
        let auth = load_yaml(
            "quay.io: {username: u, password: hunter2}\nghcr.io: {username: g, password: $P}\n",
            &env,
        )
        .unwrap();
        let debug = format!("{auth:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        let credentials = auth.credentials_for(&repo("quay.io/a/b")).unwrap().unwrap();
        assert!(!format!("{credentials:?}").contains("hunter2"));
        let secret = Secret::new("hunter2");
        assert_eq!(
            (format!("{secret}"), format!("{secret:?}")),
            ("***".into(), "***".into())
        );
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn auth_config_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<AuthConfig>();
    }
}
