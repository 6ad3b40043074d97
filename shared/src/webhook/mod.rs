//! Webhooks: a registry announces a push, ferry queues the copies its rules call for.
//!
//! This module is the whole of the webhook's logic; the Lambda Function URL handler and
//! `ferry serve` only translate their requests into an [`HttpRequest`], call
//! [`Webhook::handle_http`] (or [`Webhook::handle_event`] for ECR's EventBridge events, which
//! reach the function as a direct invocation) and send the [`HttpResponse`] back. This file
//! owns the handler: its settings, the order of the checks and the queueing; the pieces live
//! beside it: the formats (`formats.rs`, reading JSON through `payload.rs`, names checked by
//! `push.rs`), rule matching (`matching.rs`), the secret (`authorize.rs`) and the HTTP types
//! (`http.rs`).
//!
//! A request goes through, in order: the method (`POST` on any path, else 405), the secret
//! (`FERRY_WEBHOOK_SECRET` as `Authorization: Bearer`, as the Basic password with any user
//! name, or as `?token=` for registries that cannot set headers; unset means every request is
//! refused with 401), the size (over [`MAX_BODY_BYTES`] is 413), the payload (not JSON, an
//! unknown format or a malformed known one is 400 with the reason), then the rules. Health
//! checks (`GET /healthz`) are the shells' business: here every other method is 405.
//!
//! The webhook never contacts a registry, and targets come only from the rules, so a forged
//! or replayed event can at worst re-copy something the rules already copy; it can never make
//! ferry pull from or push to anything unconfigured.

mod authorize;
mod formats;
mod http;
mod matching;
mod payload;
mod push;
#[cfg(test)]
mod testing;

use serde_json::{json, Value};
use thiserror::Error;

pub use authorize::authorize;
pub use formats::{parse_events, parse_payload, Format, ParseError, Parsed};
pub use http::{HttpRequest, HttpResponse};
pub use matching::match_rules;
pub use payload::{Expected, PayloadError, PayloadProblem};
pub use push::{NameProblem, PushEvent};

use crate::credentials::Secret;
use crate::env::Env;
use crate::error::{HasKind, Kind};
use crate::image::{ImageOptions, Referrers};
use crate::input::{load_inputs_from_env, service_settings_from_env, InputError, Inputs};
use crate::job::{new_plan_id, Job};
use crate::platform::PlatformFilter;
use crate::queue::{Queue, QueueError};
use crate::rules::Rule;
use crate::s3::S3;

/// Bodies larger than this are refused with 413: no registry's notification comes close,
/// and the whole body is parsed in memory.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The shared secret every HTTP request must present.
pub const SECRET_VARIABLE: &str = "FERRY_WEBHOOK_SECRET";
/// A second secret accepted while registries move to a new one.
pub const PREVIOUS_SECRET_VARIABLE: &str = "FERRY_WEBHOOK_SECRET_PREVIOUS";
/// The registry host of formats whose payload names none (Docker Hub's).
pub const REGISTRY_VARIABLE: &str = "FERRY_WEBHOOK_REGISTRY";

/// Events quoted in an "ignored" answer; a big delivery must not make a big answer.
const QUOTED_EVENTS: usize = 5;

/// Why a request or event was not acted on.
#[derive(Debug, Error)]
pub enum WebhookError {
    /// Not a push notification ferry can read.
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(
        "a direct invocation must be an ECR \"ECR Image Action\" event; \
         other formats come over HTTP with the secret"
    )]
    NotEcrEvent,
    #[error("the jobs could not be queued: {0}")]
    Queue(#[from] QueueError),
}

impl HasKind for WebhookError {
    fn kind(&self) -> Kind {
        match self {
            WebhookError::Parse(error) => error.kind(),
            WebhookError::NotEcrEvent => Kind::BadInput,
            WebhookError::Queue(_) => Kind::Queue,
        }
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
    /// `FERRY_WEBHOOK_SECRET_PREVIOUS`: also accepted while registries move to a new secret.
    pub previous_secret: Option<Secret>,
    /// `FERRY_WEBHOOK_REGISTRY`: the host of payloads that name none.
    pub default_registry: Option<String>,
    /// The `--os`/`--arch` filter every job carries (`FERRY_OS`, `FERRY_ARCH`).
    pub platforms: PlatformFilter,
    /// Which referrers every job carries (`FERRY_REFERRERS`, `FERRY_REFERRERS_TYPE`).
    pub referrers: Referrers,
}

/// `FERRY_WEBHOOK_SECRET`, surrounding whitespace dropped (a secret pasted with a newline
/// is still meant).
pub fn secret_from_env(env: &dyn Env) -> Option<Secret> {
    env.var(SECRET_VARIABLE).map(|s| Secret::new(s.trim()))
}

/// `FERRY_WEBHOOK_SECRET_PREVIOUS`, likewise.
pub fn previous_secret_from_env(env: &dyn Env) -> Option<Secret> {
    env.var(PREVIOUS_SECRET_VARIABLE)
        .map(|s| Secret::new(s.trim()))
}

/// Why the webhook cannot start.
#[derive(Debug, Error)]
pub enum WebhookConfigError {
    #[error(transparent)]
    Input(#[from] InputError),
    /// `FERRY_WEBHOOK_REGISTRY` is not a registry host.
    #[error("{REGISTRY_VARIABLE}: {0}")]
    Registry(#[source] NameProblem),
}

impl HasKind for WebhookConfigError {
    fn kind(&self) -> Kind {
        match self {
            WebhookConfigError::Input(error) => error.kind(),
            WebhookConfigError::Registry(_) => Kind::BadInput,
        }
    }
}

/// The webhook: rules, secret and job settings, built once per process. It never contacts a
/// registry: jobs carry the pushed digest when the payload has one, and the copier HEADs
/// every source before copying anyway.
#[derive(Debug)]
pub struct Webhook {
    rules: Vec<Rule>,
    secret: Option<Secret>,
    previous_secret: Option<Secret>,
    default_registry: Option<String>,
    /// What every job asks of its copy.
    image: ImageOptions,
}

impl Webhook {
    pub fn new(rules: Vec<Rule>, settings: WebhookSettings) -> Result<Webhook, WebhookConfigError> {
        let default_registry = match settings.default_registry.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(host) => Some(
                push::repository_at(host.trim_end_matches('/'), "x")
                    .map_err(WebhookConfigError::Registry)?
                    .registry()
                    .to_string(),
            ),
        };
        let secret = settings.secret.filter(|s| !s.expose().is_empty());
        if secret.is_none() {
            tracing::warn!("{SECRET_VARIABLE} is not set: every webhook request will be refused");
        }
        let previous_secret = settings.previous_secret.filter(|s| !s.expose().is_empty());
        Ok(Webhook {
            rules,
            secret,
            previous_secret,
            default_registry,
            image: ImageOptions {
                force: false,
                platforms: settings.platforms,
                referrers: settings.referrers,
            },
        })
    }

    /// From the environment: `FERRY_WEBHOOK_SECRET` (surrounding whitespace dropped, as a
    /// secret pasted with a newline is still meant), `FERRY_WEBHOOK_REGISTRY`, the rules
    /// (`FERRY_IMAGES` or `FERRY_IMAGES_FILE`, required; a file in S3 read through `s3`) and
    /// `FERRY_OS`/`FERRY_ARCH`.
    pub async fn from_env(env: &dyn Env, s3: &S3) -> Result<Webhook, WebhookConfigError> {
        Webhook::from_inputs(load_inputs_from_env(env, true, s3).await?, env)
    }

    /// As `from_env`, with the rules already read (a function that reads its files in S3
    /// again builds a new webhook from them).
    pub fn from_inputs(inputs: Inputs, env: &dyn Env) -> Result<Webhook, WebhookConfigError> {
        let settings = service_settings_from_env(env)?;
        Webhook::new(
            inputs.rules,
            WebhookSettings {
                secret: secret_from_env(env),
                previous_secret: previous_secret_from_env(env),
                default_registry: env.var(REGISTRY_VARIABLE),
                platforms: settings.platforms,
                referrers: settings.referrers,
            },
        )
    }

    /// One HTTP request, checked in order: method, secret, size, payload, rules.
    pub async fn handle_http(&self, request: &HttpRequest, queue: &dyn Queue) -> HttpResponse {
        if let Some(refusal) = self.screen(
            &request.method,
            &request.path,
            &request.headers,
            request.query.as_deref(),
        ) {
            return refusal;
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

    /// What can be decided before the body is read: the method, the secret, and a declared
    /// `Content-Length` over the limit. A server calls this first, so an unauthenticated
    /// sender never gets a body read; `handle_http` calls it too.
    pub fn screen(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        query: Option<&str>,
    ) -> Option<HttpResponse> {
        if !method.eq_ignore_ascii_case("POST") {
            return Some(
                HttpResponse::error(405, "only POST is accepted").with_header("Allow", "POST"),
            );
        }
        // A secret being rotated out is accepted too, until it is unset.
        let accepted = [&self.secret, &self.previous_secret]
            .into_iter()
            .any(|secret| authorize(secret.as_ref().map(Secret::expose), headers, query));
        if !accepted {
            tracing::warn!(path = %path, "webhook request refused: missing or wrong secret");
            return Some(
                HttpResponse::error(401, "missing or wrong secret")
                    .with_header("WWW-Authenticate", "Bearer realm=\"ferry\""),
            );
        }
        let declared = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            tracing::warn!(bytes = declared, "webhook request refused: body too large");
            return Some(HttpResponse::error(
                413,
                format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            ));
        }
        None
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
        let images = match_rules(&self.rules, &parsed.events, self.image.referrers.enabled);
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
    use std::time::Duration;

    use super::testing::{fixture, header, post, rules, INDEX, SECRET};
    use super::*;
    use crate::env::MapEnv;
    use crate::queue::MemoryQueue;

    fn settings() -> WebhookSettings {
        WebhookSettings {
            secret: Some(Secret::new(SECRET)),
            previous_secret: None,
            ..WebhookSettings::default()
        }
    }

    fn webhook(yaml: &str) -> Webhook {
        Webhook::new(rules(yaml), settings()).unwrap()
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
        let (jobs, children): (Vec<Job>, Vec<Job>) = jobs(&queue)
            .await
            .into_iter()
            .partition(|job| job.pushed_referrer.is_none());
        // The children, pushed by digest first, might be referrers: the copier reads them
        // to know (and copies nothing for them).
        assert_eq!(children.len(), 2);
        for child in &children {
            assert_eq!(child.digest, child.pushed_referrer);
            assert_eq!(child.targets.len(), 1);
        }
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

    /// During a rotation, the new secret and the previous one are both accepted.
    #[tokio::test]
    async fn a_previous_secret_is_accepted_while_it_is_set() {
        let env = MapEnv::new([
            ("FERRY_IMAGES", "quay.io/a/b: mirror.io/b"),
            ("FERRY_WEBHOOK_SECRET", "new-secret"),
            ("FERRY_WEBHOOK_SECRET_PREVIOUS", "old-secret"),
        ]);
        let webhook = Webhook::from_env(&env, &S3::new()).await.unwrap();
        let bearer = |secret: &str| vec![("Authorization".to_string(), format!("Bearer {secret}"))];
        for secret in ["new-secret", "old-secret"] {
            assert!(
                webhook.screen("POST", "/", &bearer(secret), None).is_none(),
                "{secret}"
            );
        }
        let refused = webhook.screen("POST", "/", &bearer("other"), None).unwrap();
        assert_eq!(refused.status, 401);
        assert!(!format!("{webhook:?}").contains("old-secret"));
    }

    #[tokio::test]
    async fn without_a_secret_every_request_is_refused() {
        let webhook = Webhook::new(
            rules("quay.io/mynamespace/repository: mirror.io/repository"),
            WebhookSettings {
                secret: Some(Secret::new("")),
                previous_secret: None,
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

    #[tokio::test]
    async fn configuration_from_the_environment() {
        let env = MapEnv::new([
            ("FERRY_IMAGES", "quay.io/a/b: mirror.io/b"),
            ("FERRY_WEBHOOK_SECRET", "  pasted-with-newline\n"),
            ("FERRY_WEBHOOK_REGISTRY", "Hub.Example.com/"),
            ("FERRY_ARCH", "arm64"),
        ]);
        let webhook = Webhook::from_env(&env, &S3::new()).await.unwrap();
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
        let err = Webhook::from_env(&bad, &S3::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("FERRY_WEBHOOK_REGISTRY: "), "{err}");
        let no_rules = MapEnv::new([("FERRY_WEBHOOK_SECRET", "x")]);
        assert!(matches!(
            Webhook::from_env(&no_rules, &S3::new()).await,
            Err(WebhookConfigError::Input(InputError::NoImagesInEnvironment))
        ));
    }
}
