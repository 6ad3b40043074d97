//! Tags: `tags/list`, following `Link` pagination to the end; and whether a repository
//! exists at all. What a registry lists is outside input: a page is read with a cap, a
//! `Link` that leads back to a page already read ends the listing as an error, and a tag
//! that is not a tag by the reference grammar is dropped (with a warning) before anything
//! can build a URL or a target name from it. A page cut off midway is asked for again
//! (`Client::get_body`).

use reqwest::header::LINK;
use reqwest::StatusCode;
use serde::Deserialize;

use std::collections::HashSet;

use super::error::{error_items, ErrorKind, RegistryError, MAX_ERROR_BODY};
use super::path::ApiPath;
use super::transport::read_prefix;
use super::{Client, Scope};
use crate::error::truncate;
use crate::reference::{validate_tag, Repository};

/// A bound on pages, so a registry whose `Link`s never end cannot keep ferry forever.
const MAX_PAGES: usize = 100_000;
/// The largest page of tags read: 10,000 tags of the longest length are about 1.3 MiB.
const MAX_PAGE_BYTES: usize = 16 << 20;

#[derive(Deserialize)]
struct TagPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl Client {
    /// Every tag of `repository`, in the registry's order.
    pub async fn tag_list(&self, repository: &Repository) -> Result<Vec<String>, RegistryError> {
        let context = format!("list tags of {repository}");
        let scope = Scope::pull(repository);
        let mut first = ApiPath::in_repository(repository, &["tags", "list"]);
        if let Some(n) = self.options.tags_page_size {
            first = first.with("n", n.to_string());
        }
        let mut url = self.api_url(&first).await?;
        let mut tags = Vec::new();
        let mut seen_pages = HashSet::new();
        let mut invalid = 0usize;
        for _ in 0..MAX_PAGES {
            if !seen_pages.insert(url.to_string()) {
                return Err(RegistryError::new(
                    context,
                    ErrorKind::Protocol(format!(
                        "Link leads back to {:?}, read already",
                        url.path()
                    )),
                ));
            }
            let (headers, body) = self
                .get_body(
                    &scope,
                    &context,
                    url.clone(),
                    |http, url| http.get(url),
                    (MAX_PAGE_BYTES, "tags/list page"),
                )
                .await?;
            let next = headers
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let page: TagPage = serde_json::from_slice(&body).map_err(|e| {
                RegistryError::new(&context, ErrorKind::Protocol(format!("tags/list: {e}")))
            })?;
            for tag in page.tags.unwrap_or_default() {
                match validate_tag(&tag) {
                    Ok(()) => tags.push(tag),
                    Err(_) => {
                        invalid += 1;
                        tracing::warn!(repository = %repository, tag = %truncate(&tag, 80), "the registry listed a tag that is not a valid tag; skipped");
                    }
                }
            }
            match next {
                Some(link) => {
                    url = self
                        .url(&relative_to_v2(&link, &context)?, &context)
                        .await?
                }
                None => {
                    if invalid > 0 {
                        tracing::warn!(repository = %repository, invalid, "invalid tags skipped");
                    }
                    return Ok(tags);
                }
            }
        }
        Err(RegistryError::new(
            context,
            ErrorKind::Protocol(format!("more than {MAX_PAGES} pages of tags")),
        ))
    }
}

impl Client {
    /// Whether the registry says `repository` does not exist (`tags/list` answers 404
    /// `NAME_UNKNOWN`). Any other answer counts as "it may exist". Asked with push scope,
    /// as only a copier about to push asks it, so one token serves the uploads too.
    pub async fn repository_absent(&self, repository: &Repository) -> Result<bool, RegistryError> {
        let context = format!("list tags of {repository}");
        let path = ApiPath::in_repository(repository, &["tags", "list"]).with("n", "1");
        let response = self
            .send(&Scope::push(repository), &context, &path, |http, url| {
                http.get(url)
            })
            .await?;
        if response.status() != StatusCode::NOT_FOUND {
            return Ok(false);
        }
        let body = read_prefix(response, MAX_ERROR_BODY).await;
        Ok(error_items(&body).iter().any(|e| e.code == "NAME_UNKNOWN"))
    }
}

/// The `rel="next"` target of a `Link` header: `</v2/a/tags/list?n=2&last=b>; rel="next"`.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next");
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_string())
    })
}

/// Turns a Link target into a path relative to `/v2/` (registries send absolute paths or
/// absolute URLs on the same host).
pub fn relative_to_v2(link: &str, context: &str) -> Result<String, RegistryError> {
    let path = match link.find("/v2/") {
        Some(i) => &link[i + 4..],
        None => {
            return Err(RegistryError::new(
                context,
                ErrorKind::Protocol(format!("unexpected Link target {link:?}")),
            ))
        }
    };
    Ok(path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_next_links() {
        assert_eq!(
            next_link(r#"</v2/a/b/tags/list?last=x&n=2>; rel="next""#).as_deref(),
            Some("/v2/a/b/tags/list?last=x&n=2")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
        assert_eq!(
            relative_to_v2("https://h/v2/a/tags/list?last=x", "c").unwrap(),
            "a/tags/list?last=x"
        );
    }
}
