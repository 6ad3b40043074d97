//! `ferry discover`: the images file for the images a Kubernetes cluster's workloads use, or
//! those its manifests name (what image-migrator's `config` step does). This module owns the
//! two entry points ([`from_manifests`], [`from_cluster`]), which namespaces count
//! ([`Selection`]), and the problems and warnings a run reports. Reading one object is
//! `workload.rs`'s, reading manifest files `manifests.rs`'s, the kubeconfig and in-cluster
//! credentials `kubeconfig.rs`'s, exec credential plugins `exec.rs`'s, the API server's list
//! endpoints `cluster.rs`'s, and turning image uses into rules and text `images.rs`'s.
//!
//! What it leaves to others: the rules it writes are validated by `rules` like any images
//! file, and copied by `plan`/`copy` like any other; writing the text out is the CLI's.

mod cluster;
mod exec;
mod images;
mod kubeconfig;
mod manifests;
mod workload;

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

use crate::env::Env;
use crate::error::{truncate, HasKind, Kind};

pub use images::{DiscoveredRule, ImagesFile, TargetPrefix};
pub use kubeconfig::KubeSource;
pub use workload::WorkloadName;

/// How much of a hostile value (an image string, a server's message) a message quotes.
const QUOTE_LIMIT: usize = 200;

/// Which namespaces' workloads count.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these (`--namespace`); every namespace when empty.
    pub namespaces: Vec<String>,
    /// Never these (`--exclude-namespace`). `kube-system` is not excluded unless named.
    pub exclude: Vec<String>,
}

impl Selection {
    /// Checks every name is a namespace name (a DNS label), so none is sent in a URL unchecked.
    pub fn new(namespaces: Vec<String>, exclude: Vec<String>) -> Result<Self, DiscoverError> {
        for name in namespaces.iter().chain(&exclude) {
            if !is_dns_label(name) {
                return Err(DiscoverError::BadNamespace {
                    name: truncate(name, QUOTE_LIMIT),
                });
            }
        }
        Ok(Selection {
            namespaces,
            exclude,
        })
    }

    /// Whether an object in `namespace` counts; objects that name no namespace (most
    /// rendered charts) always do, since they land wherever they are applied.
    fn admits(&self, namespace: Option<&str>) -> bool {
        let Some(namespace) = namespace else {
            return true;
        };
        !self.exclude.iter().any(|n| n == namespace)
            && (self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace))
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters: Kubernetes' namespace names.
fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    let inner = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.first().is_some_and(inner)
        && bytes.last().is_some_and(inner)
        && bytes.iter().all(|b| inner(b) || *b == b'-')
}

/// What the images file is written with.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--to REGISTRY[/NAMESPACE]`; empty targets without it.
    pub to: Option<TargetPrefix>,
    /// `--pin`: tags replaced by the digests the cluster's pods run.
    pub pin: bool,
}

/// The images file and what the user should know about how it was made.
#[derive(Debug)]
pub struct Discovered {
    pub file: ImagesFile,
    pub warnings: Vec<Warning>,
}

/// Something left out or kept as it was; the rest of the file is still written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// Listing every namespace found one the credentials may not read.
    NamespaceForbidden { namespace: String, resource: String },
    /// The API server does not serve a kind (an old cluster without `batch/v1` CronJobs).
    ResourceUnavailable { resource: String },
    /// A container's image is not a reference ferry can copy.
    BadImage {
        workload: String,
        container: String,
        image: String,
        reason: String,
    },
    /// `--pin`, but no pod reports the digest it runs for this image: its tag is kept.
    NotPinned { image: String, workloads: String },
    /// Already on the `--to` registry: nothing to copy.
    AlreadyOnTarget { image: String },
    /// The `--to` path of an image is not a valid repository (too long): left out.
    BadTarget { image: String, reason: String },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::NamespaceForbidden {
                namespace,
                resource,
            } => write!(
                f,
                "namespace {namespace}: the credentials may not list its {resource}; its workloads are left out"
            ),
            Warning::ResourceUnavailable { resource } => {
                write!(f, "the API server does not serve {resource}; skipped")
            }
            Warning::BadImage {
                workload,
                container,
                image,
                reason,
            } => write!(
                f,
                "{workload}: container {container:?} has image {image:?}, which is not an image reference ({reason}); left out"
            ),
            Warning::NotPinned { image, workloads } => write!(
                f,
                "--pin: no running pod reports the digest of {image} ({workloads}); its tag is kept"
            ),
            Warning::AlreadyOnTarget { image } => {
                write!(f, "{image} is already on the --to registry; left out")
            }
            Warning::BadTarget { image, reason } => {
                write!(f, "{image}: no --to target for it ({reason}); left out")
            }
        }
    }
}

/// Why no images file could be made. Messages name the file and document, or the
/// context and API server; never a token or key.
#[derive(Debug, Error)]
pub enum DiscoverError {
    #[error("{}: cannot read: {reason}", file.display())]
    Read { file: PathBuf, reason: String },
    #[error("{}{}: {message}", file.display(), document.map(|d| format!(", document {d}")).unwrap_or_default())]
    Manifest {
        file: PathBuf,
        /// 1-based, when the file holds several.
        document: Option<usize>,
        message: String,
    },
    #[error("{}: {message}", file.display())]
    TooMuch { file: PathBuf, message: String },
    #[error("{name:?} is not a namespace name (lowercase letters, digits and -, at most 63)")]
    BadNamespace { name: String },
    #[error("--to {value:?}: {reason}")]
    BadTo { value: String, reason: String },
    #[error("{}: {message}", file.display())]
    Kubeconfig { file: PathBuf, message: String },
    #[error("no cluster to read: no --kubeconfig, $KUBECONFIG or ~/.kube/config, and not running in a pod (KUBERNETES_SERVICE_HOST unset)")]
    NoCluster,
    #[error("context {context}: {message}")]
    Context { context: String, message: String },
    #[error("context {context}: exec credential plugin {command}: {message}")]
    Exec {
        context: String,
        command: String,
        message: String,
    },
    #[error("context {context}: cannot reach the API server {server}: {reason}")]
    Unreachable {
        context: String,
        server: String,
        reason: String,
    },
    #[error("context {context}: the API server {server} refused the credentials (401 Unauthorized); a token may have expired")]
    Refused { context: String, server: String },
    #[error("context {context}: the credentials may not list {what} (403 Forbidden): {detail}")]
    Forbidden {
        context: String,
        what: String,
        detail: String,
    },
    #[error("context {context}: listing {what}: {message}")]
    Api {
        context: String,
        what: String,
        message: String,
    },
}

impl HasKind for DiscoverError {
    fn kind(&self) -> Kind {
        match self {
            // An API server that cannot be reached may be reachable later.
            DiscoverError::Unreachable { .. } => Kind::Transport,
            DiscoverError::Api { .. } => Kind::Protocol,
            DiscoverError::Exec { .. } => Kind::Credentials,
            // The kubeconfig's credentials are input like any file: an expired token or a
            // namespace they may not read is the user's to fix, and nothing was written.
            _ => Kind::BadInput,
        }
    }
}

/// The images file for the objects in `paths` (files, directories walked, `-` for
/// standard input).
pub fn from_manifests(
    paths: &[PathBuf],
    selection: &Selection,
    options: &Options,
) -> Result<Discovered, DiscoverError> {
    let mut objects = Vec::new();
    for path in paths {
        manifests::read_path(path, &mut objects)?;
    }
    objects.retain(|o| selection.admits(o.namespace()));
    Ok(images::build(
        workload::Inventory::new(objects),
        options,
        Vec::new(),
    ))
}

/// The images file for the workloads a live cluster runs.
pub async fn from_cluster(
    source: &KubeSource,
    env: &dyn Env,
    selection: &Selection,
    options: &Options,
) -> Result<Discovered, DiscoverError> {
    let access = kubeconfig::load_access(source, env)?;
    let cluster = cluster::Cluster::connect(access, env).await?;
    let (objects, warnings) = cluster.read_workloads(selection).await?;
    Ok(images::build(
        workload::Inventory::new(objects),
        options,
        warnings,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_are_checked_and_select() {
        assert!(Selection::new(vec!["a-1".into()], vec![]).is_ok());
        for bad in ["", "A", "-a", "a-", "a/b", &"a".repeat(64)] {
            assert!(Selection::new(vec![bad.into()], vec![]).is_err(), "{bad:?}");
        }
        let only = Selection::new(vec!["web".into()], vec!["kube-system".into()]).unwrap();
        assert!(only.admits(Some("web")) && only.admits(None));
        assert!(!only.admits(Some("other")) && !only.admits(Some("kube-system")));
        let all = Selection::default();
        assert!(
            all.admits(Some("kube-system")),
            "kube-system is not excluded by default"
        );
    }
}
