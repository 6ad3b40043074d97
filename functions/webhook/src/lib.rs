//! The webhook function. Two kinds of event reach it: a Lambda Function URL request (payload
//! v2) carrying a registry's push notification, checked against `FERRY_WEBHOOK_SECRET`; and
//! an "ECR Image Action" event from EventBridge, invoked directly. Either way the pushed image
//! is matched against the rules and queued as one job per image (`ferry::webhook`).

use std::sync::Arc;

use aws_lambda_events::event::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use base64::{DecodeError, Engine as _};
use ferry::env::Env;
use ferry::input::Inputs;
use ferry::queue::Queue;
use ferry::reload::Reloading;
use ferry::s3::S3;
use ferry::webhook::{Format, HttpRequest, HttpResponse, Webhook};
use serde_json::Value;

/// What outlives one invocation: the webhook (rules and secret), rebuilt when its images
/// file in S3 changes.
pub struct WebhookFunction {
    webhook: Reloading<Webhook, anyhow::Error>,
    queue: Arc<dyn Queue>,
}

impl WebhookFunction {
    /// Reads the configuration; a `FERRY_IMAGES_FILE` in S3 is read with the AWS
    /// configuration of the process environment, and again between invocations, at most
    /// every `FERRY_RELOAD_SECONDS` (`ferry::reload`).
    pub async fn from_env(
        env: Arc<dyn Env>,
        queue: Arc<dyn Queue>,
    ) -> anyhow::Result<WebhookFunction> {
        WebhookFunction::with_s3(env, queue, Arc::new(S3::new())).await
    }

    /// As `from_env`, reading files in S3 through `s3`.
    pub async fn with_s3(
        env: Arc<dyn Env>,
        queue: Arc<dyn Queue>,
        s3: Arc<S3>,
    ) -> anyhow::Result<WebhookFunction> {
        let build = |inputs: Inputs, env: &dyn Env| Ok(Webhook::from_inputs(inputs, env)?);
        Ok(WebhookFunction {
            webhook: Reloading::load(env, s3, true, Box::new(build)).await?,
            queue,
        })
    }

    /// One invocation: a Function URL request answers an HTTP response; an ECR event answers
    /// what was queued. Anything else is refused.
    pub async fn handle(&self, payload: Value) -> anyhow::Result<Value> {
        let webhook = self.webhook.current().await;
        if Format::detect(&payload) == Some(Format::Ecr) {
            let outcome = webhook.handle_event(&payload, self.queue.as_ref()).await?;
            return Ok(outcome.to_json());
        }
        let request: LambdaFunctionUrlRequest = serde_json::from_value(payload).map_err(|e| {
            anyhow::anyhow!("neither a Function URL request nor an ECR Image Action event: {e}")
        })?;
        let response = match http_request(request) {
            Ok(request) => webhook.handle_http(&request, self.queue.as_ref()).await,
            Err(error) => HttpResponse::error(400, format!("body is not valid base64: {error}")),
        };
        Ok(serde_json::to_value(function_url_response(response))?)
    }
}

/// The request as the library sees it; the body decoded when Lambda base64-encoded it.
fn http_request(request: LambdaFunctionUrlRequest) -> Result<HttpRequest, DecodeError> {
    let body = request.body.unwrap_or_default();
    let body = if request.is_base64_encoded {
        base64::engine::general_purpose::STANDARD.decode(body.as_bytes())?
    } else {
        body.into_bytes()
    };
    let headers = request
        .headers
        .iter()
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect();
    Ok(HttpRequest {
        method: request
            .request_context
            .http
            .method
            .unwrap_or_else(|| "GET".into()),
        path: request.raw_path.unwrap_or_else(|| "/".into()),
        query: request.raw_query_string.filter(|q| !q.is_empty()),
        headers,
        body,
    })
}

fn function_url_response(response: HttpResponse) -> LambdaFunctionUrlResponse {
    let mut out = LambdaFunctionUrlResponse::default();
    out.status_code = i64::from(response.status);
    for (name, value) in &response.headers {
        if let (Ok(name), Ok(value)) = (
            name.parse::<aws_lambda_events::http::HeaderName>(),
            value.parse::<aws_lambda_events::http::HeaderValue>(),
        ) {
            out.headers.insert(name, value);
        }
    }
    out.body = Some(response.body.to_string());
    out
}

#[cfg(test)]
mod tests {
    use ferry::env::MapEnv;
    use ferry::queue::MemoryQueue;

    use super::*;

    #[tokio::test]
    async fn a_body_that_is_not_base64_is_refused_with_400() {
        let env = MapEnv::new([
            ("FERRY_IMAGES", "quay.io/a/b: mirror.io/b"),
            ("FERRY_WEBHOOK_SECRET", "s3cret"),
        ]);
        let function = WebhookFunction::from_env(Arc::new(env), Arc::new(MemoryQueue::default()))
            .await
            .unwrap();
        let mut request: Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/function-url-request.json"
        )))
        .unwrap();
        request["body"] = Value::from("%%% not base64");
        request["isBase64Encoded"] = Value::from(true);
        let response = function.handle(request).await.unwrap();
        assert_eq!(response["statusCode"], 400, "{response}");
        let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(error.starts_with("body is not valid base64: "), "{error}");
    }
}
