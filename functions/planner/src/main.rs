//! The planner Lambda's entry point: configuration at cold start, then one plan per event.

use std::sync::Arc;

use ferry::env::{Env, ProcessEnv};
use ferry::queue::{queue_url_from_env, SqsQueue};
use lambda_runtime::{service_fn, tracing, Error, LambdaEvent};
use planner::Planner;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Plain text locally, JSON when the function's LoggingConfig says LogFormat: JSON.
    tracing::init_default_subscriber();
    let env: Arc<dyn Env> = Arc::new(ProcessEnv);
    let queue_url = queue_url_from_env(env.as_ref())?;
    let queue = Arc::new(SqsQueue::from_env(queue_url).await);
    let planner = Planner::from_env(env, queue)
        .await
        .map_err(|e| format!("configuration: {e:#}"))?;
    let planner = &planner;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        planner
            .handle(&event.payload)
            .await
            .map_err(|e| Error::from(format!("{e:#}")))
    }))
    .await
}
