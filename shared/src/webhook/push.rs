//! A push as ferry knows it: [`PushEvent`], one manifest pushed to a repository by tag,
//! digest or both, and how names read from a payload become one: [`repository_at`] and
//! [`push_event`] normalise and validate them exactly as references in rules are, and say
//! what is wrong with a name as a [`NameProblem`].
//!
//! Where a name was found in a payload is the payload reader's business (`payload.rs`), and
//! which field holds which name each format's (`formats.rs`).

use std::fmt;

use thiserror::Error;

use crate::error::truncate;
use crate::reference::{canonical_registry, validate_tag, Digest, ReferenceError, Repository};

/// Payload values quoted in errors are cut to this many characters.
pub(super) const QUOTE_LIMIT: usize = 80;

/// One manifest pushed to a registry: a tag, a digest, or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PushEvent {
    /// Normalised like every reference (`docker.io/library/nginx`, `host:5000/team/app`).
    pub repository: Repository,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl fmt::Display for PushEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Why a repository, registry host, tag or digest named by a payload (or by
/// `FERRY_WEBHOOK_REGISTRY`) cannot be used. Values are quoted, cut short.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameProblem {
    /// `host/path` is not a valid repository.
    #[error("repository {}: {error}", quote(.name))]
    Repository {
        name: String,
        #[source]
        error: ReferenceError,
    },
    /// The host would be read as the first path component of a Docker Hub repository.
    #[error(
        "{} is not a registry host (a host needs a '.' or a ':' port, or is localhost)",
        quote(.host)
    )]
    NotAHost { host: String },
    #[error("digest {}: {error}", quote(.value))]
    Digest {
        value: String,
        #[source]
        error: ReferenceError,
    },
    /// Neither a valid tag nor a digest.
    #[error("invalid tag {}", quote(.value))]
    Tag {
        value: String,
        #[source]
        error: ReferenceError,
    },
    /// A digest given as the tag (Harbor's way) that is not the digest given as such.
    #[error("tag {} contradicts digest {digest}", quote(.tag))]
    TagContradictsDigest { tag: String, digest: Digest },
    #[error("the push to {0} names neither a tag nor a digest")]
    NeitherTagNorDigest(Repository),
}

/// `host/path`, normalised exactly as references in rules are (so they compare equal), and
/// refused when the host would not be read as one (`registry/app` means Docker Hub's
/// `registry/app` in a rule, so it must not mean a host called `registry` here).
pub(super) fn repository_at(host: &str, path: &str) -> Result<Repository, NameProblem> {
    let host = host.trim();
    let path = path.trim().trim_matches('/');
    let name = format!("{host}/{path}");
    let repository =
        Repository::parse(&name).map_err(|error| NameProblem::Repository { name, error })?;
    if repository.registry() != canonical_registry(host) {
        return Err(NameProblem::NotAHost {
            host: host.to_string(),
        });
    }
    Ok(repository)
}

/// A push event from the payload's tag and digest, validated. Harbor reports a push by
/// digest with the digest in `tag`, so a "tag" that is a digest is one.
pub(super) fn push_event(
    repository: Repository,
    tag: Option<&str>,
    digest: Option<&str>,
) -> Result<PushEvent, NameProblem> {
    let parse_digest = |text: &str| {
        text.parse::<Digest>().map_err(|error| NameProblem::Digest {
            value: text.to_string(),
            error,
        })
    };
    let mut digest = digest.map(parse_digest).transpose()?;
    let tag = match tag.map(|tag| (tag, validate_tag(tag))) {
        None => None,
        Some((tag, Ok(()))) => Some(tag.to_string()),
        Some((tag, Err(error))) => match (tag.parse::<Digest>(), &digest) {
            (Ok(d), Some(known)) if d != *known => {
                return Err(NameProblem::TagContradictsDigest {
                    tag: tag.to_string(),
                    digest: known.clone(),
                })
            }
            (Ok(d), _) => {
                digest = Some(d);
                None
            }
            (Err(_), _) => {
                return Err(NameProblem::Tag {
                    value: tag.to_string(),
                    error,
                })
            }
        },
    };
    if tag.is_none() && digest.is_none() {
        return Err(NameProblem::NeitherTagNorDigest(repository));
    }
    Ok(PushEvent {
        repository,
        tag,
        digest,
    })
}

/// A payload string for a message: quoted, and cut short (the ellipsis after the quotes).
pub(super) fn quote(text: &str) -> String {
    if text.chars().count() <= QUOTE_LIMIT {
        return format!("{text:?}");
    }
    let cut = truncate(text, QUOTE_LIMIT);
    format!("{:?}…", cut.strip_suffix('…').unwrap_or(&cut))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_cut_outside_the_quotes() {
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
        let long = "é".repeat(QUOTE_LIMIT);
        assert_eq!(quote(&long), format!("\"{long}\""));
        let longer = format!("{long}…x");
        assert_eq!(quote(&longer), format!("\"{long}\"…"));
    }

    #[test]
    fn names_are_checked_and_normalised() {
        let repository = repository_at(" Quay.IO ", "/a/b/").unwrap();
        assert_eq!(repository.to_string(), "quay.io/a/b");
        assert!(matches!(
            repository_at("registry", "app"),
            Err(NameProblem::NotAHost { .. })
        ));
        let digest = "sha256:14b267eb38aa85fd12d0e168fffa2d8a6187ac53a14a0212b0d4fce8d729598c";
        let by_tag = push_event(repository.clone(), Some(digest), None).unwrap();
        assert_eq!(by_tag.to_string(), format!("quay.io/a/b@{digest}"));
        assert_eq!(
            push_event(repository, None, None).unwrap_err().to_string(),
            "the push to quay.io/a/b names neither a tag nor a digest"
        );
    }
}
