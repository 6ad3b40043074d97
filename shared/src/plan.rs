//! Planning: resolving validated rules against the live source registries into one
//! `PlannedImage` per source image (a tag or digest) with every target it goes to.
//!
//! Tag lists come from `tags/list`. Sources are HEAD-checked (which spends no pull quota) as
//! `SourceHeads` says: a tag named in a rule but missing from the registry is reported here,
//! with its rule, and the digest seen is recorded. A rule that cannot be resolved is a
//! failure of its own; the other rules still resolve. `dispatch` then checks the targets and
//! enqueues a job per image some target lacks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use thiserror::Error;

use crate::error::{HasKind, Kind};
use crate::image::{is_referrer_tag, PlannedImage, RuleOptions};
use crate::reference::{Digest, Locator, Reference, Repository};
use crate::registry::{Registries, RegistryError};
use crate::rules::{Dropped, Rule, Selector, TargetClaims, TargetCollision};
use crate::target_tags::ImmutableCheck;

/// A rule that could not be resolved.
#[derive(Debug, Error)]
#[error("{}: rule {rule:?}: {error}", file.display())]
pub struct RuleFailure {
    pub file: PathBuf,
    pub rule: String,
    pub error: PlanError,
}

/// Why a rule could not be resolved.
#[derive(Debug, Error)]
pub enum PlanError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{0} does not exist")]
    Missing(Reference),
    #[error("the repositories of {0} could not be listed (see the rule before)")]
    CatalogueUnreadable(String),
}

impl HasKind for PlanError {
    fn kind(&self) -> Kind {
        match self {
            PlanError::Registry(error) => error.kind(),
            PlanError::Missing(_) => Kind::NotFound,
            PlanError::CatalogueUnreadable(_) => Kind::NotFound,
        }
    }
}

impl HasKind for RuleFailure {
    fn kind(&self) -> Kind {
        self.error.kind()
    }
}

/// The resolved plan, sorted by source; targets sorted within each image.
#[derive(Debug, Default)]
pub struct Plan {
    pub images: Vec<PlannedImage>,
    pub failures: Vec<RuleFailure>,
    /// Rules that resolved to no image at all (empty repository, regex matching nothing).
    pub empty_rules: Vec<String>,
    /// What each rule selected (and, with `explain`, what it saw and dropped), by rule.
    pub selections: Vec<RuleSelection>,
    /// Two rules would write different sources to one target tag: nothing may be copied
    /// (bad input, exit 2). Set, the plan holds no images.
    pub collision: Option<Box<TargetCollision>>,
    /// Every tag of each source repository a rule listed, referrer tags included: the
    /// copier finds its images' signatures in them without listing again.
    pub listings: BTreeMap<Repository, Vec<String>>,
}

impl Plan {
    /// Every (source, target) pair, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&PlannedImage, &Reference)> {
        self.images
            .iter()
            .flat_map(|image| image.targets.iter().map(move |t| (image, t)))
    }
}

/// What one rule selected.
#[derive(Debug, Clone)]
pub struct RuleSelection {
    pub file: PathBuf,
    pub rule: String,
    /// Each selected source image with the targets this rule gives it.
    pub images: Vec<(Reference, Vec<Reference>)>,
    /// With `explain`: every tag the rule considered and why it was left out (`None`: taken).
    pub explained: Vec<(String, Option<Dropped>)>,
}

/// How planning talks to registries.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Registry requests kept in flight.
    pub concurrency: usize,
    /// Which sources are HEADed while resolving.
    pub source_heads: SourceHeads,
    /// Keep, per rule, every tag seen and why it was left out (`ferry plan --explain`).
    pub explain: bool,
    /// Referrers travel with their images: referrer tags (`sha256-<hex>`, cosign's
    /// `.sig`/`.att`/`.sbom`) are then no images of their own, whatever a rule's regex says.
    pub referrers: bool,
    /// Copies of immutable tags (none unless set; `dispatch`'s): a source about to be HEADed
    /// loses the targets whose listing has its tag first, and one left with none is not
    /// HEADed at all (its image is in the plan with no target).
    pub immutable: ImmutableCheck,
}

/// Which sources `resolve` HEADs (which spends no pull quota).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceHeads {
    /// Every one: `ferry plan` prints each image with its digest.
    All,
    /// Those a rule names by tag or digest, so one that does not exist is reported with its
    /// rule; tags just listed exist, and `dispatch` HEADs them only if it must.
    Named,
    /// None: `ferry sync`, whose copier HEADs each source itself when it must.
    None,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            concurrency: crate::input::DEFAULT_CONCURRENCY,
            source_heads: SourceHeads::All,
            explain: false,
            referrers: true,
            immutable: ImmutableCheck::default(),
        }
    }
}

/// A source image one rule selects, with the targets that rule gives it.
struct Selected {
    rule: usize,
    source: Reference,
    targets: Vec<Reference>,
    /// Named by the rule (a tag or digest), not found by listing tags.
    named: bool,
}

/// Resolves `rules` against their source registries.
pub async fn resolve(rules: &[Rule], registries: &Arc<Registries>, options: &PlanOptions) -> Plan {
    let concurrency = options.concurrency.max(1);
    let source_heads = options.source_heads;
    let mut plan = Plan::default();
    let expanded;
    let rules = if rules.iter().any(|rule| rule.wildcard.is_some()) {
        expanded = expand_wildcards(rules, registries, &mut plan).await;
        &expanded[..]
    } else {
        rules
    };
    let listed: Vec<(usize, Result<Selection, PlanError>)> = stream::iter(rules.iter().enumerate())
        .map(|(i, rule)| async move { (i, select(i, rule, registries, options).await) })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut selected = Vec::new();
    let mut failed_rules = BTreeSet::new();
    for (i, result) in listed {
        match result {
            Ok(Selection {
                images,
                explained,
                listing,
            }) => {
                if let Some(tags) = listing {
                    plan.listings.insert(rules[i].source.clone(), tags);
                }
                plan.selections.push(RuleSelection {
                    file: rules[i].file.clone(),
                    rule: rules[i].text.clone(),
                    images: images
                        .iter()
                        .map(|s| (s.source.clone(), s.targets.clone()))
                        .collect(),
                    explained,
                });
                if images.is_empty() {
                    plan.empty_rules.push(rules[i].text.clone());
                }
                selected.extend(images);
            }
            Err(error) => {
                failed_rules.insert(i);
                plan.failures.push(failure(&rules[i], error));
            }
        }
    }
    // Before any HEAD: two rules writing different sources to one target stop the run.
    selected.sort_by(|a, b| (a.rule, &a.source).cmp(&(b.rule, &b.source)));
    if let Err(collision) = claim_targets(rules, &selected) {
        plan.collision = Some(collision);
        return plan;
    }
    let checked: Vec<(Selected, Result<Option<Digest>, PlanError>)> = stream::iter(selected)
        .map(|mut s| async move {
            let mut head = match source_heads {
                SourceHeads::All => true,
                SourceHeads::Named => s.named,
                SourceHeads::None => false,
            };
            if head && !options.immutable.is_empty() {
                let rule = &rules[s.rule].options;
                s.targets = (options.immutable)
                    .targets_to_check(&s.source, &s.targets, rule, registries)
                    .await;
                head = !s.targets.is_empty();
            }
            let digest = if head {
                head_source(&s.source, registries).await
            } else {
                Ok(None)
            };
            (s, digest)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    // One image per source and rule options: rules asking different platforms or force of
    // one source make separate copies.
    type Groups = Vec<(RuleOptions, Option<Digest>, BTreeSet<Reference>)>;
    let mut images: BTreeMap<Reference, Groups> = BTreeMap::new();
    for (s, result) in checked {
        match result {
            Ok(digest) => {
                let options = &rules[s.rule].options;
                let groups = images.entry(s.source).or_default();
                let at = match groups.iter().position(|(o, _, _)| o == options) {
                    Some(at) => at,
                    None => {
                        groups.push((options.clone(), None, BTreeSet::new()));
                        groups.len() - 1
                    }
                };
                let entry = &mut groups[at];
                entry.1 = entry.1.take().or(digest);
                entry.2.extend(s.targets);
            }
            Err(error) => {
                failed_rules.insert(s.rule);
                plan.failures.push(failure(&rules[s.rule], error));
            }
        }
    }
    plan.images = images
        .into_iter()
        .flat_map(|(source, groups)| {
            groups
                .into_iter()
                .map(move |(rule_options, digest, targets)| PlannedImage {
                    source: source.clone(),
                    digest,
                    targets: targets.into_iter().collect(),
                    rule_options,
                    pushed_referrer: None,
                })
        })
        .collect();
    plan.failures.sort_by(|a, b| a.rule.cmp(&b.rule));
    plan.selections.sort_by(|a, b| a.rule.cmp(&b.rule));
    plan.empty_rules.sort();
    plan
}

/// `rules` with each wildcard rule replaced by its rule for every repository its registry's
/// `_catalog` lists under it (one catalogue walk per registry). A catalogue that cannot be
/// read (refused, missing) fails its rules, naming the registry and why; a wildcard that
/// takes no repository is an empty rule.
async fn expand_wildcards(rules: &[Rule], registries: &Registries, plan: &mut Plan) -> Vec<Rule> {
    // Per registry: its repositories, or `None` when its catalogue could not be read.
    let mut catalogues: BTreeMap<String, Option<Vec<Repository>>> = BTreeMap::new();
    let mut expanded = Vec::new();
    for rule in rules {
        if rule.wildcard.is_none() {
            expanded.push(rule.clone());
            continue;
        }
        let registry = rule.source.registry().to_string();
        if !catalogues.contains_key(&registry) {
            let listed = match registries.client(&registry) {
                Ok(client) => client.catalog(&rule.source).await,
                Err(error) => Err(error),
            };
            let listed = match listed {
                Ok(repositories) => Some(repositories),
                Err(error) => {
                    plan.failures
                        .push(failure(rule, PlanError::Registry(error)));
                    None
                }
            };
            let unreadable = listed.is_none();
            catalogues.insert(registry.clone(), listed);
            if unreadable {
                continue;
            }
        }
        match &catalogues[&registry] {
            Some(repositories) => {
                let before = expanded.len();
                expanded.extend(repositories.iter().filter_map(|r| rule.concrete(r)));
                if expanded.len() == before {
                    plan.empty_rules.push(rule.text.clone());
                }
            }
            None => plan.failures.push(failure(
                rule,
                PlanError::CatalogueUnreadable(registry.clone()),
            )),
        }
    }
    expanded
}

/// The first target tag two selected images of different sources would both be written to.
fn claim_targets(rules: &[Rule], selected: &[Selected]) -> Result<(), Box<TargetCollision>> {
    let mut claims = TargetClaims::default();
    for s in selected {
        for target in &s.targets {
            claims.claim(&rules[s.rule], &s.source, target)?;
        }
    }
    Ok(())
}

fn failure(rule: &Rule, error: PlanError) -> RuleFailure {
    RuleFailure {
        file: rule.file.clone(),
        rule: rule.text.clone(),
        error,
    }
}

/// What one rule selected.
struct Selection {
    images: Vec<Selected>,
    /// With `explain`, every tag it saw and why each was dropped.
    explained: Vec<(String, Option<Dropped>)>,
    /// Every tag listed (referrer tags included), when the rule listed them.
    listing: Option<Vec<String>>,
}

/// The source images a rule selects (listing tags when it needs them) and their targets,
/// and the tags listed. With `referrers`, a referrer tag is never an image of its own.
async fn select(
    index: usize,
    rule: &Rule,
    registries: &Registries,
    options: &PlanOptions,
) -> Result<Selection, PlanError> {
    let (explain, referrers) = (options.explain, options.referrers);
    let mut explained = Vec::new();
    let named = !rule.lists_tags();
    let mut listing = None;
    let sources: Vec<(usize, Locator)> = match &rule.selector {
        Selector::Digest(d) => vec![(0, Locator::Digest(d.clone()))],
        _ => {
            let listed = if rule.lists_tags() {
                let client = registries.client(rule.source.registry())?;
                let all = client.tag_list(&rule.source).await?;
                let images = all
                    .iter()
                    .filter(|tag| !(referrers && is_referrer_tag(tag)))
                    .cloned()
                    .collect();
                listing = Some(all);
                images
            } else {
                Vec::new()
            };
            if explain {
                explained = rule.explain(&listed);
            }
            rule.select_from(&listed)
                .into_iter()
                .map(|(position, tag)| (position, Locator::Tag(tag)))
                .collect()
        }
    };
    let selected = sources
        .into_iter()
        .map(|(position, locator)| Selected {
            rule: index,
            targets: rule.targets_for(position, &locator),
            source: rule.source.at(locator),
            named,
        })
        .collect();
    Ok(Selection {
        images: selected,
        explained,
        listing,
    })
}

/// The source's digest (`None` when the registry does not say); a missing source is an error.
pub(crate) async fn head_source(
    source: &Reference,
    registries: &Registries,
) -> Result<Option<Digest>, PlanError> {
    let client = registries.client(source.repository.registry())?;
    match client.manifest_head(source).await? {
        Some(head) => Ok(head.digest),
        None => Err(PlanError::Missing(source.clone())),
    }
}
