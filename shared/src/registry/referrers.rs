//! The OCI 1.1 referrers API: `GET /v2/<name>/referrers/<digest>`, an index of the manifests
//! whose `subject` is that digest. A registry without the API (distribution 2.8) answers
//! 404, or something that is not an index: both read as "unsupported" (`None`), and the
//! caller falls back to the referrers tag schema. Pages (`Link: rel="next"`) are followed to
//! a bound, each read with a cap. [`ReferrersApi`] remembers, for a run, which registries
//! have the API, so the copier and the planner each ask a registry without it once. What
//! the entries mean, and what is copied, is `copy`'s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use reqwest::header::{ACCEPT, CONTENT_TYPE, LINK};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::OnceCell;

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

/// Which registries have the referrers API, as the first answer from each in a run told
/// (a 404 or an answer that is not an index: it has not). Requests starting at once wait
/// for that first answer rather than each asking; a registry without the API is asked no
/// more.
#[derive(Default)]
pub struct ReferrersApi {
    known: Mutex<HashMap<String, Arc<OnceCell<bool>>>>,
}

impl ReferrersApi {
    /// The referrers of `subject` in `repository` (one GET, `client` being its registry's),
    /// or `None`, without a request once the registry is known to have no API. A registry
    /// with the API that answers 404 for a repository (one it does not have yet) lists
    /// nothing. A failed first request decides nothing: the next one asks again.
    pub async fn referrers(
        &self,
        client: &Client,
        repository: &Repository,
        subject: &Digest,
    ) -> Result<Option<Vec<Value>>, RegistryError> {
        let cell = Arc::clone(
            self.known
                .lock()
                .expect("referrers API map poisoned")
                .entry(client.registry().to_string())
                .or_default(),
        );
        let mut first = None;
        let supported = *cell
            .get_or_try_init(|| async {
                let answer = client.referrers(repository, subject).await?;
                let supported = answer.is_some();
                first = Some(answer);
                Ok::<bool, RegistryError>(supported)
            })
            .await?;
        if let Some(answer) = first {
            return Ok(answer);
        }
        if !supported {
            return Ok(None);
        }
        let answer = client.referrers(repository, subject).await?;
        Ok(Some(answer.unwrap_or_default()))
    }
}
