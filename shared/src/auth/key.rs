//! Keys, as written in the auth file and in Docker's config: `registry` or
//! `registry/namespace…`, with or without a scheme (`https://Quay.io/coreos/` means
//! `quay.io/coreos`). This file owns what a key means and which keys apply to a repository
//! (a key is a prefix of `registry/path` on a `/` boundary; the longest wins, ties broken by
//! the key as written, so the choice never depends on file order). What an entry under a
//! key holds, and what a key that cannot be read costs (an error in the auth file, a
//! warning in Docker's config), is for the files that read them.

use thiserror::Error;

use crate::reference::{canonical_registry, ReferenceError, Repository};

/// Why a key is not a registry or `registry/namespace`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyProblem {
    #[error("no registry host")]
    NoHost,
    /// A first segment reference parsing reads as a Docker Hub namespace.
    #[error(
        "{host:?} is not a registry host (it needs a '.' or ':' or must be localhost; \
         Docker Hub namespaces are written docker.io/{host})"
    )]
    NotAHost { host: String },
    /// Not a valid host or repository path.
    #[error("{0}")]
    Reference(ReferenceError),
}

/// A key as written and in normalised form (`https://Quay.io/coreos/` → `quay.io/coreos`).
#[derive(Debug, Clone)]
pub(super) struct Key {
    pub(super) raw: String,
    /// `registry` or `registry/namespace…`, comparable with `Repository`'s `registry/path`.
    pub(super) normalised: String,
    pub(super) registry: String,
}

impl Key {
    pub(super) fn parse(raw: &str) -> Result<Key, KeyProblem> {
        let text = raw.trim();
        let text = strip_scheme(text).trim_end_matches('/');
        let (host, path) = match text.split_once('/') {
            Some((host, path)) => (host.to_ascii_lowercase(), Some(path)),
            None => (text.to_ascii_lowercase(), None),
        };
        // `https://index.docker.io/v1/` names Docker's API version, not a namespace.
        let path = path.filter(|p| !matches!(*p, "v1" | "v2"));
        if host.is_empty() {
            return Err(KeyProblem::NoHost);
        }
        // Let reference parsing decide what a registry host and a path are.
        let probe = format!("{host}/{}", path.unwrap_or("x"));
        let repository = Repository::parse(&probe).map_err(KeyProblem::Reference)?;
        if repository.registry() != canonical_registry(&host) {
            return Err(KeyProblem::NotAHost { host });
        }
        let registry = repository.registry().to_string();
        let normalised = match path {
            Some(path) => format!("{registry}/{path}"),
            None => registry.clone(),
        };
        Ok(Key {
            raw: raw.to_string(),
            normalised,
            registry,
        })
    }

    /// Whether this key is a prefix of `target` (`registry/path`) on a `/` boundary.
    fn matches(&self, target: &str) -> bool {
        target
            .strip_prefix(&self.normalised)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

fn strip_scheme(text: &str) -> &str {
    for scheme in ["https://", "http://"] {
        // `get`, not indexing: the cut may fall inside a multi-byte character.
        if text
            .get(..scheme.len())
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(scheme))
        {
            return &text[scheme.len()..];
        }
    }
    text
}

/// What keys are matched against.
pub(super) fn target_of(repository: &Repository) -> String {
    format!("{}/{}", repository.registry(), repository.path())
}

/// Something filed under a key: an auth file entry, a Docker config `auths` entry or
/// `credHelpers` route.
pub(super) trait Keyed {
    fn key(&self) -> &Key;
}

/// Orders longest key first (ties by raw key), so the first match is the most specific.
pub(super) fn sort_longest_first<T: Keyed>(items: &mut [T]) {
    items.sort_by(|a, b| {
        let (a, b) = (a.key(), b.key());
        b.normalised
            .len()
            .cmp(&a.normalised.len())
            .then_with(|| a.raw.cmp(&b.raw))
    });
}

/// Items whose key matches `target`, most specific first (items must be sorted).
pub(super) fn matching<'a, 't, T: Keyed>(
    items: &'a [T],
    target: &'t str,
) -> impl Iterator<Item = &'a T> + use<'a, 't, T> {
    items.iter().filter(move |item| item.key().matches(target))
}

#[cfg(test)]
mod tests {
    use super::Key;
    use crate::auth::testing::{load_yaml, repo, username_for};
    use crate::env::MapEnv;

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let auth = load_yaml(
            "quay.io: {username: top, password: a}\n\
             quay.io/coreos: {username: coreos, password: b}\n\
             quay.io/coreos/etcd/sub: {username: deep, password: c}\n",
            &MapEnv::default(),
        )
        .unwrap();
        assert_eq!(
            username_for(&auth, "quay.io/coreos/etcd").as_deref(),
            Some("coreos")
        );
        assert_eq!(
            username_for(&auth, "quay.io/coreos").as_deref(),
            Some("coreos")
        );
        assert_eq!(
            username_for(&auth, "quay.io/coreosx/etcd").as_deref(),
            Some("top")
        );
        assert_eq!(
            username_for(&auth, "quay.io/coreos/etcd/sub/x").as_deref(),
            Some("deep")
        );
        assert_eq!(username_for(&auth, "quay.io.evil.com/coreos/x"), None);
        assert_eq!(username_for(&auth, "nginx"), None);
        assert_eq!(
            auth.describe_match(&repo("quay.io/coreos/etcd")),
            "auth file entry quay.io/coreos"
        );
        assert_eq!(auth.describe_match(&repo("nginx")), "anonymous");
    }

    #[test]
    fn keys_are_normalised() {
        let auth = load_yaml(
            "https://registry.hub.docker.com/: {username: hub, password: a}\n\
             index.docker.io/bitnami: {username: bitnami, password: b}\n\
             HTTP://Quay.IO/coreos/: {username: quay, password: c}\n\
             localhost:5000: {username: local, password: d}\n",
            &MapEnv::default(),
        )
        .unwrap();
        assert_eq!(username_for(&auth, "nginx").as_deref(), Some("hub"));
        assert_eq!(
            username_for(&auth, "docker.io/library/nginx").as_deref(),
            Some("hub")
        );
        assert_eq!(
            username_for(&auth, "bitnami/redis").as_deref(),
            Some("bitnami")
        );
        assert_eq!(
            username_for(&auth, "quay.io/coreos/etcd").as_deref(),
            Some("quay")
        );
        assert_eq!(
            username_for(&auth, "localhost:5000/a").as_deref(),
            Some("local")
        );
        let legacy = load_yaml(
            "https://index.docker.io/v1/: {username: v1, password: a}\n",
            &MapEnv::default(),
        )
        .unwrap();
        assert_eq!(username_for(&legacy, "nginx").as_deref(), Some("v1"));
    }

    #[test]
    fn bad_and_duplicate_keys_are_errors() {
        let env = MapEnv::default();
        for (text, expected) in [
            ("myregistry/team: {}\n", "not a registry host"),
            ("quay.io/Coreos: {}\n", "invalid repository path"),
            ("quay.io//x: {}\n", "invalid repository path"),
            ("\"https://\": {}\n", "no registry host"),
            ("bad_host.io:x: {}\n", "invalid registry host"),
            (
                "docker.io: {}\nindex.docker.io: {}\n",
                "keys \"docker.io\" and \"index.docker.io\" both mean docker.io",
            ),
        ] {
            let err = load_yaml(text, &env).unwrap_err().to_string();
            assert!(
                err.contains("auth.yaml") && err.contains(expected),
                "{text}: {err}"
            );
        }
    }

    /// Issue 12, row 6: a key with a non-ASCII character panicked (a byte slice cut inside
    /// a character); every such key is now an error naming it.
    #[test]
    fn non_ascii_keys_are_errors_not_panics() {
        for raw in [
            "ä",
            "httpä://x",
            "https:/ä",
            "quay.io/ä",
            "é.io",
            "ｈｔｔｐｓ://quay.io",
            "€€€€€€€€€",
        ] {
            assert!(Key::parse(raw).is_err(), "{raw:?} parsed");
        }
        assert_eq!(
            Key::parse("HTTPS://Quay.io/").unwrap().normalised,
            "quay.io"
        );
    }
}
