//! The OCI 1.1 referrers API: `GET /v2/<name>/referrers/<digest>`, an index of the manifests
//! whose `subject` is that digest. A registry without the API (distribution 2.8) answers
//! 404, or something that is not an index: both read as "unsupported" (`None`), and the
//! caller falls back to the referrers tag schema. Pages (`Link: rel="next"`) are followed to
//! a bound, each read with a cap. What the entries mean, and what is copied, is `copy`'s.

use reqwest::header::{ACCEPT, CONTENT_TYPE, LINK};
use reqwest::StatusCode;
use serde_json::Value;

use super::error::{ErrorKind, RegistryError};
use super::path::ApiPath;
use super::tag::{next_link, relative_to_v2};
use super::transport::read_capped;
use super::{status_error, Client, Scope};
use crate::manifest::media_types;
use crate::reference::{Digest, Repository};

/// A referrers index is small; a page larger than a manifest may be is refused.
const MAX_PAGE_BYTES: usize = 4 << 20;
/// Pages followed for one subject, at most.
const MAX_PAGES: usize = 100;

impl Client {
    /// The referrers of `subject` as the API lists them (each entry a descriptor, as
    /// served), or `None` when the registry has no referrers API.
    pub async fn referrers(
        &self,
        repository: &Repository,
        subject: &Digest,
    ) -> Result<Option<Vec<Value>>, RegistryError> {
        let context = format!("GET referrers of {subject} in {repository}");
        let scope = Scope::pull(repository);
        let mut url = self
            .api_url(&ApiPath::in_repository(
                repository,
                &["referrers", subject.as_str()],
            ))
            .await?;
        let mut entries = Vec::new();
        for page in 0..MAX_PAGES {
            let response = self
                .send_to(&scope, &context, url.clone(), |http, url| {
                    http.get(url).header(ACCEPT, media_types::OCI_INDEX)
                })
                .await?;
            // 404 (no such route), 400/405 (a route it reads otherwise): no API.
            if page == 0
                && matches!(
                    response.status(),
                    StatusCode::NOT_FOUND
                        | StatusCode::BAD_REQUEST
                        | StatusCode::METHOD_NOT_ALLOWED
                )
            {
                return Ok(None);
            }
            if !response.status().is_success() {
                return Err(status_error(response, &context).await);
            }
            let headers = response.headers().clone();
            let content_type = headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let body = read_capped(response, MAX_PAGE_BYTES, "referrers index", &context).await?;
            let index = serde_json::from_slice::<Value>(&body).ok();
            let listed = index
                .as_ref()
                .and_then(|v| v.get("manifests"))
                .and_then(Value::as_array);
            let Some(listed) = listed else {
                if page == 0 {
                    tracing::debug!(%content_type, "referrers answer is not an index: no API");
                    return Ok(None);
                }
                return Err(RegistryError::new(
                    context,
                    ErrorKind::Protocol("a referrers page that is not an index".into()),
                ));
            };
            entries.extend(listed.iter().cloned());
            match headers
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link)
            {
                Some(link) => {
                    url = self
                        .url(&relative_to_v2(&link, &context)?, &context)
                        .await?
                }
                None => return Ok(Some(entries)),
            }
        }
        Err(RegistryError::new(
            context,
            ErrorKind::Protocol(format!("more than {MAX_PAGES} pages of referrers")),
        ))
    }
}
