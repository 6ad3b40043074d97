//! Docker's `config.json`, the fallback when the auth file has no credentials for a
//! repository: where it is (`$DOCKER_CONFIG`, else `$HOME/.docker`), its `auths` (inline
//! `auth`, `username`/`password`, `identitytoken`), and which credential helper
//! (`credHelpers`, else `credsStore`) to ask with which server URL, each answer cached for the
//! process. Running a helper is `auth::cred_helper`'s; keys are `auth::key`'s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use thiserror::Error;

use super::cred_helper::{run_helper, HelperError, HelperResult};
use super::key::{matching, sort_longest_first, Key, Keyed};
use crate::credentials::{Credentials, Secret};
use crate::env::Env;
use crate::reference::DOCKER_HUB;

/// The server URL Docker uses for Docker Hub in its config and with credential helpers.
const DOCKER_HUB_SERVER_URL: &str = "https://index.docker.io/v1/";

/// What is wrong with a Docker config file. Never quotes a value from it.
#[derive(Debug, Error)]
pub enum DockerConfigProblem {
    #[error("cannot read: {0}")]
    Unreadable(std::io::Error),
    /// A value of the wrong type: only its place is given, as values may be secrets.
    #[error("malformed: unexpected value at line {line}, column {column}")]
    UnexpectedValue { line: usize, column: usize },
    #[error("malformed JSON: {0}")]
    Malformed(serde_json::Error),
    #[error("auths entry {key:?}: `auth` is not base64 of username:password")]
    AuthNotBase64 { key: String },
}

impl DockerConfigProblem {
    /// serde's data errors can quote values, and values here may be secrets: give only the
    /// place.
    fn from_json(e: serde_json::Error) -> Self {
        match e.classify() {
            serde_json::error::Category::Data => DockerConfigProblem::UnexpectedValue {
                line: e.line(),
                column: e.column(),
            },
            _ => DockerConfigProblem::Malformed(e),
        }
    }
}

/// Where Docker's config is according to `env`: `$DOCKER_CONFIG/config.json`, else
/// `$HOME/.docker/config.json`.
pub(super) fn docker_config_path(env: &dyn Env) -> Option<PathBuf> {
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

/// A Docker config, read.
#[derive(Debug)]
pub(super) struct DockerConfig {
    file: PathBuf,
    /// Longest key first, as are `helpers`.
    auths: Vec<DockerAuth>,
    helpers: Vec<HelperRoute>,
    store: Option<String>,
    /// `PATH` from the `Env`, where `docker-credential-*` executables are looked up.
    search_path: Option<String>,
    /// How long a helper may take.
    timeout: Duration,
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
    /// Reads `file`; `None` if there is none. Helpers will be looked up in `search_path`.
    pub(super) fn load(
        file: &Path,
        search_path: Option<String>,
        timeout: Duration,
    ) -> Result<Option<Self>, DockerConfigProblem> {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(DockerConfigProblem::Unreadable(e)),
        };
        // Docker itself accepts an empty config file.
        let raw: RawDockerConfig = if text.trim().is_empty() {
            RawDockerConfig::default()
        } else {
            serde_json::from_str(&text).map_err(DockerConfigProblem::from_json)?
        };
        let auths = docker_auths(file, raw.auths)?;
        let helpers = helper_routes(file, raw.cred_helpers);
        Ok(Some(DockerConfig {
            file: file.to_path_buf(),
            auths,
            helpers,
            store: raw.creds_store.filter(|s| !s.is_empty()),
            search_path,
            timeout,
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

    /// The credentials for `target` (`registry/path`), running a helper if the config says
    /// so.
    pub(super) fn credentials_for(
        &self,
        registry: &str,
        target: &str,
    ) -> Result<Option<Credentials>, HelperError> {
        match self.source(registry, target) {
            None => Ok(None),
            Some(DockerSource::Inline(auth)) => Ok(auth.credentials.clone()),
            Some(DockerSource::Helper {
                helper, server_url, ..
            }) => self.ask_helper(helper, server_url),
        }
    }

    /// Where `target`'s credentials come from, if the config has them.
    pub(super) fn describe(&self, registry: &str, target: &str) -> Option<String> {
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
    ) -> Result<Option<Credentials>, HelperError> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let search_path = self.search_path.as_deref();
        let result = cache
            .entry((helper.to_string(), server_url))
            .or_insert_with_key(|(helper, url)| run_helper(helper, url, search_path, self.timeout))
            .clone();
        result.map_err(|problem| HelperError {
            helper: helper.to_string(),
            problem,
        })
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
) -> Result<Vec<DockerAuth>, DockerConfigProblem> {
    let mut auths = Vec::with_capacity(raw.len());
    for (raw_key, entry) in raw {
        let Some(key) = docker_key(file, &raw_key) else {
            continue;
        };
        let credentials = inline_credentials(&raw_key, entry)?;
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
fn inline_credentials(
    key: &str,
    entry: RawDockerAuth,
) -> Result<Option<Credentials>, DockerConfigProblem> {
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    if let Some(token) = non_empty(entry.identitytoken) {
        return Ok(Some(Credentials::IdentityToken(Secret::new(token))));
    }
    if let Some(auth) = non_empty(entry.auth) {
        let (username, password) =
            decode_auth(&auth).ok_or_else(|| DockerConfigProblem::AuthNotBase64 {
                key: key.to_string(),
            })?;
        return Ok(Credentials::basic_unless_empty(
            Some(username),
            Some(password),
        ));
    }
    Ok(Credentials::basic_unless_empty(
        entry.username,
        entry.password,
    ))
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

#[cfg(test)]
mod tests {
    use crate::auth::testing::{basic, docker_env, repo, username_for, write};
    use crate::auth::AuthConfig;
    use crate::credentials::{Credentials, Secret};
    use crate::env::MapEnv;

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
            "quay.io/a: {username: file, password: f}\nquay.io/b: {}\n",
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
}
