//! Webhooks: a registry announces a push, ferry queues the copies its rules call for.
//!
//! This module is the whole of the webhook's logic; the Lambda Function URL handler and
//! `ferry serve` only translate their requests into an [`HttpRequest`], call
//! [`Webhook::handle_http`] (or [`Webhook::handle_event`] for ECR's EventBridge events, which
//! reach the function as a direct invocation) and send the [`HttpResponse`] back.
//!
//! A request goes through, in order: the method (`POST` on any path, else 405), the secret
//! (`FERRY_WEBHOOK_SECRET` as `Authorization: Bearer`, as the Basic password with any user
//! name, or as `?token=` for registries that cannot set headers; unset means every request is
//! refused with 401), the size (over [`MAX_BODY_BYTES`] is 413), the payload (not JSON, an
//! unknown format or a malformed known one is 400 with the reason), then the rules. Health
//! checks (`GET /healthz`) are the shells' business: here every other method is 405.
//!
//! Formats are told apart by their shape (see [`Format::detect`]): the CNCF distribution
//! notification envelope, Harbor (default and CloudEvents), Docker Hub, Quay `repo_push`,
//! Azure Container Registry and Amazon ECR's "ECR Image Action" EventBridge event. Only
//! manifest pushes count: blob pushes, pulls, deletes and scans are ignored.
//!
//! Matching uses the rules' own semantics, the same as planning: an all-tags rule takes any
//! tag of its repository, a tag list its tags (renamed by position), a regex the tags it
//! matches, a digest rule only its digest. A push by digest without a tag (the children of
//! an index, `docker push repo@sha256:…`) therefore only matches digest rules: an all-tags
//! rule never selects an untagged manifest when planning either, and the index that names
//! the children arrives as its own tagged event, so one job copies the whole image. Targets
//! come only from the rules, so a forged or replayed event can at worst re-copy something the
//! rules already copy; it can never make ferry pull from or push to anything unconfigured.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use base64::Engine as _;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::credentials::Secret;
use crate::env::Env;
use crate::error::truncate;
use crate::image::{ImageOptions, PlannedImage};
use crate::input::{load_inputs_from_env, service_settings_from_env, InputError};
use crate::job::{new_plan_id, Job};
use crate::platform::PlatformFilter;
use crate::queue::{Queue, QueueError};
use crate::reference::{
    canonical_registry, split_reference, validate_tag, Digest, Locator, Reference, Repository,
    DOCKER_HUB,
};
use crate::registry::media_types;
use crate::rules::{Rule, Selector};

/// Bodies larger than this are refused with 413: no registry's notification comes close,
/// and the whole body is parsed in memory.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The shared secret every HTTP request must present.
pub const SECRET_VARIABLE: &str = "FERRY_WEBHOOK_SECRET";
/// The registry host of formats whose payload names none (Docker Hub's).
pub const REGISTRY_VARIABLE: &str = "FERRY_WEBHOOK_REGISTRY";

/// Events quoted in an "ignored" answer; a big delivery must not make a big answer.
const QUOTED_EVENTS: usize = 5;
/// Payload values quoted in errors are cut to this many characters.
const QUOTE_LIMIT: usize = 80;

// ---------------------------------------------------------------------------------------
// Payloads

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

/// One manifest pushed to a registry: a tag, a digest, or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PushEvent {
    /// Normalised like every reference (`docker.io/library/nginx`, `host:5000/team/app`).
    pub repository: Repository,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl fmt::Display for PushEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// A payload's format and the manifest pushes in it, duplicates dropped, in payload order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub format: Format,
    pub events: Vec<PushEvent>,
}

/// Why a request or event was not acted on.
#[derive(Debug, Error)]
pub enum WebhookError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error(
        "unrecognised payload: expected a push notification from distribution, Harbor, \
         Docker Hub, Quay, Azure Container Registry or Amazon ECR"
    )]
    UnknownFormat,
    #[error("malformed {format} payload: {reason}")]
    Malformed { format: Format, reason: String },
    #[error(
        "a direct invocation must be an ECR \"ECR Image Action\" event; \
         other formats come over HTTP with the secret"
    )]
    NotEcrEvent,
    #[error("the jobs could not be queued: {0}")]
    Queue(#[from] QueueError),
}

/// Parses a request body. `default_registry` is the host for formats whose payload names
/// none (`FERRY_WEBHOOK_REGISTRY`); Docker Hub's falls back to `docker.io`.
pub fn parse_events(body: &[u8], default_registry: Option<&str>) -> Result<Parsed, WebhookError> {
    let payload: Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::NotJson(e.to_string()))?;
    parse_payload(&payload, default_registry)
}

/// Parses a payload already read as JSON (a direct Lambda invocation's event).
pub fn parse_payload(
    payload: &Value,
    default_registry: Option<&str>,
) -> Result<Parsed, WebhookError> {
    let format = Format::detect(payload).ok_or(WebhookError::UnknownFormat)?;
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
    .map_err(|reason| WebhookError::Malformed { format, reason })?;
    let mut seen = HashSet::new();
    let events = events
        .into_iter()
        .filter(|e| seen.insert(e.clone()))
        .collect();
    Ok(Parsed { format, events })
}

/// distribution's envelope: every manifest push among its events.
fn distribution(root: &At, default_registry: Option<&str>) -> Result<Vec<PushEvent>, String> {
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
) -> Result<Option<PushEvent>, String> {
    if event.get("action").text()? != Some("push") {
        return Ok(None);
    }
    let target = event.get("target");
    if !target.get("mediaType").text()?.is_some_and(is_manifest) {
        return Ok(None);
    }
    let host = event.get("request").get("host");
    let host = host_or_default(&host, default_registry)?;
    let path = target.get("repository").required_text()?;
    push_event(
        repository_at(host, path)?,
        target.get("tag").text()?,
        target.get("digest").text()?,
    )
    .map(Some)
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
) -> Result<Vec<PushEvent>, String> {
    if root.get("type").text()? != Some(push_type) {
        return Ok(Vec::new());
    }
    let data = root.get(data_key);
    let full_name = data.get("repository").get("repo_full_name");
    let mut events = Vec::new();
    for resource in data.get("resources").items()? {
        let repository = match resource.get("resource_url").text()? {
            // `host[:port]/project/repo:tag` or `…@digest`: the host is the one clients use.
            Some(url) => {
                let name = split_reference(url).map_err(|e| resource.invalid("resource_url", e))?;
                let (host, path) = name.name.split_once('/').ok_or_else(|| {
                    format!(
                        "{}.resource_url {} names no registry host",
                        resource.path,
                        quote(url)
                    )
                })?;
                repository_at(host, path)?
            }
            None => repository_at(
                host_or_default(&resource.get("resource_url"), default_registry)?,
                full_name.required_text()?,
            )?,
        };
        events.push(push_event(
            repository,
            resource.get("tag").text()?,
            resource.get("digest").text()?,
        )?);
    }
    Ok(events)
}

/// Docker Hub: one tag, no digest, no host (it is Docker Hub, unless configured otherwise).
fn docker_hub(root: &At, default_registry: Option<&str>) -> Result<Vec<PushEvent>, String> {
    let path = root.get("repository").get("repo_name").required_text()?;
    let tag = root.get("push_data").get("tag").required_text()?;
    let host = default_registry.unwrap_or(DOCKER_HUB);
    Ok(vec![push_event(
        repository_at(host, path)?,
        Some(tag),
        None,
    )?])
}

/// Quay: `docker_url` is `host/namespace/repo`; `updated_tags` a list of tags (older
/// versions sent a map from tag to image id, whose keys are the tags).
fn quay(root: &At) -> Result<Vec<PushEvent>, String> {
    let url = root.get("docker_url");
    let text = url.required_text()?;
    let (host, path) = text
        .split_once('/')
        .ok_or_else(|| format!("{} {} names no registry host", url.path, quote(text)))?;
    let repository = repository_at(host, path)?;
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
        .map(|tag| push_event(repository.clone(), Some(tag), None))
        .collect()
}

/// ECR's EventBridge event: a successful `PUSH` "ECR Image Action". The host is the
/// account's private registry in the event's region.
fn ecr(root: &At) -> Result<Vec<PushEvent>, String> {
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
    Ok(vec![push_event(
        repository_at(&host, path)?,
        detail.get("image-tag").text()?,
        detail.get("image-digest").text()?,
    )?])
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
fn host_or_default<'a>(field: &At<'a>, default: Option<&'a str>) -> Result<&'a str, String> {
    field.text()?.or(default).ok_or_else(|| {
        format!(
            "{} is missing and {REGISTRY_VARIABLE} is not set, so the registry is unknown",
            field.path
        )
    })
}

/// `host/path`, normalised exactly as references in rules are (so they compare equal), and
/// refused when the host would not be read as one (`registry/app` means Docker Hub's
/// `registry/app` in a rule, so it must not mean a host called `registry` here).
fn repository_at(host: &str, path: &str) -> Result<Repository, String> {
    let host = host.trim();
    let path = path.trim().trim_matches('/');
    let repository = Repository::parse(&format!("{host}/{path}"))
        .map_err(|e| format!("repository {}: {e}", quote(&format!("{host}/{path}"))))?;
    if repository.registry() != canonical_registry(host) {
        return Err(format!(
            "{} is not a registry host (a host needs a '.' or a ':' port, or is localhost)",
            quote(host)
        ));
    }
    Ok(repository)
}

/// A push event from the payload's tag and digest, validated. Harbor reports a push by
/// digest with the digest in `tag`, so a "tag" that is a digest is one.
fn push_event(
    repository: Repository,
    tag: Option<&str>,
    digest: Option<&str>,
) -> Result<PushEvent, String> {
    let parse_digest = |text: &str| {
        text.parse::<Digest>()
            .map_err(|e| format!("digest {}: {e}", quote(text)))
    };
    let mut digest = digest.map(parse_digest).transpose()?;
    let tag = match tag {
        Some(tag) if validate_tag(tag).is_ok() => Some(tag.to_string()),
        Some(tag) => match (tag.parse::<Digest>(), &digest) {
            (Ok(d), Some(known)) if d != *known => {
                return Err(format!("tag {} contradicts digest {known}", quote(tag)))
            }
            (Ok(d), _) => {
                digest = Some(d);
                None
            }
            (Err(_), _) => return Err(format!("invalid tag {}", quote(tag))),
        },
        None => None,
    };
    if tag.is_none() && digest.is_none() {
        return Err(format!(
            "the push to {repository} names neither a tag nor a digest"
        ));
    }
    Ok(PushEvent {
        repository,
        tag,
        digest,
    })
}

static NULL: Value = Value::Null;

/// A JSON value and where it is in the payload, so every error names the field
/// (`events[2].target.digest`). A missing field reads as `null`; looking into something
/// that is not an object is an error, reported when a value below it is read, so lookups
/// chain without a `?` at every step.
struct At<'a> {
    value: &'a Value,
    path: String,
    /// Why this path cannot be read: an ancestor is not an object.
    unreadable: Option<String>,
}

impl<'a> At<'a> {
    fn root(value: &'a Value) -> Self {
        At {
            value,
            path: String::new(),
            unreadable: None,
        }
    }

    fn get(&self, key: &str) -> At<'a> {
        let path = if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        };
        let unreadable = match (&self.unreadable, self.value) {
            (Some(why), _) => Some(why.clone()),
            (None, Value::Object(_) | Value::Null) => None,
            (None, other) => Some(format!(
                "{} must be an object, not {}",
                self.path,
                excerpt(other)
            )),
        };
        At {
            value: self.value.get(key).unwrap_or(&NULL),
            path,
            unreadable,
        }
    }

    /// A string, trimmed; absent, `null` and empty all mean "not given".
    fn text(&self) -> Result<Option<&'a str>, String> {
        if let Some(why) = &self.unreadable {
            return Err(why.clone());
        }
        match self.value {
            Value::Null => Ok(None),
            Value::String(s) if s.trim().is_empty() => Ok(None),
            Value::String(s) => Ok(Some(s.trim())),
            other => Err(format!(
                "{} must be a string, not {}",
                self.path,
                excerpt(other)
            )),
        }
    }

    fn required_text(&self) -> Result<&'a str, String> {
        self.text()?
            .ok_or_else(|| format!("{} is missing", self.path))
    }

    /// The elements of a list; absent or `null` is an empty list.
    fn items(&self) -> Result<Vec<At<'a>>, String> {
        if let Some(why) = &self.unreadable {
            return Err(why.clone());
        }
        match self.value {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, value)| At {
                    value,
                    path: format!("{}[{i}]", self.path),
                    unreadable: None,
                })
                .collect()),
            other => Err(format!(
                "{} must be a list, not {}",
                self.path,
                excerpt(other)
            )),
        }
    }

    fn invalid(&self, key: &str, error: impl fmt::Display) -> String {
        format!("{}.{key}: {error}", self.path)
    }
}

/// A JSON value for a message, as JSON, cut short.
fn excerpt(value: &Value) -> String {
    truncate(&value.to_string(), QUOTE_LIMIT)
}

/// A payload string for a message: quoted, and cut short.
fn quote(text: &str) -> String {
    if text.chars().count() <= QUOTE_LIMIT {
        format!("{text:?}")
    } else {
        let cut: String = text.chars().take(QUOTE_LIMIT).collect();
        format!("{cut:?}…")
    }
}

// ---------------------------------------------------------------------------------------
// Matching

/// What the events mean under `rules`: one planned image per source (repository plus tag,
/// or plus digest for digest rules) with every target the matching rules give it, sorted by
/// source. Several events for one source (retries, two rules) become one image.
pub fn match_rules(rules: &[Rule], events: &[PushEvent]) -> Vec<PlannedImage> {
    let mut images: BTreeMap<Reference, (SeenDigest, BTreeSet<Reference>)> = BTreeMap::new();
    for event in events {
        for rule in rules.iter().filter(|r| r.source == event.repository) {
            for (position, locator) in selected(rule, event) {
                let targets = rule.targets_for(position, &locator);
                let (digest, all_targets) = images.entry(rule.source.at(locator)).or_default();
                digest.see(event.digest.as_ref());
                all_targets.extend(targets);
            }
        }
    }
    images
        .into_iter()
        .map(|(source, (digest, targets))| PlannedImage {
            source,
            digest: digest.into_digest(),
            targets: targets.into_iter().collect(),
        })
        .collect()
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

// ---------------------------------------------------------------------------------------
// Authentication

/// Whether a request presents `secret`: as `Authorization: Bearer <secret>`, as the password
/// of `Authorization: Basic` (any user name), or as `token=<secret>` in the query string
/// (Docker Hub and Quay cannot set headers). No secret, or an empty one, refuses everything.
///
/// Both sides are hashed before comparing, so the comparison is over equal-length digests
/// and reveals nothing about the secret's length or content through timing.
pub fn authorize(secret: Option<&str>, headers: &[(String, String)], query: Option<&str>) -> bool {
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return false;
    };
    let expected = Sha256::digest(secret.as_bytes());
    presented(headers, query)
        .iter()
        .any(|candidate| constant_time_eq(&Sha256::digest(candidate.as_bytes()), &expected))
}

/// Every credential the request carries.
fn presented(headers: &[(String, String)], query: Option<&str>) -> Vec<String> {
    let from_headers = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .filter_map(|(_, value)| credential(value));
    let from_query = query.into_iter().flat_map(|q| {
        url::form_urlencoded::parse(q.trim_start_matches('?').as_bytes())
            .filter(|(key, _)| key == "token")
            .map(|(_, value)| value.into_owned())
    });
    from_headers.chain(from_query).collect()
}

/// The secret in one `Authorization` value, if it is Bearer or Basic.
fn credential(header: &str) -> Option<String> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_string());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest)
        .ok()?;
    let (_user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(password.to_string())
}

/// Equal-length comparison that does not stop at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

// ---------------------------------------------------------------------------------------
// The handler

/// An HTTP request as the shells see it. `query` is the raw query string, without `?`.
/// Shells must not log `query` or the `Authorization` header themselves: both may carry the
/// secret. The `Debug` output hides them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let secret = name.eq_ignore_ascii_case("authorization");
                (name.as_str(), if secret { "***" } else { value.as_str() })
            })
            .collect();
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query.as_ref().map(|_| "***"))
            .field("headers", &headers)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// The answer: a status, headers to send (`Content-Type`, and `Allow` or
/// `WWW-Authenticate` where HTTP asks for them) and a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl HttpResponse {
    fn new(status: u16, body: Value) -> Self {
        HttpResponse {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body,
        }
    }

    fn error(status: u16, message: impl fmt::Display) -> Self {
        HttpResponse::new(status, json!({ "error": message.to_string() }))
    }

    fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What a delivery led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// One job per matched source image, all with one plan id.
    Queued {
        format: Format,
        plan_id: String,
        jobs: Vec<Job>,
    },
    /// Nothing to copy: no manifest push, or no rule selects what was pushed.
    Ignored { format: Format, reason: String },
}

impl Outcome {
    /// Jobs queued.
    pub fn queued(&self) -> usize {
        match self {
            Outcome::Queued { jobs, .. } => jobs.len(),
            Outcome::Ignored { .. } => 0,
        }
    }

    /// `{"queued": 2, "plan_id": …, "format": …, "jobs": [sources]}` or
    /// `{"ignored": reason, "format": …}`: the HTTP answer's body and the direct
    /// invocation's result.
    pub fn to_json(&self) -> Value {
        match self {
            Outcome::Queued {
                format,
                plan_id,
                jobs,
            } => json!({
                "queued": jobs.len(),
                "plan_id": plan_id,
                "format": format,
                "jobs": jobs.iter().map(|j| j.source.as_str()).collect::<Vec<_>>(),
            }),
            Outcome::Ignored { format, reason } => json!({
                "ignored": reason,
                "format": format,
            }),
        }
    }
}

/// The webhook's configuration.
#[derive(Debug, Clone, Default)]
pub struct WebhookSettings {
    /// `FERRY_WEBHOOK_SECRET`; `None` or empty refuses every HTTP request.
    pub secret: Option<Secret>,
    /// `FERRY_WEBHOOK_REGISTRY`: the host of payloads that name none.
    pub default_registry: Option<String>,
    /// The `--os`/`--arch` filter every job carries (`FERRY_OS`, `FERRY_ARCH`).
    pub platforms: PlatformFilter,
}

/// Why the webhook cannot start.
#[derive(Debug, Error)]
pub enum WebhookConfigError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("{REGISTRY_VARIABLE}: {0}")]
    Registry(String),
}

/// The webhook: rules, secret and job settings, built once per process. It never contacts a
/// registry: jobs carry the pushed digest when the payload has one, and the copier HEADs
/// every source before copying anyway.
#[derive(Debug)]
pub struct Webhook {
    rules: Vec<Rule>,
    secret: Option<Secret>,
    default_registry: Option<String>,
    /// What every job asks of its copy.
    image: ImageOptions,
}

impl Webhook {
    pub fn new(rules: Vec<Rule>, settings: WebhookSettings) -> Result<Webhook, WebhookConfigError> {
        let default_registry = match settings.default_registry.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(host) => Some(
                repository_at(host.trim_end_matches('/'), "x")
                    .map_err(WebhookConfigError::Registry)?
                    .registry()
                    .to_string(),
            ),
        };
        let secret = settings.secret.filter(|s| !s.expose().is_empty());
        if secret.is_none() {
            tracing::warn!("{SECRET_VARIABLE} is not set: every webhook request will be refused");
        }
        Ok(Webhook {
            rules,
            secret,
            default_registry,
            image: ImageOptions {
                force: false,
                platforms: settings.platforms,
            },
        })
    }

    /// From the environment: `FERRY_WEBHOOK_SECRET` (surrounding whitespace dropped, as a
    /// secret pasted with a newline is still meant), `FERRY_WEBHOOK_REGISTRY`, the rules
    /// (`FERRY_IMAGES` or `FERRY_IMAGES_FILE`, required) and `FERRY_OS`/`FERRY_ARCH`.
    pub fn from_env(env: &dyn Env) -> Result<Webhook, WebhookConfigError> {
        let inputs = load_inputs_from_env(env, true)?;
        let settings = service_settings_from_env(env)?;
        Webhook::new(
            inputs.rules,
            WebhookSettings {
                secret: env.var(SECRET_VARIABLE).map(|s| Secret::new(s.trim())),
                default_registry: env.var(REGISTRY_VARIABLE),
                platforms: settings.platforms,
            },
        )
    }

    /// One HTTP request, checked in order: method, secret, size, payload, rules.
    pub async fn handle_http(&self, request: &HttpRequest, queue: &dyn Queue) -> HttpResponse {
        if !request.method.eq_ignore_ascii_case("POST") {
            return HttpResponse::error(405, "only POST is accepted").with_header("Allow", "POST");
        }
        let secret = self.secret.as_ref().map(Secret::expose);
        if !authorize(secret, &request.headers, request.query.as_deref()) {
            tracing::warn!(path = %request.path, "webhook request refused: missing or wrong secret");
            return HttpResponse::error(401, "missing or wrong secret")
                .with_header("WWW-Authenticate", "Bearer realm=\"ferry\"");
        }
        if request.body.len() > MAX_BODY_BYTES {
            tracing::warn!(
                bytes = request.body.len(),
                "webhook request refused: body too large"
            );
            return HttpResponse::error(
                413,
                format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            );
        }
        let parsed = match parse_events(&request.body, self.default_registry.as_deref()) {
            Ok(parsed) => parsed,
            Err(error) => {
                tracing::warn!(error = %error, "webhook request refused");
                return HttpResponse::error(400, error);
            }
        };
        match self.enqueue(parsed, queue).await {
            Ok(outcome @ Outcome::Queued { .. }) => HttpResponse::new(202, outcome.to_json()),
            Ok(outcome) => HttpResponse::new(200, outcome.to_json()),
            Err(error) => {
                tracing::error!(error = %error, "webhook delivery failed");
                HttpResponse::error(500, error)
            }
        }
    }

    /// A direct invocation: an ECR EventBridge event. Nothing else is accepted this way,
    /// because a direct invocation carries no secret and must not bypass the HTTP check.
    pub async fn handle_event(
        &self,
        event: &Value,
        queue: &dyn Queue,
    ) -> Result<Outcome, WebhookError> {
        if Format::detect(event) != Some(Format::Ecr) {
            return Err(WebhookError::NotEcrEvent);
        }
        let parsed = parse_payload(event, self.default_registry.as_deref())?;
        self.enqueue(parsed, queue).await
    }

    /// Matches the events against the rules and queues one job per image.
    async fn enqueue(&self, parsed: Parsed, queue: &dyn Queue) -> Result<Outcome, WebhookError> {
        let format = parsed.format;
        let ignored = |reason: String| {
            tracing::info!(format = %format, "webhook ignored: {reason}");
            Ok(Outcome::Ignored { format, reason })
        };
        if parsed.events.is_empty() {
            return ignored("the payload holds no manifest push".into());
        }
        let images = match_rules(&self.rules, &parsed.events);
        if images.is_empty() {
            return ignored(format!("no rule selects {}", describe(&parsed.events)));
        }
        let plan_id = new_plan_id();
        let jobs: Vec<Job> = images
            .iter()
            .map(|image| Job::from_planned(image, &plan_id, &self.image))
            .collect();
        queue.send(&jobs).await?;
        tracing::info!(
            format = %format,
            plan_id = %plan_id,
            events = parsed.events.len(),
            jobs = jobs.len(),
            sources = %jobs.iter().map(|j| j.source.as_str()).collect::<Vec<_>>().join(" "),
            "webhook queued jobs"
        );
        Ok(Outcome::Queued {
            format,
            plan_id,
            jobs,
        })
    }
}

/// `a, b, c and 4 more`.
fn describe(events: &[PushEvent]) -> String {
    let shown: Vec<String> = events
        .iter()
        .take(QUOTED_EVENTS)
        .map(ToString::to_string)
        .collect();
    match events.len().saturating_sub(QUOTED_EVENTS) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::env::MapEnv;
    use crate::queue::MemoryQueue;
    use crate::reference::Suffix;
    use crate::rules::{rules_from_value, Defaults};

    const SECRET: &str = "s3cret-for-tests";
    const D1: &str = "sha256:14b267eb38aa85fd12d0e168fffa2d8a6187ac53a14a0212b0d4fce8d729598c";
    const D2: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    const INDEX: &str = "sha256:219a20b15533abb92394acc963baa647a3351155cb9b53d4848799144ebc0528";
    const AMD64: &str = "sha256:a615bb0fb0edbc56d4b4935f050f393caa721e6c1ce80dcc38076e4eb5f597eb";
    const ARM64: &str = "sha256:7607d9b98e992db3ff2513931abd94cbd4f00eb3ffde2931e75c523cba2f8cf2";

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/webhook/", $name, ".json"))
        };
    }

    fn rules(yaml: &str) -> Vec<Rule> {
        let value: Value = serde_yaml::from_str(yaml).unwrap();
        rules_from_value(
            Path::new("images.yaml"),
            &value,
            &Defaults::default(),
            &MapEnv::default(),
        )
        .unwrap()
    }

    fn settings() -> WebhookSettings {
        WebhookSettings {
            secret: Some(Secret::new(SECRET)),
            ..WebhookSettings::default()
        }
    }

    fn webhook(yaml: &str) -> Webhook {
        Webhook::new(rules(yaml), settings()).unwrap()
    }

    fn post(body: &str) -> HttpRequest {
        HttpRequest {
            method: "POST".into(),
            path: "/".into(),
            query: None,
            headers: vec![("authorization".into(), format!("Bearer {SECRET}"))],
            body: body.as_bytes().to_vec(),
        }
    }

    async fn jobs(queue: &MemoryQueue) -> Vec<Job> {
        let mut jobs = Vec::new();
        loop {
            let batch = queue.receive(10, Duration::ZERO).await.unwrap();
            if batch.is_empty() {
                return jobs;
            }
            jobs.extend(batch.iter().map(|d| Job::parse(&d.body).unwrap()));
        }
    }

    fn event(reference: &str, digest: Option<&str>) -> PushEvent {
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

    fn parse(body: &str) -> Parsed {
        parse_events(body.as_bytes(), None).unwrap()
    }

    fn parse_str(body: &str) -> Vec<String> {
        parse(body).events.iter().map(ToString::to_string).collect()
    }

    fn strings(images: &[PlannedImage]) -> Vec<(String, Vec<String>)> {
        images
            .iter()
            .map(|i| {
                let targets = i.targets.iter().map(ToString::to_string).collect();
                (i.source.to_string(), targets)
            })
            .collect()
    }

    // --- formats -------------------------------------------------------------------------

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

    // --- matching ------------------------------------------------------------------------

    #[test]
    fn all_tags_rule_takes_any_tag_but_not_an_untagged_digest() {
        let rules = rules("quay.io/a/b: mirror.io/b");
        let images = match_rules(
            &rules,
            &[
                event("quay.io/a/b:v1", Some(D1)),
                event("quay.io/a/b", Some(D2)),
            ],
        );
        assert_eq!(
            strings(&images),
            [("quay.io/a/b:v1".into(), vec!["mirror.io/b:v1".into()])]
        );
        assert_eq!(images[0].digest.as_ref().map(Digest::as_str), Some(D1));
    }

    #[test]
    fn tag_list_rule_renames_by_position() {
        let renamed = rules("quay.io/a/b:v1,v2: mirror.io/b:one,two");
        let images = match_rules(
            &renamed,
            &[event("quay.io/a/b:v2", None), event("quay.io/a/b:v3", None)],
        );
        assert_eq!(
            strings(&images),
            [("quay.io/a/b:v2".into(), vec!["mirror.io/b:two".into()])]
        );
        // A tag listed twice goes to both of its names, as when planning.
        let twice = rules("quay.io/a/b:v1,v1: mirror.io/b:x,y");
        let images = match_rules(&twice, &[event("quay.io/a/b:v1", None)]);
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
        let matched = |e: PushEvent| strings(&match_rules(&rules, &[e]));
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
            assert!(match_rules(&rules, &[e]).is_empty());
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
        );
        assert_eq!(moved.len(), 1);
        assert_eq!(moved[0].digest, None);
    }

    // --- authentication ------------------------------------------------------------------

    fn header(value: &str) -> Vec<(String, String)> {
        vec![("Authorization".into(), value.into())]
    }

    fn basic(user: &str, password: &str) -> String {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}")
    }

    #[test]
    fn the_secret_is_accepted_three_ways() {
        let ok = |headers: &[(String, String)], query: Option<&str>| {
            authorize(Some(SECRET), headers, query)
        };
        assert!(ok(&header(&format!("Bearer {SECRET}")), None));
        assert!(ok(&header(&format!("bearer  {SECRET} ")), None));
        assert!(ok(&header(&basic("anyone", SECRET)), None));
        assert!(ok(&header(&basic("", SECRET)), None));
        assert!(ok(&[], Some(&format!("token={SECRET}"))));
        assert!(ok(&[], Some(&format!("x=1&token={SECRET}"))));
        // Percent-encoded, as a registry's URL field may hold it.
        assert!(authorize(Some("a b&c"), &[], Some("token=a%20b%26c")));
        // A wrong header does not hide a right token.
        assert!(ok(&header("Bearer nope"), Some(&format!("token={SECRET}"))));
    }

    #[test]
    fn anything_else_is_refused() {
        let refused = |headers: &[(String, String)], query: Option<&str>| {
            !authorize(Some(SECRET), headers, query)
        };
        assert!(refused(&[], None));
        assert!(refused(&header("Bearer wrong"), None));
        assert!(refused(&header(&format!("Bearer {SECRET}x")), None));
        assert!(refused(&header(&basic(SECRET, "wrong")), None));
        assert!(refused(&header(&format!("Basic {SECRET}")), None));
        assert!(refused(&header(&format!("Token {SECRET}")), None));
        assert!(refused(&header(SECRET), None));
        assert!(refused(&[], Some(&format!("secret={SECRET}"))));
        assert!(refused(&[], Some("token=")));
        // Requests print without their credentials.
        let request = HttpRequest {
            query: Some(format!("token={SECRET}")),
            ..post("{}")
        };
        assert!(!format!("{request:?}").contains(SECRET), "{request:?}");
        // No secret configured: nothing gets in, not even an empty credential.
        assert!(!authorize(None, &header("Bearer "), Some("token=")));
        assert!(!authorize(Some(""), &header("Bearer "), Some("token=")));
        assert!(!authorize(None, &header(&format!("Bearer {SECRET}")), None));
    }

    // --- the handler ---------------------------------------------------------------------

    #[tokio::test]
    async fn a_matching_push_queues_one_job_per_image() {
        let webhook = Webhook::new(
            rules("myregistry.azurecr.io/hello-world: [mirror.io/hello, backup.io/hello]"),
            WebhookSettings {
                platforms: PlatformFilter::parse(
                    &["linux".into()],
                    &["amd64".into(), "arm64:v8".into()],
                )
                .unwrap(),
                ..settings()
            },
        )
        .unwrap();
        let queue = MemoryQueue::default();
        let response = webhook.handle_http(&post(fixture!("acr")), &queue).await;
        assert_eq!(response.status, 202, "{:?}", response.body);
        assert_eq!(response.body["queued"], 1);
        assert_eq!(response.body["format"], "acr");
        assert_eq!(
            response.body["jobs"][0],
            "myregistry.azurecr.io/hello-world:v1"
        );
        let jobs = jobs(&queue).await;
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].plan_id, response.body["plan_id"]);
        assert_eq!(
            jobs[0].targets,
            ["backup.io/hello:v1", "mirror.io/hello:v1"]
        );
        assert_eq!(
            jobs[0].digest.as_deref(),
            Some("sha256:18bb8c95a176b65c4d7399a1fb28e6fb4cac510e0c137f752dbb6e2e3bb9c7a4")
        );
        assert_eq!(jobs[0].os, ["linux"]);
        assert_eq!(jobs[0].arch, ["amd64", "arm64:v8"]);
        assert!(!jobs[0].force);
    }

    #[tokio::test]
    async fn an_index_push_and_its_retry_become_one_job() {
        let webhook = webhook("registry.example.com:5000/team/app: mirror.io/team/app");
        let queue = MemoryQueue::default();
        let response = webhook
            .handle_http(&post(fixture!("distribution-index")), &queue)
            .await;
        assert_eq!(response.status, 202, "{:?}", response.body);
        let jobs = jobs(&queue).await;
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].source, "registry.example.com:5000/team/app:v1.2.0");
        assert_eq!(jobs[0].targets, ["mirror.io/team/app:v1.2.0"]);
        assert_eq!(jobs[0].digest.as_deref(), Some(INDEX));
    }

    #[tokio::test]
    async fn a_push_by_digest_reaches_digest_rules() {
        let digest = "sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf";
        let webhook = webhook(&format!(
            "registry.example.com:5000/team/app@{digest}: mirror.io/team/app"
        ));
        let queue = MemoryQueue::default();
        let response = webhook
            .handle_http(&post(fixture!("distribution")), &queue)
            .await;
        assert_eq!(response.status, 202, "{:?}", response.body);
        let jobs = jobs(&queue).await;
        assert_eq!(jobs[0].targets, [format!("mirror.io/team/app@{digest}")]);
    }

    #[tokio::test]
    async fn an_unconfigured_repository_is_ignored() {
        let webhook = webhook("quay.io/other/repo: mirror.io/repo");
        let queue = MemoryQueue::default();
        let response = webhook.handle_http(&post(fixture!("quay")), &queue).await;
        assert_eq!(response.status, 200);
        assert_eq!(
            response.body["ignored"],
            "no rule selects quay.io/mynamespace/repository:latest"
        );
        assert!(queue.is_empty().await);
    }

    #[tokio::test]
    async fn a_blob_push_is_ignored() {
        let webhook = webhook("registry.example.com:5000/team/app: mirror.io/team/app");
        let queue = MemoryQueue::default();
        let response = webhook
            .handle_http(&post(fixture!("distribution-blobs")), &queue)
            .await;
        assert_eq!(response.status, 200);
        assert_eq!(
            response.body["ignored"],
            "the payload holds no manifest push"
        );
        assert!(queue.is_empty().await);
    }

    #[tokio::test]
    async fn requests_are_checked_in_order() {
        let webhook = webhook("quay.io/mynamespace/repository: mirror.io/repository");
        let queue = MemoryQueue::default();
        let send = |request: HttpRequest| {
            let (webhook, queue) = (&webhook, &queue);
            async move { webhook.handle_http(&request, queue).await }
        };

        let get = HttpRequest {
            method: "GET".into(),
            headers: vec![],
            ..post("")
        };
        let response = send(get).await;
        assert_eq!(response.status, 405);
        assert!(response.headers.contains(&("Allow".into(), "POST".into())));

        // Unauthenticated: 401 even for a body that is too large or not JSON.
        let huge = "x".repeat(MAX_BODY_BYTES + 1);
        for body in [fixture!("quay"), huge.as_str(), "not json"] {
            let anonymous = HttpRequest {
                headers: vec![],
                ..post(body)
            };
            assert_eq!(send(anonymous).await.status, 401);
            let wrong = HttpRequest {
                headers: header("Bearer wrong"),
                ..post(body)
            };
            assert_eq!(send(wrong).await.status, 401);
        }

        assert_eq!(send(post(&huge)).await.status, 413);
        let at_limit = format!(
            "{}{}",
            fixture!("quay"),
            " ".repeat(MAX_BODY_BYTES - fixture!("quay").len())
        );
        assert_eq!(send(post(&at_limit)).await.status, 202);

        let response = send(post("{\"events\": [")).await;
        assert_eq!(response.status, 400);
        assert!(response.body["error"]
            .as_str()
            .unwrap()
            .starts_with("the body is not JSON"));
        let response = send(post("{\"what\": \"ever\"}")).await;
        assert_eq!(response.status, 400);
        assert!(response.body["error"]
            .as_str()
            .unwrap()
            .starts_with("unrecognised payload"));

        // The token in the query string, as Docker Hub and Quay send it.
        let by_token = HttpRequest {
            headers: vec![],
            query: Some(format!("token={SECRET}")),
            ..post(fixture!("quay"))
        };
        assert_eq!(send(by_token).await.status, 202);
        assert_eq!(jobs(&queue).await.len(), 2);
    }

    #[tokio::test]
    async fn without_a_secret_every_request_is_refused() {
        let webhook = Webhook::new(
            rules("quay.io/mynamespace/repository: mirror.io/repository"),
            WebhookSettings {
                secret: Some(Secret::new("")),
                ..WebhookSettings::default()
            },
        )
        .unwrap();
        let queue = MemoryQueue::default();
        let mut request = post(fixture!("quay"));
        request.headers = header("Bearer ");
        request.query = Some("token=".into());
        assert_eq!(webhook.handle_http(&request, &queue).await.status, 401);
        assert!(queue.is_empty().await);
    }

    #[tokio::test]
    async fn ecr_events_arrive_as_direct_invocations() {
        let webhook = webhook(
            "123456789012.dkr.ecr.us-west-2.amazonaws.com/my-repository-name:/^lat/: mirror.io/r",
        );
        let queue = MemoryQueue::default();
        let event: Value = serde_json::from_str(fixture!("ecr")).unwrap();
        let outcome = webhook.handle_event(&event, &queue).await.unwrap();
        assert_eq!(outcome.queued(), 1);
        assert_eq!(
            outcome.to_json()["jobs"][0],
            "123456789012.dkr.ecr.us-west-2.amazonaws.com/my-repository-name:latest"
        );
        assert_eq!(jobs(&queue).await[0].targets, ["mirror.io/r:latest"]);
        // Other formats need the secret, so they cannot come this way.
        let queue = MemoryQueue::default();
        let harbor: Value = serde_json::from_str(fixture!("harbor")).unwrap();
        assert!(matches!(
            webhook.handle_event(&harbor, &queue).await,
            Err(WebhookError::NotEcrEvent)
        ));
        assert!(queue.is_empty().await);
        let scan = fixture!("ecr").replace("ECR Image Action", "ECR Image Scan");
        let outcome = webhook
            .handle_event(&serde_json::from_str(&scan).unwrap(), &queue)
            .await
            .unwrap();
        assert!(matches!(outcome, Outcome::Ignored { .. }));
    }

    #[test]
    fn configuration_from_the_environment() {
        let env = MapEnv::new([
            ("FERRY_IMAGES", "quay.io/a/b: mirror.io/b"),
            ("FERRY_WEBHOOK_SECRET", "  pasted-with-newline\n"),
            ("FERRY_WEBHOOK_REGISTRY", "Hub.Example.com/"),
            ("FERRY_ARCH", "arm64"),
        ]);
        let webhook = Webhook::from_env(&env).unwrap();
        assert_eq!(webhook.rules.len(), 1);
        assert_eq!(
            webhook.secret.as_ref().map(Secret::expose),
            Some("pasted-with-newline")
        );
        assert_eq!(webhook.default_registry.as_deref(), Some("hub.example.com"));
        assert_eq!(webhook.image.platforms.arch_entries(), ["arm64"]);
        // The secret never shows in debug output (and so never in a log line).
        assert!(!format!("{webhook:?}").contains("pasted-with-newline"));

        let bad = MapEnv::new([
            ("FERRY_IMAGES", "quay.io/a/b: mirror.io/b"),
            ("FERRY_WEBHOOK_REGISTRY", "https://hub.example.com"),
        ]);
        let err = Webhook::from_env(&bad).unwrap_err().to_string();
        assert!(err.starts_with("FERRY_WEBHOOK_REGISTRY: "), "{err}");
        let no_rules = MapEnv::new([("FERRY_WEBHOOK_SECRET", "x")]);
        assert!(matches!(
            Webhook::from_env(&no_rules),
            Err(WebhookConfigError::Input(InputError::NoImagesInEnvironment))
        ));
    }
}
