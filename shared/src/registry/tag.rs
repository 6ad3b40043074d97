//! Listings: `tags/list` and `_catalog` (a wildcard rule's repositories), following `Link`
//! pagination to the end (one pager for both); and whether a repository exists at all. What
//! a registry lists is outside input: a page is read with a cap, a `Link` that leads back to
//! a page already read ends the listing as an error, and a tag or repository name that is
//! not one by the reference grammar is dropped (with a warning) before anything can build a
//! URL or a target name from it. A page cut off midway is asked for again
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

#[derive(Deserialize)]
struct CatalogPage {
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

/// Repositories asked for per `_catalog` page.
const CATALOG_PAGE_SIZE: usize = 1000;

impl Client {
    /// Every tag of `repository`, in the registry's order.
    pub async fn tag_list(&self, repository: &Repository) -> Result<Vec<String>, RegistryError> {
        let mut first = ApiPath::in_repository(repository, &["tags", "list"]);
        if let Some(n) = self.options.tags_page_size {
            first = first.with("n", n.to_string());
        }
        let listing = Listing {
            context: format!("list tags of {repository}"),
            what: "tags/list page",
            invalid: "not a valid tag",
            first,
            scope: Scope::pull(repository),
        };
        let (tags, invalid) = self
            .pages(
                listing,
                |body| {
                    let page: TagPage =
                        serde_json::from_slice(body).map_err(|e| format!("tags/list: {e}"))?;
                    Ok(page.tags.unwrap_or_default())
                },
                |tag| validate_tag(tag).is_ok(),
            )
            .await?;
        if invalid > 0 {
            tracing::warn!(repository = %repository, invalid, "invalid tags skipped");
        }
        Ok(tags)
    }

    /// Every repository of the registry `within` is on (`_catalog`, `n` a page; or the
    /// credential store's own listing where it has one, ECR's API), as repositories; names
    /// that are not repository paths are dropped with a warning. `within` only scopes the
    /// credentials asked for.
    pub async fn catalog(&self, within: &Repository) -> Result<Vec<Repository>, RegistryError> {
        let registry = within.registry().to_string();
        if let Some(listed) = self.auth.repositories(&registry).await {
            let context = format!("list the repositories of {registry}");
            let names =
                listed.map_err(|e| RegistryError::new(&context, ErrorKind::ListingRefused(e)))?;
            let repositories: Vec<Repository> = names
                .iter()
                .filter_map(|name| Repository::new(&registry, name).ok())
                .collect();
            let invalid = names.len() - repositories.len();
            if invalid > 0 {
                tracing::warn!(registry = %registry, invalid, "invalid repository names skipped");
            }
            return Ok(repositories);
        }
        let listing = Listing {
            context: format!("list the repositories of {registry} (_catalog)"),
            what: "_catalog page",
            invalid: "not a valid repository name",
            first: ApiPath::catalog().with(
                "n",
                self.options
                    .tags_page_size
                    .unwrap_or(CATALOG_PAGE_SIZE)
                    .to_string(),
            ),
            scope: Scope::catalog(within),
        };
        let (names, invalid) = self
            .pages(
                listing,
                |body| {
                    let page: CatalogPage =
                        serde_json::from_slice(body).map_err(|e| format!("_catalog: {e}"))?;
                    Ok(page.repositories.unwrap_or_default())
                },
                |name| Repository::new(&registry, name).is_ok(),
            )
            .await?;
        if invalid > 0 {
            tracing::warn!(registry = %registry, invalid, "invalid repository names skipped");
        }
        Ok(names
            .iter()
            .filter_map(|name| Repository::new(&registry, name).ok())
            .collect())
    }

    /// Every item of a paginated listing, and how many `valid` refused: each page read with a
    /// cap and parsed by `parse`, `Link` followed at most [`MAX_PAGES`] times, a page read
    /// twice an error.
    async fn pages(
        &self,
        listing: Listing,
        parse: impl Fn(&[u8]) -> Result<Vec<String>, String>,
        valid: impl Fn(&str) -> bool,
    ) -> Result<(Vec<String>, usize), RegistryError> {
        let Listing {
            context,
            what,
            invalid: not_valid,
            first,
            scope,
        } = listing;
        let mut url = self.api_url(&first).await?;
        let mut items = Vec::new();
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
                    (MAX_PAGE_BYTES, what),
                )
                .await?;
            let next = headers
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let page = parse(&body)
                .map_err(|message| RegistryError::new(&context, ErrorKind::Protocol(message)))?;
            for item in page {
                if valid(&item) {
                    items.push(item);
                } else {
                    invalid += 1;
                    tracing::warn!(context = %context, item = %truncate(&item, 80), "the registry listed a name that is {not_valid}; skipped");
                }
            }
            match next {
                Some(link) => {
                    url = self
                        .url(&relative_to_v2(&link, &context)?, &context)
                        .await?
                }
                None => return Ok((items, invalid)),
            }
        }
        Err(RegistryError::new(
            context,
            ErrorKind::Protocol(format!("more than {MAX_PAGES} pages")),
        ))
    }
}

/// One paginated listing's request and how it is named in errors.
struct Listing {
    context: String,
    what: &'static str,
    /// What an item that fails the grammar is, in the warning.
    invalid: &'static str,
    first: ApiPath,
    scope: Scope,
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
