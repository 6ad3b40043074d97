//! What the auth module's unit tests share: files in a temporary directory, repositories,
//! expected credentials.

use std::path::{Path, PathBuf};

use super::{AuthConfig, AuthError};
use crate::credentials::{Credentials, Secret};
use crate::env::MapEnv;
use crate::reference::Repository;

pub(super) fn repo(name: &str) -> Repository {
    Repository::parse(name).unwrap()
}

pub(super) fn basic(username: &str, password: &str) -> Option<Credentials> {
    Some(Credentials::Basic {
        username: username.to_string(),
        password: Secret::new(password),
    })
}

/// Writes `name` with `text` into `dir` and returns its path.
pub(super) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

pub(super) fn load_yaml(text: &str, env: &MapEnv) -> Result<AuthConfig, AuthError> {
    let dir = tempfile::tempdir().unwrap();
    AuthConfig::load(&write(dir.path(), "auth.yaml", text), env)
}

pub(super) fn username_for(auth: &AuthConfig, name: &str) -> Option<String> {
    match auth.credentials_for(&repo(name)).unwrap()? {
        Credentials::Basic { username, .. } => Some(username),
        Credentials::IdentityToken(_) => Some("<token>".to_string()),
    }
}

/// Writes `config` as `dir/config.json` and returns an environment whose `DOCKER_CONFIG`
/// and `PATH` are `dir`.
pub(super) fn docker_env(dir: &Path, config: &str) -> MapEnv {
    write(dir, "config.json", config);
    let dir = dir.to_str().unwrap();
    MapEnv::new([("DOCKER_CONFIG", dir), ("PATH", dir)])
}
