//! Where a request goes under `/v2/`: path segments and query pairs, always built and
//! never concatenated, so no name (validated or not) can change which path or query a
//! request has. `url::PathSegmentsMut` percent-encodes each segment, `/` included, and
//! drops `.` and `..`. What the API areas ask for is theirs; the base URL is the client's.

use reqwest::Url;

use crate::reference::{Digest, Reference, Repository};

/// A request target relative to a registry's `/v2/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiPath {
    segments: Vec<String>,
    query: Vec<(&'static str, String)>,
}

impl ApiPath {
    /// `<repository>/<rest…>`.
    pub(crate) fn in_repository(repository: &Repository, rest: &[&str]) -> ApiPath {
        ApiPath {
            segments: repository
                .path()
                .split('/')
                .chain(rest.iter().copied())
                .map(str::to_string)
                .collect(),
            query: Vec::new(),
        }
    }

    /// `_catalog`, the registry's repository listing.
    pub(crate) fn catalog() -> ApiPath {
        ApiPath {
            segments: vec!["_catalog".to_string()],
            query: Vec::new(),
        }
    }

    /// `<repository>/manifests/<tag or digest>`.
    pub(crate) fn manifest(reference: &Reference) -> ApiPath {
        ApiPath::in_repository(
            &reference.repository,
            &["manifests", reference.locator.as_str()],
        )
    }

    /// `<repository>/blobs/<digest>`.
    pub(crate) fn blob(repository: &Repository, digest: &Digest) -> ApiPath {
        ApiPath::in_repository(repository, &["blobs", digest.as_str()])
    }

    /// With one more query pair.
    pub(crate) fn with(mut self, name: &'static str, value: impl Into<String>) -> ApiPath {
        self.query.push((name, value.into()));
        self
    }

    /// The absolute URL under `base` (a registry's `…/v2/`).
    pub(crate) fn under(&self, base: &Url) -> Url {
        let mut url = base.clone();
        url.set_query(None);
        // An empty last segment keeps a trailing slash where the API has one
        // (`blobs/uploads/`).
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(&self.segments);
        }
        if !self.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&self.query);
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_segments_never_paths() {
        let base = Url::parse("https://r.example:5000/v2/").unwrap();
        let reference = Reference::parse("r.example:5000/team/app:v1").unwrap();
        assert_eq!(
            ApiPath::manifest(&reference).under(&base).as_str(),
            "https://r.example:5000/v2/team/app/manifests/v1"
        );
        let repository = Repository::parse("r.example:5000/team/app").unwrap();
        assert_eq!(
            ApiPath::in_repository(&repository, &["blobs", "uploads", ""])
                .with("mount", "sha256:ab")
                .with("from", "other/app")
                .under(&base)
                .as_str(),
            "https://r.example:5000/v2/team/app/blobs/uploads/?mount=sha256%3Aab&from=other%2Fapp"
        );
        // Were a hostile name ever to get this far, it would stay one segment.
        let hostile = ApiPath::in_repository(&repository, &["manifests", "../../../victim/x?y=1"]);
        assert_eq!(
            hostile.under(&base).as_str(),
            "https://r.example:5000/v2/team/app/manifests/..%2F..%2F..%2Fvictim%2Fx%3Fy=1"
        );
        let dots = ApiPath::in_repository(&repository, &["manifests", ".."]);
        assert_eq!(
            dots.under(&base).as_str(),
            "https://r.example:5000/v2/team/app/manifests"
        );
    }
}
