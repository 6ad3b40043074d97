//! The copier Lambda's entry point: configuration at cold start (with `FERRY_QUEUE_URL`, the
//! queue plan jobs' copy jobs go to), then one batch per event.

use std::sync::Arc;

use copier::CopierFunction;
use ferry::env::ProcessEnv;
use ferry::queue::{queue_url_from_env, SqsQueue};
use lambda_runtime::{service_fn, tracing, Error, LambdaEvent};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Plain text locally, JSON when the function's LoggingConfig says LogFormat: JSON.
    tracing::init_default_subscriber();
    let mut function = CopierFunction::from_env(Arc::new(ProcessEnv))
        .await
        .map_err(|e| format!("configuration: {e:#}"))?;
    // The queue plan jobs' copy jobs go to; without it, plan jobs are refused.
    match queue_url_from_env(&ProcessEnv) {
        Ok(url) => function = function.with_queue(Arc::new(SqsQueue::from_env(url).await)),
        Err(error) => tracing::warn!(%error, "plan jobs cannot be expanded"),
    }
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = event.context.deadline;
        Ok::<SqsBatchResponse, Error>(function.handle(event.payload, Some(deadline)).await)
    }))
    .await
}
