//! The webhook Lambda's entry point: configuration at cold start, then one request per event.

use std::sync::Arc;

use ferry::env::ProcessEnv;
use ferry::queue::{queue_url_from_env, SqsQueue};
use lambda_runtime::{service_fn, tracing, Error, LambdaEvent};
use serde_json::Value;
use webhook::WebhookFunction;

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Plain text locally, JSON when the function's LoggingConfig says LogFormat: JSON.
    tracing::init_default_subscriber();
    let queue_url = queue_url_from_env(&ProcessEnv)?;
    let queue = Arc::new(SqsQueue::from_env(queue_url).await);
    let function = WebhookFunction::from_env(Arc::new(ProcessEnv), queue)
        .await
        .map_err(|e| format!("configuration: {e:#}"))?;
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        function
            .handle(event.payload)
            .await
            .map_err(|e| Error::from(format!("{e:#}")))
    }))
    .await
}
