//! What pushes mean under the rules: [`match_rules`] turns push events into planned images,
//! one per source, with every target the matching rules give it.
//!
//! Matching uses the rules' own semantics, the same as planning ([`Rule::select`] and
//! [`Rule::targets_for`]): an all-tags rule takes any tag of its repository, a tag list its
//! tags (renamed by position), a regex the tags it matches, a digest rule only its digest. A
//! push by digest without a tag is no image of a tag rule: an all-tags rule never selects an
//! untagged manifest when planning either, and the index that names the children of an
//! image arrives as its own tagged event, so one job copies the whole image. Targets come
//! only from the rules, so a forged or replayed event can at worst re-copy something the
//! rules already copy.
//!
//! A long-form rule's `tags:` filters apply too (include, semver, exclude): a push of
//! `nginx:1.27.0-rc1` to a rule excluding `/-rc/` is ignored. `latest: N` ranks a tag
//! against the repository's other tags, which the webhook never lists (it contacts no
//! registry), so a pushed semver tag that passes the other filters is copied; a non-semver
//! tag is not. What falls out of the newest N stays on the target: ferry never deletes.
//!
//! A push of a referrer tag (cosign's `sha256-<hex>.sig`/`.att`/`.sbom`, or the referrers
//! tag schema's `sha256-<hex>` index), with referrers on, is no image of its own (as when
//! planning): it becomes the subject, `repository@sha256:<hex>`, copied by digest to the
//! target repositories of every rule selecting the repository (whatever its tags, which a
//! digest does not show; `referrers: false` rules aside), so the copy brings the new
//! referrers along. The job names the pushed tag (`PushedReferrer::Tag`): a registry may
//! notify before it serves the tag, and the copier waits for it rather than finding nothing.
//!
//! A push by digest alone may be a referrer too (notation, `oras attach`, cosign's OCI 1.1
//! mode on a registry with the referrers API push a manifest with a `subject` and no tag).
//! The webhook cannot read it (it has no registry credentials), so with referrers on it
//! becomes a job of that digest, marked `PushedReferrer::Manifest`, to the same targets a
//! subject would get ([`Rule::subject_targets`]); a digest rule naming it takes it as its
//! image instead. The copier reads the manifest and copies nothing when it has no subject
//! (an index's children come this way). The worker's job policy (`rules::targets_of`)
//! allows such digest jobs for the same reason; a target that renames tags takes none.
//!
//! Reading payloads is `formats.rs`'s job; queueing the images the handler's (`mod.rs`).

use std::collections::{BTreeMap, BTreeSet};

use super::push::PushEvent;
use crate::image::{referrer_subject, PlannedImage, PushedReferrer, RuleOptions};
use crate::reference::{Digest, Locator, Reference};
use crate::rules::{Rule, Selector};

/// What the events mean under `rules`: one planned image per source (repository plus tag,
/// or plus digest for digest rules) with every target the matching rules give it, sorted by
/// source. Several events for one source (retries, two rules) become one image. With
/// `referrers`, a referrer's push is its subject's, or its own digest's (see the module's
/// notes).
pub fn match_rules(rules: &[Rule], events: &[PushEvent], referrers: bool) -> Vec<PlannedImage> {
    // Per source, one image per rule options (a rule's own platforms/force), as planning,
    // and per referrer pushed (each makes its own check at the source).
    type Groups = Vec<(Group, SeenDigest, BTreeSet<Reference>)>;
    let mut images: BTreeMap<Reference, Groups> = BTreeMap::new();
    for event in events {
        let pushed = referrers.then(|| pushed_referrer(event)).flatten();
        for rule in rules.iter().filter_map(|r| r.concrete(&event.repository)) {
            let rule = &rule;
            // A digest rule takes a digest pushed alone as the image it names.
            let pushed = pushed.as_ref().filter(|(_, what)| {
                *what != PushedReferrer::Manifest || !matches!(rule.selector, Selector::Digest(_))
            });
            // (source locator, its targets) for each image the event means under this rule.
            let selected: Vec<(Locator, Vec<Reference>)> = match pushed {
                Some((subject, _)) => {
                    let targets = rule.subject_targets(subject);
                    let locator = Locator::Digest(subject.clone());
                    (!targets.is_empty())
                        .then_some((locator, targets))
                        .into_iter()
                        .collect()
                }
                None => selected(rule, event)
                    .into_iter()
                    .map(|(position, locator)| {
                        let targets = rule.targets_for(position, &locator);
                        (locator, targets)
                    })
                    .collect(),
            };
            let group = (rule.options.clone(), pushed.map(|(_, what)| what.clone()));
            for (locator, targets) in selected {
                let groups = images.entry(rule.source.at(locator)).or_default();
                let at = match groups.iter().position(|(g, _, _)| *g == group) {
                    Some(at) => at,
                    None => {
                        groups.push((group.clone(), SeenDigest::default(), BTreeSet::new()));
                        groups.len() - 1
                    }
                };
                let (_, digest, all_targets) = &mut groups[at];
                match pushed {
                    Some((subject, _)) => digest.see(Some(subject)),
                    None => digest.see(event.digest.as_ref()),
                }
                all_targets.extend(targets);
            }
        }
    }
    images
        .into_iter()
        .flat_map(|(source, groups)| {
            groups
                .into_iter()
                .map(
                    move |((rule_options, pushed_referrer), digest, targets)| PlannedImage {
                        source: source.clone(),
                        digest: digest.into_digest(),
                        targets: targets.into_iter().collect(),
                        rule_options,
                        pushed_referrer,
                    },
                )
        })
        .collect()
}

/// What a planned image is kept apart by, besides its source.
type Group = (RuleOptions, Option<PushedReferrer>);

/// The digest a referrer's push is about, and what was pushed: a referrer tag is its
/// subject's; a digest pushed with no tag may be a referrer (the webhook cannot read it to
/// know), its own.
fn pushed_referrer(event: &PushEvent) -> Option<(Digest, PushedReferrer)> {
    match (&event.tag, &event.digest) {
        (Some(tag), _) => {
            referrer_subject(tag).map(|subject| (subject, PushedReferrer::Tag(tag.clone())))
        }
        (None, Some(digest)) => Some((digest.clone(), PushedReferrer::Manifest)),
        (None, None) => None,
    }
}

/// Where `event` sits in the rule's selection (the position pairs renamed tags) and how the
/// source is named, once per position: `a:x,x → b:y,z` copies `a:x` to both.
fn selected(rule: &Rule, event: &PushEvent) -> Vec<(usize, Locator)> {
    match (&rule.selector, &event.tag) {
        (Selector::Digest(d), _) if event.digest.as_ref() == Some(d) => {
            vec![(0, Locator::Digest(d.clone()))]
        }
        (_, None) => Vec::new(),
        (_, Some(tag)) => rule
            .select(tag)
            .into_iter()
            .map(|position| (position, Locator::Tag(tag.clone())))
            .collect(),
    }
}

/// The digest the events report for one source. A tag pushed twice in one delivery has two,
/// and then neither is passed on: the copier HEADs the source and copies what is there now.
#[derive(Debug, Default)]
enum SeenDigest {
    #[default]
    Unknown,
    Known(Digest),
    Conflicting,
}

impl SeenDigest {
    fn see(&mut self, digest: Option<&Digest>) {
        let Some(digest) = digest else { return };
        *self = match std::mem::take(self) {
            SeenDigest::Unknown => SeenDigest::Known(digest.clone()),
            SeenDigest::Known(known) if known == *digest => SeenDigest::Known(known),
            _ => SeenDigest::Conflicting,
        };
    }

    fn into_digest(self) -> Option<Digest> {
        match self {
            SeenDigest::Known(digest) => Some(digest),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::testing::{event, rules};

    const D1: &str = "sha256:14b267eb38aa85fd12d0e168fffa2d8a6187ac53a14a0212b0d4fce8d729598c";
    const D2: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    fn strings(images: &[PlannedImage]) -> Vec<(String, Vec<String>)> {
        images
            .iter()
            .map(|i| {
                let targets = i.targets.iter().map(ToString::to_string).collect();
                (i.source.to_string(), targets)
            })
            .collect()
    }

    #[test]
    fn all_tags_rule_takes_any_tag_but_not_an_untagged_digest() {
        let rules = rules("quay.io/a/b: mirror.io/b");
        let events = [
            event("quay.io/a/b:v1", Some(D1)),
            event("quay.io/a/b", Some(D2)),
        ];
        // Referrers off: the digest pushed alone is nothing (with them on, see below).
        let images = match_rules(&rules, &events, false);
        assert_eq!(
            strings(&images),
            [("quay.io/a/b:v1".into(), vec!["mirror.io/b:v1".into()])]
        );
        assert_eq!(images[0].digest.as_ref().map(Digest::as_str), Some(D1));
        assert_eq!(images[0].pushed_referrer, None);
    }

    #[test]
    fn a_digest_pushed_alone_is_a_possible_referrer_for_the_subjects_targets() {
        let rules = rules(&format!(
            "quay.io/a/b:/^v/: mirror.io/b\n\
             quay.io/a/b:v1: 'renamed.io/b:x'\n\
             quay.io/a/*: backup.io/a\n\
             quay.io/a/b@{D1}: pinned.io/b\n\
             quay.io/a/c:\n  to: mirror.io/c\n  referrers: false\n"
        ));
        let pushed = event("quay.io/a/b", Some(D2));
        let images = match_rules(&rules, std::slice::from_ref(&pushed), true);
        // Its own digest, to the targets that keep names (a regex's, a wildcard's).
        assert_eq!(
            strings(&images),
            [(
                format!("quay.io/a/b@{D2}"),
                vec![format!("backup.io/a/b@{D2}"), format!("mirror.io/b@{D2}")]
            )]
        );
        assert_eq!(images[0].pushed_referrer, Some(PushedReferrer::Manifest));
        assert_eq!(images[0].digest.as_ref().map(Digest::as_str), Some(D2));
        // The job policy allows exactly that: no renaming target, nothing elsewhere.
        let allowed = crate::rules::targets_of(&rules, &images[0].source);
        assert_eq!(allowed, images[0].targets.iter().cloned().collect());
        // A digest rule naming the digest takes it as its image, unmarked; the other rules
        // still make a marked job.
        let named = match_rules(&rules, &[event("quay.io/a/b", Some(D1))], true);
        let plain: Vec<_> = named
            .iter()
            .filter(|i| i.pushed_referrer.is_none())
            .collect();
        assert_eq!(plain.len(), 1);
        assert_eq!(
            plain[0].targets,
            [Reference::parse(&format!("pinned.io/b@{D1}")).unwrap()]
        );
        assert_eq!(named.len(), 2);
        // `referrers: false` on the rule, or for the run: nothing.
        assert_eq!(
            strings(&match_rules(
                &rules,
                &[event("quay.io/a/c", Some(D2))],
                true
            )),
            [(
                format!("quay.io/a/c@{D2}"),
                vec![format!("backup.io/a/c@{D2}")]
            )]
        );
        assert!(match_rules(&rules, &[pushed], false).is_empty());
    }

    #[test]
    fn a_push_under_a_wildcard_matches_it_with_its_path_kept() {
        let rules = rules(
            "h.io/team/**: {to: b.io/backup, tags: {exclude: ['/-rc/']}}\nh.io/team/*: b.io/direct",
        );
        let images = match_rules(
            &rules,
            &[
                event("h.io/team/x/app:v1", None),
                event("h.io/team/app:v2", None),
                event("h.io/team/app:v3-rc1", None),
                event("h.io/teams/app:v1", None),
                event("h.io/team:v1", None),
            ],
            true,
        );
        assert_eq!(
            strings(&images),
            [
                (
                    "h.io/team/app:v2".into(),
                    vec!["b.io/backup/app:v2".into(), "b.io/direct/app:v2".into()]
                ),
                (
                    "h.io/team/app:v3-rc1".into(),
                    vec!["b.io/direct/app:v3-rc1".into()]
                ),
                (
                    "h.io/team/x/app:v1".into(),
                    vec!["b.io/backup/x/app:v1".into()]
                ),
            ]
        );
        // The worker's policy: a copy job a wildcard rule gives is allowed, nothing else.
        let job = Reference::parse("h.io/team/x/app:v1").unwrap();
        let allowed = crate::rules::targets_of(&rules, &job);
        assert!(allowed.contains(&Reference::parse("b.io/backup/x/app:v1").unwrap()));
        assert_eq!(allowed.len(), 1);
        let team = Reference::parse("h.io/team:v1").unwrap();
        assert!(crate::rules::targets_of(&rules, &team).is_empty());
    }

    #[test]
    fn tag_list_rule_renames_by_position() {
        let renamed = rules("quay.io/a/b:v1,v2: mirror.io/b:one,two");
        let images = match_rules(
            &renamed,
            &[event("quay.io/a/b:v2", None), event("quay.io/a/b:v3", None)],
            true,
        );
        assert_eq!(
            strings(&images),
            [("quay.io/a/b:v2".into(), vec!["mirror.io/b:two".into()])]
        );
        // A tag listed twice goes to both of its names, as when planning.
        let twice = rules("quay.io/a/b:v1,v1: mirror.io/b:x,y");
        let images = match_rules(&twice, &[event("quay.io/a/b:v1", None)], true);
        assert_eq!(
            strings(&images),
            [(
                "quay.io/a/b:v1".into(),
                vec!["mirror.io/b:x".into(), "mirror.io/b:y".into()]
            )]
        );
    }

    #[test]
    fn regex_rule_takes_the_tags_it_matches() {
        let rules = rules("quay.io/a/b:/^v1\\./: [mirror.io/b, backup.io/b]");
        let images = match_rules(
            &rules,
            &[
                event("quay.io/a/b:v1.2", None),
                event("quay.io/a/b:v2.0", None),
            ],
            true,
        );
        assert_eq!(
            strings(&images),
            [(
                "quay.io/a/b:v1.2".into(),
                vec!["backup.io/b:v1.2".into(), "mirror.io/b:v1.2".into()]
            )]
        );
    }

    #[test]
    fn digest_rule_takes_only_its_digest() {
        let rules = rules(&format!(
            "quay.io/a/b@{D1}: [mirror.io/b, mirror.io/c:pinned, mirror.io/d@{D1}]"
        ));
        let matched = |e: PushEvent| strings(&match_rules(&rules, &[e], true));
        let expected = vec![(
            format!("quay.io/a/b@{D1}"),
            vec![
                format!("mirror.io/b@{D1}"),
                "mirror.io/c:pinned".to_string(),
                format!("mirror.io/d@{D1}"),
            ],
        )];
        assert_eq!(matched(event("quay.io/a/b", Some(D1))), expected);
        // A tag push whose manifest is that digest is that digest too.
        assert_eq!(matched(event("quay.io/a/b:latest", Some(D1))), expected);
        assert!(matched(event("quay.io/a/b", Some(D2))).is_empty());
        assert!(matched(event("quay.io/a/b:latest", None)).is_empty());
    }

    #[test]
    fn other_repositories_and_registries_never_match() {
        let rules = rules("quay.io/a/b: mirror.io/b");
        for e in [
            event("quay.io/a/c:v1", None),
            event("other.io/a/b:v1", None),
            event("docker.io/a/b:v1", None),
        ] {
            assert!(match_rules(&rules, &[e], true).is_empty());
        }
    }

    #[test]
    fn rules_for_one_source_merge_and_conflicting_digests_are_dropped() {
        let rules = rules("quay.io/a/b: mirror.io/b\nquay.io/a/b:v1: backup.io/b:stable\n");
        let images = match_rules(
            &rules,
            &[
                event("quay.io/a/b:v1", Some(D1)),
                event("quay.io/a/b:v1", Some(D1)),
            ],
            true,
        );
        assert_eq!(
            strings(&images),
            [(
                "quay.io/a/b:v1".into(),
                vec!["backup.io/b:stable".into(), "mirror.io/b:v1".into()]
            )]
        );
        assert_eq!(images[0].digest.as_ref().map(Digest::as_str), Some(D1));
        let moved = match_rules(
            &rules,
            &[
                event("quay.io/a/b:v1", Some(D1)),
                event("quay.io/a/b:v1", Some(D2)),
            ],
            true,
        );
        assert_eq!(moved.len(), 1);
        assert_eq!(moved[0].digest, None);
    }

    #[test]
    fn long_form_filters_decide_pushes_as_when_planning() {
        let rules = rules(
            "docker.io/library/nginx:\n  to: mirror.io/nginx\n  tags:\n    \
             semver: '>=1.24, <2'\n    exclude: ['/-rc/']\n    latest: 2\n",
        );
        let matched = |tag: &str| strings(&match_rules(&rules, &[event(tag, None)], true));
        assert!(matched("docker.io/library/nginx:1.27.0-rc1").is_empty());
        assert!(matched("docker.io/library/nginx:2.0.0").is_empty());
        assert!(matched("docker.io/library/nginx:latest").is_empty());
        assert_eq!(
            matched("docker.io/library/nginx:v1.27.1"),
            [(
                "docker.io/library/nginx:v1.27.1".into(),
                vec!["mirror.io/nginx:v1.27.1".into()]
            )]
        );
    }

    #[test]
    fn a_pushed_signature_copies_its_subject_by_digest() {
        let hex = &D1["sha256:".len()..];
        let rules = rules(
            "quay.io/a/b:/^v/: mirror.io/b\n\
             quay.io/a/b:v1: [backup.io/b, 'renamed.io/b:x']\n\
             quay.io/a/c:\n  to: mirror.io/c\n  referrers: false\n",
        );
        for tag in [
            format!("sha256-{hex}.sig"),
            format!("sha256-{hex}.att"),
            format!("sha256-{hex}"),
        ] {
            let pushed = event(&format!("quay.io/a/b:{tag}"), Some(D2));
            // The subject by digest, to the targets that keep names, of every rule on
            // the repository (a regex or a tag list, whatever tags they select).
            let images = match_rules(&rules, std::slice::from_ref(&pushed), true);
            assert_eq!(
                strings(&images),
                [(
                    format!("quay.io/a/b@{D1}"),
                    vec![format!("backup.io/b@{D1}"), format!("mirror.io/b@{D1}")]
                )]
            );
            assert_eq!(
                images[0].digest.as_ref().map(ToString::to_string),
                Some(D1.into())
            );
            // The job names the tag, which the copier waits for at the source.
            assert_eq!(
                images[0].pushed_referrer,
                Some(PushedReferrer::Tag(tag.clone()))
            );
            // The job policy allows what the webhook sends.
            let allowed = crate::rules::targets_of(&rules, &images[0].source);
            assert!(images[0].targets.iter().all(|t| allowed.contains(t)));
            // Referrers off for the run: a tag like any other, which the regex does not take.
            assert!(match_rules(&rules, &[pushed], false).is_empty());
        }
        // A rule with `referrers: false` takes no signature, and allows no digest job.
        let quiet = event(&format!("quay.io/a/c:sha256-{hex}.sig"), None);
        assert!(match_rules(&rules, &[quiet], true).is_empty());
        let source = Reference::parse(&format!("quay.io/a/c@{D1}")).unwrap();
        assert!(crate::rules::targets_of(&rules, &source).is_empty());
        // Not a referrer tag: an ordinary tag.
        let short = event("quay.io/a/b:sha256-abc.sig", None);
        assert!(match_rules(&rules, &[short], true).is_empty());
    }
}
