//! The jobs of ferry's serverless mode: the bodies of queue messages, sent by the planner
//! and read by the workers. A copy job ([`Job`]) is one planned source image with all its
//! targets; a plan job ([`PlanJob`]) is a slice of a large migration's rules, which the
//! worker receiving it resolves into copy jobs (`dispatch`'s code) on the same queue.
//!
//! The body is versioned JSON:
//!
//! ```json
//! {"v":1,"plan_id":"1763820000-0a1b2c3d","source":"quay.io/coreos/etcd:v3.5.0",
//!  "digest":"sha256:…","targets":["registry.example.com/mirror/etcd:v3.5.0"],
//!  "os":["linux"],"arch":["amd64","arm64:v8"],"force":false}
//! ```
//!
//! `digest`, `os`, `arch` and `force` may be absent; unknown fields are ignored so a newer
//! planner can add optional fields without breaking older workers, while a different `v`
//! is refused.
//!
//! A webhook's job for a pushed referrer says what was pushed in `pushed_referrer`: the
//! referrer tag (`sha256-<hex>.sig`, …), whose subject the job copies by digest and whose
//! tag the source must serve before the copy counts (a registry may notify before it serves
//! the tag); or the job's own digest, a manifest pushed with no tag, whose `subject`'s
//! referrers the copier brings up to date (see `copy`). A worker older than the field
//! ignores it: it copies the subject as a plain image, or the untagged manifest by digest. A job never carries credentials: workers read them from their own
//! configuration. A malformed body is an error naming the field and value, never a panic.
//!
//! A plan job says so with `"kind":"plan"` (a copy job may say `"kind":"copy"`, and writes
//! no kind, so workers older than plan jobs read what is sent today):
//!
//! ```json
//! {"kind":"plan","v":1,"plan_id":"1763820000-0a1b2c3d",
//!  "rules":{"quay.io/coreos/etcd":["registry.example.com/mirror/etcd"]},
//!  "os":["linux"],"force":false,"listed":false}
//! ```
//!
//! `rules` is an images file's map (source → target or targets), validated by the same
//! parser with no defaults and no `$VAR`s (a queue message must not read the worker's
//! environment), at most [`MAX_PLAN_RULES`] of them. `listed` says the rules name tags a
//! listing found, so they are not HEADed again to see they exist. Unlike a copy job, a plan
//! job refuses unknown fields: a field it does not understand could narrow what the rules
//! select, and ignoring it would copy more than was asked.

use std::collections::HashSet;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::env::MapEnv;
use crate::error::truncate;
use crate::error::{HasKind, Kind};
use crate::image::{referrer_subject, ImageOptions, PlannedImage, PushedReferrer, Referrers};
use crate::platform::{PlatformError, PlatformFilter};
use crate::reference::{Digest, Locator, Reference, ReferenceError};
use crate::rules::{rules_from_value, Defaults, Rule};

/// The body format version this build writes and reads.
pub const JOB_VERSION: u64 = 1;

/// Rules one plan job may carry. A plan job is cut to a fraction of this (`dispatch`); the
/// bound is for what arrives from elsewhere.
pub const MAX_PLAN_RULES: usize = 10_000;

/// The fields a plan job may have.
const PLAN_FIELDS: [&str; 10] = [
    "kind",
    "v",
    "plan_id",
    "rules",
    "os",
    "arch",
    "force",
    "listed",
    "referrers",
    "referrer_types",
];

/// Values quoted in errors are cut to this many characters: a garbage message must not
/// flood the logs.
const QUOTE_LIMIT: usize = 120;

/// No valid reference is this long (a 253-character host, a 255-character path and a
/// sha512 digest come to about 650), so a longer value is refused before parsing.
const MAX_REFERENCE_LEN: usize = 1024;

/// One queue message: copy `source` to every target. Read bodies with [`Job::parse`], which
/// validates; plain serde deserialisation checks only the shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub v: u64,
    /// The planner run that produced this job, for correlating logs and reports.
    #[serde(default)]
    pub plan_id: String,
    /// `registry/repo:tag` or `registry/repo@digest`, normalised.
    pub source: String,
    /// The manifest digest the planner saw, when the registry told it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub targets: Vec<String>,
    /// Raw `--os` entries (`linux`, `windows:10.0.17763`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub os: Vec<String>,
    /// Raw `--arch` entries (`amd64`, `arm64:v8`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arch: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub force: bool,
    /// `false`: the image's referrers (signatures, SBOMs) are not copied (`--referrers=false`).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub referrers: bool,
    /// Only referrers of these artifact types (`--referrers-type`); empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referrer_types: Vec<String>,
    /// The referrer a push made this job for: a referrer tag of `source`'s digest, or that
    /// digest itself (see the module's notes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_referrer: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_true(b: &bool) -> bool {
    *b
}

fn yes() -> bool {
    true
}

/// Why a message body is not a usable job.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JobError {
    #[error("job message is not JSON: {0}")]
    NotJson(String),
    #[error("job message is not a JSON object")]
    NotObject,
    #[error("job message has no {0:?} field")]
    Missing(&'static str),
    #[error("job field {field:?} must be {expected}, not {value}")]
    WrongType {
        field: String,
        expected: &'static str,
        value: String,
    },
    #[error("unsupported job version {0} (this ferry reads version {JOB_VERSION})")]
    Version(String),
    #[error("job field \"targets\" is empty")]
    NoTargets,
    #[error("job field {field:?}: {value:?}: {error}")]
    Reference {
        field: String,
        value: String,
        error: ReferenceError,
    },
    #[error("job field {field:?} is {len} characters long, too long for a reference")]
    TooLong { field: String, len: usize },
    #[error("job field \"pushed_referrer\" {value:?}: {reason}")]
    PushedReferrer { value: String, reason: &'static str },
    #[error("job field \"digest\" {digest:?} contradicts the source's digest {source_digest:?}")]
    DigestConflict {
        digest: String,
        source_digest: String,
    },
    #[error("job platform filter: {0}")]
    Platform(#[from] PlatformError),
    #[error("unknown job kind {0} (this ferry reads \"copy\" and \"plan\")")]
    Kind(String),
    #[error("a {0} job, not a copy job")]
    NotACopy(String),
    #[error("a copy job, not a plan job")]
    NotAPlan,
    #[error("plan job has an unknown field {0:?}")]
    UnknownField(String),
    #[error("plan job field \"rules\" is empty")]
    NoRules,
    #[error("plan job has {0} rules, more than {MAX_PLAN_RULES}")]
    TooManyRules(usize),
    #[error("plan job rules: {0}")]
    Rules(String),
    #[error("plan job is \"listed\", but rule {0:?} lists tags itself")]
    ListedListing(String),
}

impl HasKind for JobError {
    fn kind(&self) -> Kind {
        Kind::BadInput
    }
}

impl Job {
    /// The job for one planned image, copied with `options` (the run's) or what its rule
    /// asks instead (`platforms:`/`force:`).
    pub fn from_planned(image: &PlannedImage, plan_id: &str, options: &ImageOptions) -> Job {
        let options = &image.rule_options.over(options);
        Job {
            v: JOB_VERSION,
            plan_id: plan_id.to_string(),
            source: image.source.to_string(),
            digest: image.digest.as_ref().map(Digest::to_string),
            targets: image.targets.iter().map(Reference::to_string).collect(),
            os: options.platforms.os_entries(),
            arch: options.platforms.arch_entries(),
            force: options.force,
            referrers: options.referrers.enabled,
            referrer_types: options.referrers.types.clone(),
            pushed_referrer: image.pushed_referrer.as_ref().map(|pushed| match pushed {
                PushedReferrer::Tag(tag) => tag.clone(),
                // A webhook's image for a manifest pushed by digest is named by it.
                PushedReferrer::Manifest => match &image.source.locator {
                    Locator::Digest(digest) => digest.to_string(),
                    Locator::Tag(tag) => tag.clone(),
                },
            }),
        }
    }

    /// Parses and validates a message body: version, field types, every reference and the
    /// platform filter, so a job that parses can be executed. A plan job is refused.
    pub fn parse(body: &str) -> Result<Job, JobError> {
        match QueuedJob::parse(body)? {
            QueuedJob::Copy(job) => Ok(job),
            QueuedJob::Plan(_) => Err(JobError::NotACopy("plan".into())),
        }
    }

    /// A copy job's fields, its version and kind already checked.
    fn from_map(map: &Map<String, Value>) -> Result<Job, JobError> {
        let job = Job {
            v: JOB_VERSION,
            plan_id: optional_string(map, "plan_id")?.unwrap_or_default(),
            source: required_string(map, "source")?,
            digest: optional_string(map, "digest")?,
            targets: string_list(map, "targets")?.ok_or(JobError::Missing("targets"))?,
            os: string_list(map, "os")?.unwrap_or_default(),
            arch: string_list(map, "arch")?.unwrap_or_default(),
            force: optional_bool(map, "force")?.unwrap_or(false),
            referrers: optional_bool(map, "referrers")?.unwrap_or(true),
            referrer_types: string_list(map, "referrer_types")?.unwrap_or_default(),
            pushed_referrer: optional_string(map, "pushed_referrer")?,
        };
        job.work()?;
        Ok(job)
    }

    /// What to copy and how: the planned image and its options, validated.
    pub fn work(&self) -> Result<(PlannedImage, ImageOptions), JobError> {
        Ok((
            self.to_planned()?,
            ImageOptions {
                force: self.force,
                platforms: self.platform_filter()?,
                referrers: Referrers {
                    enabled: self.referrers,
                    types: self.referrer_types.clone(),
                },
            },
        ))
    }

    /// The message body.
    pub fn to_body(&self) -> String {
        // A struct of strings, lists and a bool always serialises.
        serde_json::to_string(self).expect("a Job always serialises to JSON")
    }

    /// The planned image this job copies; duplicate targets are dropped.
    pub fn to_planned(&self) -> Result<PlannedImage, JobError> {
        if self.v != JOB_VERSION {
            return Err(JobError::Version(self.v.to_string()));
        }
        let source = parse_reference("source", &self.source)?;
        let digest = self.checked_digest(&source)?;
        if self.targets.is_empty() {
            return Err(JobError::NoTargets);
        }
        let mut seen = HashSet::new();
        let mut targets = Vec::with_capacity(self.targets.len());
        for (i, text) in self.targets.iter().enumerate() {
            let target = parse_reference(&format!("targets[{i}]"), text)?;
            if seen.insert(target.clone()) {
                targets.push(target);
            }
        }
        let pushed_referrer = self.checked_pushed_referrer(&source)?;
        // The job's own os/arch/force are its options (`options`), a rule's already in them.
        Ok(PlannedImage {
            source,
            digest,
            targets,
            rule_options: Default::default(),
            pushed_referrer,
        })
    }

    /// `pushed_referrer` read: the job is by digest, and the value is that digest, or a
    /// referrer tag of it (a tag cannot hold a ':').
    fn checked_pushed_referrer(
        &self,
        source: &Reference,
    ) -> Result<Option<PushedReferrer>, JobError> {
        let Some(text) = &self.pushed_referrer else {
            return Ok(None);
        };
        let refused = |reason| JobError::PushedReferrer {
            value: quote(text),
            reason,
        };
        let Locator::Digest(digest) = &source.locator else {
            return Err(refused("the job's source is not by digest"));
        };
        if text.contains(':') {
            let pushed: Digest = text
                .parse()
                .map_err(|_| refused("neither a referrer tag nor a valid digest"))?;
            return match pushed == *digest {
                true => Ok(Some(PushedReferrer::Manifest)),
                false => Err(refused("a digest other than the source's")),
            };
        }
        match referrer_subject(text) {
            Some(subject) if subject == *digest => Ok(Some(PushedReferrer::Tag(text.clone()))),
            Some(_) => Err(refused(
                "a referrer tag of another digest than the source's",
            )),
            None => Err(refused(
                "not a referrer tag (sha256-<hex>, or .sig/.att/.sbom)",
            )),
        }
    }

    /// The `--os`/`--arch` filter the planner was run with.
    pub fn platform_filter(&self) -> Result<PlatformFilter, JobError> {
        Ok(PlatformFilter::parse(&self.os, &self.arch)?)
    }

    /// `digest` parsed, and consistent with a digest source (a contradiction means the
    /// message was built wrong, and copying either would be a guess).
    fn checked_digest(&self, source: &Reference) -> Result<Option<Digest>, JobError> {
        let Some(text) = &self.digest else {
            return Ok(None);
        };
        let digest: Digest = text.parse().map_err(|error| JobError::Reference {
            field: "digest".into(),
            value: quote(text),
            error,
        })?;
        match &source.locator {
            Locator::Digest(d) if *d != digest => Err(JobError::DigestConflict {
                digest: digest.to_string(),
                source_digest: d.to_string(),
            }),
            _ => Ok(Some(digest)),
        }
    }
}

/// A slice of a migration's rules, for a worker to resolve into copy jobs. Read bodies with
/// [`QueuedJob::parse`] (or [`PlanJob::parse`]), which validates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanJob {
    pub v: u64,
    /// The planner run that produced this job; the copy jobs it expands into carry it too.
    pub plan_id: String,
    /// The rules to resolve, as an images file writes them: source → target or targets.
    pub rules: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub os: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arch: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub force: bool,
    /// The rules name tags a listing found (a repository too large for one expansion, cut
    /// into slices): they are not HEADed again to see they exist, and not cut again.
    #[serde(default, skip_serializing_if = "is_false")]
    pub listed: bool,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub referrers: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referrer_types: Vec<String>,
}

impl PlanJob {
    /// A plan job for `rules` (entries of an images map), copied with `options`.
    pub fn new(
        rules: Map<String, Value>,
        plan_id: &str,
        options: &ImageOptions,
        listed: bool,
    ) -> PlanJob {
        PlanJob {
            v: JOB_VERSION,
            plan_id: plan_id.to_string(),
            rules,
            os: options.platforms.os_entries(),
            arch: options.platforms.arch_entries(),
            force: options.force,
            listed,
            referrers: options.referrers.enabled,
            referrer_types: options.referrers.types.clone(),
        }
    }

    /// Parses and validates a plan job's body.
    pub fn parse(body: &str) -> Result<PlanJob, JobError> {
        match QueuedJob::parse(body)? {
            QueuedJob::Plan(job) => Ok(job),
            QueuedJob::Copy(_) => Err(JobError::NotAPlan),
        }
    }

    /// A plan job's fields, its version and kind already checked; its rules and platform
    /// filter are validated.
    fn from_map(map: &Map<String, Value>) -> Result<PlanJob, JobError> {
        if let Some(unknown) = map.keys().find(|k| !PLAN_FIELDS.contains(&k.as_str())) {
            return Err(JobError::UnknownField(quote(unknown)));
        }
        let rules = match map.get("rules") {
            None | Some(Value::Null) => return Err(JobError::Missing("rules")),
            Some(Value::Object(rules)) => rules.clone(),
            Some(other) => return Err(wrong_type("rules", "a map of source → targets", other)),
        };
        let job = PlanJob {
            v: JOB_VERSION,
            plan_id: optional_string(map, "plan_id")?.unwrap_or_default(),
            rules,
            os: string_list(map, "os")?.unwrap_or_default(),
            arch: string_list(map, "arch")?.unwrap_or_default(),
            force: optional_bool(map, "force")?.unwrap_or(false),
            listed: optional_bool(map, "listed")?.unwrap_or(false),
            referrers: optional_bool(map, "referrers")?.unwrap_or(true),
            referrer_types: string_list(map, "referrer_types")?.unwrap_or_default(),
        };
        job.work()?;
        Ok(job)
    }

    /// What to resolve and how: the rules and the copies' options, validated. The rules are
    /// read as an images file's, with no default registry and no variables: a target must
    /// be written out, and `$NAME` in a message is refused rather than filled in from the
    /// worker's environment (which holds its secrets).
    pub fn work(&self) -> Result<(Vec<Rule>, ImageOptions), JobError> {
        if self.v != JOB_VERSION {
            return Err(JobError::Version(self.v.to_string()));
        }
        if self.rules.is_empty() {
            return Err(JobError::NoRules);
        }
        if self.rules.len() > MAX_PLAN_RULES {
            return Err(JobError::TooManyRules(self.rules.len()));
        }
        let rules = rules_from_value(
            Path::new("plan job"),
            &Value::Object(self.rules.clone()),
            &Defaults::default(),
            &MapEnv::default(),
        )
        .map_err(|e| JobError::Rules(quote_long(&e.to_string())))?;
        if self.listed {
            if let Some(rule) = rules.iter().find(|r| r.selector.lists()) {
                return Err(JobError::ListedListing(quote(&rule.text)));
            }
        }
        let options = ImageOptions {
            force: self.force,
            platforms: PlatformFilter::parse(&self.os, &self.arch)?,
            referrers: Referrers {
                enabled: self.referrers,
                types: self.referrer_types.clone(),
            },
        };
        Ok((rules, options))
    }

    /// The message body: `{"kind":"plan",…}`.
    pub fn to_body(&self) -> String {
        QueuedJob::Plan(self.clone()).to_body()
    }
}

/// Any job a queue message holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QueuedJob {
    Copy(Job),
    Plan(PlanJob),
}

impl QueuedJob {
    /// Parses and validates a message body of either kind: no `kind` is a copy job.
    pub fn parse(body: &str) -> Result<QueuedJob, JobError> {
        let value: Value =
            serde_json::from_str(body).map_err(|e| JobError::NotJson(e.to_string()))?;
        let Value::Object(map) = value else {
            return Err(JobError::NotObject);
        };
        // The version first: another version may have another shape entirely.
        check_version(&map)?;
        match map.get("kind") {
            None | Some(Value::Null) => Job::from_map(&map).map(QueuedJob::Copy),
            Some(Value::String(kind)) if kind == "copy" => Job::from_map(&map).map(QueuedJob::Copy),
            Some(Value::String(kind)) if kind == "plan" => {
                PlanJob::from_map(&map).map(QueuedJob::Plan)
            }
            Some(other) => Err(JobError::Kind(quote(&other.to_string()))),
        }
    }

    /// The message body. A copy job's has no `kind`, as before plan jobs existed.
    pub fn to_body(&self) -> String {
        match self {
            QueuedJob::Copy(job) => job.to_body(),
            // Strings, lists, bools and a JSON map always serialise.
            QueuedJob::Plan(_) => {
                serde_json::to_string(self).expect("a plan job always serialises to JSON")
            }
        }
    }

    /// `copy` or `plan`.
    pub fn kind(&self) -> &'static str {
        match self {
            QueuedJob::Copy(_) => "copy",
            QueuedJob::Plan(_) => "plan",
        }
    }
}

/// A short plan id, unique enough to tell planner runs apart in logs: the UNIX time in
/// seconds (so ids sort by start time) and 32 random bits.
pub fn new_plan_id() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{secs}-{:08x}", fastrand::u32(..))
}

fn check_version(map: &Map<String, Value>) -> Result<(), JobError> {
    match map.get("v") {
        None => Err(JobError::Missing("v")),
        Some(Value::Number(n)) if n.as_u64() == Some(JOB_VERSION) => Ok(()),
        Some(Value::Number(n)) => Err(JobError::Version(quote(&n.to_string()))),
        Some(other) => Err(wrong_type("v", "a number", other)),
    }
}

fn required_string(map: &Map<String, Value>, field: &'static str) -> Result<String, JobError> {
    optional_string(map, field)?.ok_or(JobError::Missing(field))
}

/// A string field; `null` counts as absent.
fn optional_string(map: &Map<String, Value>, field: &str) -> Result<Option<String>, JobError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong_type(field, "a string", other)),
    }
}

fn optional_bool(map: &Map<String, Value>, field: &str) -> Result<Option<bool>, JobError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(wrong_type(field, "true or false", other)),
    }
}

/// A list-of-strings field; `null` counts as absent.
fn string_list(map: &Map<String, Value>, field: &str) -> Result<Option<Vec<String>>, JobError> {
    let items = match map.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(wrong_type(field, "a list of strings", other)),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s.clone()),
            other => Err(wrong_type(&format!("{field}[{i}]"), "a string", other)),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn wrong_type(field: &str, expected: &'static str, value: &Value) -> JobError {
    JobError::WrongType {
        field: field.to_string(),
        expected,
        value: quote(&value.to_string()),
    }
}

fn parse_reference(field: &str, text: &str) -> Result<Reference, JobError> {
    // The parser's own errors quote the whole value.
    if text.len() > MAX_REFERENCE_LEN {
        return Err(JobError::TooLong {
            field: field.to_string(),
            len: text.chars().count(),
        });
    }
    Reference::parse(text).map_err(|error| JobError::Reference {
        field: field.to_string(),
        value: quote(text),
        error,
    })
}

/// `text`, cut to [`QUOTE_LIMIT`] characters.
fn quote(text: &str) -> String {
    truncate(text, QUOTE_LIMIT)
}

/// A rules error, which names the rule and its value, each already cut short by its own
/// quoting or not at all: cut to a few quotes' worth.
fn quote_long(text: &str) -> String {
    truncate(text, 4 * QUOTE_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn planned() -> PlannedImage {
        PlannedImage {
            source: Reference::parse("quay.io/coreos/etcd:v3.5.0").unwrap(),
            digest: Some(digest('a').parse().unwrap()),
            targets: vec![
                Reference::parse("127.0.0.1:5000/mirror/etcd:v3.5.0").unwrap(),
                Reference::parse("backup.example.com/etcd:v3.5.0").unwrap(),
            ],
            rule_options: Default::default(),
            pushed_referrer: None,
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn round_trips() {
        let options = ImageOptions {
            force: true,
            platforms: PlatformFilter::parse(&strings(&["linux"]), &strings(&["amd64,arm64:v8"]))
                .unwrap(),
            referrers: Referrers {
                enabled: false,
                types: strings(&["application/spdx+json"]),
            },
        };
        let job = Job::from_planned(&planned(), "p1", &options);
        let body = job.to_body();
        assert!(body.contains(r#""referrers":false,"referrer_types":["application/spdx+json"]"#));
        assert_eq!(job.work().unwrap().1, options);
        let defaults = Job::from_planned(&planned(), "p1", &ImageOptions::default()).to_body();
        assert!(
            !defaults.contains("referrer"),
            "the default is not written: {defaults}"
        );
        assert!(body.starts_with(r#"{"v":1,"plan_id":"p1","source":"quay.io/coreos/etcd:v3.5.0""#));
        let parsed = Job::parse(&body).unwrap();
        assert_eq!(parsed, job);
        assert_eq!(parsed.to_planned().unwrap(), planned());
        assert_eq!(
            parsed.platform_filter().unwrap(),
            PlatformFilter::parse(&strings(&["linux"]), &strings(&["amd64,arm64:v8"])).unwrap()
        );
    }

    #[test]
    fn omits_and_defaults_optional_fields() {
        let mut image = planned();
        image.digest = None;
        let job = Job::from_planned(&image, "p", &ImageOptions::default());
        let body = job.to_body();
        for absent in ["\"digest\"", "\"os\"", "\"arch\"", "\"force\""] {
            assert!(!body.contains(absent), "{absent} in {body}");
        }
        let minimal = Job::parse(r#"{"v":1,"source":"nginx","targets":["h.io/n"]}"#).unwrap();
        assert_eq!(minimal.plan_id, "");
        assert!(minimal.platform_filter().unwrap().is_empty());
        let image = minimal.to_planned().unwrap();
        assert_eq!(image.source.to_string(), "docker.io/library/nginx:latest");
        assert_eq!(image.targets[0].to_string(), "h.io/n:latest");
    }

    #[test]
    fn accepts_unknown_fields() {
        let body = r#"{"v":1,"source":"a.io/x:1","targets":["b.io/x:1"],"priority":7}"#;
        assert_eq!(Job::parse(body).unwrap().source, "a.io/x:1");
    }

    #[test]
    fn rejects_other_versions() {
        let body = |v: &str| format!(r#"{{"v":{v},"source":"a.io/x:1","targets":["b.io/x:1"]}}"#);
        assert_eq!(Job::parse(&body("2")), Err(JobError::Version("2".into())));
        assert_eq!(Job::parse(&body("0")), Err(JobError::Version("0".into())));
        assert!(Job::parse(&body("1.5")).is_err());
        assert!(matches!(
            Job::parse(&body(r#""1""#)),
            Err(JobError::WrongType { ref field, .. }) if field == "v"
        ));
        let job = Job {
            v: 2,
            ..Job::parse(&body("1")).unwrap()
        };
        assert!(matches!(job.to_planned(), Err(JobError::Version(_))));
    }

    /// Every malformed body is an error whose message names what is wrong.
    #[test]
    fn rejects_garbage_with_a_named_reason() {
        let d = digest('b');
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "not JSON"),
            ("not json".into(), "not JSON"),
            ("\u{0}\u{1}{".into(), "not JSON"),
            ("[1,2]".into(), "not a JSON object"),
            ("null".into(), "not a JSON object"),
            (
                r#"{"source":"a.io/x","targets":["b.io/x"]}"#.into(),
                "no \"v\"",
            ),
            (r#"{"v":1,"targets":["b.io/x"]}"#.into(), "no \"source\""),
            (r#"{"v":1,"source":"a.io/x"}"#.into(), "no \"targets\""),
            (
                r#"{"v":1,"source":"a.io/x","targets":[]}"#.into(),
                "\"targets\" is empty",
            ),
            (
                r#"{"v":1,"source":"a.io/x","targets":"b.io/x"}"#.into(),
                "\"targets\" must be a list",
            ),
            (
                r#"{"v":1,"source":"a.io/x","targets":["b.io/x",3]}"#.into(),
                "\"targets[1]\" must be a string, not 3",
            ),
            (
                r#"{"v":1,"source":7,"targets":["b.io/x"]}"#.into(),
                "\"source\" must be a string, not 7",
            ),
            (
                r#"{"v":1,"source":"A.io/X:1","targets":["b.io/x"]}"#.into(),
                "\"source\": \"A.io/X:1\"",
            ),
            (
                r#"{"v":1,"source":"a.io/x","targets":["b.io/x:-bad"]}"#.into(),
                "\"targets[0]\": \"b.io/x:-bad\"",
            ),
            (
                r#"{"v":1,"source":"a.io/x","digest":"md5:00","targets":["b.io/x"]}"#.into(),
                "\"digest\": \"md5:00\"",
            ),
            (
                format!(
                    r#"{{"v":1,"source":"a.io/x@{}","digest":"{d}","targets":["b.io/x"]}}"#,
                    digest('c')
                ),
                "contradicts",
            ),
            (
                r#"{"v":1,"source":"a.io/x","targets":["b.io/x"],"force":"yes"}"#.into(),
                "\"force\" must be true or false",
            ),
            (
                r#"{"v":1,"source":"a.io/x","targets":["b.io/x"],"arch":["arm/v7"]}"#.into(),
                "invalid --arch entry \"arm/v7\"",
            ),
            (
                r#"{"v":1,"source":"a.io/x","targets":["b.io/x"],"os":{"linux":1}}"#.into(),
                "\"os\" must be a list",
            ),
        ];
        for (body, reason) in cases {
            let error = Job::parse(&body).expect_err(&body).to_string();
            assert!(
                error.contains(reason),
                "{body:?}: {error:?} lacks {reason:?}"
            );
        }
    }

    #[test]
    fn quotes_long_values_shortly() {
        let body = format!(
            r#"{{"v":1,"source":"{}","targets":["b.io/x"]}}"#,
            "X".repeat(10_000)
        );
        let error = Job::parse(&body).unwrap_err().to_string();
        assert!(error.len() < 200, "{error}");
        assert!(
            error.contains("\"source\" is 10000 characters long"),
            "{error}"
        );
        let body = format!(
            r#"{{"v":1,"source":"a.io/x","targets":["b.io/x"],"os":[{}]}}"#,
            "1,".repeat(5000) + "1"
        );
        let error = Job::parse(&body).unwrap_err().to_string();
        assert!(error.len() < 200, "{error}");
        assert!(
            error.contains("\"os[0]\" must be a string, not 1"),
            "{error}"
        );
        let body = format!(
            r#"{{"v":1,"source":"a.io/x","targets":["b.io/x"],"force":"{}"}}"#,
            "y".repeat(5000)
        );
        let error = Job::parse(&body).unwrap_err().to_string();
        assert!(error.len() < 200 && error.contains('…'), "{error}");
    }

    #[test]
    fn drops_duplicate_targets() {
        let job =
            Job::parse(r#"{"v":1,"source":"a.io/x:1","targets":["b.io/x:1","b.io/x:1","c.io/x"]}"#)
                .unwrap();
        let targets: Vec<String> = job
            .to_planned()
            .unwrap()
            .targets
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(targets, ["b.io/x:1", "c.io/x:latest"]);
    }

    #[test]
    fn fifty_targets_fit_easily_in_a_message() {
        let mut image = planned();
        image.targets = (0..50)
            .map(|i| {
                Reference::parse(&format!(
                    "registry-{i}.mirror.example.com:5000/some/deeply/nested/team/path/etcd:v3.5.0-{i}"
                ))
                .unwrap()
            })
            .collect();
        let options = ImageOptions {
            force: false,
            platforms: PlatformFilter::parse(
                &strings(&["linux"]),
                &strings(&["amd64", "arm64:v8"]),
            )
            .unwrap(),
            ..ImageOptions::default()
        };
        let body = Job::from_planned(&image, &new_plan_id(), &options).to_body();
        assert!(body.len() < 16 * 1024, "{} bytes", body.len());
        assert!(body.len() < 256 * 1024);
        assert_eq!(Job::parse(&body).unwrap().targets.len(), 50);
    }

    fn plan_body(extra: &str) -> String {
        format!(
            r#"{{"kind":"plan","v":1,"plan_id":"p","rules":{{"a.io/x:1,2":["b.io/x"],"a.io/y":"b.io/y"}}{extra}}}"#
        )
    }

    #[test]
    fn plan_jobs_round_trip_and_say_their_kind() {
        let job = PlanJob::parse(&plan_body(r#","os":["linux"],"listed":false"#)).unwrap();
        assert_eq!(job.rules.len(), 2);
        let (rules, options) = job.work().unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(options.platforms.os_entries(), ["linux"]);
        let body = job.to_body();
        assert!(
            body.starts_with(r#"{"kind":"plan","v":1,"plan_id":"p""#),
            "{body}"
        );
        assert_eq!(QueuedJob::parse(&body), Ok(QueuedJob::Plan(job.clone())));
        assert_eq!(QueuedJob::Plan(job).kind(), "plan");
        // A copy job writes no kind, and reads with or without one.
        let copy = r#"{"v":1,"source":"a.io/x:1","targets":["b.io/x:1"]}"#;
        let parsed = QueuedJob::parse(copy).unwrap();
        assert_eq!(parsed.kind(), "copy");
        assert_eq!(parsed.to_body(), Job::parse(copy).unwrap().to_body());
        assert!(!parsed.to_body().contains("kind"));
        let tagged = r#"{"kind":"copy","v":1,"source":"a.io/x:1","targets":["b.io/x:1"]}"#;
        assert_eq!(QueuedJob::parse(tagged).unwrap(), parsed);
        // Each parser refuses the other kind by name.
        assert_eq!(
            Job::parse(&plan_body("")),
            Err(JobError::NotACopy("plan".into()))
        );
        assert_eq!(PlanJob::parse(copy), Err(JobError::NotAPlan));
    }

    /// Plan jobs come off a queue anyone allowed to send can write to: every malformed one
    /// is refused with a named reason.
    #[test]
    fn rejects_bad_plan_jobs_with_a_named_reason() {
        let cases: Vec<(String, &str)> = vec![
            (
                plan_body("").replace(r#""v":1"#, r#""v":2"#),
                "unsupported job version 2",
            ),
            (plan_body(r#","priority":1"#), "unknown field \"priority\""),
            (
                plan_body("").replace(r#""plan""#, r#""sync""#),
                "unknown job kind \"sync\"",
            ),
            (
                plan_body("").replace(r#""plan""#, "7"),
                "unknown job kind 7",
            ),
            (r#"{"kind":"plan","v":1}"#.into(), "no \"rules\""),
            (
                r#"{"kind":"plan","v":1,"rules":{}}"#.into(),
                "\"rules\" is empty",
            ),
            (
                r#"{"kind":"plan","v":1,"rules":["a.io/x"]}"#.into(),
                "\"rules\" must be a map",
            ),
            (
                r#"{"kind":"plan","v":1,"rules":{"A.io/X":"b.io/x"}}"#.into(),
                "plan job rules: plan job: rule \"A.io/X\"",
            ),
            (
                r#"{"kind":"plan","v":1,"rules":{"a.io/x":""}}"#.into(),
                "no default registry",
            ),
            // Variables are not filled from the worker's environment.
            (
                r#"{"kind":"plan","v":1,"rules":{"a.io/x":"b.io/$HOME"}}"#.into(),
                "uses $HOME, which is not set",
            ),
            (
                r#"{"kind":"plan","v":1,"rules":{"a.io/x":"b.io/x"},"listed":true}"#.into(),
                "is \"listed\", but rule \"a.io/x\" lists tags",
            ),
            (
                plan_body(r#","listed":"yes""#),
                "\"listed\" must be true or false",
            ),
            (plan_body(r#","arch":["arm/v7"]"#), "invalid --arch entry"),
        ];
        for (body, reason) in cases {
            let error = QueuedJob::parse(&body).expect_err(&body).to_string();
            assert!(
                error.contains(reason),
                "{body:?}: {error:?} lacks {reason:?}"
            );
        }
        let many: Map<String, Value> = (0..=MAX_PLAN_RULES)
            .map(|i| (format!("a.io/x:t{i}"), Value::from("b.io/x")))
            .collect();
        let job = PlanJob::new(many, "p", &ImageOptions::default(), false);
        assert_eq!(
            PlanJob::parse(&job.to_body()),
            Err(JobError::TooManyRules(MAX_PLAN_RULES + 1))
        );
    }

    #[test]
    fn a_rules_options_replace_the_runs_in_its_jobs() {
        let mut image = planned();
        image.rule_options = crate::image::RuleOptions {
            force: Some(true),
            platforms: Some(
                PlatformFilter::parse(&strings(&["linux"]), &strings(&["arm64:v8"])).unwrap(),
            ),
            referrers: Some(false),
        };
        let run = ImageOptions {
            force: false,
            platforms: PlatformFilter::parse(&[], &strings(&["amd64"])).unwrap(),
            ..ImageOptions::default()
        };
        let job = Job::parse(&Job::from_planned(&image, "p", &run).to_body()).unwrap();
        assert!(job.force);
        assert!(!job.referrers);
        assert_eq!(job.os, ["linux"]);
        assert_eq!(job.arch, ["arm64:v8"]);
        // Without options of its own, the run's.
        let job = Job::from_planned(&planned(), "p", &run);
        assert!(!job.force);
        assert!(job.referrers);
        assert_eq!(job.arch, ["amd64"]);
    }

    #[test]
    fn plan_ids_are_short_and_differ() {
        let (a, b) = (new_plan_id(), new_plan_id());
        assert_ne!(a, b);
        assert!(a.len() <= 24, "{a}");
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }

    #[test]
    fn a_pushed_referrer_round_trips_and_bad_ones_are_refused_by_name() {
        let (d, other) = (digest('a'), digest('b'));
        let hex = &d["sha256:".len()..];
        let by_digest = |pushed: &str| {
            format!(
                r#"{{"v":1,"source":"a.io/x@{d}","targets":["b.io/x@{d}"],"pushed_referrer":"{pushed}"}}"#
            )
        };
        for (pushed, expected) in [
            (
                format!("sha256-{hex}.sig"),
                PushedReferrer::Tag(format!("sha256-{hex}.sig")),
            ),
            (
                format!("sha256-{hex}"),
                PushedReferrer::Tag(format!("sha256-{hex}")),
            ),
            (d.clone(), PushedReferrer::Manifest),
        ] {
            let job = Job::parse(&by_digest(&pushed)).unwrap();
            let image = job.to_planned().unwrap();
            assert_eq!(image.pushed_referrer, Some(expected));
            // Written back as read.
            let again = Job::from_planned(&image, "p", &ImageOptions::default());
            assert_eq!(again.pushed_referrer.as_deref(), Some(pushed.as_str()));
            assert!(again
                .to_body()
                .contains(&format!(r#""pushed_referrer":"{pushed}""#)));
        }
        let cases: Vec<(String, &str)> = vec![
            (by_digest("v1"), "not a referrer tag"),
            (
                by_digest(&format!("sha256-{hex}.txt")),
                "not a referrer tag",
            ),
            (
                by_digest(&format!("sha256-{}.sig", &other["sha256:".len()..])),
                "another digest",
            ),
            (by_digest(&other), "a digest other than the source's"),
            (
                by_digest("md5:00"),
                "neither a referrer tag nor a valid digest",
            ),
            (
                format!(
                    r#"{{"v":1,"source":"a.io/x:v1","targets":["b.io/x:v1"],"pushed_referrer":"sha256-{hex}.sig"}}"#
                ),
                "not by digest",
            ),
            (
                format!(
                    r#"{{"v":1,"source":"a.io/x@{d}","targets":["b.io/x@{d}"],"pushed_referrer":7}}"#
                ),
                "must be a string",
            ),
        ];
        for (body, reason) in cases {
            let error = Job::parse(&body).unwrap_err().to_string();
            assert!(error.contains("\"pushed_referrer\""), "{error}");
            assert!(error.contains(reason), "{body}: {error}");
        }
    }
}
