//! The AWS SDK's HTTP client over reqwest, for builds with bundled roots (the release
//! binaries): the SDK's own client (`aws-smithy-http-client`) always links the operating
//! system's store, which on macOS is Security.framework and cannot be linked without an
//! Apple SDK. This one trusts what `crate::roots` says, like the registry client. It owns
//! converting requests, responses and errors between the SDK and reqwest and applying the
//! SDK's timeouts; retries, signing and body limits stay the SDK's and its callers'.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    http_client_fn, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_types::body::SdkBody;

/// Connectors by their (connect, read) timeouts: the SDK asks for one per operation, and
/// each reqwest client keeps its own connection pool, so equal settings share one.
type Connectors = HashMap<(Option<Duration>, Option<Duration>), SharedHttpConnector>;

/// The SDK's HTTPS client: one reqwest client per distinct timeout settings.
pub(super) fn https_client() -> SharedHttpClient {
    let connectors: Arc<Mutex<Connectors>> = Arc::default();
    http_client_fn(move |settings: &HttpConnectorSettings, _| {
        let key = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = connectors.lock().unwrap_or_else(|e| e.into_inner());
        connectors
            .entry(key)
            .or_insert_with(|| SharedHttpConnector::new(ReqwestConnector::new(key.0, key.1)))
            .clone()
    })
}

/// One reqwest client, or why it could not be built (reported on every request, where the
/// SDK can say which operation failed).
#[derive(Debug)]
struct ReqwestConnector {
    client: Result<reqwest::Client, Arc<str>>,
}

impl ReqwestConnector {
    fn new(connect_timeout: Option<Duration>, read_timeout: Option<Duration>) -> Self {
        Self {
            client: build_client(connect_timeout, read_timeout).map_err(Arc::from),
        }
    }
}

/// A reqwest client with the SDK's timeouts, trusting the bundled roots and `SSL_CERT_FILE`.
fn build_client(
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder();
    if let Some(timeout) = connect_timeout {
        builder = builder.connect_timeout(timeout);
    }
    if let Some(timeout) = read_timeout {
        builder = builder.read_timeout(timeout);
    }
    for cert in crate::roots::extra_roots().map_err(|e| e.to_string())? {
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| e.to_string())
}

impl HttpConnector for ReqwestConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = match &self.client {
            Ok(client) => client.clone(),
            Err(why) => {
                let err = ConnectorError::user(why.to_string().into());
                return HttpConnectorFuture::ready(Err(err));
            }
        };
        HttpConnectorFuture::new(async move {
            let request = to_reqwest(request).map_err(ConnectorError::user)?;
            let response = client.execute(request).await.map_err(connector_error)?;
            from_reqwest(response)
        })
    }
}

/// The SDK's request as reqwest's: an in-memory body is copied, a streaming one wrapped.
fn to_reqwest(
    request: HttpRequest,
) -> Result<reqwest::Request, aws_smithy_runtime_api::box_error::BoxError> {
    let request = request.try_into_http1x()?;
    let request = request.map(|body: SdkBody| match body.bytes() {
        Some(bytes) => reqwest::Body::from(bytes::Bytes::copy_from_slice(bytes)),
        None => reqwest::Body::wrap(body),
    });
    Ok(reqwest::Request::try_from(request)?)
}

/// reqwest's response as the SDK's, the body streamed.
fn from_reqwest(response: reqwest::Response) -> Result<HttpResponse, ConnectorError> {
    let response: http::Response<reqwest::Body> = response.into();
    let response = response.map(SdkBody::from_body_1_x);
    HttpResponse::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
}

/// reqwest's error as the SDK classifies it for retries: timeouts and failed connections
/// are transient, the rest is not known to be.
fn connector_error(err: reqwest::Error) -> ConnectorError {
    if err.is_timeout() {
        ConnectorError::timeout(err.into())
    } else if err.is_connect() || err.is_request() || err.is_body() {
        ConnectorError::io(err.into())
    } else {
        ConnectorError::other(err.into(), None)
    }
}
