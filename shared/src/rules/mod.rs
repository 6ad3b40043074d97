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

mod parse;

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use regex::Regex;

use crate::env::Env;
use crate::reference::{Digest, Locator, Reference, Repository};

pub use parse::{
    expand_variables, is_variable_name, parse_source, rules_from_value, RuleProblem, RulesError,
};

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
}

impl Rule {
    /// Where `tag` sits in this rule's selection: the positions at which the rule takes it
    /// (a position pairs a listed tag with its renamed target tag; `a:x,x → b:y,z` takes `x`
    /// at 0 and 1), empty when the rule does not select it. A digest rule selects no tag.
    pub fn select(&self, tag: &str) -> Vec<usize> {
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

    /// Where the source image at `position` of the selection, named `source`, goes. Shared
    /// by planning and webhooks, so a pushed image is named exactly as a planned one.
    pub fn targets_for(&self, position: usize, source: &Locator) -> Vec<Reference> {
        self.targets
            .iter()
            .map(|target| target.reference(position, source))
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
/// names): what a job for `source` may copy to, and nothing else.
pub fn targets_of(rules: &[Rule], source: &Reference) -> BTreeSet<Reference> {
    let mut targets = BTreeSet::new();
    for rule in rules.iter().filter(|r| r.source == source.repository) {
        let positions = match (&source.locator, &rule.selector) {
            (Locator::Tag(tag), _) => rule.select(tag),
            (Locator::Digest(d), Selector::Digest(selected)) if d == selected => vec![0],
            (Locator::Digest(_), _) => Vec::new(),
        };
        for position in positions {
            targets.extend(rule.targets_for(position, &source.locator));
        }
    }
    targets
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
