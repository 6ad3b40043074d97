//! Registry credentials and per-host TLS settings, as ferry's input gives them. This module
//! owns `AuthConfig`: it reads image-syncer's auth file (`--auth`, or the legacy `--config`
//! file's `auth` object) and answers the registry client's two questions through
//! `CredentialStore`: the credentials for a repository (the auth file's most specific entry
//! that has some, else ECR's password for an ECR host, else Docker's config, else anonymous),
//! the TLS settings for a host, and, before a push into ECR, the repository created.
//! What a key means and which applies (`key`), what an entry may hold (`file`), Docker's
//! config (`docker_config`) and its credential helpers (`cred_helper`) each have their own
//! file; `AuthError` gathers their problems with the file and key they are about.

mod cred_helper;
mod docker_config;
mod file;
mod key;
#[cfg(test)]
mod testing;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use thiserror::Error;

pub(crate) use cred_helper::wait_with_timeout;
pub use cred_helper::{HelperError, HelperProblem};
pub use docker_config::DockerConfigProblem;
pub use file::{CaProblem, EntryError, EntryProblem, Field};
pub use key::KeyProblem;

use crate::credentials::{
    CredentialStore, Credentials, CredentialsError, ListingRefused, PushRefused, TlsSettings,
};
use crate::ecr::{CreatePolicy, Ecr, EcrHost, EcrRegistry};
use crate::env::Env;
use crate::error::{HasKind, Kind};
use crate::files::{read_document, FileError};
use crate::reference::{canonical_registry, Repository};
use docker_config::{docker_config_path, DockerConfig};
use file::{parse_entry, tls_by_host, Entry};
use key::{matching, sort_longest_first, target_of, Key};

/// Why credentials could not be loaded or resolved. Messages never contain secrets.
#[derive(Debug, Error)]
pub enum AuthError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{}: expected a map from registry (or registry/namespace) to username, password, insecure, ca", file.display())]
    NotAMap { file: PathBuf },
    #[error("{}: key {key:?} is not a registry or registry/namespace: {problem}", file.display())]
    BadKey {
        file: PathBuf,
        key: String,
        problem: KeyProblem,
    },
    #[error("{}: keys {first:?} and {second:?} both mean {normalised}; keep one", file.display())]
    DuplicateKey {
        file: PathBuf,
        first: String,
        second: String,
        normalised: String,
    },
    /// An entry's field is wrong.
    #[error(transparent)]
    Entry(#[from] EntryError),
    #[error("Docker config {}: {problem}", file.display())]
    DockerConfig {
        file: PathBuf,
        problem: DockerConfigProblem,
    },
    /// A credential helper failed when asked (at lookup time, not when loading).
    #[error(transparent)]
    Helper(#[from] HelperError),
    #[error(
        "{HELPER_TIMEOUT_VARIABLE}: {value:?} is not a whole number of seconds from 1 to 3600"
    )]
    HelperTimeout { value: String },
}

impl HasKind for AuthError {
    fn kind(&self) -> Kind {
        match self {
            AuthError::Helper(_) => Kind::Credentials,
            AuthError::File(error) => error.kind(),
            AuthError::NotAMap { .. }
            | AuthError::BadKey { .. }
            | AuthError::DuplicateKey { .. }
            | AuthError::Entry(_)
            | AuthError::DockerConfig { .. }
            | AuthError::HelperTimeout { .. } => Kind::BadInput,
        }
    }
}

/// Credentials and TLS settings for every registry ferry talks to. Cheap to query; share it
/// behind an `Arc`. Debug output never contains secrets.
#[derive(Debug, Default)]
pub struct AuthConfig {
    /// Longest key first.
    entries: Vec<Entry>,
    tls: HashMap<String, TlsSettings>,
    docker: Option<Arc<DockerConfig>>,
    /// ECR registries named by an entry's `ecr:`, by host.
    ecr_hosts: HashMap<String, EcrRegistry>,
    ecr: Arc<Ecr>,
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
            entries.push(parse_entry(file, key, value, env)?);
        }
        sort_longest_first(&mut entries);
        let tls = tls_by_host(&entries);
        let ecr_hosts: HashMap<String, EcrRegistry> = entries
            .iter()
            .filter_map(|entry| {
                let named = EcrHost::recognise(&entry.key.registry);
                entry.ecr.as_ref()?;
                let registry =
                    EcrRegistry::new(&entry.key.registry, named.as_ref(), entry.ecr.as_ref())?;
                Some((entry.key.registry.clone(), registry))
            })
            .collect();
        // `create:` only means something where ferry creates repositories.
        if let Some(entry) = entries.iter().find(|entry| {
            entry.create.is_some()
                && !ecr_hosts.contains_key(&entry.key.registry)
                && EcrHost::recognise(&entry.key.registry).is_none()
        }) {
            return Err(AuthError::Entry(EntryError {
                file: file.to_path_buf(),
                key: entry.key.raw.clone(),
                problem: EntryProblem::CreateNotEcr {
                    host: entry.key.registry.clone(),
                },
            }));
        }
        Ok(AuthConfig {
            entries,
            tls,
            docker: None,
            ecr_hosts,
            ecr: Arc::new(Ecr::new()),
        })
    }

    /// Asks ECR through `ecr` (tests give one with an explicit AWS configuration) instead
    /// of one configured from the environment.
    pub fn with_ecr(mut self, ecr: Arc<Ecr>) -> Self {
        self.ecr = ecr;
        self
    }

    /// Adds the Docker config fallback found through `env`: `$DOCKER_CONFIG/config.json`, else
    /// `$HOME/.docker/config.json`. A missing file means no fallback. Credential helpers are
    /// looked up in `env`'s `PATH` and stopped after `FERRY_CREDENTIAL_HELPER_TIMEOUT` seconds
    /// (30 by default).
    pub fn with_docker_config(mut self, env: &dyn Env) -> Result<Self, AuthError> {
        let timeout = helper_timeout(env)?;
        self.docker = match docker_config_path(env) {
            Some(file) => DockerConfig::load(&file, env.var("PATH"), timeout)
                .map_err(|problem| AuthError::DockerConfig { file, problem })?
                .map(Arc::new),
            None => None,
        };
        Ok(self)
    }

    /// The credentials for `repository` that need no network: the auth file's longest
    /// matching entry that has a username or password, else the Docker config, else `None`
    /// (anonymous). ECR's passwords are the `CredentialStore` implementation's.
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
            Some(docker) => Ok(docker.credentials_for(repository.registry(), &target)?),
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
        if let Some(ecr) = self.ecr_registry(repository.registry()) {
            return format!("ECR's GetAuthorizationToken in {}", ecr.key.region);
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

    /// The ECR registry whose password `registry` takes: a host entry's `ecr:`, else a host
    /// named like ECR's. ECR's password beats Docker's config, whose ECR logins last 12 hours.
    fn ecr_registry(&self, registry: &str) -> Option<EcrRegistry> {
        let host = canonical_registry(registry);
        if let Some(registry) = self.ecr_hosts.get(&host) {
            return Some(registry.clone());
        }
        let named = EcrHost::recognise(&host)?;
        EcrRegistry::new(&host, Some(&named), None)
    }

    /// What a repository created in ECR for `repository` gets: the longest matching entry's
    /// `create:`, else ECR's defaults.
    fn create_policy(&self, repository: &Repository) -> CreatePolicy {
        matching(&self.entries, &target_of(repository))
            .find_map(|entry| entry.create.clone())
            .unwrap_or_default()
    }
}

/// The registry client's view: an `AuthError` becomes a `CredentialsError` with the same
/// message, naming where the credentials were to come from.
/// `FERRY_CREDENTIAL_HELPER_TIMEOUT`: whole seconds, at least 1.
fn helper_timeout(env: &dyn Env) -> Result<Duration, AuthError> {
    match env.var(HELPER_TIMEOUT_VARIABLE) {
        None => Ok(cred_helper::DEFAULT_TIMEOUT),
        Some(value) => match value.trim().parse::<u64>() {
            Ok(seconds) if (1..=3600).contains(&seconds) => Ok(Duration::from_secs(seconds)),
            _ => Err(AuthError::HelperTimeout { value }),
        },
    }
}

/// How long a credential helper may take, in seconds.
pub const HELPER_TIMEOUT_VARIABLE: &str = "FERRY_CREDENTIAL_HELPER_TIMEOUT";

#[async_trait::async_trait]
impl CredentialStore for AuthConfig {
    /// As [`AuthConfig::credentials_for`], with ECR's password between the auth file and
    /// Docker's config; a credential helper runs on a blocking thread, off the async
    /// threads that move everyone's blobs.
    async fn credentials_for(
        &self,
        repository: &Repository,
    ) -> Result<Option<Credentials>, CredentialsError> {
        let target = target_of(repository);
        if let Some(entry) = self.entry_with_credentials(&target) {
            return Ok(entry.credentials.clone());
        }
        if let Some(ecr) = self.ecr_registry(repository.registry()) {
            return match self.ecr.credentials(&ecr).await {
                Ok(credentials) => Ok(Some(credentials)),
                Err(e) => Err(CredentialsError {
                    source_name: self.describe_match(repository),
                    message: e.to_string(),
                }),
            };
        }
        let Some(docker) = &self.docker else {
            return Ok(None);
        };
        let docker = Arc::clone(docker);
        let registry = repository.registry().to_string();
        let found = tokio::task::spawn_blocking(move || docker.credentials_for(&registry, &target))
            .await
            .map_err(|join| format!("the credential lookup did not finish: {join}"))
            .and_then(|found| found.map_err(|e| e.to_string()));
        found.map_err(|message| CredentialsError {
            source_name: self.describe_match(repository),
            message,
        })
    }

    fn refused(&self, repository: &Repository) {
        if let Some(ecr) = self.ecr_registry(repository.registry()) {
            self.ecr.refused(&ecr);
        }
    }

    fn tls_for(&self, registry: &str) -> TlsSettings {
        AuthConfig::tls_for(self, registry)
    }

    async fn prepare_push(&self, repository: &Repository) -> Result<(), PushRefused> {
        let Some(ecr) = self.ecr_registry(repository.registry()) else {
            return Ok(());
        };
        let policy = self.create_policy(repository);
        self.ecr
            .ensure_repository(&ecr, repository.path(), &policy)
            .await
            .map_err(|e| PushRefused {
                kind: e.kind(),
                message: e.to_string(),
            })
    }

    async fn repositories(&self, registry: &str) -> Option<Result<Vec<String>, ListingRefused>> {
        let ecr = self.ecr_registry(registry)?;
        Some(
            self.ecr
                .repositories(&ecr)
                .await
                .map_err(|e| ListingRefused {
                    kind: e.kind(),
                    message: e.to_string(),
                }),
        )
    }
}

/// Parses an auth file key; two spellings of one key would make the choice between them
/// arbitrary, so they are refused.
fn parse_auth_key(file: &Path, raw: &str, seen: &[Entry]) -> Result<Key, AuthError> {
    let key = Key::parse(raw).map_err(|problem| AuthError::BadKey {
        file: file.to_path_buf(),
        key: raw.to_string(),
        problem,
    })?;
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

#[cfg(test)]
mod tests {
    use super::testing::{docker_env, load_yaml, repo, username_for};
    use super::*;
    use crate::credentials::Secret;
    use crate::env::MapEnv;

    #[test]
    fn entry_without_credentials_does_not_hide_a_shorter_one() {
        let auth = load_yaml(
            "quay.io: {username: top, password: a}\nquay.io/coreos: {}\nghcr.io:\n",
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

    #[test]
    fn bad_files_are_bad_input_and_failing_helpers_credentials() {
        let env = MapEnv::default();
        let bad_key = load_yaml("myregistry/team: {}\n", &env).unwrap_err();
        let bad_entry = load_yaml("quay.io: {pasword: p}\n", &env).unwrap_err();
        assert!(matches!(bad_key, AuthError::BadKey { .. }));
        for err in [bad_key, bad_entry] {
            assert_eq!(err.kind(), Kind::BadInput, "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let env = docker_env(dir.path(), r#"{"credHelpers": {"quay.io": "absent"}}"#);
        let auth = AuthConfig::empty().with_docker_config(&env).unwrap();
        let err = auth.credentials_for(&repo("quay.io/a/b")).unwrap_err();
        assert_eq!(err.kind(), Kind::Credentials, "{err}");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = runtime
            .block_on(CredentialStore::credentials_for(
                &auth,
                &repo("quay.io/a/b"),
            ))
            .unwrap_err();
        assert_eq!(
            err.message,
            "credential helper docker-credential-absent: docker-credential-absent not found in PATH"
        );
    }
}
