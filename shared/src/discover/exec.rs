//! Exec credential plugins (`users[].user.exec`: EKS's `aws eks get-token`, GKE's
//! `gke-gcloud-auth-plugin`, `kubelogin`): the command run with its args and env, plus
//! `KUBERNETES_EXEC_INFO`, no standard input (never interactive), stopped after
//! [`EXEC_TIMEOUT`], its output capped (by `auth`'s process runner, the one credential
//! helpers use), and its `ExecCredential` (`client.authentication.k8s.io/v1` or `v1beta1`)
//! read for a bearer token or a client certificate. Messages quote the plugin's standard
//! error, never its standard output, which holds the token.

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use super::kubeconfig::{identity, ClusterAccess, ExecConfig};
use super::DiscoverError;
use crate::auth::wait_with_timeout;
use crate::credentials::Secret;
use crate::error::truncate;

/// A plugin may take this long (a cloud CLI fetching a token over the network).
const EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of a failing plugin's standard error a message quotes.
const DETAIL_LIMIT: usize = 300;
/// The ExecCredential versions ferry reads (`v1alpha1` is gone from Kubernetes too).
const API_VERSIONS: [&str; 2] = [
    "client.authentication.k8s.io/v1",
    "client.authentication.k8s.io/v1beta1",
];

/// What a plugin gave.
#[derive(Debug)]
pub(super) struct ExecCredential {
    pub token: Option<Secret>,
    pub identity_pem: Option<Secret>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reply {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    status: Option<ReplyStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReplyStatus {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    client_certificate_data: Option<String>,
    #[serde(default)]
    client_key_data: Option<String>,
}

/// Runs `exec` for `access`'s cluster.
pub(super) async fn run(
    exec: &ExecConfig,
    access: &ClusterAccess,
) -> Result<ExecCredential, DiscoverError> {
    let failed = |message: String| DiscoverError::Exec {
        context: access.context.clone(),
        command: truncate(&exec.command, DETAIL_LIMIT),
        message,
    };
    if !API_VERSIONS.contains(&exec.api_version.as_str()) {
        return Err(failed(format!(
            "apiVersion {:?} is not one of {}",
            truncate(&exec.api_version, DETAIL_LIMIT),
            API_VERSIONS.join(", ")
        )));
    }
    let mut command = Command::new(&exec.command);
    command
        .args(exec.args.iter().flatten())
        .envs(exec.env.iter().flatten().map(|e| (&e.name, &e.value)))
        .env("KUBERNETES_EXEC_INFO", exec_info(exec, access).to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = tokio::task::spawn_blocking(move || {
        let child = command.spawn()?;
        wait_with_timeout(child, EXEC_TIMEOUT)
    })
    .await
    .map_err(|e| failed(format!("did not finish: {e}")))?
    .map_err(|e| {
        let hint = exec
            .install_hint
            .as_deref()
            .map(|h| format!(" ({})", truncate(h.trim(), DETAIL_LIMIT)))
            .unwrap_or_default();
        failed(format!("cannot run it: {e}{hint}"))
    })?
    .ok_or_else(|| {
        failed(format!(
            "did not answer within {EXEC_TIMEOUT:?}; it was stopped"
        ))
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let detail = truncate(stderr.trim(), DETAIL_LIMIT);
        return Err(failed(format!("failed ({}): {detail}", output.status)));
    }
    let reply: Reply = serde_json::from_slice(&output.stdout).map_err(|e| {
        failed(format!(
            "its output is not an ExecCredential (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if reply.kind.as_deref() != Some("ExecCredential")
        || reply.api_version.as_deref() != Some(exec.api_version.as_str())
    {
        return Err(failed(format!(
            "it answered kind {:?} apiVersion {:?}, not an ExecCredential of {}",
            truncate(reply.kind.as_deref().unwrap_or_default(), DETAIL_LIMIT),
            truncate(
                reply.api_version.as_deref().unwrap_or_default(),
                DETAIL_LIMIT
            ),
            exec.api_version
        )));
    }
    let status = reply
        .status
        .ok_or_else(|| failed("its ExecCredential has no status".to_string()))?;
    let identity_pem = match (&status.client_certificate_data, &status.client_key_data) {
        (Some(cert), Some(key)) => Some(identity(cert.as_bytes(), key.as_bytes())),
        _ => None,
    };
    let token = status.token.filter(|t| !t.is_empty()).map(Secret::new);
    if token.is_none() && identity_pem.is_none() {
        return Err(failed(
            "its ExecCredential has neither a token nor a client certificate and key".to_string(),
        ));
    }
    Ok(ExecCredential {
        token,
        identity_pem,
    })
}

/// `KUBERNETES_EXEC_INFO`: the request, with the cluster when the plugin asks for it.
fn exec_info(exec: &ExecConfig, access: &ClusterAccess) -> serde_json::Value {
    let mut spec = serde_json::json!({"interactive": false});
    if exec.provide_cluster_info {
        let mut cluster = serde_json::json!({
            "server": access.server,
            "insecure-skip-tls-verify": access.insecure,
        });
        if let Some(ca) = &access.ca_pem {
            cluster["certificate-authority-data"] =
                base64::engine::general_purpose::STANDARD.encode(ca).into();
        }
        spec["cluster"] = cluster;
    }
    serde_json::json!({
        "apiVersion": exec.api_version,
        "kind": "ExecCredential",
        "spec": spec,
    })
}
