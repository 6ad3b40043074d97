//! The notification formats ferry understands and how each becomes [`PushEvent`]s: the CNCF
//! distribution envelope, Harbor (default and CloudEvents), Docker Hub, Quay `repo_push`,
//! Azure Container Registry and Amazon ECR's "ECR Image Action" EventBridge event, told
//! apart by their shape ([`Format::detect`]). Only manifest pushes count: blob pushes,
//! pulls, deletes and scans are ignored.
//!
//! Walking the JSON and naming the field at fault is `payload.rs`'s job; validating the
//! names read is `push.rs`'s. What the pushes mean under the rules is `matching.rs`'s.

use std::collections::HashSet;
use std::fmt;

use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

use super::payload::{At, PayloadError, PayloadProblem};
use super::push::{push_event, repository_at, PushEvent};
use crate::error::{HasKind, Kind};
use crate::reference::{split_reference, DOCKER_HUB};
use crate::registry::media_types;

/// The notification formats ferry understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// CNCF distribution's notification envelope, `{"events": [...]}`.
    Distribution,
    /// Harbor's default payload, `{"type": "PUSH_ARTIFACT", "event_data": ...}`.
    Harbor,
    /// Harbor's CloudEvents payload, `{"specversion": ..., "type": "harbor.artifact.pushed"}`.
    HarborCloudEvents,
    /// Docker Hub, `{"push_data": ..., "repository": ...}`.
    DockerHub,
    /// Quay's `repo_push` notification, `{"docker_url": ..., "updated_tags": ...}`.
    Quay,
    /// Azure Container Registry: one distribution-style event without the envelope.
    Acr,
    /// Amazon ECR's EventBridge event, `{"source": "aws.ecr", "detail-type": ...}`.
    Ecr,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Distribution => "distribution",
            Format::Harbor => "harbor",
            Format::HarborCloudEvents => "harbor-cloudevents",
            Format::DockerHub => "docker-hub",
            Format::Quay => "quay",
            Format::Acr => "acr",
            Format::Ecr => "ecr",
        }
    }

    /// The format of a payload, from keys only one format has. The order matters where
    /// shapes overlap: Harbor's CloudEvents also have a `type`, and ACR's lone event is the
    /// least specific shape, so it comes last.
    pub fn detect(payload: &Value) -> Option<Format> {
        let object = payload.as_object()?;
        let has = |key: &str| object.contains_key(key);
        let text = |key: &str| object.get(key).and_then(Value::as_str);
        if object.get("events").is_some_and(Value::is_array) {
            Some(Format::Distribution)
        } else if text("source") == Some("aws.ecr") && has("detail-type") {
            Some(Format::Ecr)
        } else if has("specversion") && text("type").is_some_and(|t| t.starts_with("harbor.")) {
            Some(Format::HarborCloudEvents)
        } else if has("event_data") && has("type") {
            Some(Format::Harbor)
        } else if has("push_data") && has("repository") {
            Some(Format::DockerHub)
        } else if has("updated_tags") && has("docker_url") {
            Some(Format::Quay)
        } else if has("action") && object.get("target").is_some_and(Value::is_object) {
            Some(Format::Acr)
        } else {
            None
        }
    }
}

impl Serialize for Format {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A payload's format and the manifest pushes in it, duplicates dropped, in payload order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub format: Format,
    pub events: Vec<PushEvent>,
}

/// Why a body is not a push notification ferry can read.
#[derive(Debug, Error)]
pub enum ParseError {
    #[error("the body is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error(
        "unrecognised payload: expected a push notification from distribution, Harbor, \
         Docker Hub, Quay, Azure Container Registry or Amazon ECR"
    )]
    UnknownFormat,
    #[error("malformed {format} payload: {error}")]
    Malformed {
        format: Format,
        #[source]
        error: PayloadError,
    },
}

impl HasKind for ParseError {
    fn kind(&self) -> Kind {
        Kind::BadInput
    }
}

/// Parses a request body. `default_registry` is the host for formats whose payload names
/// none (`FERRY_WEBHOOK_REGISTRY`); Docker Hub's falls back to `docker.io`.
pub fn parse_events(body: &[u8], default_registry: Option<&str>) -> Result<Parsed, ParseError> {
    let payload: Value = serde_json::from_slice(body).map_err(ParseError::NotJson)?;
    parse_payload(&payload, default_registry)
}

/// Parses a payload already read as JSON (a direct Lambda invocation's event).
pub fn parse_payload(
    payload: &Value,
    default_registry: Option<&str>,
) -> Result<Parsed, ParseError> {
    let format = Format::detect(payload).ok_or(ParseError::UnknownFormat)?;
    let root = At::root(payload);
    let events = match format {
        Format::Distribution => distribution(&root, default_registry),
        Format::Acr => distribution_event(&root, default_registry).map(|e| e.into_iter().collect()),
        Format::Harbor => harbor(&root, "PUSH_ARTIFACT", "event_data", default_registry),
        Format::HarborCloudEvents => {
            harbor(&root, "harbor.artifact.pushed", "data", default_registry)
        }
        Format::DockerHub => docker_hub(&root, default_registry),
        Format::Quay => quay(&root),
        Format::Ecr => ecr(&root),
    }
    .map_err(|error| ParseError::Malformed { format, error })?;
    let mut seen = HashSet::new();
    let events = events
        .into_iter()
        .filter(|e| seen.insert(e.clone()))
        .collect();
    Ok(Parsed { format, events })
}

/// distribution's envelope: every manifest push among its events.
fn distribution(root: &At, default_registry: Option<&str>) -> Result<Vec<PushEvent>, PayloadError> {
    let mut events = Vec::new();
    for event in root.get("events").items()? {
        events.extend(distribution_event(&event, default_registry)?);
    }
    Ok(events)
}

/// One distribution (or ACR) event: a push whose target is a manifest, else nothing. Layers
/// and configs are pushed as blobs before their manifest and mean nothing on their own.
fn distribution_event(
    event: &At,
    default_registry: Option<&str>,
) -> Result<Option<PushEvent>, PayloadError> {
    if event.get("action").text()? != Some("push") {
        return Ok(None);
    }
    let target = event.get("target");
    if !target.get("mediaType").text()?.is_some_and(is_manifest) {
        return Ok(None);
    }
    let host = host_or_default(&event.get("request").get("host"), default_registry)?;
    let path = target.get("repository").required_text()?;
    let repository = repository_at(host, path).map_err(|p| event.error(p))?;
    let tag = target.get("tag").text()?;
    let digest = target.get("digest").text()?;
    push_event(repository, tag, digest)
        .map(Some)
        .map_err(|p| event.error(p))
}

/// `application/vnd.oci.image.index.v1+json` and the other types a manifest is pushed as.
fn is_manifest(media_type: &str) -> bool {
    let essence = media_type.split(';').next().unwrap_or_default().trim();
    [
        media_types::DOCKER_MANIFEST,
        media_types::DOCKER_LIST,
        media_types::OCI_MANIFEST,
        media_types::OCI_INDEX,
        media_types::DOCKER_SCHEMA1,
        media_types::DOCKER_SCHEMA1_SIGNED,
    ]
    .contains(&essence)
}

/// Harbor, both payload styles: `push_type` events carry their artifacts under `data_key`.
fn harbor(
    root: &At,
    push_type: &str,
    data_key: &str,
    default_registry: Option<&str>,
) -> Result<Vec<PushEvent>, PayloadError> {
    if root.get("type").text()? != Some(push_type) {
        return Ok(Vec::new());
    }
    let data = root.get(data_key);
    let full_name = data.get("repository").get("repo_full_name");
    let mut events = Vec::new();
    for resource in data.get("resources").items()? {
        let url = resource.get("resource_url");
        let repository = match url.text()? {
            // `host[:port]/project/repo:tag` or `…@digest`: the host is the one clients use.
            Some(text) => {
                let name =
                    split_reference(text).map_err(|e| url.error(PayloadProblem::Reference(e)))?;
                let (host, path) = name.name.split_once('/').ok_or_else(|| {
                    url.error(PayloadProblem::NoHost {
                        value: text.to_string(),
                    })
                })?;
                repository_at(host, path)
            }
            None => repository_at(
                host_or_default(&url, default_registry)?,
                full_name.required_text()?,
            ),
        }
        .map_err(|p| resource.error(p))?;
        let tag = resource.get("tag").text()?;
        let digest = resource.get("digest").text()?;
        events.push(push_event(repository, tag, digest).map_err(|p| resource.error(p))?);
    }
    Ok(events)
}

/// Docker Hub: one tag, no digest, no host (it is Docker Hub, unless configured otherwise).
fn docker_hub(root: &At, default_registry: Option<&str>) -> Result<Vec<PushEvent>, PayloadError> {
    let path = root.get("repository").get("repo_name").required_text()?;
    let tag = root.get("push_data").get("tag").required_text()?;
    let host = default_registry.unwrap_or(DOCKER_HUB);
    let event = repository_at(host, path).and_then(|r| push_event(r, Some(tag), None));
    Ok(vec![event.map_err(|p| root.error(p))?])
}

/// Quay: `docker_url` is `host/namespace/repo`; `updated_tags` a list of tags (older
/// versions sent a map from tag to image id, whose keys are the tags).
fn quay(root: &At) -> Result<Vec<PushEvent>, PayloadError> {
    let url = root.get("docker_url");
    let text = url.required_text()?;
    let (host, path) = text.split_once('/').ok_or_else(|| {
        url.error(PayloadProblem::NoHost {
            value: text.to_string(),
        })
    })?;
    let repository = repository_at(host, path).map_err(|p| root.error(p))?;
    let tags = root.get("updated_tags");
    let names: Vec<String> = match tags.value {
        Value::Object(map) => map.keys().cloned().collect(),
        _ => tags
            .items()?
            .iter()
            .map(|t| t.required_text().map(str::to_string))
            .collect::<Result<_, _>>()?,
    };
    names
        .iter()
        .map(|tag| push_event(repository.clone(), Some(tag), None).map_err(|p| root.error(p)))
        .collect()
}

/// ECR's EventBridge event: a successful `PUSH` "ECR Image Action". The host is the
/// account's private registry in the event's region.
fn ecr(root: &At) -> Result<Vec<PushEvent>, PayloadError> {
    let detail = root.get("detail");
    let wanted = root.get("detail-type").text()? == Some("ECR Image Action")
        && detail.get("action-type").text()? == Some("PUSH")
        && detail.get("result").text()? == Some("SUCCESS");
    if !wanted {
        return Ok(Vec::new());
    }
    let host = ecr_host(
        root.get("account").required_text()?,
        root.get("region").required_text()?,
    );
    let path = detail.get("repository-name").required_text()?;
    let repository = repository_at(&host, path).map_err(|p| root.error(p))?;
    let tag = detail.get("image-tag").text()?;
    let digest = detail.get("image-digest").text()?;
    let event = push_event(repository, tag, digest).map_err(|p| root.error(p))?;
    Ok(vec![event])
}

/// `<account>.dkr.ecr.<region>.amazonaws.com`, `.com.cn` in the China regions.
fn ecr_host(account: &str, region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("{account}.dkr.ecr.{region}.{suffix}")
}

/// The host a field names, or the configured default.
fn host_or_default<'a>(field: &At<'a>, default: Option<&'a str>) -> Result<&'a str, PayloadError> {
    field
        .text()?
        .or(default)
        .ok_or_else(|| field.error(PayloadProblem::NoRegistry))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::webhook::testing::{event, fixture, INDEX};

    const AMD64: &str = "sha256:a615bb0fb0edbc56d4b4935f050f393caa721e6c1ce80dcc38076e4eb5f597eb";
    const ARM64: &str = "sha256:7607d9b98e992db3ff2513931abd94cbd4f00eb3ffde2931e75c523cba2f8cf2";

    fn parse(body: &str) -> Parsed {
        parse_events(body.as_bytes(), None).unwrap()
    }

    fn parse_str(body: &str) -> Vec<String> {
        parse(body).events.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn distribution_envelope_keeps_manifest_pushes_only() {
        // The documented envelope: a manifest pushed by digest, then two layer blobs.
        let parsed = parse(fixture!("distribution"));
        assert_eq!(parsed.format, Format::Distribution);
        assert_eq!(
            parsed.events,
            vec![event(
                "registry.example.com:5000/team/app",
                Some("sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf")
            )]
        );
        assert!(parse(fixture!("distribution-blobs")).events.is_empty());
    }

    #[test]
    fn distribution_index_push_with_children_and_a_retry() {
        // Children by digest, the index by tag, the index again (a retry), and a pull.
        assert_eq!(
            parse(fixture!("distribution-index")).events,
            vec![
                event("registry.example.com:5000/team/app", Some(AMD64)),
                event("registry.example.com:5000/team/app", Some(ARM64)),
                event("registry.example.com:5000/team/app:v1.2.0", Some(INDEX)),
            ]
        );
    }

    #[test]
    fn harbor_default_payload() {
        let parsed = parse(fixture!("harbor"));
        assert_eq!(parsed.format, Format::Harbor);
        assert_eq!(
            parsed.events,
            vec![event(
                "harbor.example.com/test-webhook/debian:latest",
                Some("sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8")
            )]
        );
    }

    #[test]
    fn harbor_cloudevents_push_by_digest_reports_the_digest_as_tag() {
        let parsed = parse(fixture!("harbor-cloudevents"));
        assert_eq!(parsed.format, Format::HarborCloudEvents);
        assert_eq!(json!(parsed.format), json!("harbor-cloudevents"));
        assert_eq!(
            parsed.events,
            vec![event(
                "harbor.example.com:8443/harbor/alpine",
                Some("sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4")
            )]
        );
    }

    #[test]
    fn harbor_other_event_types_are_ignored() {
        let pull = fixture!("harbor").replace("PUSH_ARTIFACT", "PULL_ARTIFACT");
        assert!(parse(&pull).events.is_empty());
        let deleted = fixture!("harbor-cloudevents").replace("pushed", "deleted");
        assert!(parse(&deleted).events.is_empty());
    }

    #[test]
    fn docker_hub_has_no_host_and_no_digest() {
        let parsed = parse(fixture!("docker-hub"));
        assert_eq!(parsed.format, Format::DockerHub);
        assert_eq!(
            parsed.events,
            vec![event("docker.io/svendowideit/testhook:latest", None)]
        );
        // The configured registry wins, for Docker-Hub-shaped payloads from elsewhere.
        let elsewhere = parse_events(fixture!("docker-hub").as_bytes(), Some("hub.example.com"));
        assert_eq!(
            elsewhere.unwrap().events[0].repository.to_string(),
            "hub.example.com/svendowideit/testhook"
        );
        // Official images live under library/, as in rules.
        let official = fixture!("docker-hub").replace("svendowideit/testhook\"", "nginx\"");
        assert_eq!(parse_str(&official)[0], "docker.io/library/nginx:latest");
    }

    #[test]
    fn quay_tag_lists_old_and_new() {
        let parsed = parse(fixture!("quay"));
        assert_eq!(parsed.format, Format::Quay);
        assert_eq!(
            parsed.events,
            vec![event("quay.io/mynamespace/repository:latest", None)]
        );
        assert_eq!(
            parse_str(fixture!("quay-legacy")),
            ["quay.io/devtable/ubuntu:latest"]
        );
    }

    #[test]
    fn acr_single_event() {
        let parsed = parse(fixture!("acr"));
        assert_eq!(parsed.format, Format::Acr);
        assert_eq!(
            parsed.events,
            vec![event(
                "myregistry.azurecr.io/hello-world:v1",
                Some("sha256:18bb8c95a176b65c4d7399a1fb28e6fb4cac510e0c137f752dbb6e2e3bb9c7a4")
            )]
        );
        let chart = fixture!("acr").replace("\"push\"", "\"chart_push\"");
        assert!(parse_str(&chart).is_empty());
    }

    #[test]
    fn ecr_eventbridge_event() {
        let parsed = parse(fixture!("ecr"));
        assert_eq!(parsed.format, Format::Ecr);
        assert_eq!(
            parsed.events,
            vec![event(
                "123456789012.dkr.ecr.us-west-2.amazonaws.com/my-repository-name:latest",
                Some("sha256:57fd098ea2b0238b764871443db37b48274a688ab04097c493150ecac31aaf88")
            )]
        );
        let china = fixture!("ecr").replace("us-west-2", "cn-north-1");
        assert!(
            parse_str(&china)[0].starts_with("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/")
        );
        let untagged = fixture!("ecr").replace("\"image-tag\": \"latest\"", "\"image-tag\": \"\"");
        assert_eq!(parse(&untagged).events[0].tag, None);
        for not_a_push in [
            fixture!("ecr").replace("\"PUSH\"", "\"DELETE\""),
            fixture!("ecr").replace("SUCCESS", "FAILURE"),
            fixture!("ecr").replace("ECR Image Action", "ECR Image Scan"),
        ] {
            assert!(parse(&not_a_push).events.is_empty(), "{not_a_push}");
        }
    }

    #[test]
    fn malformed_and_unknown_payloads_name_the_problem() {
        let err = |body: &str| parse_events(body.as_bytes(), None).unwrap_err().to_string();
        assert!(err("{\"events\": [").starts_with("the body is not JSON"));
        assert!(err("{\"hello\": 1}").starts_with("unrecognised payload"));
        assert!(err("[1, 2]").starts_with("unrecognised payload"));
        let bad_digest = fixture!("acr").replace("sha256:18bb", "sha256:XXbb");
        assert!(
            err(&bad_digest).starts_with("malformed acr payload: digest \"sha256:XXbb"),
            "{}",
            err(&bad_digest)
        );
        let no_repository = fixture!("acr").replace("\"repository\"", "\"repo\"");
        assert_eq!(
            err(&no_repository),
            "malformed acr payload: target.repository is missing"
        );
        let bad_events = r#"{"events": [{"action": "push", "target": 3}]}"#;
        assert_eq!(
            err(bad_events),
            "malformed distribution payload: events[0].target must be an object, not 3"
        );
        let bad_tags = fixture!("quay").replace("[\n    \"latest\"\n  ]", "true");
        assert_eq!(
            err(&bad_tags),
            "malformed quay payload: updated_tags must be a list, not true"
        );
        let bad_tag = fixture!("quay").replace("\"latest\"", "\"-nope\"");
        assert_eq!(
            err(&bad_tag),
            "malformed quay payload: invalid tag \"-nope\""
        );
        let upper = fixture!("harbor").replace("test-webhook/debian:latest", "Test/Debian:latest");
        assert!(
            err(&upper).contains("invalid repository path"),
            "{}",
            err(&upper)
        );
    }

    #[test]
    fn hosts_are_normalised_and_must_look_like_hosts() {
        let acr = |host: &str| fixture!("acr").replace("myregistry.azurecr.io", host);
        assert_eq!(
            parse_str(&acr("MyRegistry.AzureCR.io"))[0],
            "myregistry.azurecr.io/hello-world:v1@sha256:18bb8c95a176b65c4d7399a1fb28e6fb4cac510e0c137f752dbb6e2e3bb9c7a4"
        );
        assert!(
            parse_str(&acr("index.docker.io"))[0].starts_with("docker.io/library/hello-world:v1")
        );
        // "registry/hello-world" would mean Docker Hub's registry/hello-world in a rule.
        let err = parse_events(acr("registry").as_bytes(), None).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"registry\" is not a registry host"),
            "{err}"
        );
        // No host in the payload: the configured one, else an error.
        let hostless = fixture!("acr").replace("\"host\": \"myregistry.azurecr.io\",", "");
        let err = parse_events(hostless.as_bytes(), None).unwrap_err();
        assert!(
            err.to_string()
                .contains("request.host is missing and FERRY_WEBHOOK_REGISTRY"),
            "{err}"
        );
        let configured = parse_events(hostless.as_bytes(), Some("acr.example.com")).unwrap();
        assert_eq!(
            configured.events[0].repository.registry(),
            "acr.example.com"
        );
    }
}
