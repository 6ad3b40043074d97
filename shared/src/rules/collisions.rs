//! Two rules must not write different source images to the same target tag in one run:
//! whichever copy lands last would win, silently. `TargetClaims` records which rule claims
//! each target tag for which source; a second, different source is a `TargetCollision`
//! (bad input, naming both rules and their files). Rules whose images are known from the
//! file alone (named tags, digests) are checked when the file is read (`static_collisions`);
//! rules that list tags are checked by planning, once their images are known and before
//! any copy. Digest targets are not claimed: a digest names the same bytes whoever pushes it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use thiserror::Error;

use super::{Rule, Selector};
use crate::error::{HasKind, Kind};
use crate::reference::{Locator, Reference};

/// Two rules (or one rule twice) writing different sources to one target tag.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "{target} would be written twice: {}: rule {first_rule:?} copies {first_source} there and {}: rule {second_rule:?} copies {second_source}; give them different targets",
    first_file.display(),
    second_file.display()
)]
pub struct TargetCollision {
    pub target: Reference,
    pub first_file: PathBuf,
    pub first_rule: String,
    pub first_source: Reference,
    pub second_file: PathBuf,
    pub second_rule: String,
    pub second_source: Reference,
}

impl HasKind for TargetCollision {
    fn kind(&self) -> Kind {
        Kind::BadInput
    }
}

/// Which source (and rule) each target tag is written from, so far.
#[derive(Debug, Default)]
pub struct TargetClaims<'a> {
    claims: BTreeMap<Reference, (&'a Rule, Reference)>,
}

impl<'a> TargetClaims<'a> {
    /// Records that `rule` copies `source` to `target`; an error when another source was
    /// already going there. The same source twice (two rules agreeing) is fine.
    pub fn claim(
        &mut self,
        rule: &'a Rule,
        source: &Reference,
        target: &Reference,
    ) -> Result<(), Box<TargetCollision>> {
        if matches!(target.locator, Locator::Digest(_)) {
            return Ok(());
        }
        match self.claims.get(target) {
            Some((first, claimed)) if claimed != source => Err(Box::new(TargetCollision {
                target: target.clone(),
                first_file: first.file.clone(),
                first_rule: first.text.clone(),
                first_source: claimed.clone(),
                second_file: rule.file.clone(),
                second_rule: rule.text.clone(),
                second_source: source.clone(),
            })),
            Some(_) => Ok(()),
            None => {
                self.claims.insert(target.clone(), (rule, source.clone()));
                Ok(())
            }
        }
    }
}

/// The first collision among the images `rules` name without listing tags (named tags after
/// their `tags:` filters, digests).
pub fn static_collisions(rules: &[Rule]) -> Result<(), Box<TargetCollision>> {
    let mut claims = TargetClaims::default();
    for rule in rules {
        let named: Vec<(usize, Locator)> = match &rule.selector {
            Selector::All | Selector::Regex(_) => continue,
            Selector::Digest(digest) => vec![(0, Locator::Digest(digest.clone()))],
            Selector::Tags(_) => rule
                .select_from(&[])
                .into_iter()
                .map(|(position, tag)| (position, Locator::Tag(tag)))
                .collect(),
        };
        for (position, locator) in named {
            let source = rule.source.at(locator.clone());
            for target in rule.targets_for(position, &locator) {
                claims.claim(rule, &source, &target)?;
            }
        }
    }
    Ok(())
}
