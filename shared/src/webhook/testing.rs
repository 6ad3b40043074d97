//! What the webhook's unit tests share: the secret, the fixtures, and builders for rules,
//! push events and authenticated requests. Test code only.

use std::path::Path;

use serde_json::Value;

use super::{HttpRequest, PushEvent};
use crate::env::MapEnv;
use crate::reference::{split_reference, Repository, Suffix};
use crate::rules::{rules_from_value, Defaults, Rule};

pub(super) const SECRET: &str = "s3cret-for-tests";
/// The index in the `distribution-index` fixture.
pub(super) const INDEX: &str =
    "sha256:219a20b15533abb92394acc963baa647a3351155cb9b53d4848799144ebc0528";

/// A payload from `tests/fixtures/webhook/`, as text.
macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/webhook/",
            $name,
            ".json"
        ))
    };
}
pub(super) use fixture;

pub(super) fn rules(yaml: &str) -> Vec<Rule> {
    let value: Value = serde_yaml::from_str(yaml).unwrap();
    rules_from_value(
        Path::new("images.yaml"),
        &value,
        &Defaults::default(),
        &MapEnv::default(),
    )
    .unwrap()
}

pub(super) fn event(reference: &str, digest: Option<&str>) -> PushEvent {
    let split = split_reference(reference).unwrap();
    let tag = match split.suffix {
        Suffix::Tag(t) => Some(t.to_string()),
        _ => None,
    };
    PushEvent {
        repository: Repository::parse(split.name).unwrap(),
        tag,
        digest: digest.map(|d| d.parse().unwrap()),
    }
}

/// A POST with the secret as a Bearer token.
pub(super) fn post(body: &str) -> HttpRequest {
    HttpRequest {
        method: "POST".into(),
        path: "/".into(),
        query: None,
        headers: vec![("authorization".into(), format!("Bearer {SECRET}"))],
        body: body.as_bytes().to_vec(),
    }
}

/// An `Authorization` header.
pub(super) fn header(value: &str) -> Vec<(String, String)> {
    vec![("Authorization".into(), value.into())]
}
