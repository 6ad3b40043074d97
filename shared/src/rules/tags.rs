//! The long form's `tags:` filters: `TagFilter` (include, semver, exclude, latest), what it
//! keeps of one tag (`passes`) and of a list (`newest`), and reading it from the images file
//! (`parse_tag_filter`). Semver parsing and ranking is the `semver` crate's, with a leading
//! `v` allowed. Where filters sit in a rule's selection is `rules/mod.rs`'s business.
//!
//! Order: include → semver → exclude → latest. `include`/`exclude` entries are tags or
//! `/regex/` with the short form's syntax and unanchored semantics. Tags that are not semver
//! are dropped by `semver` and not ranked (so not kept) by `latest`. Pre-releases match a
//! range only as the `semver` crate (Cargo's rules) says: `>=1.24, <2` takes no `-rc1`.

use std::cmp::Ordering;

use regex::Regex;
use semver::{Version, VersionReq};
use serde_json::Value;

use super::parse::parse_regex;
use super::RuleProblem;
use crate::reference::validate_tag;

/// One `include`/`exclude` entry.
#[derive(Debug, Clone)]
pub enum TagPattern {
    Exact(String),
    /// Matches anywhere in the tag, like the short form's `repo:/regex/`.
    Regex(Regex),
}

impl TagPattern {
    pub fn matches(&self, tag: &str) -> bool {
        match self {
            TagPattern::Exact(exact) => exact == tag,
            TagPattern::Regex(regex) => regex.is_match(tag),
        }
    }
}

/// Why a rule leaves a tag out, for `ferry plan --explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The source's regex does not match it.
    NotMatched,
    /// No `include` entry matches it.
    NotIncluded,
    /// Not semver, which `semver` and `latest` need.
    NotSemver,
    /// Semver, outside the `semver` range.
    OutsideRange,
    /// An `exclude` entry matches it.
    Excluded,
    /// Passed every filter, but is not among the newest `latest`.
    BeyondLatest,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dropped::NotMatched => "not matched by the source's regex",
            Dropped::NotIncluded => "not included",
            Dropped::NotSemver => "not semver",
            Dropped::OutsideRange => "outside the semver range",
            Dropped::Excluded => "excluded",
            Dropped::BeyondLatest => "beyond latest",
        })
    }
}

/// A rule's `tags:` map; every part optional, an empty filter keeps everything.
#[derive(Debug, Clone, Default)]
pub struct TagFilter {
    /// When set, only tags matching one of these.
    pub include: Option<Vec<TagPattern>>,
    /// When set, only semver tags within the range.
    pub semver: Option<VersionReq>,
    pub exclude: Vec<TagPattern>,
    /// When set, only the newest N semver tags of those passing the rest.
    pub latest: Option<usize>,
}

/// `latest` above this is refused: no repository has that many tags worth ranking.
pub const MAX_LATEST: u64 = 100_000;

impl TagFilter {
    pub fn is_empty(&self) -> bool {
        self.include.is_none()
            && self.semver.is_none()
            && self.exclude.is_empty()
            && self.latest.is_none()
    }

    /// Whether `tag` passes include, semver and exclude (and, when `latest` is set, is semver
    /// at all, since `latest` keeps only ranked tags). Ranking needs the whole list: `newest`.
    pub fn passes(&self, tag: &str) -> bool {
        self.drops(tag).is_none()
    }

    /// Why `tag` does not pass (the first filter, in order, that drops it), if it does not.
    pub fn drops(&self, tag: &str) -> Option<Dropped> {
        if let Some(include) = &self.include {
            if !include.iter().any(|p| p.matches(tag)) {
                return Some(Dropped::NotIncluded);
            }
        }
        if let Some(range) = &self.semver {
            match parse_semver_tag(tag) {
                Some(version) if range.matches(&version) => {}
                Some(_) => return Some(Dropped::OutsideRange),
                None => return Some(Dropped::NotSemver),
            }
        }
        if self.exclude.iter().any(|p| p.matches(tag)) {
            return Some(Dropped::Excluded);
        }
        if self.latest.is_some() && parse_semver_tag(tag).is_none() {
            return Some(Dropped::NotSemver);
        }
        None
    }

    /// Of `candidates` (each already passing), the ones `latest` keeps, in their order: the
    /// newest N by semver precedence; ties (`1.2.3` and `v1.2.3`, or differing only in build
    /// metadata) broken by the tag text so the choice never depends on listing order.
    pub fn newest<T>(&self, candidates: Vec<(T, String)>) -> Vec<(T, String)> {
        let Some(n) = self.latest else {
            return candidates;
        };
        let mut ranked: Vec<(Version, &str)> = candidates
            .iter()
            .filter_map(|(_, tag)| parse_semver_tag(tag).map(|v| (v, tag.as_str())))
            .collect();
        ranked.sort_by(|(va, ta), (vb, tb)| precedence(vb, va).then_with(|| tb.cmp(ta)));
        ranked.dedup_by(|a, b| a.1 == b.1);
        let kept: Vec<String> = ranked.iter().take(n).map(|(_, t)| t.to_string()).collect();
        candidates
            .into_iter()
            .filter(|(_, tag)| kept.contains(tag))
            .collect()
    }
}

/// Semver precedence: build metadata does not count (semver.org §10).
fn precedence(a: &Version, b: &Version) -> Ordering {
    (a.major, a.minor, a.patch)
        .cmp(&(b.major, b.minor, b.patch))
        .then_with(|| a.pre.cmp(&b.pre))
}

/// The tag as semver, a leading `v` allowed; `None` for anything else (`latest`, `1.25`).
pub fn parse_semver_tag(tag: &str) -> Option<Version> {
    Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
}

/// The keys a `tags:` map may have.
const TAG_KEYS: [&str; 4] = ["include", "semver", "exclude", "latest"];

/// Reads a `tags:` value; each problem names the key and the value.
pub(super) fn parse_tag_filter(value: &Value) -> Result<TagFilter, RuleProblem> {
    let map = match value {
        Value::Null => return Ok(TagFilter::default()),
        Value::Object(map) => map,
        other => {
            return Err(bad(
                "tags",
                other,
                "expected a map of include, semver, exclude, latest",
            ))
        }
    };
    let mut filter = TagFilter::default();
    for (key, value) in map {
        match key.as_str() {
            "include" => filter.include = Some(parse_patterns("tags.include", value)?),
            "exclude" => filter.exclude = parse_patterns("tags.exclude", value)?,
            "semver" => filter.semver = Some(parse_range(value)?),
            "latest" => filter.latest = Some(parse_latest(value)?),
            _ => {
                return Err(RuleProblem::UnknownKey {
                    key: format!("tags.{key}"),
                    expected: TAG_KEYS.join(", "),
                })
            }
        }
    }
    Ok(filter)
}

fn parse_patterns(key: &'static str, value: &Value) -> Result<Vec<TagPattern>, RuleProblem> {
    let items = match value {
        Value::Array(items) => items.as_slice(),
        Value::String(_) => std::slice::from_ref(value),
        other => return Err(bad(key, other, "expected a list of tags and /regex/")),
    };
    items
        .iter()
        .map(|item| {
            let Value::String(text) = item else {
                return Err(bad(key, item, "expected a tag or /regex/"));
            };
            let text = text.trim();
            if text.starts_with('/') {
                let regex = parse_regex(text, text)
                    .map_err(|problem| bad(key, item, &problem.to_string()))?;
                return Ok(TagPattern::Regex(regex));
            }
            validate_tag(text).map_err(|e| bad(key, item, &e.to_string()))?;
            Ok(TagPattern::Exact(text.to_string()))
        })
        .collect()
}

fn parse_range(value: &Value) -> Result<VersionReq, RuleProblem> {
    let Value::String(text) = value else {
        return Err(bad(
            "tags.semver",
            value,
            "expected a range such as \">=1.24, <2\"",
        ));
    };
    // The crate reads "" and "*" as "any"; an empty range is a mistake, not "any".
    if text.trim().is_empty() {
        return Err(bad("tags.semver", value, "the range is empty"));
    }
    VersionReq::parse(text).map_err(|e| bad("tags.semver", value, &e.to_string()))
}

fn parse_latest(value: &Value) -> Result<usize, RuleProblem> {
    match value.as_u64() {
        Some(n) if (1..=MAX_LATEST).contains(&n) => {
            usize::try_from(n).map_err(|_| bad("tags.latest", value, "too large"))
        }
        _ => Err(bad(
            "tags.latest",
            value,
            &format!("expected a whole number from 1 to {MAX_LATEST}"),
        )),
    }
}

pub(super) fn bad(key: &str, value: &Value, reason: &str) -> RuleProblem {
    RuleProblem::BadOption {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(yaml: &str) -> TagFilter {
        parse_tag_filter(&serde_yaml::from_str(yaml).unwrap()).unwrap()
    }

    fn problem(yaml: &str) -> String {
        parse_tag_filter(&serde_yaml::from_str(yaml).unwrap())
            .unwrap_err()
            .to_string()
    }

    const SEEDED: [&str; 7] = [
        "1.24.0",
        "1.25.3",
        "1.26.0-rc1",
        "v1.27.1",
        "latest",
        "2.0.0",
        "1.25",
    ];

    fn kept(filter: &TagFilter, tags: &[&str]) -> Vec<String> {
        let passing = tags
            .iter()
            .filter(|t| filter.passes(t))
            .map(|t| ((), t.to_string()))
            .collect();
        filter.newest(passing).into_iter().map(|(_, t)| t).collect()
    }

    #[test]
    fn semver_tags_allow_a_leading_v_and_need_three_parts() {
        assert_eq!(parse_semver_tag("v1.27.1"), Version::parse("1.27.1").ok());
        assert!(parse_semver_tag("1.26.0-rc1").is_some());
        assert!(parse_semver_tag("1.2.3+build.5").is_some());
        for not in ["latest", "1.25", "V1.2.3", "vv1.2.3", "1.2.3.4", "", "v"] {
            assert_eq!(parse_semver_tag(not), None, "{not}");
        }
    }

    #[test]
    fn a_range_drops_non_semver_tags_and_pre_releases() {
        let f = filter("semver: '>=1.24, <2'");
        assert_eq!(kept(&f, &SEEDED), ["1.24.0", "1.25.3", "v1.27.1"]);
        let pre = filter("semver: '>=1.26.0-rc0, <1.27'");
        assert_eq!(kept(&pre, &SEEDED), ["1.26.0-rc1"]);
    }

    #[test]
    fn filters_apply_in_order() {
        let f = filter(
            "include: ['/^v?1\\./', latest]\nsemver: '>=1.25'\nexclude: ['/-rc/']\nlatest: 1",
        );
        // include keeps 1.x and latest; semver drops latest and 1.24.0; exclude drops the rc;
        // latest keeps the newest of 1.25.3 and v1.27.1.
        assert_eq!(kept(&f, &SEEDED), ["v1.27.1"]);
        let only_exclude = filter("exclude: [latest, '/-rc/']");
        assert_eq!(
            kept(&only_exclude, &SEEDED),
            ["1.24.0", "1.25.3", "v1.27.1", "2.0.0", "1.25"]
        );
    }

    #[test]
    fn regex_entries_are_unanchored_like_the_short_form() {
        let f = filter("include: ['/rc/']");
        assert_eq!(kept(&f, &SEEDED), ["1.26.0-rc1"]);
        let exact = filter("include: ['1.25']");
        assert_eq!(kept(&exact, &SEEDED), ["1.25"]);
    }

    #[test]
    fn latest_ranks_by_precedence_and_ignores_other_tags() {
        let f = filter("latest: 3");
        assert_eq!(kept(&f, &SEEDED), ["1.26.0-rc1", "v1.27.1", "2.0.0"]);
        // Pre-releases rank below their release, build metadata does not count, ties are
        // broken by the text whatever the listing order.
        let two = filter("latest: 2");
        assert_eq!(
            kept(&two, &["1.0.0", "1.0.0-rc.1", "1.0.0-rc.2"]),
            ["1.0.0", "1.0.0-rc.2"]
        );
        let one = filter("latest: 1");
        assert_eq!(kept(&one, &["1.0.0+b", "v1.0.0", "1.0.0+a"]), ["v1.0.0"]);
        assert_eq!(kept(&one, &["1.0.0+a", "1.0.0+b", "v1.0.0"]), ["v1.0.0"]);
        assert_eq!(kept(&filter("latest: 10"), &["x", "1.0.0"]), ["1.0.0"]);
    }

    #[test]
    fn bad_values_name_key_and_value() {
        for (yaml, needle) in [
            ("latest: 0", "tags.latest: 0"),
            ("latest: -1", "tags.latest: -1"),
            ("latest: five", "tags.latest: \"five\""),
            ("latest: 1.5", "tags.latest: 1.5"),
            ("latest: 100001", "tags.latest: 100001"),
            ("semver: '>=banana'", "tags.semver: \">=banana\""),
            ("semver: ''", "tags.semver: \"\""),
            ("semver: 3", "tags.semver: 3"),
            ("include: ['/(/']", "tags.include: \"/(/\""),
            ("exclude: ['a b']", "tags.exclude: \"a b\""),
            ("exclude: [3]", "tags.exclude: 3"),
            ("newest: 3", "tags.newest"),
        ] {
            let message = problem(yaml);
            assert!(message.contains(needle), "{yaml}: {message}");
        }
        assert!(problem("[1]").contains("tags: [1]"));
    }
}
