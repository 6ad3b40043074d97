//! image-syncer's images file: `source → target | [targets]`, validated into `Rule`s. This
//! file owns the validated nouns (`Rule`, `Selector`, `Target`, `Naming`) and what they
//! select: which tags a rule takes (`Rule::select`) and where each goes (`targets_for`,
//! `targets_of`). Reading and validating the file is `parse.rs`.
//!
//! This is the first of two input stages: the file as written becomes a list of rules whose
//! references are normalised and whose tag/digest semantics are checked, so nothing after
//! this module looks at raw strings. Resolving a rule against a live registry (listing tags,
//! matching a regex) is `plan`'s job.
//!
//! Source forms: `repo` (every tag), `repo:t1,t2` (those tags), `repo@sha256:…` (that digest),
//! `repo:/regex/` (every tag the regex matches anywhere in it, like image-syncer: write
//! `^…$` to anchor). Target forms: `repo` (keep the source tag or digest), `repo:t1,t2`
//! (rename, paired left to right), `repo@digest` (must equal the source digest), empty
//! (default registry and namespace), or an array of these. `$VAR`/`${VAR}` are expanded in
//! targets.
//!
//! A rule's value may instead be the long form `{to, tags, platforms, force, immutable}`: `to`
//! takes the target forms above, `tags` filters the source's selection (`tags.rs`): include →
//! semver → exclude → latest, after the source's own tag list or regex; `immutable` declares
//! tags never re-pushed (`immutable.rs`).

mod collisions;
mod immutable;
mod parse;
mod tags;

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use regex::Regex;

use crate::env::Env;
use crate::image::RuleOptions;
use crate::reference::{Digest, Locator, Reference, Repository};

pub use collisions::{static_collisions, TargetClaims, TargetCollision};
pub use immutable::{parse_immutable_pattern, ImmutableTags};
pub use parse::{
    expand_variables, is_variable_name, parse_source, rules_from_value, RuleProblem, RulesError,
};
pub use tags::{parse_semver_tag, Dropped, TagFilter, TagPattern};

/// Which images of the source repository a rule selects.
#[derive(Debug, Clone)]
pub enum Selector {
    /// Every tag (tags/list).
    All,
    /// These tags, in the order written.
    Tags(Vec<String>),
    /// Every tag the regex matches (unanchored).
    Regex(Regex),
    /// Exactly this manifest.
    Digest(Digest),
}

/// How a target names what it receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Naming {
    /// The source's tag (or digest) is kept.
    Keep,
    /// Source tag i becomes target tag i.
    Tags(Vec<String>),
    /// Pushed by this digest (equal to the source digest).
    Digest(Digest),
}

/// One destination of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub repository: Repository,
    pub naming: Naming,
}

/// A validated rule: a source repository, what to take from it, and where it goes.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The file the rule came from, for messages.
    pub file: PathBuf,
    /// The source exactly as written, for messages.
    pub text: String,
    pub source: Repository,
    pub selector: Selector,
    pub targets: Vec<Target>,
    /// The long form's `tags:` filters; empty for the short forms.
    pub tags: TagFilter,
    /// The long form's `platforms:`/`force:`, replacing the run's flags for this rule.
    pub options: RuleOptions,
    /// The long form's keys but `to`, as written (validated): what a plan job writes back
    /// with the rule's targets, so a worker reads the same rule. Empty for the short forms.
    pub long_form: serde_json::Map<String, serde_json::Value>,
    /// The long form's `immutable:` pattern (`immutable.rs`).
    pub immutable: Option<Regex>,
    /// A wildcard source (`reg/team/*`, `reg/team/**`, `reg/**`): `source` is then its
    /// prefix (or the registry root), never a repository of its own; `concrete` gives the
    /// rule for each listed repository.
    pub wildcard: Option<Wildcard>,
}

/// The repositories a wildcard source takes: those below `prefix` (of the rule's registry),
/// directly or at any depth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wildcard {
    /// `team` for `reg/team/*`, empty for `reg/**`.
    pub prefix: String,
    pub any_depth: bool,
}

impl Wildcard {
    /// `path`'s part below the prefix when the wildcard takes it.
    pub fn relative<'a>(&self, path: &'a str) -> Option<&'a str> {
        let relative = if self.prefix.is_empty() {
            path
        } else {
            path.strip_prefix(self.prefix.as_str())?.strip_prefix('/')?
        };
        let taken = !relative.is_empty() && (self.any_depth || !relative.contains('/'));
        taken.then_some(relative)
    }
}

impl Rule {
    /// Where `tag` sits in this rule's selection: the positions at which the rule takes it
    /// (a position pairs a listed tag with its renamed target tag; `a:x,x → b:y,z` takes `x`
    /// at 0 and 1), empty when the rule does not select it. A digest rule selects no tag.
    ///
    /// This is the source's selection and the `tags:` filters short of ranking: `latest`
    /// needs every tag of the repository, which planning has (`select_from`) and a webhook
    /// or a queued job does not, so there a semver tag that passes the rest is taken.
    pub fn select(&self, tag: &str) -> Vec<usize> {
        if !self.tags.passes(tag) {
            return Vec::new();
        }
        match &self.selector {
            Selector::All => vec![0],
            Selector::Regex(regex) if regex.is_match(tag) => vec![0],
            Selector::Regex(_) | Selector::Digest(_) => Vec::new(),
            Selector::Tags(tags) => tags
                .iter()
                .enumerate()
                .filter(|(_, candidate)| *candidate == tag)
                .map(|(position, _)| position)
                .collect(),
        }
    }

    /// The tags this rule takes, each with its position (see `select`): for a tag-list rule
    /// its own tags, for an all-tags or regex rule those of `listed` (the repository's
    /// `tags/list`) it selects; filtered by `tags:` and then ranked by `latest`. Planning's
    /// one way of choosing, so `ferry plan`, `ferry sync` and the planner agree.
    pub fn select_from(&self, listed: &[String]) -> Vec<(usize, String)> {
        let candidates: Vec<(usize, String)> = match &self.selector {
            Selector::Digest(_) => Vec::new(),
            Selector::Tags(tags) => tags
                .iter()
                .enumerate()
                .filter(|(_, tag)| self.tags.passes(tag))
                .map(|(position, tag)| (position, tag.clone()))
                .collect(),
            Selector::All | Selector::Regex(_) => listed
                .iter()
                .filter(|tag| !self.select(tag).is_empty())
                .map(|tag| (0, tag.clone()))
                .collect(),
        };
        self.tags.newest(candidates)
    }

    /// Every tag the rule considered (its named tags, or `listed`), in that order, each with
    /// why it was left out, or `None` when `select_from` takes it: `ferry plan --explain`.
    pub fn explain(&self, listed: &[String]) -> Vec<(String, Option<Dropped>)> {
        let seen: Vec<&String> = match &self.selector {
            Selector::Digest(_) => Vec::new(),
            Selector::Tags(tags) => tags.iter().collect(),
            Selector::All | Selector::Regex(_) => listed.iter().collect(),
        };
        let taken: BTreeSet<String> = self
            .select_from(listed)
            .into_iter()
            .map(|(_, tag)| tag)
            .collect();
        seen.into_iter()
            .map(|tag| {
                let dropped = match &self.selector {
                    _ if taken.contains(tag) => None,
                    Selector::Regex(regex) if !regex.is_match(tag) => Some(Dropped::NotMatched),
                    _ => Some(self.tags.drops(tag).unwrap_or(Dropped::BeyondLatest)),
                };
                (tag.clone(), dropped)
            })
            .collect()
    }

    /// This rule for `repository`: itself when it is the rule's source; for a wildcard rule
    /// that takes it, a rule of that source whose targets keep the path below the wildcard.
    pub fn concrete(&self, repository: &Repository) -> Option<Rule> {
        let Some(wildcard) = &self.wildcard else {
            return (self.source == *repository).then(|| self.clone());
        };
        if repository.registry() != self.source.registry() {
            return None;
        }
        let relative = wildcard.relative(repository.path())?;
        let targets = self
            .targets
            .iter()
            .map(|target| {
                Some(Target {
                    repository: target.repository.join(relative).ok()?,
                    naming: Naming::Keep,
                })
            })
            .collect::<Option<Vec<Target>>>()?;
        Some(Rule {
            source: repository.clone(),
            targets,
            wildcard: None,
            ..self.clone()
        })
    }

    /// Whether `select_from` needs the repository's tag list.
    pub fn lists_tags(&self) -> bool {
        matches!(self.selector, Selector::All | Selector::Regex(_))
    }

    /// Where the source image at `position` of the selection, named `source`, goes. Shared
    /// by planning and webhooks, so a pushed image is named exactly as a planned one.
    pub fn targets_for(&self, position: usize, source: &Locator) -> Vec<Reference> {
        self.targets
            .iter()
            .map(|target| target.reference(position, source))
            .collect()
    }
}

impl Rule {
    /// Where a digest this rule's tags do not show goes, by digest, when it is the subject of
    /// a referrer (a new signature reaching the targets; see [`targets_of`]): the targets
    /// that keep the source's names (a digest rule's own targets for its digest), none when
    /// the rule turned referrers off.
    pub fn subject_targets(&self, subject: &Digest) -> Vec<Reference> {
        if self.options.referrers == Some(false) {
            return Vec::new();
        }
        if let Selector::Digest(selected) = &self.selector {
            return if selected == subject {
                self.targets_for(0, &Locator::Digest(subject.clone()))
            } else {
                Vec::new()
            };
        }
        self.targets
            .iter()
            .filter(|t| t.naming == Naming::Keep)
            .map(|t| t.repository.at(Locator::Digest(subject.clone())))
            .collect()
    }
}

impl Target {
    /// The target reference for the source at `position` of the rule's selection.
    pub fn reference(&self, position: usize, source: &Locator) -> Reference {
        let locator = match &self.naming {
            Naming::Keep => source.clone(),
            // Validation matched the counts; a position past them keeps the source's name.
            Naming::Tags(tags) => tags
                .get(position)
                .map_or_else(|| source.clone(), |t| Locator::Tag(t.clone())),
            Naming::Digest(d) => Locator::Digest(d.clone()),
        };
        self.repository.at(locator)
    }
}

/// Every target `rules` give the source image `source` (a tag, or a digest a digest rule
/// names): what a job for `source` may copy to, and nothing else. A digest a tag rule
/// cannot see may go, by digest, to that rule's targets that keep the source's names, unless
/// the rule turned referrers off: that is how a new signature reaches the targets (the
/// webhook's job for a pushed `sha256-<hex>.sig` is its subject's, and for a manifest pushed
/// by digest alone, which may be a referrer, that digest's); pushing by digest moves
/// no tag, so such a job at worst copies an untagged manifest of a source repository a rule
/// mirrors to that rule's target repository.
pub fn targets_of(rules: &[Rule], source: &Reference) -> BTreeSet<Reference> {
    let mut targets = BTreeSet::new();
    for rule in rules.iter().filter_map(|r| r.concrete(&source.repository)) {
        let rule = &rule;
        let positions = match (&source.locator, &rule.selector) {
            (Locator::Tag(tag), _) => rule.select(tag),
            (Locator::Digest(d), Selector::Digest(selected)) if d == selected => vec![0],
            (Locator::Digest(_), Selector::Digest(_)) => Vec::new(),
            (Locator::Digest(d), _) => {
                targets.extend(rule.subject_targets(d));
                Vec::new()
            }
        };
        for position in positions {
            targets.extend(rule.targets_for(position, &source.locator));
        }
    }
    targets
}

/// Whether every copy `rule` makes is one `rules` make too, so a rule from elsewhere (a plan
/// job off a queue) may be resolved with this stack's credentials. A rule that lists tags
/// (every tag, or a regex) needs a rule of `rules` with the same source, selection and
/// long-form keys (filters, platforms, force) and at least its targets; a rule naming tags or a digest needs each named image's targets among
/// those `rules` give that image ([`targets_of`]).
pub fn within(rules: &[Rule], rule: &Rule) -> bool {
    let named = |position: usize, locator: Locator| {
        let allowed = targets_of(rules, &rule.source.at(locator.clone()));
        rule.targets_for(position, &locator)
            .iter()
            .all(|t| allowed.contains(t))
    };
    match &rule.selector {
        Selector::Tags(tags) => tags
            .iter()
            .enumerate()
            .all(|(position, tag)| named(position, Locator::Tag(tag.clone()))),
        Selector::Digest(digest) => named(0, Locator::Digest(digest.clone())),
        Selector::All | Selector::Regex(_) => rules.iter().any(|configured| {
            // A wildcard rule only as configured; a listed repository as a wildcard gives it.
            let configured = match (&rule.wildcard, &configured.wildcard) {
                (Some(_), _) if configured.wildcard != rule.wildcard => return false,
                (Some(_), _) => std::borrow::Cow::Borrowed(configured),
                (None, _) => match configured.concrete(&rule.source) {
                    Some(concrete) => std::borrow::Cow::Owned(concrete),
                    None => return false,
                },
            };
            configured.source == rule.source
                && configured.selector.lists_as(&rule.selector)
                && configured.long_form == rule.long_form
                && rule.targets.iter().all(|t| configured.targets.contains(t))
        }),
    }
}

impl Selector {
    /// Whether the selection is made by listing the repository's tags (every tag, or a
    /// regex), so how many images it holds is known only once listed.
    pub fn lists(&self) -> bool {
        matches!(self, Selector::All | Selector::Regex(_))
    }

    /// Both list tags, and take the same ones.
    fn lists_as(&self, other: &Selector) -> bool {
        match (self, other) {
            (Selector::All, Selector::All) => true,
            (Selector::Regex(a), Selector::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

/// A target as an images file writes it, after defaults and `$VAR`s were applied: parsing
/// the text again gives the same target.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.naming {
            Naming::Keep => write!(f, "{}", self.repository),
            Naming::Tags(tags) => write!(f, "{}:{}", self.repository, tags.join(",")),
            Naming::Digest(digest) => write!(f, "{}@{digest}", self.repository),
        }
    }
}

/// Default destination for rules with an empty target (`--registry`/`--namespace` or
/// `DEFAULT_REGISTRY`/`DEFAULT_NAMESPACE`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Defaults {
    pub registry: Option<String>,
    pub namespace: Option<String>,
}

impl Defaults {
    /// Flags win over the environment, as in image-syncer.
    pub fn from_flags_or_env(
        registry: Option<String>,
        namespace: Option<String>,
        env: &dyn Env,
    ) -> Self {
        let pick = |flag: Option<String>, var: &str| {
            flag.or_else(|| env.var(var))
                .filter(|v| !v.trim().is_empty())
                .map(|v| v.trim().trim_matches('/').to_string())
        };
        Defaults {
            registry: pick(registry, "DEFAULT_REGISTRY"),
            namespace: pick(namespace, "DEFAULT_NAMESPACE"),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::All => f.write_str("every tag"),
            Selector::Tags(t) => write!(f, "tags {}", t.join(",")),
            Selector::Regex(r) => write!(f, "tags matching /{}/", r.as_str()),
            Selector::Digest(d) => write!(f, "digest {d}"),
        }
    }
}

/// Rules from YAML text as a file named `t` gives them, without defaults or environment:
/// the unit tests' one way to write rules.
#[cfg(test)]
pub(crate) fn rules_from_yaml(yaml: &str) -> Result<Vec<Rule>, RulesError> {
    let value: serde_json::Value = serde_yaml::from_str(yaml).expect("test YAML");
    rules_from_value(
        std::path::Path::new("t"),
        &value,
        &Defaults::default(),
        &crate::env::MapEnv::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> Vec<Rule> {
        rules_from_yaml(yaml).unwrap()
    }

    #[test]
    fn targets_print_as_written_and_parse_back() {
        let configured = rules(
            "a.io/x:1,2: [b.io/x, 'c.io/y:u,v']\na.io/d@sha256:{d}: b.io/d@sha256:{d}\n"
                .replace("{d}", &"0".repeat(64))
                .as_str(),
        );
        for rule in &configured {
            let texts: Vec<String> = rule.targets.iter().map(ToString::to_string).collect();
            let again = rules(&format!("{:?}: {texts:?}", rule.text));
            assert_eq!(again[0].targets, rule.targets, "{texts:?}");
        }
    }

    #[test]
    fn a_rule_is_within_rules_that_make_every_copy_it_makes() {
        let configured = rules(
            "a.io/all: b.io/all\na.io/re:/^v/: [b.io/re, c.io/re]\na.io/x:1,2,3: 'b.io/x:u,v,w'\n",
        );
        let within_configured = |yaml: &str| within(&configured, &rules(yaml)[0]);
        // The same listing, or fewer of its targets.
        assert!(within_configured("a.io/all: b.io/all"));
        assert!(within_configured("a.io/re:/^v/: c.io/re"));
        // Another regex, another target, or a listing of a repository named by tags.
        assert!(!within_configured("a.io/re:/./: b.io/re"));
        assert!(!within_configured("a.io/all: evil.io/all"));
        assert!(!within_configured("a.io/x: b.io/x"));
        // Named tags: each must go where some rule sends it.
        assert!(within_configured("a.io/all:p,q: b.io/all"));
        assert!(within_configured("a.io/re:v1: [b.io/re, c.io/re]"));
        assert!(within_configured("a.io/x:3,1: 'b.io/x:w,u'"));
        assert!(!within_configured("a.io/x:3,1: 'b.io/x:u,w'"));
        assert!(!within_configured("a.io/re:w1: b.io/re"));
        assert!(!within_configured("a.io/all:p: b.io/other"));
        assert!(!within_configured("z.io/all:p: b.io/all"));
    }
}
