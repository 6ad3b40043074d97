//! One Kubernetes object reduced to what discovery needs: its name, its controller, and the
//! image of every container (`containers`, `initContainers`, `ephemeralContainers`) of its
//! pod spec, wherever that is: a Pod's `spec`, a PodTemplate's `template.spec`, any object's
//! `spec.template.spec` (Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs,
//! ReplicationControllers, Argo Rollouts, Knative Services, operators' CRDs) or
//! `spec.jobTemplate.spec.template.spec` (CronJobs); `kind: List` (and `PodList`, …) is
//! unwrapped. The [`Inventory`] of objects read names each image use after the topmost
//! controller that was also read, so a Deployment's pods and ReplicaSets are not listed
//! again. Where the objects come from is `manifests.rs`'s and `cluster.rs`'s; what the images
//! become is `images.rs`'s.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

use crate::error::truncate;

/// How deep `kind: List` may nest.
const MAX_LIST_DEPTH: usize = 4;
/// How many controllers up an object's name is looked for (a Pod, its ReplicaSet, its
/// Deployment, and room for operators' layers); more is a cycle.
const MAX_OWNER_DEPTH: usize = 8;
/// Kubernetes names are at most 253 characters; longer ones are cut in messages.
const NAME_LIMIT: usize = 253;

/// A workload as the images file's comments name it: `namespace/Kind/name`, or `Kind/name`
/// for a manifest that names no namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadName {
    pub namespace: Option<String>,
    pub kind: String,
    pub name: String,
}

impl fmt::Display for WorkloadName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(namespace) = &self.namespace {
            write!(f, "{namespace}/")?;
        }
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// A name from the input, safe to print: control characters (newlines in a comment) become
/// `?`, and it is cut at [`NAME_LIMIT`].
fn printable(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    truncate(&clean, NAME_LIMIT)
}

/// The controller an object names in `metadata.ownerReferences`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnerRef {
    kind: String,
    name: String,
    uid: Option<String>,
}

/// One container's image as written, and the image ID a pod's status reports for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ContainerImage {
    pub container: String,
    pub image: String,
    /// `status.*ContainerStatuses[].imageID`: what the node actually runs.
    pub image_id: Option<String>,
}

/// An object that carries a pod spec, reduced.
#[derive(Debug, Clone)]
pub(super) struct ObjectImages {
    name: WorkloadName,
    uid: Option<String>,
    controller: Option<OwnerRef>,
    /// A ReplicaSet's pods carry it; it ties them to a Deployment whose ReplicaSet was not read.
    pod_template_hash: Option<String>,
    containers: Vec<ContainerImage>,
}

impl ObjectImages {
    pub fn namespace(&self) -> Option<&str> {
        self.name.namespace.as_deref()
    }
}

/// Adds the objects in `value` that carry a pod spec to `out`: the value itself, or the items
/// of a `kind: List`. Objects without one (Services, ConfigMaps, …) are skipped.
pub(super) fn collect(value: &Value, out: &mut Vec<ObjectImages>) {
    collect_at(value, None, 0, out);
}

fn collect_at(
    value: &Value,
    default_kind: Option<&str>,
    depth: usize,
    out: &mut Vec<ObjectImages>,
) {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .or(default_kind)
        .unwrap_or_default();
    if let (Some(list_kind), Some(items)) = (kind.strip_suffix("List"), value.get("items")) {
        if depth >= MAX_LIST_DEPTH {
            return;
        }
        let item_kind = (!list_kind.is_empty()).then_some(list_kind);
        for item in items.as_array().into_iter().flatten() {
            collect_at(item, item_kind, depth + 1, out);
        }
        return;
    }
    if let Some(object) = read_object(value, kind) {
        out.push(object);
    }
}

/// The object `value` of kind `kind` reduced, when it carries a pod spec.
pub(super) fn read_object(value: &Value, kind: &str) -> Option<ObjectImages> {
    let spec = pod_spec(value, kind)?;
    let metadata = value.get("metadata");
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let field = |name: &str| text(metadata.and_then(|m| m.get(name)));
    let name = WorkloadName {
        namespace: field("namespace")
            .filter(|n| !n.is_empty())
            .map(|n| printable(&n)),
        kind: printable(if kind.is_empty() { "Object" } else { kind }),
        name: printable(&field("name").unwrap_or_else(|| "(unnamed)".to_string())),
    };
    let owners = metadata
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array);
    let controller = owners.and_then(|owners| {
        let is_controller = |o: &&Value| o.get("controller").and_then(Value::as_bool) == Some(true);
        owners.iter().find(is_controller).or(owners.first())
    });
    let controller = controller.and_then(|owner| {
        Some(OwnerRef {
            kind: printable(owner.get("kind")?.as_str()?),
            name: printable(owner.get("name")?.as_str()?),
            uid: text(owner.get("uid")),
        })
    });
    let pod_template_hash = text(
        metadata
            .and_then(|m| m.get("labels"))
            .and_then(|l| l.get("pod-template-hash")),
    );
    let statuses = image_ids(value.get("status"));
    let mut containers = Vec::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for container in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let container_name = printable(
                container
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            );
            let image = match container.get("image") {
                None | Some(Value::Null) => continue,
                Some(Value::String(image)) => image.clone(),
                Some(other) => other.to_string(),
            };
            let image_id = statuses.get(container_name.as_str()).cloned();
            containers.push(ContainerImage {
                container: container_name,
                image,
                image_id,
            });
        }
    }
    Some(ObjectImages {
        name,
        uid: field("uid"),
        controller,
        pod_template_hash,
        containers,
    })
}

/// Where an object of `kind` keeps its pod spec, if it has one.
fn pod_spec<'a>(value: &'a Value, kind: &str) -> Option<&'a Value> {
    let candidates = [
        (kind == "Pod").then(|| value.get("spec")).flatten(),
        (kind == "PodTemplate")
            .then(|| value.pointer("/template/spec"))
            .flatten(),
        value.pointer("/spec/template/spec"),
        value.pointer("/spec/jobTemplate/spec/template/spec"),
    ];
    candidates.into_iter().flatten().find(|spec| {
        ["containers", "initContainers", "ephemeralContainers"]
            .iter()
            .any(|list| spec.get(list).is_some_and(Value::is_array))
    })
}

/// Container name → image ID from a pod's status.
fn image_ids(status: Option<&Value>) -> HashMap<String, String> {
    let mut ids = HashMap::new();
    let Some(status) = status else {
        return ids;
    };
    for list in [
        "initContainerStatuses",
        "containerStatuses",
        "ephemeralContainerStatuses",
    ] {
        for entry in status
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = entry.get("name").and_then(Value::as_str);
            let id = entry.get("imageID").and_then(Value::as_str);
            if let (Some(name), Some(id)) = (name, id) {
                if !id.is_empty() {
                    ids.insert(printable(name), id.to_string());
                }
            }
        }
    }
    ids
}

/// One container image, attributed to the workload that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ImageUse {
    pub workload: WorkloadName,
    pub container: String,
    pub image: String,
    pub image_id: Option<String>,
}

/// Every object read, indexed so an object's controller can be found.
pub(super) struct Inventory {
    objects: Vec<ObjectImages>,
    by_uid: HashMap<String, usize>,
    by_name: HashMap<WorkloadName, usize>,
}

impl Inventory {
    pub fn new(objects: Vec<ObjectImages>) -> Self {
        let mut by_uid = HashMap::new();
        let mut by_name = HashMap::new();
        for (i, object) in objects.iter().enumerate() {
            if let Some(uid) = &object.uid {
                by_uid.entry(uid.clone()).or_insert(i);
            }
            by_name.entry(object.name.clone()).or_insert(i);
        }
        Inventory {
            objects,
            by_uid,
            by_name,
        }
    }

    /// Every container image of every object, named after its topmost controller read.
    pub fn uses(&self) -> Vec<ImageUse> {
        let mut uses = Vec::new();
        for (i, object) in self.objects.iter().enumerate() {
            let workload = self.top(i);
            for container in &object.containers {
                uses.push(ImageUse {
                    workload: workload.clone(),
                    container: container.container.clone(),
                    image: container.image.clone(),
                    image_id: container.image_id.clone(),
                });
            }
        }
        uses
    }

    /// The name of the topmost controller of object `i`: a read controller is followed; one
    /// not read (an operator's CRD) still names the workload, so its pods are one workload.
    fn top(&self, mut i: usize) -> WorkloadName {
        for _ in 0..MAX_OWNER_DEPTH {
            let object = &self.objects[i];
            let Some(owner) = &object.controller else {
                return object.name.clone();
            };
            match self.find_owner(object, owner) {
                Some(j) if j != i => i = j,
                Some(_) => return object.name.clone(),
                None => {
                    return WorkloadName {
                        namespace: object.name.namespace.clone(),
                        kind: owner.kind.clone(),
                        name: owner.name.clone(),
                    }
                }
            }
        }
        self.objects[i].name.clone()
    }

    fn find_owner(&self, object: &ObjectImages, owner: &OwnerRef) -> Option<usize> {
        let named = |kind: &str, name: &str| {
            self.by_name
                .get(&WorkloadName {
                    namespace: object.name.namespace.clone(),
                    kind: kind.to_string(),
                    name: name.to_string(),
                })
                .copied()
        };
        if let Some(i) = owner.uid.as_ref().and_then(|uid| self.by_uid.get(uid)) {
            return Some(*i);
        }
        if let Some(i) = named(&owner.kind, &owner.name) {
            return Some(i);
        }
        // `kubectl get deploy,pods`: the ReplicaSet between them was not read, but its name
        // is the Deployment's and the pods' template hash.
        let hash = object.pod_template_hash.as_deref()?;
        let deployment = owner
            .name
            .strip_suffix(hash)
            .and_then(|n| n.strip_suffix('-'))
            .filter(|_| owner.kind == "ReplicaSet")?;
        named("Deployment", deployment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn objects(value: Value) -> Vec<ObjectImages> {
        let mut out = Vec::new();
        collect(&value, &mut out);
        out
    }

    fn uses(value: Value) -> Vec<(String, String)> {
        Inventory::new(objects(value))
            .uses()
            .into_iter()
            .map(|u| (u.workload.to_string(), u.image))
            .collect()
    }

    #[test]
    fn every_pod_spec_location_and_container_kind() {
        let list = json!({"kind": "List", "items": [
            {"kind": "Pod", "metadata": {"name": "p", "namespace": "a"}, "spec": {
                "initContainers": [{"name": "i", "image": "init:1"}],
                "containers": [{"name": "c", "image": "app:1"}],
                "ephemeralContainers": [{"name": "e", "image": "debug:1"}]}},
            {"kind": "CronJob", "metadata": {"name": "r", "namespace": "b"}, "spec": {
                "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "report:2"}]}}}}}},
            {"kind": "Rollout", "apiVersion": "argoproj.io/v1alpha1", "metadata": {"name": "ro"},
             "spec": {"template": {"spec": {"containers": [{"image": "ro:3"}]}}}},
            {"kind": "PodTemplate", "metadata": {"name": "t"}, "template": {"spec": {"containers": [{"image": "t:4"}]}}},
            {"kind": "Service", "metadata": {"name": "s"}, "spec": {"template": "not a pod"}},
            {"kind": "Deployment", "metadata": {"name": "bad"}, "spec": {"template": {"spec": {"containers": [{"image": 5}, {"name": "none"}]}}}}
        ]});
        assert_eq!(
            uses(list),
            [
                ("a/Pod/p", "init:1"),
                ("a/Pod/p", "app:1"),
                ("a/Pod/p", "debug:1"),
                ("b/CronJob/r", "report:2"),
                ("Rollout/ro", "ro:3"),
                ("PodTemplate/t", "t:4"),
                ("Deployment/bad", "5"),
            ]
            .map(|(w, i)| (w.to_string(), i.to_string()))
        );
    }

    #[test]
    fn pods_are_named_after_their_topmost_controller_read() {
        let pod = |name: &str, owner: Value| {
            json!({"kind": "Pod", "metadata": {"name": name, "namespace": "ns",
                "labels": {"pod-template-hash": "5d8f"}, "ownerReferences": [owner]},
                "spec": {"containers": [{"name": "c", "image": "web:1"}]},
                "status": {"containerStatuses": [{"name": "c", "imageID": "docker.io/library/web@sha256:ab"}]}})
        };
        let template = json!({"spec": {"containers": [{"name": "c", "image": "web:1"}]}});
        let items = json!({"kind": "PodList", "items": [
            {"metadata": {"name": "web", "namespace": "ns", "uid": "d1"}, "kind": "Deployment", "spec": {"template": template}},
            {"metadata": {"name": "web-5d8f", "namespace": "ns", "uid": "rs1",
                "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "d1", "controller": true}]},
             "kind": "ReplicaSet", "spec": {"template": template}},
            pod("web-5d8f-x", json!({"kind": "ReplicaSet", "name": "web-5d8f", "uid": "rs1", "controller": true})),
            pod("op-1", json!({"kind": "Database", "name": "db", "uid": "u9", "controller": true})),
            pod("loop", json!({"kind": "Pod", "name": "loop"})),
        ]});
        let inventory = Inventory::new(objects(items));
        let names: Vec<String> = inventory
            .uses()
            .iter()
            .map(|u| u.workload.to_string())
            .collect();
        assert_eq!(
            names,
            [
                "ns/Deployment/web",
                "ns/Deployment/web",
                "ns/Deployment/web",
                "ns/Database/db",
                "ns/Pod/loop"
            ]
        );
        assert_eq!(
            inventory.uses()[2].image_id.as_deref(),
            Some("docker.io/library/web@sha256:ab")
        );
        // Without the ReplicaSet, the template hash still ties the pod to its Deployment.
        let without_rs = json!({"kind": "List", "items": [
            {"metadata": {"name": "web", "namespace": "ns"}, "kind": "Deployment", "spec": {"template": template}},
            pod("web-5d8f-x", json!({"kind": "ReplicaSet", "name": "web-5d8f", "controller": true})),
        ]});
        assert!(uses(without_rs)
            .iter()
            .all(|(w, _)| w == "ns/Deployment/web"));
    }

    #[test]
    fn names_are_printable() {
        let pod = json!({"kind": "Pod", "metadata": {"name": "a\nb"}, "spec": {"containers": [{"image": "x"}]}});
        assert_eq!(uses(pod)[0].0, "Pod/a?b");
        let deep = (0..10).fold(
            json!({"kind": "Pod", "spec": {"containers": [{"image": "x"}]}}),
            |v, _| json!({"kind": "List", "items": [v]}),
        );
        assert!(
            uses(deep).is_empty(),
            "lists nest at most {MAX_LIST_DEPTH} deep"
        );
    }
}
