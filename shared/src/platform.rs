//! Platforms and the `--os`/`--arch` filter: `Platform` (what an index entry or image config
//! says it runs on) and `PlatformFilter`, parsed once where the flags, a job or the
//! environment come in, and carried parsed from there on. Applying the filter to manifests
//! is `copy`'s business.

use thiserror::Error;

use crate::error::{HasKind, Kind};

/// An `--os`/`--arch` entry that is not `name` or `name:detail` of `[A-Za-z0-9._-]`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {flag} entry {entry:?}")]
pub struct PlatformError {
    pub flag: &'static str,
    pub entry: String,
}

impl HasKind for PlatformError {
    fn kind(&self) -> Kind {
        Kind::BadInput
    }
}

/// `--os` / `--arch`: entries `os` or `os:osversion`, `arch` or `arch:variant`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformFilter {
    os: Vec<(String, Option<String>)>,
    arch: Vec<(String, Option<String>)>,
}

impl PlatformFilter {
    /// Parses repeatable, comma-separated flag values.
    pub fn parse(os: &[String], arch: &[String]) -> Result<Self, PlatformError> {
        Ok(PlatformFilter {
            os: parse_platform_entries("--os", os)?,
            arch: parse_platform_entries("--arch", arch)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.os.is_empty() && self.arch.is_empty()
    }

    /// The `--os` entries, one each, as `parse` reads them back (a job carries these).
    pub fn os_entries(&self) -> Vec<String> {
        entries(&self.os)
    }

    /// The `--arch` entries, one each, as `parse` reads them back.
    pub fn arch_entries(&self) -> Vec<String> {
        entries(&self.arch)
    }

    /// Whether a platform passes the filter; unknown fields pass only an empty filter side.
    pub fn matches(&self, platform: &Platform) -> bool {
        let side = |entries: &[(String, Option<String>)], name: &str, detail: &Option<String>| {
            entries.is_empty()
                || entries
                    .iter()
                    .any(|(n, d)| n == name && (d.is_none() || d == detail))
        };
        side(&self.os, &platform.os, &platform.os_version)
            && side(&self.arch, &platform.architecture, &platform.variant)
    }
}

fn parse_platform_entries(
    flag: &'static str,
    values: &[String],
) -> Result<Vec<(String, Option<String>)>, PlatformError> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    let mut entries = Vec::new();
    for entry in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
        let (name, detail) = match entry.split_once(':') {
            Some((n, d)) => (n, Some(d)),
            None => (entry, None),
        };
        if !valid(name) || detail.is_some_and(|d| !valid(d)) {
            return Err(PlatformError {
                flag,
                entry: entry.to_string(),
            });
        }
        entries.push((name.to_string(), detail.map(str::to_string)));
    }
    Ok(entries)
}

fn entries(parsed: &[(String, Option<String>)]) -> Vec<String> {
    parsed
        .iter()
        .map(|(name, detail)| match detail {
            Some(detail) => format!("{name}:{detail}"),
            None => name.clone(),
        })
        .collect()
}

/// An image's platform, from an index entry or its config (read in `crate::manifest`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub os_version: Option<String>,
    pub architecture: String,
    pub variant: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_filters() {
        let f = PlatformFilter::parse(&["linux".into()], &["amd64,arm64:v8".into()]).unwrap();
        let p = |os: &str, arch: &str, variant: Option<&str>| Platform {
            os: os.into(),
            os_version: None,
            architecture: arch.into(),
            variant: variant.map(Into::into),
        };
        assert!(f.matches(&p("linux", "amd64", None)));
        assert!(f.matches(&p("linux", "arm64", Some("v8"))));
        assert!(!f.matches(&p("linux", "arm64", Some("v7"))));
        assert!(!f.matches(&p("windows", "amd64", None)));
        assert!(PlatformFilter::parse(&["linux:".into()], &[]).is_err());
        assert!(PlatformFilter::parse(&[], &["a b".into()]).is_err());
        assert!(PlatformFilter::default().is_empty());
        let win = PlatformFilter::parse(&["windows:10.0.17763".into()], &[]).unwrap();
        let mut w = p("windows", "amd64", None);
        assert!(!win.matches(&w));
        w.os_version = Some("10.0.17763".into());
        assert!(win.matches(&w));
        assert_eq!(f.arch_entries(), ["amd64", "arm64:v8"]);
        assert_eq!(
            PlatformFilter::parse(&f.os_entries(), &f.arch_entries()).unwrap(),
            f
        );
    }
}
