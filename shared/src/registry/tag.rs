//! Tags: `tags/list`, following `Link` pagination to the end; and whether a repository
//! exists at all.

use reqwest::header::LINK;
use reqwest::StatusCode;
use serde::Deserialize;

use super::error::{error_items, ErrorKind, RegistryError};
use super::{Client, Scope};
use crate::reference::Repository;

/// A bound on pages, so a registry whose `Link` loops cannot keep ferry forever.
const MAX_PAGES: usize = 100_000;

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
        let mut path = format!("{}/tags/list", repository.path());
        if let Some(n) = self.options.tags_page_size {
            path.push_str(&format!("?n={n}"));
        }
        let mut tags = Vec::new();
        for _ in 0..MAX_PAGES {
            let response = self
                .send_ok(&scope, &context, &path, |http, url| http.get(url))
                .await?;
            let next = response
                .headers()
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let page: TagPage = response.json().await.map_err(|e| {
                RegistryError::new(&context, ErrorKind::Protocol(format!("tags/list: {e}")))
            })?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(link) => path = relative_to_v2(&link, &context)?,
                None => return Ok(tags),
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
        let path = format!("{}/tags/list?n=1", repository.path());
        let response = self
            .send(&Scope::push(repository), &context, &path, |http, url| {
                http.get(url)
            })
            .await?;
        if response.status() != StatusCode::NOT_FOUND {
            return Ok(false);
        }
        let body = response.bytes().await.unwrap_or_default();
        Ok(error_items(&body).iter().any(|e| e.code == "NAME_UNKNOWN"))
    }
}

/// The `rel="next"` target of a `Link` header: `</v2/a/tags/list?n=2&last=b>; rel="next"`.
fn next_link(header: &str) -> Option<String> {
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
fn relative_to_v2(link: &str, context: &str) -> Result<String, RegistryError> {
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
