//! Reading an images file into validated rules: the file's shape, each rule's source and
//! target forms, tag counts and digests that must agree, defaults for empty targets and
//! `$VAR` expansion. Every problem names the file, the rule and the value. What a rule is
//! and selects is `rules/mod.rs`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde_json::Value;
use thiserror::Error;

use super::collisions::{static_collisions, TargetCollision};
use super::immutable::immutable_of;
use super::tags::{bad, parse_tag_filter, TagFilter};
use super::{Defaults, Naming, Rule, Selector, Target, Wildcard};
use crate::env::Env;
use crate::error::{HasKind, Kind};
use crate::files::FileError;
use crate::image::RuleOptions;
use crate::platform::PlatformFilter;
use crate::reference::{
    canonical_registry, is_registry_segment, split_reference, validate_tag, Digest, ReferenceError,
    Repository, Suffix,
};

/// Why an images file or one of its rules is unusable.
#[derive(Debug, Error)]
pub enum RulesError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{}: expected a map of source → target(s), found {found}", file.display())]
    NotAMap { file: PathBuf, found: &'static str },
    #[error("{}: rule {rule:?}: {problem}", file.display())]
    Rule {
        file: PathBuf,
        rule: String,
        problem: RuleProblem,
    },
    /// Two rules write different sources to one target tag (the message names both).
    #[error(transparent)]
    Collision(#[from] Box<TargetCollision>),
}

impl HasKind for RulesError {
    fn kind(&self) -> Kind {
        match self {
            RulesError::File(error) => error.kind(),
            _ => Kind::BadInput,
        }
    }
}

/// What is wrong with one rule; each variant names the offending value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleProblem {
    #[error("the source is empty")]
    EmptySource,
    #[error("invalid source {value:?}: {reason}")]
    InvalidSource {
        value: String,
        reason: ReferenceError,
    },
    #[error("invalid target {value:?}: {reason}")]
    InvalidTarget {
        value: String,
        reason: ReferenceError,
    },
    #[error("target {value:?} must be a string or an array of strings")]
    TargetType { value: String },
    #[error("invalid regex {value:?}: {message}")]
    BadRegex { value: String, message: String },
    #[error("{value:?}: only one regex is allowed, and it must be the whole tag part")]
    MultipleRegex { value: String },
    #[error("{value:?}: a source may name at most one digest")]
    TwoDigests { value: String },
    #[error("{value:?}: a reference cannot have both a tag and a digest")]
    TagAndDigest { value: String },
    #[error("target {target:?} has {target_count} tag(s) but the source has {source_count}")]
    TagCountMismatch {
        target: String,
        source_count: usize,
        target_count: usize,
    },
    #[error("target {target:?} names tags, but the source selects {selection}; its tags are kept")]
    TagsForUnknownCount {
        target: String,
        selection: &'static str,
    },
    #[error("target {target:?} has a digest, which needs a source digest")]
    DigestWithoutSourceDigest { target: String },
    #[error("target digest {target} differs from the source digest {source_digest}")]
    DigestConflict {
        target: String,
        source_digest: String,
    },
    #[error("target {target:?} is a regex; regexes select source tags only")]
    RegexTarget { target: String },
    #[error("the target is empty and no default {what} is set (--{what} or DEFAULT_{upper})", upper = what.to_uppercase())]
    MissingDefault { what: &'static str },
    #[error("target {target:?} uses ${variable}, which is not set")]
    UndefinedVariable { target: String, variable: String },
    #[error("unknown key {key:?} (expected one of {expected})")]
    UnknownKey { key: String, expected: String },
    #[error("{key}: {value}: {reason}")]
    BadOption {
        key: String,
        value: String,
        reason: String,
    },
    #[error("the long form needs a non-empty `to` (a target or a list of targets)")]
    EmptyTo,
    #[error("wildcard {value:?}: {reason}")]
    BadWildcard { value: String, reason: &'static str },
    #[error("tags.{key}: a digest source selects no tags")]
    TagsWithDigest { key: &'static str },
}

/// Validates an images map read from `file` (an images file, or the legacy config's `images`
/// key); `file` names it in messages and in each rule.
pub fn rules_from_value(
    file: &Path,
    value: &Value,
    defaults: &Defaults,
    env: &dyn Env,
) -> Result<Vec<Rule>, RulesError> {
    let map = match value {
        Value::Object(map) => map,
        Value::Null => return Ok(Vec::new()),
        other => {
            return Err(RulesError::NotAMap {
                file: file.to_path_buf(),
                found: kind_of(other),
            })
        }
    };
    let rules = map
        .iter()
        .map(|(text, value)| {
            let in_rule = |problem| RulesError::Rule {
                file: file.to_path_buf(),
                rule: text.clone(),
                problem,
            };
            let parsed = parse_rule(text, value, defaults, env).map_err(in_rule)?;
            let immutable = immutable_of(value, &parsed.selector).map_err(in_rule)?;
            Ok(Rule {
                file: file.to_path_buf(),
                text: text.clone(),
                source: parsed.source,
                selector: parsed.selector,
                targets: parsed.targets,
                tags: parsed.tags,
                options: parsed.options,
                long_form: parsed.long_form,
                immutable,
                wildcard: parsed.wildcard,
            })
        })
        .collect::<Result<Vec<Rule>, RulesError>>()?;
    static_collisions(&rules)?;
    Ok(rules)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a map",
    }
}

struct ParsedRule {
    source: Repository,
    selector: Selector,
    targets: Vec<Target>,
    tags: TagFilter,
    options: RuleOptions,
    long_form: serde_json::Map<String, Value>,
    wildcard: Option<Wildcard>,
}

/// The keys a long-form rule may have.
const RULE_KEYS: [&str; 6] = [
    "to",
    "tags",
    "platforms",
    "force",
    "referrers",
    super::immutable::KEY,
];

fn parse_rule(
    source: &str,
    value: &Value,
    defaults: &Defaults,
    env: &dyn Env,
) -> Result<ParsedRule, RuleProblem> {
    let wildcard = if source.trim().contains('*') {
        Some(parse_wildcard(source.trim())?.1)
    } else {
        None
    };
    let (repository, selector) = parse_source(source)?;
    let long = match value {
        Value::Object(map) => parse_long_form(map, &selector)?,
        short => LongForm {
            targets: target_strings(short)?,
            tags: TagFilter::default(),
            options: RuleOptions::default(),
            written: serde_json::Map::new(),
        },
    };
    let LongForm {
        targets,
        tags,
        options,
        written,
    } = long;
    let mut parsed = Vec::new();
    for text in targets {
        let target = match &wildcard {
            Some(_) => parse_wildcard_target(&text, env)?,
            None => parse_target(&text, &repository, &selector, defaults, env)?,
        };
        if !parsed.contains(&target) {
            parsed.push(target);
        }
    }
    Ok(ParsedRule {
        source: repository,
        selector,
        targets: parsed,
        tags,
        options,
        long_form: written,
        wildcard,
    })
}

/// A long-form rule's parts: its targets (as written), filters, options, and its keys but
/// `to` as written, so the rule can be written again (a plan job carries it whole).
struct LongForm {
    targets: Vec<String>,
    tags: TagFilter,
    options: RuleOptions,
    written: serde_json::Map<String, Value>,
}

/// The long form: `{to, tags, platforms, force, referrers, immutable}`. `to` takes exactly the short forms but must
/// not be empty: a map that forgot its `to` must not push to the defaults.
fn parse_long_form(
    map: &serde_json::Map<String, Value>,
    selector: &Selector,
) -> Result<LongForm, RuleProblem> {
    if let Some(key) = map.keys().find(|k| !RULE_KEYS.contains(&k.as_str())) {
        return Err(RuleProblem::UnknownKey {
            key: key.clone(),
            expected: RULE_KEYS.join(", "),
        });
    }
    let targets = match map.get("to") {
        None => return Err(RuleProblem::EmptyTo),
        Some(to) => target_strings(to)?,
    };
    if targets.iter().any(String::is_empty) {
        return Err(RuleProblem::EmptyTo);
    }
    let tags = map
        .get("tags")
        .map(parse_tag_filter)
        .transpose()?
        .unwrap_or_default();
    if matches!(selector, Selector::Digest(_)) {
        let key = if tags.include.is_some() {
            Some("include")
        } else if tags.semver.is_some() {
            Some("semver")
        } else if !tags.exclude.is_empty() {
            Some("exclude")
        } else if tags.latest.is_some() {
            Some("latest")
        } else {
            None
        };
        if let Some(key) = key {
            return Err(RuleProblem::TagsWithDigest { key });
        }
    }
    let options = RuleOptions {
        platforms: map.get("platforms").map(parse_platforms).transpose()?,
        force: match map.get("force") {
            None => None,
            Some(Value::Bool(force)) => Some(*force),
            Some(other) => return Err(bad("force", other, "expected true or false")),
        },
        referrers: match map.get("referrers") {
            None => None,
            Some(Value::Bool(referrers)) => Some(*referrers),
            Some(other) => return Err(bad("referrers", other, "expected true or false")),
        },
    };
    let mut written = map.clone();
    written.remove("to");
    Ok(LongForm {
        targets,
        tags,
        options,
        written,
    })
}

/// `platforms:` as the `--os`/`--arch` filter it means. The filter takes every os with
/// every arch, so the list must be exactly such a product (`[linux/amd64, linux/arm64/v8]`,
/// not `[linux/amd64, windows/arm64]`, which would also take windows/amd64).
fn parse_platforms(value: &Value) -> Result<PlatformFilter, RuleProblem> {
    check_platforms(value)?;
    let listed: BTreeSet<(String, String)> = value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|text| {
            let (os, arch) = text.split_once('/')?;
            Some((os.to_string(), arch.replacen('/', ":", 1)))
        })
        .collect();
    if listed.is_empty() {
        return Err(bad("platforms", value, "expected at least one os/arch"));
    }
    let os: BTreeSet<&String> = listed.iter().map(|(os, _)| os).collect();
    let arch: BTreeSet<&String> = listed.iter().map(|(_, arch)| arch).collect();
    if os.len() * arch.len() != listed.len() {
        return Err(bad(
            "platforms",
            value,
            "every os must come with every arch listed (ferry filters by os and by arch)",
        ));
    }
    let strings = |set: BTreeSet<&String>| set.into_iter().cloned().collect::<Vec<String>>();
    PlatformFilter::parse(&strings(os), &strings(arch))
        .map_err(|error| bad("platforms", value, &error.to_string()))
}

/// `platforms:` entries are `os/arch` or `os/arch/variant` of `[A-Za-z0-9._-]`.
fn check_platforms(value: &Value) -> Result<(), RuleProblem> {
    let Value::Array(items) = value else {
        return Err(bad(
            "platforms",
            value,
            "expected a list such as [linux/amd64]",
        ));
    };
    for item in items {
        let well_formed = item.as_str().is_some_and(|text| {
            let parts: Vec<&str> = text.split('/').collect();
            (2..=3).contains(&parts.len())
                && parts.iter().all(|p| {
                    !p.is_empty()
                        && p.chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                })
        });
        if !well_formed {
            return Err(bad(
                "platforms",
                item,
                "expected os/arch or os/arch/variant",
            ));
        }
    }
    Ok(())
}

/// The target value as a list of strings; null and "" both mean "empty target".
fn target_strings(value: &Value) -> Result<Vec<String>, RuleProblem> {
    let one = |v: &Value| match v {
        Value::String(s) => Ok(s.trim().to_string()),
        Value::Null => Ok(String::new()),
        other => Err(RuleProblem::TargetType {
            value: other.to_string(),
        }),
    };
    match value {
        Value::Array(items) if items.is_empty() => Ok(vec![String::new()]),
        Value::Array(items) => items.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

/// Parses a source: `repo`, `repo:t1,t2`, `repo@digest` or `repo:/regex/`.
pub fn parse_source(text: &str) -> Result<(Repository, Selector), RuleProblem> {
    let text = text.trim();
    if text.is_empty() {
        return Err(RuleProblem::EmptySource);
    }
    if text.contains('*') {
        return parse_wildcard(text).map(|(repository, _)| (repository, Selector::All));
    }
    let invalid = |reason| RuleProblem::InvalidSource {
        value: text.to_string(),
        reason,
    };
    let split = split_reference(text).map_err(invalid)?;
    let selector = match split.suffix {
        Suffix::None => Selector::All,
        Suffix::Digest(d) => Selector::Digest(parse_single_digest(text, d)?),
        Suffix::Tag(t) if t.starts_with('/') => Selector::Regex(parse_regex(text, t)?),
        Suffix::Tag(t) => Selector::Tags(parse_tag_list(t).map_err(invalid)?),
    };
    let repository = Repository::parse(split.name).map_err(invalid)?;
    if matches!(selector, Selector::Tags(ref tags) if tags.iter().any(|t| t.starts_with('/'))) {
        return Err(RuleProblem::MultipleRegex {
            value: text.to_string(),
        });
    }
    Ok((repository, selector))
}

fn parse_single_digest(text: &str, digest: &str) -> Result<Digest, RuleProblem> {
    if digest.contains('@') || digest.contains(',') {
        return Err(RuleProblem::TwoDigests {
            value: text.to_string(),
        });
    }
    let name = &text[..text.len() - digest.len() - 1];
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    if last_segment.contains(':') {
        return Err(RuleProblem::TagAndDigest {
            value: text.to_string(),
        });
    }
    digest.parse().map_err(|reason| RuleProblem::InvalidSource {
        value: text.to_string(),
        reason,
    })
}

/// A source holding `*`: only a last segment of `*` (direct children) or `**` (any depth) is
/// a wildcard, never on Docker Hub (no catalogue), and never with a tag or digest (a `tags:`
/// map filters instead). The rule's `source` is the prefix (or the registry root).
fn parse_wildcard(text: &str) -> Result<(Repository, Wildcard), RuleProblem> {
    let bad = |reason| RuleProblem::BadWildcard {
        value: text.to_string(),
        reason,
    };
    let (base, any_depth) = match (text.strip_suffix("/**"), text.strip_suffix("/*")) {
        (Some(base), _) if !base.contains('*') => (base, true),
        (None, Some(base)) if !base.contains('*') => (base, false),
        _ => {
            return Err(bad(
                "a wildcard must be the whole last segment, `/*` or `/**`",
            ))
        }
    };
    let (first, prefix) = base.split_once('/').unwrap_or((base, ""));
    if !is_registry_segment(first) || canonical_registry(first) == canonical_registry("docker.io") {
        return Err(bad(
            "Docker Hub (docker.io) has no repository catalogue to list; name its repositories",
        ));
    }
    if base.contains('@') || prefix.contains(':') {
        return Err(bad(
            "a wildcard source takes no tag or digest; use a `tags:` map",
        ));
    }
    let invalid = |reason| RuleProblem::InvalidSource {
        value: text.to_string(),
        reason,
    };
    let repository = if prefix.is_empty() {
        Repository::registry_root(first).map_err(invalid)?
    } else {
        Repository::new(first, prefix).map_err(invalid)?
    };
    let wildcard = Wildcard {
        prefix: prefix.to_string(),
        any_depth,
    };
    Ok((repository, wildcard))
}

/// `/…/` → a regex. `/a/,/b/` is two regexes, which image-syncer does not support either.
/// The long form's `include`/`exclude` entries are read here too, so both mean the same.
pub(super) fn parse_regex(text: &str, tag_part: &str) -> Result<Regex, RuleProblem> {
    let bad = |message: &str| RuleProblem::BadRegex {
        value: tag_part.to_string(),
        message: message.to_string(),
    };
    let inner = tag_part
        .strip_prefix('/')
        .and_then(|r| r.strip_suffix('/'))
        .ok_or_else(|| bad("a regex must be written /…/"))?;
    if inner.contains("/,/") {
        return Err(RuleProblem::MultipleRegex {
            value: text.to_string(),
        });
    }
    if inner.is_empty() {
        return Err(bad("empty regex"));
    }
    Regex::new(inner).map_err(|e| bad(&e.to_string()))
}

fn parse_tag_list(tags: &str) -> Result<Vec<String>, ReferenceError> {
    tags.split(',')
        .map(|t| {
            let t = t.trim();
            validate_tag(t).map(|()| t.to_string())
        })
        .collect()
}

/// A wildcard rule's target: a repository or a whole registry, under which each listed
/// repository keeps its path below the wildcard; no tags, no digest, no default.
fn parse_wildcard_target(raw: &str, env: &dyn Env) -> Result<Target, RuleProblem> {
    let text = expand_variables(raw, env)?;
    let bad = |reason| RuleProblem::BadWildcard {
        value: text.clone(),
        reason,
    };
    if text.is_empty() {
        return Err(bad("a wildcard rule needs a target registry or repository"));
    }
    if text.contains('*') {
        return Err(bad("a target cannot be a wildcard; a wildcard source keeps each repository's path under its target"));
    }
    let invalid = |reason| RuleProblem::InvalidTarget {
        value: text.clone(),
        reason,
    };
    let repository = if !text.contains('/') && is_registry_segment(&text) {
        Repository::registry_root(&text).map_err(invalid)?
    } else {
        let split = split_reference(&text).map_err(invalid)?;
        if !matches!(split.suffix, Suffix::None) {
            return Err(bad("a wildcard rule's target names no tag or digest"));
        }
        Repository::parse(split.name).map_err(invalid)?
    };
    Ok(Target {
        repository,
        naming: Naming::Keep,
    })
}

fn parse_target(
    raw: &str,
    source: &Repository,
    selector: &Selector,
    defaults: &Defaults,
    env: &dyn Env,
) -> Result<Target, RuleProblem> {
    if raw.is_empty() {
        return default_target(source, defaults);
    }
    let text = expand_variables(raw, env)?;
    if text.contains('*') {
        return Err(RuleProblem::BadWildcard {
            value: text,
            reason: "a target cannot be a wildcard; a wildcard source keeps each repository's path under its target",
        });
    }
    let invalid = |reason| RuleProblem::InvalidTarget {
        value: text.clone(),
        reason,
    };
    let split = split_reference(&text).map_err(invalid)?;
    let naming = match split.suffix {
        Suffix::None => Naming::Keep,
        Suffix::Tag(t) if t.starts_with('/') => {
            return Err(RuleProblem::RegexTarget {
                target: text.clone(),
            })
        }
        Suffix::Tag(t) => Naming::Tags(parse_tag_list(t).map_err(invalid)?),
        Suffix::Digest(d) => Naming::Digest(d.parse().map_err(invalid)?),
    };
    let repository = Repository::parse(split.name).map_err(invalid)?;
    check_naming(&text, &naming, selector)?;
    Ok(Target { repository, naming })
}

/// A target's tags or digest must fit what the source selects.
fn check_naming(target: &str, naming: &Naming, selector: &Selector) -> Result<(), RuleProblem> {
    let target = target.to_string();
    match (naming, selector) {
        (Naming::Keep, _) => Ok(()),
        (Naming::Tags(_), Selector::All) => Err(RuleProblem::TagsForUnknownCount {
            target,
            selection: "every tag",
        }),
        (Naming::Tags(_), Selector::Regex(_)) => Err(RuleProblem::TagsForUnknownCount {
            target,
            selection: "tags by regex",
        }),
        (Naming::Tags(t), Selector::Tags(s)) if t.len() != s.len() => {
            Err(RuleProblem::TagCountMismatch {
                target,
                source_count: s.len(),
                target_count: t.len(),
            })
        }
        (Naming::Tags(t), Selector::Digest(_)) if t.len() != 1 => {
            Err(RuleProblem::TagCountMismatch {
                target,
                source_count: 1,
                target_count: t.len(),
            })
        }
        (Naming::Tags(_), _) => Ok(()),
        (Naming::Digest(d), Selector::Digest(s)) if d != s => Err(RuleProblem::DigestConflict {
            target: d.to_string(),
            source_digest: s.to_string(),
        }),
        (Naming::Digest(_), Selector::Digest(_)) => Ok(()),
        (Naming::Digest(_), _) => Err(RuleProblem::DigestWithoutSourceDigest { target }),
    }
}

/// An empty target: `<registry>/<namespace>/<the source path below its first segment>`, as
/// image-syncer v1.0–v1.4 (`client.go`) names it: `src/knative-releases/github.com/x/app`
/// goes to `D/ns/github.com/x/app`. A one-segment path is kept whole. Keeping the rest of
/// the path, not only the last segment, keeps `gcr.io/a/x/app` and `gcr.io/a/y/app` apart.
fn default_target(source: &Repository, defaults: &Defaults) -> Result<Target, RuleProblem> {
    let registry = defaults
        .registry
        .as_deref()
        .ok_or(RuleProblem::MissingDefault { what: "registry" })?;
    let namespace = defaults
        .namespace
        .as_deref()
        .ok_or(RuleProblem::MissingDefault { what: "namespace" })?;
    let below = below_first_namespace(source.path());
    let text = format!("{registry}/{namespace}/{below}");
    let repository =
        Repository::new(registry, &format!("{namespace}/{below}")).map_err(|reason| {
            RuleProblem::InvalidTarget {
                value: text,
                reason,
            }
        })?;
    Ok(Target {
        repository,
        naming: Naming::Keep,
    })
}

/// A repository path without its first segment (the namespace), or the path itself when it
/// has a single segment.
fn below_first_namespace(path: &str) -> &str {
    path.split_once('/').map_or(path, |(_, rest)| rest)
}

/// Expands `$NAME` and `${NAME}`; an unset variable is an error, not an empty string,
/// because an empty piece silently changes where images are pushed.
pub fn expand_variables(text: &str, env: &dyn Env) -> Result<String, RuleProblem> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, consumed) = match after.strip_prefix('{') {
            Some(braced) => match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            },
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        if !is_variable_name(name) {
            out.push('$');
            rest = after;
            continue;
        }
        let value = env
            .var(name)
            .ok_or_else(|| RuleProblem::UndefinedVariable {
                target: text.to_string(),
                variable: name.to_string(),
            })?;
        out.push_str(&value);
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `[A-Za-z_][A-Za-z0-9_]*`
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::MapEnv;
    use crate::reference::Locator;

    const D1: &str = "sha256:14b267eb38aa85fd12d0e168fffa2d8a6187ac53a14a0212b0d4fce8d729598c";
    const D2: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    fn rules(yaml: &str, defaults: &Defaults, env: &MapEnv) -> Result<Vec<Rule>, RulesError> {
        let value: Value = serde_yaml::from_str(yaml).unwrap();
        rules_from_value(Path::new("images.yaml"), &value, defaults, env)
    }

    fn one(yaml: &str) -> Rule {
        rules(yaml, &Defaults::default(), &MapEnv::default())
            .unwrap()
            .remove(0)
    }

    fn problem(yaml: &str) -> RuleProblem {
        match rules(yaml, &Defaults::default(), &MapEnv::default()) {
            Err(RulesError::Rule { problem, .. }) => problem,
            other => panic!("expected a rule error, got {other:?}"),
        }
    }

    #[test]
    fn manual_examples_parse() {
        let yaml = format!(
            "quay.io/coreos/kube-rbac-proxy: registry.ksyunkcr.com/namespace/repository\n\
             quay.io/coreos/kube-rbac-proxy:v1.0: quay.io/ruohe/kube-rbac-proxy\n\
             quay.io/coreos/kube-rbac-proxy:v1.0,v2.0: quay.io/ruohe/kube-rbac-proxy\n\
             quay.io/coreos/kube-rbac-proxy@{D1}: quay.io/ruohe/kube-rbac-proxy\n\
             quay.io/coreos/kube-rbac-proxy:v1.1:\n- quay.io/ruohe/kube-rbac-proxy1\n- quay.io/ruohe/kube-rbac-proxy2\n\
             quay.io/coreos/kube-rbac-proxy:/a+/: quay.io/ruohe/kube-rbac-proxy\n"
        );
        let all = rules(&yaml, &Defaults::default(), &MapEnv::default()).unwrap();
        assert_eq!(all.len(), 6);
        assert!(matches!(all[0].selector, Selector::All));
        assert!(matches!(&all[2].selector, Selector::Tags(t) if t == &["v1.0", "v2.0"]));
        assert!(matches!(&all[3].selector, Selector::Digest(d) if d.as_str() == D1));
        assert_eq!(all[4].targets.len(), 2);
        assert!(matches!(&all[5].selector, Selector::Regex(r) if r.as_str() == "a+"));
    }

    #[test]
    fn docker_hub_names_are_not_registries() {
        // image-syncer read the first segment as the registry for these forms.
        let rule = one("nginx:/^1\\.2[0-9]$/: 127.0.0.1:5000/mirror/nginx");
        assert_eq!(rule.source.to_string(), "docker.io/library/nginx");
        let rule = one("bitnami/redis: 127.0.0.1:5000/mirror/redis");
        assert_eq!(rule.source.to_string(), "docker.io/bitnami/redis");
        assert_eq!(rule.targets[0].repository.registry(), "127.0.0.1:5000");
    }

    #[test]
    fn targets_dedupe_and_rename() {
        let rule = one("a/b:1,2: [\"x.io/c:3,4\", \"x.io/c:3,4\", x.io/d]");
        assert_eq!(rule.targets.len(), 2);
        assert_eq!(
            rule.targets[0].naming,
            Naming::Tags(vec!["3".into(), "4".into()])
        );
    }

    #[test]
    fn bad_rules_are_named() {
        assert_eq!(problem("'': x.io/a"), RuleProblem::EmptySource);
        assert!(matches!(
            problem("a/b:1,2: x.io/c:3"),
            RuleProblem::TagCountMismatch {
                source_count: 2,
                target_count: 1,
                ..
            }
        ));
        assert!(matches!(
            problem(&format!("a/b@{D1}@{D2}: x.io/c")),
            RuleProblem::TwoDigests { .. }
        ));
        assert!(matches!(
            problem(&format!("a/b@{D1}: x.io/c@{D2}")),
            RuleProblem::DigestConflict { .. }
        ));
        assert!(matches!(
            problem("a/b:/(/: x.io/c"),
            RuleProblem::BadRegex { .. }
        ));
        assert!(matches!(
            problem("a/b:/x/,/y/: x.io/c"),
            RuleProblem::MultipleRegex { .. }
        ));
        assert!(matches!(
            problem("a/b: x.io/c:1"),
            RuleProblem::TagsForUnknownCount { .. }
        ));
        assert!(matches!(
            problem("a/b:1: x.io/c:/x/"),
            RuleProblem::RegexTarget { .. }
        ));
        assert!(matches!(
            problem("A/b: x.io/c"),
            RuleProblem::InvalidSource { .. }
        ));
        assert!(matches!(
            problem("a/b: x.io/C"),
            RuleProblem::InvalidTarget { .. }
        ));
        assert!(matches!(
            problem("a/b:1,,2: x.io/c"),
            RuleProblem::InvalidSource { .. }
        ));
        assert!(matches!(problem("a/b: 3"), RuleProblem::TargetType { .. }));
        assert!(matches!(
            problem(&format!("a/b:1@{D1}: x.io/c")),
            RuleProblem::TagAndDigest { .. }
        ));
        assert!(matches!(
            problem("a/b:1: x.io/c@sha256:00"),
            RuleProblem::InvalidTarget { .. }
        ));
        let err = rules(
            "a/b:1,2: x.io/c:3",
            &Defaults::default(),
            &MapEnv::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("images.yaml: rule \"a/b:1,2\": target \"x.io/c:3\""),
            "{err}"
        );
    }

    #[test]
    fn digest_sources() {
        let rule = one(&format!("a/b@{D1}: [x.io/c, x.io/d:v1, x.io/e@{D1}]"));
        assert_eq!(rule.targets[1].naming, Naming::Tags(vec!["v1".into()]));
        assert!(matches!(rule.targets[2].naming, Naming::Digest(_)));
        assert!(matches!(
            problem(&format!("a/b:v1: x.io/c@{D1}")),
            RuleProblem::DigestWithoutSourceDigest { .. }
        ));
    }

    #[test]
    fn empty_targets_use_defaults() {
        let env = MapEnv::new([
            ("DEFAULT_REGISTRY", "env.io"),
            ("DEFAULT_NAMESPACE", "envns"),
        ]);
        let defaults = Defaults::from_flags_or_env(Some("flag.io".into()), None, &env);
        let rule = rules("quay.io/coreos/etcd:v1:\n", &defaults, &env)
            .unwrap()
            .remove(0);
        assert_eq!(rule.targets[0].repository.to_string(), "flag.io/envns/etcd");
        // image-syncer v1.0–v1.4 keep the path below the first namespace.
        let rule = rules(
            "src.io/knative-releases/github.com/knative/build/cmd/creds-init:v1: ''\n\
             src.io/app: ''\n",
            &defaults,
            &env,
        )
        .unwrap();
        assert_eq!(
            rule[0].targets[0].repository.to_string(),
            "flag.io/envns/github.com/knative/build/cmd/creds-init"
        );
        assert_eq!(
            rule[1].targets[0].repository.to_string(),
            "flag.io/envns/app"
        );
        let err = rules("a/b: ''", &Defaults::default(), &env).unwrap_err();
        assert!(err.to_string().contains("no default registry"), "{err}");
        let only_registry = Defaults {
            registry: Some("r.io".into()),
            namespace: None,
        };
        let err = rules("a/b: []", &only_registry, &env).unwrap_err();
        assert!(err.to_string().contains("DEFAULT_NAMESPACE"), "{err}");
    }

    #[test]
    fn named_images_written_to_one_target_tag_collide() {
        let err = |yaml: &str| rules(yaml, &Defaults::default(), &MapEnv::default()).err();
        let collision = err("a.io/x/app:1: m.io/app\na.io/y/app:0,1: m.io/app\n")
            .expect("a collision")
            .to_string();
        assert!(
            collision.starts_with(
                "m.io/app:1 would be written twice: images.yaml: rule \"a.io/x/app:1\""
            ),
            "{collision}"
        );
        assert!(collision.contains("rule \"a.io/y/app:0,1\" copies a.io/y/app:1"));
        // One rule renaming two tags onto one.
        assert!(err("a.io/x:1,2: m.io/x:y,y").is_some());
        // The same source twice, a tag filtered out, digests and listings (planning's) pass.
        assert!(err("a.io/x:1: m.io/x\na.io/x:1,2: m.io/x\n").is_none());
        let filtered =
            err("a.io/x:1: m.io/x\na.io/y:1,2: {to: 'm.io/x:1,2', tags: {exclude: ['1']}}\n");
        assert!(filtered.is_none(), "{filtered:?}");
        assert!(err(&format!("a.io/x@{D1}: m.io/x\na.io/y@{D1}: m.io/x\n")).is_none());
        assert!(err("a.io/x: m.io/x\na.io/y: m.io/x\n").is_none());
    }

    #[test]
    fn variables_expand_in_targets() {
        let env = MapEnv::new([("DEST", "mirror.io"), ("NS", "team")]);
        let rule = rules("a/b: $DEST/${NS}/b", &Defaults::default(), &env)
            .unwrap()
            .remove(0);
        assert_eq!(rule.targets[0].repository.to_string(), "mirror.io/team/b");
        let err = rules("a/b: $MISSING/b", &Defaults::default(), &env).unwrap_err();
        assert!(err.to_string().contains("$MISSING"), "{err}");
        assert_eq!(expand_variables("a$-b", &env).unwrap(), "a$-b");
    }

    #[test]
    fn long_form_takes_the_short_targets_and_filters() {
        let rule = one(
            "docker.io/library/nginx:\n  to: [x.io/mirror/nginx, y.io/nginx]\n  tags:\n    \
             include: ['1.25.3', '/^1\\.2[0-9]\\./']\n    semver: '>=1.24, <2'\n    \
             exclude: [latest, '/-(rc|beta|alpha)/']\n    latest: 5\n",
        );
        assert_eq!(rule.targets.len(), 2);
        assert_eq!(rule.tags.latest, Some(5));
        assert!(!rule.select("1.25.3").is_empty());
        assert!(rule.select("1.27.0-rc1").is_empty());
        assert!(rule.select("latest").is_empty());
        // The short forms are unchanged: no filters.
        assert!(one("a/b: x.io/c").tags.is_empty());
        // A tag-list source is narrowed by the filters, keeping its positions.
        let listed =
            one("a/b:1.0.0,rc,2.0.0:\n  to: x.io/c:one,two,three\n  tags: {semver: '>=1'}\n");
        assert_eq!(
            listed.select_from(&[]),
            [(0, "1.0.0".to_string()), (2, "2.0.0".to_string())]
        );
        let target = listed.targets_for(2, &Locator::Tag("2.0.0".into()));
        assert_eq!(target[0].to_string(), "x.io/c:three");
    }

    #[test]
    fn wildcards_are_checked_before_anything() {
        for (yaml, needle) in [
            ("h.io/a/*/b: x.io/c", "whole last segment"),
            ("h.io/a/b*: x.io/c", "whole last segment"),
            ("h.io/a/**/*: x.io/c", "whole last segment"),
            ("docker.io/library/*: x.io/c", "Docker Hub (docker.io)"),
            (
                "registry-1.docker.io/team/**: x.io/c",
                "Docker Hub (docker.io)",
            ),
            ("team/*: x.io/c", "Docker Hub"),
            ("h.io/a:v1/*: x.io/c", "no tag or digest"),
            ("h.io/a: x.io/*", "target cannot be a wildcard"),
            ("h.io/team/*: x.io/c:v1", "names no tag or digest"),
        ] {
            let err = rules(yaml, &Defaults::default(), &MapEnv::default())
                .unwrap_err()
                .to_string();
            let rule = yaml.split(": ").next().unwrap();
            assert!(
                err.starts_with(&format!("images.yaml: rule {rule:?}: ")),
                "{err}"
            );
            assert!(err.contains(needle), "{yaml}: {err}");
        }
    }

    #[test]
    fn wildcards_keep_the_path_below_them() {
        let direct = one("h.io/team/*: b.io/backup");
        let deep = one("h.io/team/**: b.io");
        let all = one("h.io:5000/**: {to: b.io/all, tags: {latest: 1}}");
        let repo = |name: &str| Repository::parse(name).unwrap();
        let target = |rule: &Rule, name: &str| {
            rule.concrete(&repo(name))
                .map(|r| r.targets[0].repository.to_string())
        };
        assert_eq!(
            target(&direct, "h.io/team/app"),
            Some("b.io/backup/app".into())
        );
        assert_eq!(target(&direct, "h.io/team/a/app"), None);
        assert_eq!(target(&direct, "h.io/teams/app"), None);
        assert_eq!(target(&direct, "x.io/team/app"), None);
        assert_eq!(
            target(&deep, "h.io/team/a/b/app"),
            Some("b.io/a/b/app".into())
        );
        assert_eq!(target(&all, "h.io:5000/x/y"), Some("b.io/all/x/y".into()));
        assert_eq!(
            all.concrete(&repo("h.io:5000/x")).unwrap().tags.latest,
            Some(1)
        );
    }

    #[test]
    fn explain_gives_each_tag_its_reason() {
        use super::super::Dropped::*;
        let rule = one(
            "a/b:/^v?1/:\n  to: x.io/c\n  tags: {include: ['/\\./'], semver: '>=1.1, <2', \
             exclude: ['/-rc/'], latest: 1}\n",
        );
        let listed: Vec<String> = ["2.0.0", "1", "1.0.0", "1.2.0-rc1", "1.5.0", "1.3.0", "v1.4"]
            .iter()
            .map(|t| t.to_string())
            .collect();
        let explained = rule.explain(&listed);
        assert_eq!(
            explained,
            [
                ("2.0.0".to_string(), Some(NotMatched)),
                ("1".to_string(), Some(NotIncluded)),
                ("1.0.0".to_string(), Some(OutsideRange)),
                ("1.2.0-rc1".to_string(), Some(OutsideRange)),
                ("1.5.0".to_string(), None),
                ("1.3.0".to_string(), Some(BeyondLatest)),
                ("v1.4".to_string(), Some(NotSemver)),
            ]
        );
        // What explain takes is what select_from takes.
        let taken: Vec<String> = rule
            .select_from(&listed)
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        assert_eq!(taken, ["1.5.0"]);
        let excluded = one("a/b:\n  to: x.io/c\n  tags: {exclude: [latest]}\n");
        assert_eq!(
            excluded.explain(&["latest".to_string()]),
            [("latest".to_string(), Some(Excluded))]
        );
    }

    #[test]
    fn long_form_bad_values_are_named() {
        for (yaml, needle) in [
            ("a/b: {to: x.io/c, tag: {}}", "unknown key \"tag\""),
            ("a/b: {to: x.io/c, tags: {latest: 0}}", "tags.latest: 0"),
            ("a/b: {to: x.io/c, tags: {semver: '~>nope'}}", "tags.semver"),
            (
                "a/b: {to: x.io/c, tags: {exclude: ['/[/']}}",
                "tags.exclude",
            ),
            ("a/b: {tags: {latest: 1}}", "non-empty `to`"),
            ("a/b: {to: ''}", "non-empty `to`"),
            ("a/b: {to: []}", "non-empty `to`"),
            ("a/b: {to: [x.io/c, '']}", "non-empty `to`"),
            (
                "a/b: {to: x.io/c, platforms: [linux]}",
                "platforms: \"linux\"",
            ),
            ("a/b: {to: x.io/c, platforms: linux/amd64}", "platforms"),
            ("a/b: {to: x.io/c, force: 'yes'}", "force: \"yes\""),
            (
                "a/b: {to: x.io/c, referrers: 'false'}",
                "referrers: \"false\"",
            ),
            (
                "a/b: {to: x.io/c, referrers: [sig]}",
                "referrers: [\"sig\"]",
            ),
            (
                "a/b: {to: x.io/c, platforms: [linux/amd64, windows/arm64]}",
                "every os must come with every arch",
            ),
            ("a/b: {to: x.io/c, platforms: []}", "at least one"),
            ("a/b: {to: 'x.io/c:1'}", "names tags"),
        ] {
            let err = rules(yaml, &Defaults::default(), &MapEnv::default())
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("images.yaml: rule \"a/b\": "), "{err}");
            assert!(err.contains(needle), "{yaml}: {err}");
        }
        let digest = format!("a/b@{D1}: {{to: x.io/c, tags: {{include: [v1]}}}}");
        assert!(matches!(
            problem(&digest),
            RuleProblem::TagsWithDigest { key: "include" }
        ));
        // A digest source with a long-form `to` alone is fine.
        let ok = one(&format!("a/b@{D1}: {{to: x.io/c}}"));
        assert!(matches!(ok.selector, Selector::Digest(_)));
    }
}
