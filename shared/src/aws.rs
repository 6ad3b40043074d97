//! The AWS SDK as every service client of ferry's uses it (SQS for jobs, ECR for registry
//! tokens and repositories): one HTTPS stack, the same as the registry client's, and one way
//! of reading configuration from the environment. What each service does with it is left to
//! `queue::sqs` and `ecr`.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

#[cfg(not(feature = "native-roots"))]
mod reqwest_client;

/// The HTTPS client the SDK uses: hyper 1 + rustls with ring, the stack reqwest already
/// brings, instead of the SDK default's aws-lc-rs; trusting the system's root store.
#[cfg(feature = "native-roots")]
pub fn https_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The HTTPS client the SDK uses in a build with bundled roots: reqwest itself, since the
/// SDK's own client always links the system store (the macOS keychain needs an SDK to link).
#[cfg(not(feature = "native-roots"))]
pub fn https_client() -> SharedHttpClient {
    reqwest_client::https_client()
}

/// AWS configuration from the environment, the way every AWS SDK reads it: region from
/// `AWS_REGION`/`AWS_DEFAULT_REGION` or the profile; credentials from `AWS_ACCESS_KEY_ID`/
/// `AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN` (what Lambda provides), web identity, the
/// profile (`AWS_PROFILE`, `credential_process`), ECS or EC2 instance metadata; endpoint
/// overrides from `AWS_ENDPOINT_URL_<SERVICE>` or `AWS_ENDPOINT_URL` (a local moto, say).
pub async fn load_aws_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}
