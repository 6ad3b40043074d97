//! The copier Lambda's entry point: configuration at cold start, then one batch per event.

use copier::CopierFunction;
use ferry::env::ProcessEnv;
use lambda_runtime::{service_fn, tracing, Error, LambdaEvent};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Plain text locally, JSON when the function's LoggingConfig says LogFormat: JSON.
    tracing::init_default_subscriber();
    let function = CopierFunction::from_env(&ProcessEnv)
        .await
        .map_err(|e| format!("configuration: {e:#}"))?;
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = event.context.deadline;
        Ok::<SqsBatchResponse, Error>(function.handle(event.payload, Some(deadline)).await)
    }))
    .await
}
