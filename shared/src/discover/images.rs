//! From image uses to the images file: each image parsed with ferry's reference grammar
//! (one that does not parse is a warning naming its workload), `--pin`'s tags replaced by
//! the digests pods report running, one rule per source repository (its tags joined as
//! `repo:t1,t2`, each digest a rule of its own), targets under `--to` or empty, sorted, and
//! rendered as YAML with a comment naming the workloads of each rule, or as JSON. What a
//! rule means is `rules`'s, which reads this output like any images file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use super::workload::{Inventory, WorkloadName};
use super::{DiscoverError, Discovered, Options, Warning, QUOTE_LIMIT};
use crate::error::truncate;
use crate::reference::{
    is_registry_segment, Digest, Locator, Reference, ReferenceError, Repository, DOCKER_HUB,
};

/// A rule's comment names at most this many workloads, then says how many more.
const COMMENT_WORKLOADS: usize = 10;

/// `--to REGISTRY[/NAMESPACE]`: every source repository goes to the same path under it
/// (`docker.io/library/nginx` → `REGISTRY/NAMESPACE/library/nginx`), so repositories of the
/// same name from different places do not collide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPrefix {
    registry: String,
    namespace: Option<String>,
}

impl TargetPrefix {
    pub fn parse(text: &str) -> Result<Self, DiscoverError> {
        let bad = |reason: String| DiscoverError::BadTo {
            value: truncate(text, QUOTE_LIMIT),
            reason,
        };
        let trimmed = text.trim().trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(bad("empty".to_string()));
        }
        let (registry, namespace) = match trimmed.split_once('/') {
            Some((first, rest)) if is_registry_segment(first) => (first, Some(rest)),
            None if is_registry_segment(trimmed) => (trimmed, None),
            _ => (DOCKER_HUB, Some(trimmed)),
        };
        let probe =
            Repository::new(registry, namespace.unwrap_or("x")).map_err(|e| bad(e.to_string()))?;
        Ok(TargetPrefix {
            registry: probe.registry().to_string(),
            namespace: namespace.map(str::to_string),
        })
    }

    fn target(&self, source: &Repository) -> Result<Repository, ReferenceError> {
        let path = match &self.namespace {
            Some(namespace) => format!("{namespace}/{}", source.path()),
            None => source.path().to_string(),
        };
        Repository::new(&self.registry, &path)
    }
}

impl fmt::Display for TargetPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.registry)?;
        if let Some(namespace) = &self.namespace {
            write!(f, "/{namespace}")?;
        }
        Ok(())
    }
}

/// One rule of the images file and the workloads that use what it selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredRule {
    /// `repo:t1,t2` or `repo@digest`.
    pub source: String,
    /// Under `--to`, or empty (`--registry`/`--namespace` fill it at sync time).
    pub target: String,
    /// `namespace/Kind/name`, sorted.
    pub workloads: Vec<String>,
}

/// The images file, its rules sorted by source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImagesFile {
    pub rules: Vec<DiscoveredRule>,
}

impl ImagesFile {
    /// image-syncer's images file as YAML, a comment above each rule naming its workloads.
    pub fn to_yaml(&self) -> String {
        let mut text = String::from(
            "# Images the workloads use, found by `ferry discover`: edit, then `ferry plan`/`ferry sync`.\n",
        );
        if self.rules.is_empty() {
            text.push_str("{}\n");
        }
        for rule in &self.rules {
            text.push_str("# ");
            text.push_str(&comment(&rule.workloads));
            text.push('\n');
            let one = BTreeMap::from([(&rule.source, &rule.target)]);
            // A map of two strings always serialises.
            text.push_str(&serde_yaml::to_string(&one).unwrap_or_default());
        }
        text
    }

    /// The same rules as a JSON object (JSON has no comments).
    pub fn to_json(&self) -> String {
        let map: BTreeMap<&str, &str> = self
            .rules
            .iter()
            .map(|r| (r.source.as_str(), r.target.as_str()))
            .collect();
        let mut text = serde_json::to_string_pretty(&map).unwrap_or_default();
        text.push('\n');
        text
    }
}

fn comment(workloads: &[String]) -> String {
    let mut text = workloads
        .iter()
        .take(COMMENT_WORKLOADS)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if workloads.len() > COMMENT_WORKLOADS {
        text.push_str(&format!(
            " and {} more",
            workloads.len() - COMMENT_WORKLOADS
        ));
    }
    text
}

/// A container's image as the runtime reads it: `name:tag@digest` pulls the digest, so the
/// tag is dropped; no tag means `latest`.
fn parse_image(text: &str) -> Result<Reference, ReferenceError> {
    let text = text.trim();
    match text.split_once('@') {
        Some((name, digest)) => {
            let last_slash = name.rfind('/').map_or(0, |i| i + 1);
            let name = match name[last_slash..].find(':') {
                Some(colon) => &name[..last_slash + colon],
                None => name,
            };
            Reference::parse(&format!("{name}@{digest}"))
        }
        None => Reference::parse(text),
    }
}

/// The manifest digest in a pod's `imageID` (`docker-pullable://repo@sha256:…`,
/// `repo@sha256:…`); a bare `sha256:…` is the image's config, not something to copy by.
fn running_digest(image_id: &str) -> Option<Digest> {
    image_id.rsplit_once('@')?.1.parse().ok()
}

#[derive(Default)]
struct RepositoryUses {
    tags: BTreeMap<String, BTreeSet<WorkloadName>>,
    digests: BTreeMap<Digest, BTreeSet<WorkloadName>>,
}

/// The images file for everything `inventory` runs.
pub(super) fn build(
    inventory: Inventory,
    options: &Options,
    mut warnings: Vec<Warning>,
) -> Discovered {
    let mut parsed = Vec::new();
    let mut running: HashMap<Reference, BTreeSet<Digest>> = HashMap::new();
    for use_ in inventory.uses() {
        let reference = match parse_image(&use_.image) {
            Ok(reference) => reference,
            Err(reason) => {
                let warning = Warning::BadImage {
                    workload: use_.workload.to_string(),
                    container: use_.container,
                    image: truncate(&use_.image, QUOTE_LIMIT),
                    reason: reason.to_string(),
                };
                if !warnings.contains(&warning) {
                    warnings.push(warning);
                }
                continue;
            }
        };
        if let Some(digest) = use_.image_id.as_deref().and_then(running_digest) {
            running.entry(reference.clone()).or_default().insert(digest);
        }
        parsed.push((reference, use_.workload));
    }
    let mut repositories: BTreeMap<Repository, RepositoryUses> = BTreeMap::new();
    let mut not_pinned: BTreeMap<Reference, BTreeSet<WorkloadName>> = BTreeMap::new();
    let mut on_target = BTreeSet::new();
    for (reference, workload) in parsed {
        if let Some(to) = &options.to {
            if reference.repository.registry() == to.registry {
                on_target.insert(reference);
                continue;
            }
        }
        let uses = repositories
            .entry(reference.repository.clone())
            .or_default();
        match &reference.locator {
            Locator::Digest(digest) => {
                uses.digests
                    .entry(digest.clone())
                    .or_default()
                    .insert(workload);
            }
            Locator::Tag(tag) => match running.get(&reference).filter(|_| options.pin) {
                Some(digests) => {
                    for digest in digests {
                        let names = uses.digests.entry(digest.clone()).or_default();
                        names.insert(workload.clone());
                    }
                }
                None => {
                    if options.pin {
                        let names = not_pinned.entry(reference.clone()).or_default();
                        names.insert(workload.clone());
                    }
                    uses.tags.entry(tag.clone()).or_default().insert(workload);
                }
            },
        }
    }
    for (image, workloads) in not_pinned {
        let workloads: Vec<String> = workloads.iter().map(ToString::to_string).collect();
        warnings.push(Warning::NotPinned {
            image: image.to_string(),
            workloads: comment(&workloads),
        });
    }
    for image in on_target {
        warnings.push(Warning::AlreadyOnTarget {
            image: image.to_string(),
        });
    }
    let mut rules = Vec::new();
    for (repository, uses) in repositories {
        let target = match options.to.as_ref().map(|to| to.target(&repository)) {
            None => String::new(),
            Some(Ok(target)) => target.to_string(),
            Some(Err(reason)) => {
                warnings.push(Warning::BadTarget {
                    image: repository.to_string(),
                    reason: reason.to_string(),
                });
                continue;
            }
        };
        let names = |set: &BTreeSet<WorkloadName>| set.iter().map(ToString::to_string).collect();
        if !uses.tags.is_empty() {
            let tags: Vec<&str> = uses.tags.keys().map(String::as_str).collect();
            let all: BTreeSet<WorkloadName> = uses.tags.values().flatten().cloned().collect();
            rules.push(DiscoveredRule {
                source: format!("{repository}:{}", tags.join(",")),
                target: target.clone(),
                workloads: names(&all),
            });
        }
        for (digest, workloads) in &uses.digests {
            rules.push(DiscoveredRule {
                source: format!("{repository}@{digest}"),
                target: target.clone(),
                workloads: names(workloads),
            });
        }
    }
    rules.sort_by(|a, b| a.source.cmp(&b.source));
    Discovered {
        file: ImagesFile { rules },
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::{json, Value};

    use super::super::workload::collect;
    use super::*;
    use crate::env::MapEnv;
    use crate::rules::{rules_from_value, Defaults};

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn discover(objects: Value, options: &Options) -> Discovered {
        let mut out = Vec::new();
        collect(&objects, &mut out);
        build(Inventory::new(out), options, Vec::new())
    }

    fn deployment(namespace: &str, name: &str, images: &[&str]) -> Value {
        let containers: Vec<Value> = images
            .iter()
            .enumerate()
            .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
            .collect();
        json!({"kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
               "spec": {"template": {"spec": {"containers": containers}}}})
    }

    fn pairs(file: &ImagesFile) -> Vec<(&str, &str)> {
        file.rules
            .iter()
            .map(|r| (r.source.as_str(), r.target.as_str()))
            .collect()
    }

    #[test]
    fn one_rule_per_repository_sorted_with_targets_under_to() {
        let objects = json!({"kind": "List", "items": [
            deployment("default", "web", &["nginx:1.25", "quay.io/prom/exporter:v1"]),
            deployment("batch", "report", &["docker.io/library/nginx:1.26", "nginx", "nginx:1.25"]),
            deployment("x", "pinned", &[&format!("nginx:1.25@{D1}"), "mirror.example.com/own/app:1", "Bad:Image"]),
        ]});
        let options = Options {
            to: Some(TargetPrefix::parse("mirror.example.com/team/").unwrap()),
            pin: false,
        };
        let found = discover(objects, &options);
        assert_eq!(
            pairs(&found.file),
            [
                (
                    "docker.io/library/nginx:1.25,1.26,latest",
                    "mirror.example.com/team/library/nginx"
                ),
                (
                    &format!("docker.io/library/nginx@{D1}") as &str,
                    "mirror.example.com/team/library/nginx"
                ),
                (
                    "quay.io/prom/exporter:v1",
                    "mirror.example.com/team/prom/exporter"
                ),
            ]
        );
        assert_eq!(
            found.file.rules[0].workloads,
            ["batch/Deployment/report", "default/Deployment/web"]
        );
        let warnings: Vec<String> = found.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("x/Deployment/pinned") && warnings[0].contains("Bad:Image"));
        assert!(
            warnings[1].contains("mirror.example.com/own/app:1 is already on the --to registry")
        );
        let yaml = found.file.to_yaml();
        assert!(
            yaml.contains("# batch/Deployment/report, default/Deployment/web\ndocker.io/library/nginx:1.25,1.26,latest: mirror.example.com/team/library/nginx\n"),
            "{yaml}"
        );
        // The file is an images file ferry reads.
        let value: Value = serde_yaml::from_str(&yaml).unwrap();
        let rules = rules_from_value(
            Path::new("d.yaml"),
            &value,
            &Defaults::default(),
            &MapEnv::default(),
        )
        .unwrap();
        assert_eq!(rules.len(), 3);
        let json: Value = serde_json::from_str(&found.file.to_json()).unwrap();
        assert_eq!(json, value);
    }

    #[test]
    fn pin_takes_the_digests_pods_run() {
        let pod = |name: &str, image_id: &str| {
            json!({"kind": "Pod", "metadata": {"name": name, "namespace": "ns",
                "ownerReferences": [{"kind": "Deployment", "name": "web", "controller": true}]},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}, {"name": "side", "image": "side:1"}]},
                "status": {"containerStatuses": [{"name": "c", "imageID": image_id},
                    {"name": "side", "imageID": format!("sha256:{}", "3".repeat(64))}]}})
        };
        let objects = json!({"kind": "List", "items": [
            deployment("ns", "web", &["nginx:1.25", "side:1"]),
            pod("a", &format!("docker-pullable://nginx@{D1}")),
            pod("b", &format!("docker.io/library/nginx@{D2}")),
        ]});
        let pinned = discover(
            objects.clone(),
            &Options {
                to: None,
                pin: true,
            },
        );
        assert_eq!(
            pairs(&pinned.file),
            [
                ("docker.io/library/nginx@".to_string() + D1, String::new()),
                ("docker.io/library/nginx@".to_string() + D2, String::new()),
                ("docker.io/library/side:1".to_string(), String::new()),
            ]
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect::<Vec<_>>()
        );
        assert!(pinned
            .file
            .rules
            .iter()
            .all(|r| r.workloads == ["ns/Deployment/web"]));
        assert_eq!(pinned.warnings.len(), 1);
        assert!(pinned.warnings[0]
            .to_string()
            .contains("docker.io/library/side:1"));
        let tagged = discover(objects, &Options::default());
        assert_eq!(
            pairs(&tagged.file),
            [
                ("docker.io/library/nginx:1.25", ""),
                ("docker.io/library/side:1", "")
            ]
        );
        assert!(tagged
            .file
            .to_yaml()
            .contains("docker.io/library/side:1: ''\n"));
    }

    #[test]
    fn to_forms() {
        let to = |s: &str| TargetPrefix::parse(s).map(|t| t.to_string());
        assert_eq!(to("127.0.0.1:5000").unwrap(), "127.0.0.1:5000");
        assert_eq!(to("reg.io/a/b/").unwrap(), "reg.io/a/b");
        assert_eq!(to("team").unwrap(), "docker.io/team");
        assert!(to("").is_err() && to("reg.io/A").is_err() && to("bad host:1/x").is_err());
        let repo = Repository::parse("quay.io/a/b").unwrap();
        let prefix = TargetPrefix::parse("127.0.0.1:5000").unwrap();
        assert_eq!(
            prefix.target(&repo).unwrap().to_string(),
            "127.0.0.1:5000/a/b"
        );
        let empty = ImagesFile::default();
        assert!(empty.to_yaml().ends_with("{}\n"));
        assert_eq!(empty.to_json(), "{}\n");
    }
}
