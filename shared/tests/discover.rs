//! Property tests for `discover`: whatever a manifest holds, reading it returns an images
//! file or an error and never panics, and the images file it returns is one ferry's own
//! rules parser reads, whatever the images, tags, digests and `--to` were.

use std::path::PathBuf;

// The library, under the name its users know it by.
use ferry_core as ferry;

use ferry::discover::{from_manifests, Options, Selection, TargetPrefix};
use ferry::env::MapEnv;
use ferry::rules::{rules_from_value, Defaults};
use proptest::prelude::*;
use serde_json::{json, Value};

/// Image strings: mostly reference-shaped, sometimes anything.
fn image() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.:/@_-]{0,60}",
        "(quay\\.io/|127\\.0\\.0\\.1:5000/|)[a-z]{1,8}(/[a-z]{1,8})?(:[a-zA-Z0-9._-]{1,10})?",
        "[a-z]{1,8}(:[a-z0-9]{1,5})?@sha256:[0-9a-f]{64}",
        ".{0,40}",
    ]
}

fn pod(images: Vec<String>, ids: Vec<String>, namespace: Option<String>) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
        .collect();
    let statuses: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| json!({"name": format!("c{i}"), "imageID": id}))
        .collect();
    json!({"kind": "Pod", "metadata": {"name": "p", "namespace": namespace},
        "spec": {"containers": containers}, "status": {"containerStatuses": statuses}})
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn discovered_files_load_as_rules(
        pods in prop::collection::vec(
            (prop::collection::vec(image(), 0..4), prop::collection::vec(image(), 0..4), proptest::option::of("[a-z]{1,5}")),
            0..6,
        ),
        to in proptest::option::of("(reg\\.io|127\\.0\\.0\\.1:5000)(/[a-z]{1,6}){0,2}"),
        pin in any::<bool>(),
        json_format in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let items: Vec<Value> = pods.into_iter().map(|(images, ids, ns)| pod(images, ids, ns)).collect();
        let file = dir.path().join("pods.json");
        std::fs::write(&file, json!({"kind": "List", "items": items}).to_string()).unwrap();
        let options = Options { to: to.as_deref().map(|t| TargetPrefix::parse(t).unwrap()), pin };
        let found = from_manifests(&[file], &Selection::default(), &options).unwrap();
        let text = if json_format { found.file.to_json() } else { found.file.to_yaml() };
        let value: Value = serde_yaml::from_str(&text).unwrap();
        let defaults = Defaults { registry: Some("r.io".into()), namespace: Some("n".into()) };
        let rules = rules_from_value(&PathBuf::from("d.yaml"), &value, &defaults, &MapEnv::default());
        prop_assert!(rules.is_ok(), "{text}\n{rules:?}");
        prop_assert_eq!(rules.unwrap().len(), found.file.rules.len());
    }

    #[test]
    fn manifests_never_panic(text in ".{0,300}", json_ext in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(if json_ext { "m.json" } else { "m.yaml" });
        std::fs::write(&file, text).unwrap();
        let _ = from_manifests(&[file], &Selection::default(), &Options::default());
    }

    #[test]
    fn to_flags_never_panic(text in ".{0,60}") {
        let _ = TargetPrefix::parse(&text);
    }
}
