//! Blobs: HEAD on a target, and GET from a source as a stream. Redirects (to object storage
//! or a CDN) are followed by the HTTP client, which drops `Authorization` whenever the host,
//! port or scheme changes, so credentials never reach another host.

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use reqwest::StatusCode;

use super::error::{status_error, ErrorKind, RegistryError};
use super::path::ApiPath;
use super::{Actions, Client, Scope};
use crate::reference::{Digest, Repository};

/// A blob body arriving in chunks; `size` when the registry announced it.
pub struct BlobStream {
    pub size: Option<u64>,
    pub chunks: BoxStream<'static, Result<Bytes, RegistryError>>,
}

impl Client {
    /// HEAD a blob: its size if present, `None` if absent.
    pub async fn blob_head(
        &self,
        repository: &Repository,
        digest: &Digest,
        actions: Actions,
    ) -> Result<Option<u64>, RegistryError> {
        let context = format!("HEAD blob {repository}@{digest}");
        let scope = Scope {
            actions,
            ..Scope::pull(repository)
        };
        let path = ApiPath::blob(repository, digest);
        let response = self
            .send(&scope, &context, &path, |http, url| http.head(url))
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(response.content_length().unwrap_or(0))),
            _ => Err(status_error(response, &context).await),
        }
    }

    /// GET a blob as a stream of chunks (unverified: the caller hashes while forwarding).
    pub async fn blob_get(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<BlobStream, RegistryError> {
        let context = format!("GET blob {repository}@{digest}");
        let response = self
            .send_ok(
                &Scope::pull(repository),
                &context,
                &ApiPath::blob(repository, digest),
                |http, url| http.get(url),
            )
            .await?;
        let size = response.content_length();
        let chunks = response
            .bytes_stream()
            .map(move |chunk| {
                chunk.map_err(|e| {
                    RegistryError::new(
                        context.clone(),
                        ErrorKind::Transport(e.without_url().to_string()),
                    )
                })
            })
            .boxed();
        Ok(BlobStream { size, chunks })
    }
}
