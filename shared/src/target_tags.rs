//! Immutable tags at run time: each target repository's tags, listed once (all pages) on
//! first ask and kept for the run, and which of an image's targets still need a check. The
//! copier and the planner (`dispatch`, through `plan`) both decide here, so a copy of an
//! immutable tag counts as done on the same evidence everywhere. Which tags are immutable is
//! `rules`'s; listing is the registry client's.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::future::join_all;
use tokio::sync::OnceCell;

use crate::image::RuleOptions;
use crate::reference::{Locator, Reference, Repository};
use crate::registry::Registries;
use crate::rules::ImmutableTags;

/// A target repository's tags as listed once in a run; `None` when they could not be listed.
pub type ListedTags = Option<Arc<HashSet<String>>>;

/// Target repositories' tags, listed once each per run.
#[derive(Debug, Default)]
pub struct TargetTags {
    listed: Mutex<HashMap<Repository, Arc<OnceCell<ListedTags>>>>,
}

impl TargetTags {
    /// The tags of `target` as one `tags/list` (all its pages) found them, asked once per
    /// run: what immutable tags are checked against. A tag pushed later in the run is not
    /// in it, so it is checked as usual. An error (a repository that does not exist
    /// included) just means "not known".
    pub async fn of(&self, registries: &Registries, target: &Repository) -> ListedTags {
        let cell = Arc::clone(
            self.listed
                .lock()
                .expect("target tags poisoned")
                .entry(target.clone())
                .or_default(),
        );
        cell.get_or_init(|| async {
            let client = registries.client(target.registry()).ok()?;
            match client.tag_list(target).await {
                Ok(tags) => Some(Arc::new(tags.into_iter().collect())),
                Err(error) => {
                    tracing::debug!(%error, "cannot list the target's tags; immutable tags are checked one by one");
                    None
                }
            }
        })
        .await
        .clone()
    }

    /// Those of `targets` (of `source`) that must be checked: all of them, but for the copies
    /// of an immutable tag (unless `force`) to a target whose listing has the tag, which are
    /// done without a request about the tag. Only the repositories of such copies are listed.
    pub async fn targets_to_check(
        &self,
        source: &Reference,
        targets: &[Reference],
        immutable: &ImmutableTags,
        force: bool,
        registries: &Registries,
    ) -> Vec<Reference> {
        if force || immutable.is_empty() {
            return targets.to_vec();
        }
        let done = join_all(targets.iter().map(|target| async move {
            let Locator::Tag(tag) = &target.locator else {
                return false;
            };
            immutable.covers(source, target)
                && self
                    .of(registries, &target.repository)
                    .await
                    .is_some_and(|tags| tags.contains(tag))
        }))
        .await;
        targets
            .iter()
            .zip(done)
            .filter(|(_, done)| !done)
            .map(|(target, _)| target.clone())
            .collect()
    }
}

/// A planner run's immutable tags: which they are, the run's `force`, and the targets'
/// listings, shared by resolving (`plan`) and checking (`dispatch`) so each target
/// repository is listed once.
#[derive(Debug, Clone, Default)]
pub struct ImmutableCheck {
    pub tags: ImmutableTags,
    /// The run's `force`; a rule's own `force:` wins.
    pub force: bool,
    pub listed: Arc<TargetTags>,
}

impl ImmutableCheck {
    /// Whether no tag is immutable, so nothing is spared.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// Those of `targets` that must be checked, for a copy made with `rule`'s options (see
    /// [`TargetTags::targets_to_check`]).
    pub async fn targets_to_check(
        &self,
        source: &Reference,
        targets: &[Reference],
        rule: &RuleOptions,
        registries: &Registries,
    ) -> Vec<Reference> {
        let force = rule.force.unwrap_or(self.force);
        self.listed
            .targets_to_check(source, targets, &self.tags, force, registries)
            .await
    }
}
