//! Image references: registry, repository, tag and digest, with Docker's normalisation.
//!
//! A name's first path segment is a registry only if it contains `.` or `:` or is `localhost`
//! (and more segments follow); otherwise the registry is `docker.io`, and a single-segment
//! Docker Hub name gets `library/`. Ports are kept. This module only parses and validates
//! strings; the rules module decides what a tag list or regex *means*.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// The registry that unqualified names refer to.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API actually lives.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Why a string is not a valid reference, repository, tag or digest.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReferenceError {
    #[error("empty reference")]
    Empty,
    #[error("invalid registry host {0:?}")]
    Registry(String),
    #[error(
        "invalid repository path {0:?} (lowercase letters, digits and separators . _ __ - only)"
    )]
    Repository(String),
    #[error("repository name longer than 255 characters")]
    TooLong,
    #[error(
        "invalid tag {0:?} (letters, digits, _ . - only, at most 128, not starting with . or -)"
    )]
    Tag(String),
    #[error("invalid digest {0:?} (expected sha256:<64 hex> or sha512:<128 hex>)")]
    Digest(String),
}

/// A content digest: `sha256:<64 hex>` or `sha512:<128 hex>`, lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

/// Digest algorithms ferry can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Digest {
    pub fn algorithm(&self) -> Algorithm {
        if self.0.starts_with("sha512:") {
            Algorithm::Sha512
        } else {
            Algorithm::Sha256
        }
    }

    /// The hex part after the colon.
    pub fn hex(&self) -> &str {
        self.0.split_once(':').map(|(_, h)| h).unwrap_or_default()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digest of `bytes` with the given algorithm.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        match algorithm {
            Algorithm::Sha256 => Digest(format!("sha256:{}", hex(&sha2::Sha256::digest(bytes)))),
            Algorithm::Sha512 => Digest(format!("sha512:{}", hex(&sha2::Sha512::digest(bytes)))),
        }
    }

    /// The sha256 digest of `bytes`, the algorithm registries use by default.
    pub fn sha256(bytes: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha256, bytes)
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

impl FromStr for Digest {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ReferenceError::Digest(s.to_string());
        let (algorithm, hex) = s.split_once(':').ok_or_else(bad)?;
        let len = match algorithm {
            "sha256" => 64,
            "sha512" => 128,
            _ => return Err(bad()),
        };
        let lower_hex = hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if hex.len() != len || !lower_hex {
            return Err(bad());
        }
        Ok(Digest(s.to_string()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A repository on a registry, normalised: `docker.io/library/nginx`, `127.0.0.1:5000/a/b`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    registry: String,
    path: String,
}

impl Repository {
    /// Parses a name without tag or digest, applying Docker's normalisation.
    pub fn parse(name: &str) -> Result<Self, ReferenceError> {
        if name.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest)) if is_registry_segment(first) => (first.to_string(), rest),
            _ => (DOCKER_HUB.to_string(), name),
        };
        validate_registry(&registry)?;
        let registry = canonical_registry(&registry);
        let path = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        validate_path(&path)?;
        Ok(Repository { registry, path })
    }

    /// Builds a repository from an already-normalised registry host and path.
    pub fn new(registry: &str, path: &str) -> Result<Self, ReferenceError> {
        validate_registry(registry)?;
        validate_path(path)?;
        Ok(Repository {
            registry: canonical_registry(registry),
            path: path.to_string(),
        })
    }

    /// A whole registry as a wildcard rule's target (`backup.example.com`): an empty path,
    /// under which each listed repository keeps its own. Never a source or a reference.
    pub fn registry_root(registry: &str) -> Result<Self, ReferenceError> {
        validate_registry(registry)?;
        Ok(Repository {
            registry: canonical_registry(registry),
            path: String::new(),
        })
    }

    /// `relative` below this repository (or, for a registry root, `relative` itself).
    pub fn join(&self, relative: &str) -> Result<Self, ReferenceError> {
        let path = if self.path.is_empty() {
            relative.to_string()
        } else {
            format!("{}/{relative}", self.path)
        };
        Repository::new(&self.registry, &path)
    }

    /// The registry as written in references (`docker.io`, `quay.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path within the registry (`library/nginx`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The last path segment (`nginx` for `docker.io/library/nginx`).
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// This repository with `locator` attached.
    pub fn at(&self, locator: Locator) -> Reference {
        Reference {
            repository: self.clone(),
            locator,
        }
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            return f.write_str(&self.registry);
        }
        write!(f, "{}/{}", self.registry, self.path)
    }
}

/// Docker Hub's historical host names all mean `docker.io`.
pub fn canonical_registry(host: &str) -> String {
    let lower = host.to_ascii_lowercase();
    match lower.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" | "docker.io" => {
            DOCKER_HUB.to_string()
        }
        _ => lower,
    }
}

/// Docker's rule: a first segment is a registry if it has `.` or `:` or is `localhost`.
pub fn is_registry_segment(segment: &str) -> bool {
    segment.contains('.') || segment.contains(':') || segment == "localhost"
}

fn validate_registry(host: &str) -> Result<(), ReferenceError> {
    let bad = || ReferenceError::Registry(host.to_string());
    let (name, port) = match host.strip_prefix('[') {
        // IPv6 literal: [::1]:5000
        Some(rest) => {
            let (ip, after) = rest.split_once(']').ok_or_else(bad)?;
            let ip_ok = !ip.is_empty() && ip.chars().all(|c| c.is_ascii_hexdigit() || c == ':');
            if !ip_ok || !(after.is_empty() || after.starts_with(':')) {
                return Err(bad());
            }
            (None, after.strip_prefix(':'))
        }
        None => match host.rsplit_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        },
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    match name {
        Some(name) if !name.split('.').all(label_ok) => Err(bad()),
        _ => Ok(()),
    }
}

/// Path components: `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`, joined by `/`.
fn validate_path(path: &str) -> Result<(), ReferenceError> {
    let bad = || ReferenceError::Repository(path.to_string());
    if path.is_empty() {
        return Err(bad());
    }
    for component in path.split('/') {
        if !valid_component(component) {
            return Err(bad());
        }
    }
    if path.len() > 255 {
        return Err(ReferenceError::TooLong);
    }
    Ok(())
}

fn valid_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    // Separators between alphanumeric runs: one '.', one '_', two '_', or any number of '-'.
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// Validates a tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
    let bytes = tag.as_bytes();
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let ok = !bytes.is_empty()
        && bytes.len() <= 128
        && word(&bytes[0])
        && bytes.iter().all(|b| word(b) || *b == b'.' || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ReferenceError::Tag(tag.to_string()))
    }
}

/// What in a repository a reference points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Locator {
    Tag(String),
    Digest(Digest),
}

impl Locator {
    /// The string registries accept in `/manifests/<reference>`.
    pub fn as_str(&self) -> &str {
        match self {
            Locator::Tag(t) => t,
            Locator::Digest(d) => d.as_str(),
        }
    }
}

/// A fully qualified image reference: repository plus tag or digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    pub repository: Repository,
    pub locator: Locator,
}

impl Reference {
    /// Parses `name:tag` or `name@digest` (one tag, no lists or regexes; see `rules` for those).
    /// A name without tag or digest means `latest`, as with `docker pull`.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let split = split_reference(s)?;
        let repository = Repository::parse(split.name)?;
        let locator = match split.suffix {
            Suffix::None => Locator::Tag("latest".to_string()),
            Suffix::Tag(t) => {
                validate_tag(t)?;
                Locator::Tag(t.to_string())
            }
            Suffix::Digest(d) => Locator::Digest(d.parse()?),
        };
        Ok(Reference {
            repository,
            locator,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.locator {
            Locator::Tag(t) => write!(f, "{}:{t}", self.repository),
            Locator::Digest(d) => write!(f, "{}@{d}", self.repository),
        }
    }
}

/// A reference string cut into its name and what follows it, before any validation of the
/// suffix. This is where image-syncer went wrong for untagged and regex forms: the tag
/// separator must be found without mistaking `host:port` or a regex's `/` for structure.
#[derive(Debug, PartialEq, Eq)]
pub struct SplitReference<'a> {
    pub name: &'a str,
    pub suffix: Suffix<'a>,
}

/// The raw text after a name: nothing, `:tag-ish` or `@digest`.
#[derive(Debug, PartialEq, Eq)]
pub enum Suffix<'a> {
    None,
    /// Everything after the tag `:` (a tag, a comma list, or `/regex/`).
    Tag(&'a str),
    Digest(&'a str),
}

/// Splits `registry/path:tags` / `registry/path@digest` / `registry/path:/regex/`.
pub fn split_reference(s: &str) -> Result<SplitReference<'_>, ReferenceError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(ReferenceError::Empty);
    }
    // A registry port is always followed by digits, so the first ":/" can only open a regex.
    if let Some(i) = s.find(":/") {
        return Ok(SplitReference {
            name: &s[..i],
            suffix: Suffix::Tag(&s[i + 1..]),
        });
    }
    if let Some(i) = s.find('@') {
        return Ok(SplitReference {
            name: &s[..i],
            suffix: Suffix::Digest(&s[i + 1..]),
        });
    }
    let last_slash = s.rfind('/').map_or(0, |i| i + 1);
    match s[last_slash..].find(':') {
        Some(i) => Ok(SplitReference {
            name: &s[..last_slash + i],
            suffix: Suffix::Tag(&s[last_slash + i + 1..]),
        }),
        None => Ok(SplitReference {
            name: s,
            suffix: Suffix::None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(s: &str) -> String {
        Repository::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(repo("nginx"), "docker.io/library/nginx");
        assert_eq!(repo("bitnami/nginx"), "docker.io/bitnami/nginx");
        assert_eq!(repo("docker.io/nginx"), "docker.io/library/nginx");
        assert_eq!(
            repo("index.docker.io/library/nginx"),
            "docker.io/library/nginx"
        );
        assert_eq!(repo("registry-1.docker.io/a/b"), "docker.io/a/b");
        assert_eq!(repo("quay.io/coreos/etcd"), "quay.io/coreos/etcd");
        assert_eq!(repo("localhost/a"), "localhost/a");
        assert_eq!(repo("localhost:5000/a"), "localhost:5000/a");
        assert_eq!(repo("127.0.0.1:5000/a/b"), "127.0.0.1:5000/a/b");
        assert_eq!(repo("[::1]:5000/a"), "[::1]:5000/a");
        assert_eq!(repo("a/b/c/d"), "docker.io/a/b/c/d");
        assert_eq!(repo("Quay.IO/x"), "quay.io/x");
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "UPPER",
            "a//b",
            "-a",
            "a-",
            "a..b",
            "a___b",
            "quay.io/",
            "host:port/x",
            "a b",
        ] {
            assert!(Repository::parse(bad).is_err(), "{bad} should be rejected");
        }
        assert!(Repository::parse("a__b/c-d/e.f/g---h").is_ok());
        assert_eq!(
            Repository::parse(&"a".repeat(300)),
            Err(ReferenceError::TooLong)
        );
    }

    #[test]
    fn splits_every_form() {
        let split = |s| split_reference(s).unwrap();
        assert_eq!(split("nginx").suffix, Suffix::None);
        assert_eq!(split("127.0.0.1:5000/a/b").name, "127.0.0.1:5000/a/b");
        assert_eq!(split("127.0.0.1:5000/a/b").suffix, Suffix::None);
        assert_eq!(
            split("127.0.0.1:5000/a/b:v1,v2").suffix,
            Suffix::Tag("v1,v2")
        );
        assert_eq!(split("nginx:/^1\\.2[0-9]$/").name, "nginx");
        assert_eq!(
            split("nginx:/^1\\.2[0-9]$/").suffix,
            Suffix::Tag("/^1\\.2[0-9]$/")
        );
        assert_eq!(split("h:5000/a:/x/y:z/").name, "h:5000/a");
        assert_eq!(split("h:5000/a:/x/y:z/").suffix, Suffix::Tag("/x/y:z/"));
        assert_eq!(split("a/b@sha256:00").suffix, Suffix::Digest("sha256:00"));
    }

    #[test]
    fn parses_full_references() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("quay.io/a/b@{d}")).unwrap();
        assert_eq!(r.locator, Locator::Digest(d.parse().unwrap()));
        assert_eq!(
            Reference::parse("nginx").unwrap().to_string(),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(
            Reference::parse("localhost:5000/x:1.0")
                .unwrap()
                .to_string(),
            "localhost:5000/x:1.0"
        );
        assert!(Reference::parse("nginx:.bad").is_err());
        assert!(Reference::parse("nginx@sha256:abc").is_err());
    }

    #[test]
    fn validates_digests_and_tags() {
        assert!(format!("sha256:{}", "0".repeat(64))
            .parse::<Digest>()
            .is_ok());
        assert!(format!("sha512:{}", "f".repeat(128))
            .parse::<Digest>()
            .is_ok());
        assert!(format!("sha256:{}", "A".repeat(64))
            .parse::<Digest>()
            .is_err());
        assert!(format!("md5:{}", "0".repeat(32)).parse::<Digest>().is_err());
        assert!(validate_tag("v1.0_rc-1").is_ok());
        assert!(validate_tag(&"t".repeat(129)).is_err());
        assert!(validate_tag("-x").is_err());
        let d = Digest::sha256(b"");
        assert_eq!(
            d.as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
