//! The planner function: on a schedule or a manual invoke, expand the configured rules into
//! one queue message per image not yet in sync, and answer what it did.
//!
//! Configuration comes from the environment (see `ferry::input::load_inputs_from_env`):
//! `FERRY_QUEUE_URL`, `FERRY_IMAGES` or `FERRY_IMAGES_FILE`, `FERRY_AUTH` or
//! `FERRY_AUTH_FILE` (each file a path in the bundle or `s3://BUCKET/KEY`; files in S3 are
//! read again for every run, so an uploaded object counts from the next run on), `FERRY_OS`,
//! `FERRY_ARCH`, `FERRY_REGISTRY`, `FERRY_NAMESPACE`, `FERRY_CONCURRENCY`, `FERRY_FAN_OUT`
//! (`auto` unless set: a migration above 1,000 images goes out as plan jobs for the copiers to
//! expand; see `ferry::dispatch`), `FERRY_IMMUTABLE_TAGS` (with the rules' `immutable:`, a
//! tag a target already lists is in sync without a HEAD). An invocation's payload may override two things:
//! `{"force": true}` and, only where `FERRY_ALLOW_INLINE_RULES` is true,
//! `{"images": <rules, as a map or as YAML/JSON text>}`; anything else in it (an
//! EventBridge schedule event, say) is ignored.
//!
//! Each run's summary is one line on standard output in CloudWatch's Embedded Metric Format
//! (`ferry::metrics::plan_line`): copy and plan jobs enqueued, images in sync, tags seen,
//! errors, seconds.

use std::sync::Arc;

use anyhow::Context as _;
use ferry::dispatch::{dispatch, fan_out_from_env, DispatchOptions, DispatchSummary};
use ferry::env::Env;
use ferry::image::ImageOptions;
use ferry::input::{
    immutable_tags_from_env, load_inputs_from_env, rules_from_inline, service_settings_from_env,
};
use ferry::metrics::{now_ms, plan_line, MetricSource};
use ferry::queue::Queue;
use ferry::registry::Registries;
use ferry::rules::{ImmutableTags, Rule};
use ferry::s3::S3;
use serde_json::Value;

/// Everything an invocation needs, built once per cold start.
pub struct Planner {
    rules: Arc<Vec<Rule>>,
    registries: Arc<Registries>,
    /// Where files in S3 are read again for each run; `None` when no file is in S3.
    s3: Option<Arc<S3>>,
    queue: Arc<dyn Queue>,
    options: DispatchOptions,
    /// Whether an invocation may bring its own rules (`FERRY_ALLOW_INLINE_RULES`).
    inline_rules: bool,
    env: Arc<dyn Env>,
    /// The dimensions of its metrics.
    metrics: MetricSource,
}

impl Planner {
    /// Reads the configuration; `queue` is where jobs go (SQS in Lambda, anything in tests).
    pub async fn from_env(env: Arc<dyn Env>, queue: Arc<dyn Queue>) -> anyhow::Result<Planner> {
        Planner::with_s3(env, queue, Arc::new(S3::new())).await
    }

    /// As `from_env`, reading files in S3 through `s3` (tests give one with an explicit AWS
    /// configuration; `from_env`'s reads the process environment, as every AWS SDK does).
    pub async fn with_s3(
        env: Arc<dyn Env>,
        queue: Arc<dyn Queue>,
        s3: Arc<S3>,
    ) -> anyhow::Result<Planner> {
        // Rules may also come with each invocation, so none configured is not an error yet.
        let inputs = load_inputs_from_env(env.as_ref(), false, &s3).await?;
        let settings = service_settings_from_env(env.as_ref())?;
        let fan_out = fan_out_from_env(env.as_ref()).map_err(anyhow::Error::msg)?;
        // A bad pattern stops the cold start; each run takes it with its own rules'.
        immutable_tags_from_env(env.as_ref(), &[])?;
        Ok(Planner {
            s3: inputs.from_s3.then_some(s3),
            rules: Arc::new(inputs.rules),
            registries: Arc::new(Registries::from_env(Arc::new(inputs.auth), env.as_ref())),
            queue,
            options: DispatchOptions {
                image: ImageOptions {
                    force: false,
                    platforms: settings.platforms,
                    referrers: settings.referrers,
                },
                concurrency: settings.concurrency,
                fan_out,
                immutable: ImmutableTags::default(),
            },
            inline_rules: settings.inline_rules,
            metrics: MetricSource::from_env(env.as_ref(), "planner"),
            env,
        })
    }

    /// One invocation: plan and enqueue, with the payload's overrides.
    pub async fn handle(&self, payload: &Value) -> anyhow::Result<DispatchSummary> {
        let mut options = self.options.clone();
        if let Some(force) = payload.get("force") {
            options.image.force = force.as_bool().with_context(|| {
                format!("invocation field \"force\" must be true or false, not {force}")
            })?;
        }
        let (configured, registries) = self.current_inputs().await?;
        let inline;
        let rules = match payload.get("images") {
            Some(_) if !self.inline_rules => anyhow::bail!(
                "invocation \"images\" is refused: this stack takes its rules only from its own \
                 configuration (set AllowInlineRules, FERRY_ALLOW_INLINE_RULES=true, to allow it)"
            ),
            Some(images) => {
                inline = rules_from_inline("invocation \"images\"", images, self.env.as_ref())?;
                &inline
            }
            None => configured.as_slice(),
        };
        anyhow::ensure!(
            !rules.is_empty(),
            "no rules: set FERRY_IMAGES or FERRY_IMAGES_FILE, or invoke with {{\"images\": …}}"
        );
        options.immutable = immutable_tags_from_env(self.env.as_ref(), rules)?;
        let started = std::time::Instant::now();
        let summary = dispatch(rules, &registries, self.queue.as_ref(), &options).await?;
        // A raw line of JSON on standard output is what CloudWatch reads EMF from.
        println!(
            "{}",
            plan_line(&self.metrics, &summary, started.elapsed(), now_ms())
        );
        for error in &summary.errors {
            tracing::warn!(plan_id = %summary.plan_id, error = %error, "planning error");
        }
        Ok(summary)
    }

    /// The configured rules and registry clients for this run: those read at cold start, or,
    /// where a file is in S3, read again, so rules uploaded since count without a redeploy
    /// (a warm function would otherwise plan with the old ones until its next cold start).
    async fn current_inputs(&self) -> anyhow::Result<(Arc<Vec<Rule>>, Arc<Registries>)> {
        let Some(s3) = &self.s3 else {
            return Ok((Arc::clone(&self.rules), Arc::clone(&self.registries)));
        };
        let inputs = load_inputs_from_env(self.env.as_ref(), false, s3).await?;
        let registries = Registries::from_env(Arc::new(inputs.auth), self.env.as_ref());
        Ok((Arc::new(inputs.rules), Arc::new(registries)))
    }
}
