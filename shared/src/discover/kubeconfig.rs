//! Which cluster to read and how to log in: the kubeconfig (`--kubeconfig`, else every file
//! in `$KUBECONFIG` merged as kubectl merges them, first definition winning, else
//! `~/.kube/config`), its context (`--context` or `current-context`), and the context's
//! cluster (server, `certificate-authority(-data)`, `insecure-skip-tls-verify`) and user
//! (`client-certificate(-data)`/`client-key(-data)`, `token`, `tokenFile`, `username`/
//! `password`, `exec`); or, with no kubeconfig, the service account of the pod ferry runs
//! in. Relative paths are relative to the file that names them. Running an exec plugin is
//! `exec.rs`'s; talking to the server `cluster.rs`'s.

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::DiscoverError;
use crate::credentials::Secret;
use crate::env::Env;

/// A kubeconfig file is read up to this size.
const MAX_KUBECONFIG_BYTES: u64 = 16 << 20;
/// A certificate, key or token file is read up to this size.
const MAX_CREDENTIAL_BYTES: u64 = 1 << 20;
/// `$KUBECONFIG` lists at most this many files.
const MAX_KUBECONFIG_FILES: usize = 64;

/// The service account's files in a pod.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Overrides [`SERVICE_ACCOUNT_DIR`]: for tests, which cannot write under /var/run.
const SERVICE_ACCOUNT_DIR_VAR: &str = "FERRY_SERVICE_ACCOUNT_DIR";

/// Where to find the cluster, as the command line gave it.
#[derive(Debug, Clone, Default)]
pub struct KubeSource {
    /// `--kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`.
    pub context: Option<String>,
}

/// How to log in to one API server, resolved from the kubeconfig or the pod.
#[derive(Debug, Clone)]
pub(super) struct ClusterAccess {
    /// The context's name (`in-cluster` for the service account), for messages.
    pub context: String,
    pub server: String,
    pub ca_pem: Option<Vec<u8>>,
    pub insecure: bool,
    /// A client certificate and its key, PEM, concatenated.
    pub identity_pem: Option<Secret>,
    pub login: Login,
}

/// What goes in the `Authorization` header.
#[derive(Debug, Clone)]
pub(super) enum Login {
    None,
    Bearer(Secret),
    Basic { username: String, password: Secret },
    Exec(ExecConfig),
}

/// A user's `exec` credential plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ExecConfig {
    pub api_version: String,
    pub command: String,
    #[serde(default)]
    pub args: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<ExecEnv>>,
    #[serde(default)]
    pub install_hint: Option<String>,
    #[serde(default)]
    pub provide_cluster_info: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct ExecEnv {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig {
    #[serde(default)]
    current_context: Option<String>,
    #[serde(default)]
    clusters: Option<Vec<NamedCluster>>,
    #[serde(default)]
    contexts: Option<Vec<NamedContext>>,
    #[serde(default)]
    users: Option<Vec<NamedUser>>,
}

#[derive(Debug, Deserialize)]
struct NamedCluster {
    name: String,
    #[serde(default)]
    cluster: Option<ClusterEntry>,
}

#[derive(Debug, Deserialize)]
struct NamedContext {
    name: String,
    #[serde(default)]
    context: Option<ContextEntry>,
}

#[derive(Debug, Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: Option<UserEntry>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterEntry {
    #[serde(default)]
    server: String,
    #[serde(default)]
    certificate_authority: Option<PathBuf>,
    #[serde(default)]
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
}

#[derive(Debug, Default, Clone, Deserialize)]
struct ContextEntry {
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    user: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct UserEntry {
    #[serde(default)]
    client_certificate: Option<PathBuf>,
    #[serde(default)]
    client_certificate_data: Option<String>,
    #[serde(default)]
    client_key: Option<PathBuf>,
    #[serde(default)]
    client_key_data: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "tokenFile")]
    token_file: Option<PathBuf>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    exec: Option<ExecConfig>,
    #[serde(default)]
    auth_provider: Option<serde_json::Value>,
}

/// An entry and the file it came from (relative paths are relative to it).
struct From<T> {
    file: PathBuf,
    entry: T,
}

/// The kubeconfig files merged: per name, the first file's entry.
#[derive(Default)]
struct Merged {
    first_file: Option<PathBuf>,
    current_context: Option<String>,
    clusters: Vec<(String, From<ClusterEntry>)>,
    contexts: Vec<(String, From<ContextEntry>)>,
    users: Vec<(String, From<UserEntry>)>,
}

fn find<'a, T>(entries: &'a [(String, From<T>)], name: &str) -> Option<&'a From<T>> {
    entries.iter().find(|(n, _)| n == name).map(|(_, e)| e)
}

/// The access `source` (and the environment) give.
pub(super) fn load_access(
    source: &KubeSource,
    env: &dyn Env,
) -> Result<ClusterAccess, DiscoverError> {
    let files = kubeconfig_files(source, env);
    if files.is_empty() {
        if let Some(host) = env.var("KUBERNETES_SERVICE_HOST").filter(|h| !h.is_empty()) {
            return in_cluster(&host, env);
        }
        return Err(DiscoverError::NoCluster);
    }
    let mut merged = Merged::default();
    for file in files.iter().take(MAX_KUBECONFIG_FILES) {
        merge(file, &mut merged)?;
    }
    let first = merged.first_file.clone().unwrap_or_default();
    let context_name = source
        .context
        .clone()
        .or(merged.current_context.clone())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| DiscoverError::Kubeconfig {
            file: first.clone(),
            message: "no current-context; name one with --context".to_string(),
        })?;
    let problem = |message: String| DiscoverError::Context {
        context: context_name.clone(),
        message,
    };
    let context = find(&merged.contexts, &context_name)
        .ok_or_else(|| problem("no such context in the kubeconfig".to_string()))?;
    let cluster = find(&merged.clusters, &context.entry.cluster).ok_or_else(|| {
        problem(format!(
            "its cluster {:?} is not defined",
            context.entry.cluster
        ))
    })?;
    if cluster.entry.server.is_empty() {
        return Err(problem("its cluster has no server".to_string()));
    }
    let ca_pem = match (
        &cluster.entry.certificate_authority_data,
        &cluster.entry.certificate_authority,
    ) {
        (Some(data), _) => Some(decode(&cluster.file, "certificate-authority-data", data)?),
        (None, Some(path)) => Some(read_credential(&cluster.file, path)?),
        (None, None) => None,
    };
    let user = match find(&merged.users, &context.entry.user) {
        Some(user) => user,
        None if context.entry.user.is_empty() => &From {
            file: first.clone(),
            entry: UserEntry::default(),
        },
        None => {
            return Err(problem(format!(
                "its user {:?} is not defined",
                context.entry.user
            )))
        }
    };
    let identity_pem = client_identity(user)?;
    let login = login(user, &context_name)?;
    Ok(ClusterAccess {
        context: context_name,
        server: cluster.entry.server.clone(),
        ca_pem,
        insecure: cluster.entry.insecure_skip_tls_verify,
        identity_pem,
        login,
    })
}

/// `--kubeconfig`, else the files of `$KUBECONFIG` that exist, else `~/.kube/config` if it
/// exists.
fn kubeconfig_files(source: &KubeSource, env: &dyn Env) -> Vec<PathBuf> {
    if let Some(path) = &source.kubeconfig {
        return vec![path.clone()];
    }
    if let Some(list) = env.var("KUBECONFIG").filter(|l| !l.is_empty()) {
        return std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty() && p.exists())
            .collect();
    }
    env.var("HOME")
        .map(|home| Path::new(&home).join(".kube/config"))
        .filter(|p| p.exists())
        .into_iter()
        .collect()
}

fn merge(file: &Path, merged: &mut Merged) -> Result<(), DiscoverError> {
    let bad = |message: String| DiscoverError::Kubeconfig {
        file: file.to_path_buf(),
        message,
    };
    let bytes = read_capped(file, MAX_KUBECONFIG_BYTES)?;
    let text = String::from_utf8(bytes).map_err(|_| bad("not UTF-8 text".to_string()))?;
    let config: Kubeconfig = if text.trim().is_empty() {
        Kubeconfig::default()
    } else {
        serde_yaml::from_str(&text).map_err(|e| bad(format!("not a kubeconfig: {e}")))?
    };
    merged.first_file.get_or_insert_with(|| file.to_path_buf());
    if merged.current_context.is_none() {
        merged.current_context = config.current_context.filter(|c| !c.is_empty());
    }
    for named in config.clusters.into_iter().flatten() {
        add(&mut merged.clusters, file, named.name, named.cluster);
    }
    for named in config.contexts.into_iter().flatten() {
        add(&mut merged.contexts, file, named.name, named.context);
    }
    for named in config.users.into_iter().flatten() {
        add(&mut merged.users, file, named.name, named.user);
    }
    Ok(())
}

/// Adds `name` unless an earlier file defined it: the first definition wins, as in kubectl.
fn add<T: Default>(
    entries: &mut Vec<(String, From<T>)>,
    file: &Path,
    name: String,
    entry: Option<T>,
) {
    if find(entries, &name).is_none() {
        let entry = entry.unwrap_or_default();
        let file = file.to_path_buf();
        entries.push((name, From { file, entry }));
    }
}

fn client_identity(user: &From<UserEntry>) -> Result<Option<Secret>, DiscoverError> {
    let entry = &user.entry;
    let cert = match (&entry.client_certificate_data, &entry.client_certificate) {
        (Some(data), _) => Some(decode(&user.file, "client-certificate-data", data)?),
        (None, Some(path)) => Some(read_credential(&user.file, path)?),
        (None, None) => None,
    };
    let key = match (&entry.client_key_data, &entry.client_key) {
        (Some(data), _) => Some(decode(&user.file, "client-key-data", data)?),
        (None, Some(path)) => Some(read_credential(&user.file, path)?),
        (None, None) => None,
    };
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(identity(&cert, &key))),
        _ => Err(DiscoverError::Kubeconfig {
            file: user.file.clone(),
            message: "a client certificate needs its key, and a key its certificate".to_string(),
        }),
    }
}

/// A certificate and its key as one PEM, as the TLS client takes them.
pub(super) fn identity(cert: &[u8], key: &[u8]) -> Secret {
    let mut pem = String::from_utf8_lossy(cert).trim_end().to_string();
    pem.push('\n');
    pem.push_str(String::from_utf8_lossy(key).trim_end());
    pem.push('\n');
    Secret::new(pem)
}

fn login(user: &From<UserEntry>, context: &str) -> Result<Login, DiscoverError> {
    let entry = &user.entry;
    if let Some(token) = entry.token.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Login::Bearer(Secret::new(token.trim())));
    }
    if let Some(path) = &entry.token_file {
        let bytes = read_credential(&user.file, path)?;
        return Ok(Login::Bearer(Secret::new(
            String::from_utf8_lossy(&bytes).trim(),
        )));
    }
    if let Some(exec) = &entry.exec {
        let mut exec = exec.clone();
        // A command with a path separator is relative to the kubeconfig, as kubectl does.
        if exec.command.contains('/') && Path::new(&exec.command).is_relative() {
            exec.command = relative_to(&user.file, Path::new(&exec.command))
                .display()
                .to_string();
        }
        return Ok(Login::Exec(exec));
    }
    if let Some(username) = entry.username.as_deref().filter(|u| !u.is_empty()) {
        return Ok(Login::Basic {
            username: username.to_string(),
            password: Secret::new(entry.password.clone().unwrap_or_default()),
        });
    }
    if let Some(provider) = &entry.auth_provider {
        let name = provider.get("name").and_then(|n| n.as_str()).unwrap_or("?");
        return Err(DiscoverError::Context {
            context: context.to_string(),
            message: format!(
                "auth-provider {name:?} is not supported (kubectl dropped it too); use an exec plugin such as gke-gcloud-auth-plugin or kubelogin"
            ),
        });
    }
    Ok(Login::None)
}

/// The pod's service account: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`,
/// its token and its CA.
fn in_cluster(host: &str, env: &dyn Env) -> Result<ClusterAccess, DiscoverError> {
    let port = env
        .var("KUBERNETES_SERVICE_PORT")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "443".to_string());
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let dir = PathBuf::from(
        env.var(SERVICE_ACCOUNT_DIR_VAR)
            .unwrap_or_else(|| SERVICE_ACCOUNT_DIR.to_string()),
    );
    let token = read_capped(&dir.join("token"), MAX_CREDENTIAL_BYTES)?;
    let ca = read_capped(&dir.join("ca.crt"), MAX_CREDENTIAL_BYTES)?;
    Ok(ClusterAccess {
        context: "in-cluster".to_string(),
        server: format!("https://{host}:{port}"),
        ca_pem: Some(ca),
        insecure: false,
        identity_pem: None,
        login: Login::Bearer(Secret::new(String::from_utf8_lossy(&token).trim())),
    })
}

fn relative_to(file: &Path, path: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

fn read_credential(kubeconfig: &Path, path: &Path) -> Result<Vec<u8>, DiscoverError> {
    read_capped(&relative_to(kubeconfig, path), MAX_CREDENTIAL_BYTES)
}

fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, DiscoverError> {
    let unreadable = |reason: String| DiscoverError::Read {
        file: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| unreadable(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(e.to_string()))?;
    if bytes.len() as u64 > cap {
        return Err(unreadable(format!("larger than {cap} bytes")));
    }
    Ok(bytes)
}

fn decode(file: &Path, field: &str, data: &str) -> Result<Vec<u8>, DiscoverError> {
    let compact: String = data.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| DiscoverError::Kubeconfig {
            file: file.to_path_buf(),
            message: format!("{field} is not base64"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::MapEnv;

    fn source(path: &Path, context: Option<&str>) -> KubeSource {
        KubeSource {
            kubeconfig: Some(path.to_path_buf()),
            context: context.map(str::to_string),
        }
    }

    #[test]
    fn contexts_clusters_and_users() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "file-token\n").unwrap();
        std::fs::write(dir.path().join("ca.pem"), "CA").unwrap();
        let ca_data = base64::engine::general_purpose::STANDARD.encode("CA-DATA");
        let config = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: prod\n\
             clusters:\n- name: c1\n  cluster: {{server: 'https://a:6443', certificate-authority-data: {ca_data}}}\n\
             - name: c2\n  cluster: {{server: 'https://b', certificate-authority: ca.pem, insecure-skip-tls-verify: true}}\n\
             contexts:\n- name: prod\n  context: {{cluster: c1, user: u1}}\n- name: dev\n  context: {{cluster: c2, user: u2}}\n\
             - name: exec\n  context: {{cluster: c1, user: u3}}\n- name: broken\n  context: {{cluster: nope, user: u1}}\n\
             users:\n- name: u1\n  user: {{token: t0ken}}\n- name: u2\n  user: {{tokenFile: token}}\n\
             - name: u3\n  user:\n    exec: {{apiVersion: client.authentication.k8s.io/v1, command: ./bin/plugin, args: [a], env: null}}\n"
        );
        let path = dir.path().join("config");
        std::fs::write(&path, config).unwrap();
        let env = MapEnv::default();
        let prod = load_access(&source(&path, None), &env).unwrap();
        assert_eq!(
            (prod.context.as_str(), prod.server.as_str()),
            ("prod", "https://a:6443")
        );
        assert_eq!(prod.ca_pem.as_deref(), Some(&b"CA-DATA"[..]));
        assert!(matches!(prod.login, Login::Bearer(ref t) if t.expose() == "t0ken"));
        let dev = load_access(&source(&path, Some("dev")), &env).unwrap();
        assert!(dev.insecure && dev.ca_pem.as_deref() == Some(&b"CA"[..]));
        assert!(matches!(dev.login, Login::Bearer(ref t) if t.expose() == "file-token"));
        let exec = load_access(&source(&path, Some("exec")), &env).unwrap();
        match exec.login {
            Login::Exec(e) => assert_eq!(Path::new(&e.command), dir.path().join("./bin/plugin")),
            other => panic!("{other:?}"),
        }
        let err = load_access(&source(&path, Some("broken")), &env).unwrap_err();
        assert!(
            err.to_string()
                .contains("context broken: its cluster \"nope\""),
            "{err}"
        );
        let err = load_access(&source(&path, Some("none")), &env).unwrap_err();
        assert!(
            err.to_string().contains("context none: no such context"),
            "{err}"
        );
    }

    #[test]
    fn kubeconfig_list_then_home_then_the_pod() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(
            &a,
            "clusters:\n- name: c\n  cluster: {server: 'https://first'}\n",
        )
        .unwrap();
        std::fs::write(&b, "current-context: x\nclusters:\n- name: c\n  cluster: {server: 'https://second'}\ncontexts:\n- name: x\n  context: {cluster: c}\n").unwrap();
        let list = std::env::join_paths([&a, &dir.path().join("missing"), &b]).unwrap();
        let env = MapEnv::new([("KUBECONFIG", list.to_str().unwrap())]);
        let access = load_access(&KubeSource::default(), &env).unwrap();
        assert_eq!(access.server, "https://first");
        assert!(matches!(access.login, Login::None));

        let sa = dir.path().join("sa");
        std::fs::create_dir(&sa).unwrap();
        std::fs::write(sa.join("token"), "sa-token").unwrap();
        std::fs::write(sa.join("ca.crt"), "CA").unwrap();
        let home = dir.path().join("home");
        let env = MapEnv::new([
            ("HOME", home.to_str().unwrap()),
            ("KUBERNETES_SERVICE_HOST", "fd00::1"),
            ("KUBERNETES_SERVICE_PORT", "6443"),
            (SERVICE_ACCOUNT_DIR_VAR, sa.to_str().unwrap()),
        ]);
        let access = load_access(&KubeSource::default(), &env).unwrap();
        assert_eq!(access.server, "https://[fd00::1]:6443");
        assert!(matches!(access.login, Login::Bearer(ref t) if t.expose() == "sa-token"));
        let env = MapEnv::new([("HOME", home.to_str().unwrap())]);
        assert!(matches!(
            load_access(&KubeSource::default(), &env),
            Err(DiscoverError::NoCluster)
        ));
    }
}
