//! Immutable tags: tags the user declares never re-pushed (release tags such as `v1.2.3`),
//! from `--immutable-tags REGEX` (`FERRY_IMMUTABLE_TAGS`) for every rule, or a long-form
//! rule's `immutable: /regex/` for that rule's copies. A copy of an immutable tag that a
//! target already has is done without asking either registry about the tag; what the target
//! has is learnt from one `tags/list` per target repository (the copier's). The pattern is
//! matched, unanchored like the images file's regexes, against the source tag; surrounding
//! slashes are accepted and ignored (`/^v\d/` and `^v\d` are the same).
//!
//! The trade-off is the user's to take: a tag re-pushed at the source after it was copied is
//! not noticed (`--force` copies it again).

use std::sync::Arc;

use regex::Regex;
use serde_json::Value;

use super::parse::RuleProblem;
use super::tags::bad;
use super::{Rule, Selector};
use crate::reference::{Locator, Reference};

/// The long form's key.
pub(super) const KEY: &str = "immutable";

/// Compiled patterns are bounded like the images file's: a pattern is a short line.
const MAX_PATTERN_LEN: usize = 1024;

/// Reads an immutable-tags pattern: `/regex/` or `regex`, unanchored.
pub fn parse_immutable_pattern(text: &str) -> Result<Regex, String> {
    let text = text.trim();
    let inner = match text.strip_prefix('/').and_then(|t| t.strip_suffix('/')) {
        Some(inner) => inner,
        None => text,
    };
    if inner.is_empty() {
        return Err("empty regex".into());
    }
    if inner.len() > MAX_PATTERN_LEN {
        return Err(format!("a regex longer than {MAX_PATTERN_LEN} characters"));
    }
    Regex::new(inner).map_err(|e| e.to_string())
}

/// A long-form rule's `immutable:` (absent: `None`). A digest source selects no tag, so it
/// has nothing to declare immutable.
pub(super) fn immutable_of(
    value: &Value,
    selector: &Selector,
) -> Result<Option<Regex>, RuleProblem> {
    let Some(pattern) = value.as_object().and_then(|map| map.get(KEY)) else {
        return Ok(None);
    };
    let Some(text) = pattern.as_str() else {
        return Err(bad(KEY, pattern, "expected a regex such as /^v\\d/"));
    };
    if matches!(selector, Selector::Digest(_)) {
        return Err(bad(KEY, pattern, "a digest source selects no tags"));
    }
    parse_immutable_pattern(text)
        .map(Some)
        .map_err(|reason| bad(KEY, pattern, &reason))
}

/// Which copies are of immutable tags: the run's pattern, and the rules that declare one.
#[derive(Debug, Clone, Default)]
pub struct ImmutableTags {
    everywhere: Option<Regex>,
    /// Only the rules with an `immutable:` pattern.
    rules: Arc<[Rule]>,
}

impl ImmutableTags {
    /// `everywhere` (the flag's pattern) and the `immutable:` patterns of `rules`.
    pub fn new(everywhere: Option<Regex>, rules: &[Rule]) -> Self {
        ImmutableTags {
            everywhere,
            rules: rules
                .iter()
                .filter(|rule| rule.immutable.is_some())
                .cloned()
                .collect(),
        }
    }

    /// Whether no tag is immutable.
    pub fn is_empty(&self) -> bool {
        self.everywhere.is_none() && self.rules.is_empty()
    }

    /// Whether the copy of `source` to `target` is of an immutable tag: both are tags, and
    /// the source tag matches the run's pattern, or the pattern of a rule that makes this
    /// very copy.
    pub fn covers(&self, source: &Reference, target: &Reference) -> bool {
        let (Locator::Tag(tag), Locator::Tag(_)) = (&source.locator, &target.locator) else {
            return false;
        };
        if self.everywhere.as_ref().is_some_and(|r| r.is_match(tag)) {
            return true;
        }
        // A wildcard rule makes the copy through the rule it gives for the source repository.
        self.rules.iter().any(|rule| {
            rule.immutable.as_ref().is_some_and(|r| r.is_match(tag))
                && rule.concrete(&source.repository).is_some_and(|rule| {
                    rule.select(tag).into_iter().any(|position| {
                        rule.targets_for(position, &source.locator).contains(target)
                    })
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> Result<Vec<Rule>, String> {
        crate::rules::rules_from_yaml(yaml).map_err(|e| e.to_string())
    }

    fn r(text: &str) -> Reference {
        Reference::parse(text).unwrap()
    }

    #[test]
    fn slashes_are_optional_and_matching_is_unanchored() {
        for text in ["/^v\\d/", "^v\\d", " /^v\\d/ "] {
            let pattern = parse_immutable_pattern(text).unwrap();
            assert!(
                pattern.is_match("v1.2.3") && !pattern.is_match("latest"),
                "{text}"
            );
        }
        assert!(parse_immutable_pattern("rc").unwrap().is_match("1.0-rc1"));
        for bad in ["", "//", "/(/", &"a".repeat(2000)] {
            assert!(parse_immutable_pattern(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_flag_covers_every_copy_of_a_matching_tag() {
        let tags = ImmutableTags::new(Some(parse_immutable_pattern("^v").unwrap()), &[]);
        assert!(tags.covers(&r("a.io/x:v1"), &r("b.io/x:v1")));
        assert!(!tags.covers(&r("a.io/x:latest"), &r("b.io/x:latest")));
        let digest = format!("a.io/x@sha256:{}", "0".repeat(64));
        assert!(!tags.covers(&r(&digest), &r("b.io/x:v1")));
        assert!(ImmutableTags::default().is_empty());
    }

    #[test]
    fn a_rule_covers_only_its_own_copies() {
        let configured =
            rules("a.io/x:\n  to: [b.io/x, c.io/x]\n  immutable: /^v/\na.io/x:v1: d.io/x\n")
                .unwrap();
        let tags = ImmutableTags::new(None, &configured);
        assert!(!tags.is_empty());
        assert!(tags.covers(&r("a.io/x:v1"), &r("b.io/x:v1")));
        assert!(tags.covers(&r("a.io/x:v1"), &r("c.io/x:v1")));
        // The other rule's target, and a tag the pattern does not match.
        assert!(!tags.covers(&r("a.io/x:v1"), &r("d.io/x:v1")));
        assert!(!tags.covers(&r("a.io/x:latest"), &r("b.io/x:latest")));
        assert!(!tags.covers(&r("z.io/x:v1"), &r("b.io/x:v1")));
    }

    #[test]
    fn bad_immutable_values_are_named() {
        let digest = format!(
            "a/b@sha256:{}: {{to: x.io/c, immutable: /v/}}",
            "0".repeat(64)
        );
        for (yaml, needle) in [
            ("a/b: {to: x.io/c, immutable: '/(/'}", "immutable: \"/(/\""),
            ("a/b: {to: x.io/c, immutable: 3}", "immutable: 3"),
            ("a/b: {to: x.io/c, immutable: ''}", "empty regex"),
            (digest.as_str(), "a digest source selects no tags"),
        ] {
            let error = rules(yaml).unwrap_err();
            assert!(error.contains(needle), "{yaml}: {error}");
        }
        assert!(rules("a/b: {to: x.io/c}").unwrap()[0].immutable.is_none());
    }
}
