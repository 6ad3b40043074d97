//! Manifests: HEAD and GET with an Accept list covering every format ferry copies. The raw
//! bytes are what gets copied; the digest is computed here and checked against both the
//! reference (when it is a digest) and the registry's `Docker-Content-Digest`. A manifest
//! body cut off midway is asked for again (`Client::get_body`). A GET is a pull (what
//! registries' budgets count); a HEAD is not.

use base64::Engine as _;
use bytes::Bytes;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::StatusCode;

use super::error::{ErrorKind, RegistryError};
use super::path::ApiPath;
use super::{status_error, Actions, Client, Scope};
use crate::manifest::media_types;
use crate::reference::{Digest, Locator, Reference};

/// Registries cap manifests at a few MiB; refuse anything far larger rather than buffer it.
const MAX_MANIFEST_BYTES: usize = 16 << 20;

/// A manifest exactly as the registry served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: Digest,
}

/// What a HEAD tells without spending a pull: the digest (when the registry sends it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    pub digest: Option<Digest>,
    pub media_type: Option<String>,
    pub size: Option<u64>,
}

impl ManifestHead {
    /// The digest a HEAD told, if the manifest exists and the registry said.
    pub fn digest_of(head: &Option<ManifestHead>) -> Option<&Digest> {
        head.as_ref().and_then(|h| h.digest.as_ref())
    }

    /// Whether any of `heads` says its manifest is an index (or a manifest list).
    pub fn any_index(heads: &[Option<ManifestHead>]) -> bool {
        heads
            .iter()
            .flatten()
            .filter_map(|head| head.media_type.as_deref())
            .any(media_types::is_index)
    }
}

impl Client {
    /// HEAD a manifest: `None` if it does not exist.
    pub async fn manifest_head(
        &self,
        reference: &Reference,
    ) -> Result<Option<ManifestHead>, RegistryError> {
        self.manifest_head_as(reference, Actions::Pull).await
    }

    /// HEAD a manifest with a token for `actions`: a copier HEADs its targets with the
    /// push token it will upload with, so one token per target repository serves both.
    pub async fn manifest_head_as(
        &self,
        reference: &Reference,
        actions: Actions,
    ) -> Result<Option<ManifestHead>, RegistryError> {
        let context = format!("HEAD manifest {reference}");
        let scope = Scope {
            actions,
            ..Scope::pull(&reference.repository)
        };
        let response = self
            .send(
                &scope,
                &context,
                &ApiPath::manifest(reference),
                |http, url| http.head(url).header(ACCEPT, media_types::ACCEPT),
            )
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(status_error(response, &context).await);
        }
        let headers = response.headers();
        let digest = content_digest(headers, &context)?;
        Ok(Some(ManifestHead {
            digest,
            media_type: header(headers, CONTENT_TYPE.as_str()).map(media_type_only),
            size: header(headers, CONTENT_LENGTH.as_str()).and_then(|v| v.parse().ok()),
        }))
    }

    /// GET a manifest's raw bytes, verifying its digest.
    pub async fn manifest_get(&self, reference: &Reference) -> Result<Manifest, RegistryError> {
        let context = format!("GET manifest {reference}");
        self.before_pull(&context).await?;
        let url = self.api_url(&ApiPath::manifest(reference)).await?;
        let (headers, bytes) = self
            .get_body(
                &Scope::pull(&reference.repository),
                &context,
                url,
                |http, url| http.get(url).header(ACCEPT, media_types::ACCEPT),
                (MAX_MANIFEST_BYTES, "manifest"),
            )
            .await?;
        let announced = content_digest(&headers, &context)?;
        let content_type = header(&headers, CONTENT_TYPE.as_str()).map(media_type_only);
        let media_type = content_type
            .filter(|t| !t.is_empty() && t != "application/json" && t != "text/plain")
            .or_else(|| media_type_field(&bytes))
            .unwrap_or_else(|| media_types::DOCKER_SCHEMA1_SIGNED.to_string());
        let expected = match &reference.locator {
            Locator::Digest(d) => Some(d.clone()),
            Locator::Tag(_) => announced,
        };
        let algorithm = expected
            .as_ref()
            .map_or(crate::reference::Algorithm::Sha256, |d| d.algorithm());
        let digest = manifest_digest(algorithm, &media_type, &bytes);
        if let Some(expected) = expected.filter(|e| *e != digest) {
            return Err(RegistryError::new(
                context,
                ErrorKind::DigestMismatch {
                    expected,
                    actual: digest,
                },
            ));
        }
        Ok(Manifest {
            bytes,
            media_type,
            digest,
        })
    }
}

impl Client {
    /// PUT a manifest's exact bytes with their media type; returns the digest the registry
    /// computed (checked against ours by the caller).
    pub async fn manifest_put(
        &self,
        reference: &Reference,
        media_type: &str,
        bytes: &Bytes,
    ) -> Result<Option<Digest>, RegistryError> {
        let context = format!("PUT manifest {reference}");
        self.prepare_push(&reference.repository, &context).await?;
        let response = self
            .send_ok(
                &Scope::push(&reference.repository),
                &context,
                &ApiPath::manifest(reference),
                |http, url| {
                    http.put(url)
                        .header(CONTENT_TYPE, media_type)
                        .body(bytes.clone())
                },
            )
            .await?;
        content_digest(response.headers(), &context)
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
}

fn media_type_only(content_type: String) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn content_digest(headers: &HeaderMap, context: &str) -> Result<Option<Digest>, RegistryError> {
    header(headers, "docker-content-digest")
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse().map_err(|_| {
                RegistryError::new(
                    context,
                    ErrorKind::Protocol(format!("bad Docker-Content-Digest {v:?}")),
                )
            })
        })
        .transpose()
}

/// The `mediaType` field, for registries that serve manifests as `application/json`.
fn media_type_field(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        #[serde(rename = "schemaVersion")]
        schema_version: Option<u32>,
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).ok()?;
    match (probe.media_type, probe.schema_version, probe.manifests) {
        (Some(t), _, _) => Some(t),
        (None, Some(1), _) => Some(media_types::DOCKER_SCHEMA1_SIGNED.to_string()),
        (None, _, Some(_)) => Some(media_types::OCI_INDEX.to_string()),
        (None, _, None) => Some(media_types::OCI_MANIFEST.to_string()),
    }
}

/// A manifest's digest. For signed schema 1 the registry digests the payload without its
/// signatures (libtrust's `formatLength`/`formatTail`), so that is what must be compared.
pub fn manifest_digest(
    algorithm: crate::reference::Algorithm,
    media_type: &str,
    bytes: &[u8],
) -> Digest {
    if media_type == media_types::DOCKER_SCHEMA1_SIGNED {
        if let Some(payload) = schema1_payload(bytes) {
            return Digest::of(algorithm, &payload);
        }
    }
    Digest::of(algorithm, bytes)
}

fn schema1_payload(bytes: &[u8]) -> Option<Vec<u8>> {
    #[derive(serde::Deserialize)]
    struct Signed {
        signatures: Vec<Signature>,
    }
    #[derive(serde::Deserialize)]
    struct Signature {
        protected: String,
    }
    #[derive(serde::Deserialize)]
    struct Protected {
        #[serde(rename = "formatLength")]
        format_length: usize,
        #[serde(rename = "formatTail")]
        format_tail: String,
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let signed: Signed = serde_json::from_slice(bytes).ok()?;
    let protected = b64
        .decode(signed.signatures.first()?.protected.trim_end_matches('='))
        .ok()?;
    let protected: Protected = serde_json::from_slice(&protected).ok()?;
    let tail = b64
        .decode(protected.format_tail.trim_end_matches('='))
        .ok()?;
    let mut payload = bytes.get(..protected.format_length)?.to_vec();
    payload.extend_from_slice(&tail);
    Some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_from_body() {
        assert_eq!(
            media_type_field(br#"{"schemaVersion":2,"mediaType":"x"}"#).as_deref(),
            Some("x")
        );
        assert_eq!(
            media_type_field(br#"{"schemaVersion":1,"name":"a"}"#).as_deref(),
            Some(media_types::DOCKER_SCHEMA1_SIGNED)
        );
        assert_eq!(
            media_type_field(br#"{"schemaVersion":2,"manifests":[]}"#).as_deref(),
            Some(media_types::OCI_INDEX)
        );
    }

    #[test]
    fn schema1_digest_ignores_signatures() {
        let payload = "{\n   \"schemaVersion\": 1,\n   \"name\": \"a\"\n}";
        // libtrust cuts the payload before its closing brace and stores the tail.
        let cut = payload.len() - 2;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let protected = b64.encode(format!(
            r#"{{"formatLength":{cut},"formatTail":"{}"}}"#,
            b64.encode(&payload[cut..])
        ));
        let signed = format!(
            "{},\n   \"signatures\": [{{\"protected\": \"{protected}\"}}]\n}}",
            &payload[..cut]
        );
        assert_eq!(
            manifest_digest(
                crate::reference::Algorithm::Sha256,
                media_types::DOCKER_SCHEMA1_SIGNED,
                signed.as_bytes()
            ),
            Digest::sha256(payload.as_bytes())
        );
    }
}
