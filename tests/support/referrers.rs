//! Supply-chain artifacts for the referrers tests: an artifact with a `subject` pushed by
//! the `oras` Python SDK (a real third-party client; `$FERRY_PYTHON`, else
//! `<repo>/.venv/bin/python` that `infra/setup.sh` installs it into, else `python3`),
//! cosign-style `.sig`/`.att` tags built with cosign's media types and annotations, the
//! referrers tag schema's fallback index (`sha256-<hex>`, which clients maintain on a
//! registry without the referrers API, as the oras CLI and cosign do; the Python SDK does
//! not, so [`write_fallback_index`] does it for it), and [`referrers_api_proxy`]: distribution
//! 2.8 has no referrers API, so a [`Proxy`] in front of a real registry answers
//! `GET /v2/<name>/referrers/<digest>` from that registry's own stored manifests.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};

use crate::proxy::{Fault, Proxy};
use crate::registry::Registry;
use crate::seed::{sha256_digest, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST};

/// cosign's signature layer type.
pub const COSIGN_SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// cosign's attestation layer type (a DSSE envelope).
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The annotation cosign puts the signature in.
pub const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// The Python that has the `oras` SDK.
pub fn python_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("FERRY_PYTHON") {
        return PathBuf::from(bin);
    }
    let venv = crate::workspace_root().join(".venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

/// What `oras` pushes: a file as one layer, a config whose media type is the artifact's
/// type, and `subject`. Prints the manifest's digest.
const ORAS_PUSH: &str = r#"
import os, sys
from oras.provider import Registry
from oras.oci import Subject
host, target, path, layer_type, config_path, artifact_type, s_type, s_digest, s_size = sys.argv[1:10]
os.chdir(os.path.dirname(path))
registry = Registry(hostname=host, insecure=True)
response = registry.push(
    target=target,
    files=[f"{os.path.basename(path)}:{layer_type}"],
    manifest_config=f"{config_path}:{artifact_type}",
    subject=Subject(mediaType=s_type, digest=s_digest, size=int(s_size)),
    disable_path_validation=True,
    quiet=True,
)
print(response.headers["Docker-Content-Digest"])
"#;

/// The subject of an artifact: a manifest's media type, digest and size.
#[derive(Clone, Debug)]
pub struct Subject {
    pub media_type: String,
    pub digest: String,
    pub size: usize,
}

impl Subject {
    pub fn new(media_type: &str, digest: &str, size: usize) -> Subject {
        Subject {
            media_type: media_type.into(),
            digest: digest.into(),
            size,
        }
    }
}

/// Pushes `content` with the `oras` Python SDK as an artifact of `artifact_type` referring
/// to `subject`, tagged `repo:tag` (the SDK pushes by tag); its manifest digest.
pub fn oras_push(
    reg: &Registry,
    repo: &str,
    tag: &str,
    subject: &Subject,
    artifact_type: &str,
    content: &[u8],
) -> String {
    let dir = crate::temp_dir();
    let path = crate::write_file(dir.path(), "sbom.spdx.json", content);
    let config = crate::write_file(dir.path(), "config.json", b"{}");
    let output = Command::new(python_bin())
        .args(["-c", ORAS_PUSH])
        .arg(reg.host())
        .arg(format!("{}/{repo}:{tag}", reg.host()))
        .arg(&path)
        .arg("application/spdx+json")
        .arg(&config)
        .arg(artifact_type)
        .arg(&subject.media_type)
        .arg(&subject.digest)
        .arg(subject.size.to_string())
        .output()
        .expect("running python for oras");
    assert!(
        output.status.success(),
        "oras push failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let digest = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(digest.starts_with("sha256:"), "oras printed {digest:?}");
    digest
}

/// The referrers tag schema's tag for `digest`.
pub fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// The descriptor a referrers index lists for the manifest `digest` in `repo`: media
/// type, digest, size, `artifactType` (its own, else its config's) and annotations.
pub async fn referrer_descriptor(reg: &Registry, repo: &str, digest: &str) -> Value {
    let manifest = reg
        .fetch_manifest(repo, digest)
        .await
        .unwrap_or_else(|| panic!("{repo}@{digest} is missing"));
    descriptor_of(&manifest.media_type, &manifest.bytes)
}

fn descriptor_of(media_type: &str, bytes: &[u8]) -> Value {
    let body: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let artifact_type = body
        .get("artifactType")
        .or_else(|| body.pointer("/config/mediaType"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut descriptor = json!({
        "mediaType": media_type,
        "digest": sha256_digest(bytes),
        "size": bytes.len(),
    });
    if !artifact_type.is_null() {
        descriptor["artifactType"] = artifact_type;
    }
    if let Some(annotations) = body.get("annotations") {
        descriptor["annotations"] = annotations.clone();
    }
    descriptor
}

/// Writes the fallback index of `subject` in `repo`, listing `entries`; its digest.
pub async fn write_fallback_index(
    reg: &Registry,
    repo: &str,
    subject: &str,
    entries: &[Value],
) -> String {
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": entries,
    });
    let bytes = serde_json::to_vec(&index).unwrap();
    reg.push_manifest(repo, &fallback_tag(subject), OCI_INDEX, &bytes)
        .await
}

/// The entries of the fallback index of `subject` in `repo` (`None`: no such tag).
pub async fn fallback_entries(reg: &Registry, repo: &str, subject: &str) -> Option<Vec<Value>> {
    let manifest = reg.fetch_manifest(repo, &fallback_tag(subject)).await?;
    let index: Value = serde_json::from_slice(&manifest.bytes).unwrap();
    Some(index["manifests"].as_array().cloned().unwrap_or_default())
}

/// An OCI manifest with cosign's shape: an OCI config and one layer per payload (of
/// `layer_type`, each with a signature annotation), tagged `sha256-<hex>.<suffix>` next
/// to `subject`. Its digest.
pub async fn push_cosign_tag(
    reg: &Registry,
    repo: &str,
    subject: &str,
    suffix: &str,
    layer_type: &str,
    payloads: &[&str],
) -> String {
    let config = br#"{"architecture":"","config":{},"created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = reg.push_blob(repo, config).await;
    let mut layers = Vec::new();
    for payload in payloads {
        let digest = reg.push_blob(repo, payload.as_bytes()).await;
        layers.push(json!({
            "mediaType": layer_type,
            "size": payload.len(),
            "digest": digest,
            "annotations": {
                COSIGN_SIGNATURE_ANNOTATION: format!("MEUCIQ{}", &digest[7..27]),
            },
        }));
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": config.len(), "digest": config_digest},
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let tag = format!("{}.{suffix}", fallback_tag(subject));
    reg.push_manifest(repo, &tag, OCI_MANIFEST, &bytes).await
}

/// An artifact built here (not by oras): an OCI manifest of `artifact_type` with one
/// layer and `subject`, pushed by digest only (so only the referrers API or a fallback
/// index can find it). Its descriptor.
pub async fn push_artifact_by_digest(
    reg: &Registry,
    repo: &str,
    subject: &Subject,
    artifact_type: &str,
    content: &[u8],
) -> Value {
    let empty = b"{}";
    let config_digest = reg.push_blob(repo, empty).await;
    let layer_digest = reg.push_blob(repo, content).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2, "digest": config_digest},
        "layers": [{"mediaType": "application/octet-stream", "size": content.len(), "digest": layer_digest}],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size},
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = sha256_digest(&bytes);
    reg.push_manifest(repo, &digest, OCI_MANIFEST, &bytes).await;
    descriptor_of(OCI_MANIFEST, &bytes)
}

/// A proxy in front of `upstream` (a real distribution 2.8, which has no referrers API)
/// that answers `GET /v2/<name>/referrers/<digest>` with an index of the manifests stored
/// in `<name>` whose `subject` is `<digest>`, read from the registry's own storage
/// directory at each request. Everything else is forwarded.
pub fn referrers_api_proxy(upstream: &Registry) -> Proxy {
    let root = upstream.storage_dir().join("docker/registry/v2");
    Proxy::start(upstream, move |request| {
        if request.method != "GET" {
            return None;
        }
        let path = request.path.split('?').next().unwrap_or_default();
        let rest = path.strip_prefix("/v2/")?;
        let (name, subject) = rest.rsplit_once("/referrers/")?;
        let revisions = root
            .join("repositories")
            .join(name)
            .join("_manifests/revisions/sha256");
        let mut manifests = Vec::new();
        for entry in std::fs::read_dir(&revisions)
            .into_iter()
            .flatten()
            .flatten()
        {
            let hex = entry.file_name().to_string_lossy().to_string();
            let blob = root
                .join("blobs/sha256")
                .join(&hex[..2.min(hex.len())])
                .join(&hex)
                .join("data");
            let Ok(bytes) = std::fs::read(blob) else {
                continue;
            };
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if body.pointer("/subject/digest").and_then(Value::as_str) != Some(subject) {
                continue;
            }
            let media_type = body
                .get("mediaType")
                .and_then(Value::as_str)
                .unwrap_or(OCI_MANIFEST)
                .to_string();
            manifests.push(descriptor_of(&media_type, &bytes));
        }
        manifests.sort_by_key(|d| d["digest"].as_str().unwrap_or_default().to_string());
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        Some(Fault::Respond {
            status: 200,
            headers: vec![("content-type".into(), OCI_INDEX.into())],
            body: serde_json::to_vec(&index).unwrap(),
        })
    })
}
