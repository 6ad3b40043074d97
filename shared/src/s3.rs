//! Amazon S3 as a place input documents live: `s3://BUCKET/KEY` parsed and checked once
//! (`S3Uri`), and one object read whole through the AWS credential chain (`S3::get`), its
//! size capped while it streams. What the bytes mean (YAML or JSON, by the key's extension)
//! is `files`'; which documents to read, `input`'s.
//!
//! Errors name the object as `s3://BUCKET/KEY` and say their kind by one rule: S3 answered
//! that this object cannot be had (no such bucket or key, access denied, any other 4xx), or
//! the URI or the object itself is wrong (too large) → bad input, as a missing or unreadable
//! local file is; S3 could not be asked (no credentials, the network, a timeout, 5xx after
//! retries) → transport or credentials, worth another try. AWS answers a missing key with
//! 403 AccessDenied to a caller without `s3:ListBucket`, so "denied" and "missing" must be
//! the same kind.

use std::fmt;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{Region, SdkConfig};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use thiserror::Error;

use crate::env::{Env, ProcessEnv};
use crate::error::{HasKind, Kind};

/// Attempts per GetObject (the SDK's standard mode: backoff with jitter on throttling, 5xx
/// and connection errors).
const API_ATTEMPTS: u32 = 4;
/// One GetObject until its response headers, all attempts included; the body is guarded by
/// the SDK's stalled-stream protection.
const API_TIMEOUT: Duration = Duration::from_secs(60);
/// The region asked when the environment names none: S3's global default.
const FALLBACK_REGION: &str = "us-east-1";
/// S3's limit on a key's length, in bytes.
const MAX_KEY_BYTES: usize = 1024;
/// The environment variables that aim the SDK's S3 client at another endpoint.
const ENDPOINT_VARIABLES: [&str; 2] = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"];

/// An object's address, `s3://BUCKET/KEY`, checked: a bucket name by S3's rules and a key
/// that is non-empty, at most 1024 bytes and free of control characters. The key is taken
/// as written (no percent-decoding): what `aws s3 cp` shows is what is read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct S3Uri {
    bucket: String,
    key: String,
}

/// What is wrong with an `s3://` URI.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UriProblem {
    #[error("expected s3://BUCKET/KEY")]
    NoKey,
    #[error("the key is empty")]
    EmptyKey,
    #[error("the key is longer than {MAX_KEY_BYTES} bytes")]
    LongKey,
    #[error("the key contains a control character")]
    ControlCharacter,
    #[error("bucket {0:?} is not a bucket name: 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit, no \"..\", not an IP address")]
    BadBucket(String),
}

impl S3Uri {
    /// The scheme, matched without regard to case.
    pub const SCHEME: &'static str = "s3://";

    /// Whether `text` is meant as an S3 URI (starts with `s3://`, in any case).
    pub fn is_s3(text: &str) -> bool {
        text.get(..Self::SCHEME.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(Self::SCHEME))
    }

    /// Parses `s3://BUCKET/KEY`; `None` when `text` is no S3 URI at all.
    pub fn parse(text: &str) -> Option<Result<S3Uri, S3Error>> {
        if !Self::is_s3(text) {
            return None;
        }
        let bad = |problem| S3Error::BadUri {
            uri: crate::error::truncate(text, 200),
            problem,
        };
        let rest = &text[Self::SCHEME.len()..];
        Some((|| {
            if rest.chars().any(char::is_control) {
                return Err(bad(UriProblem::ControlCharacter));
            }
            let (bucket, key) = rest.split_once('/').ok_or(bad(UriProblem::NoKey))?;
            if !is_bucket_name(bucket) {
                return Err(bad(UriProblem::BadBucket(bucket.to_string())));
            }
            if key.is_empty() {
                return Err(bad(UriProblem::EmptyKey));
            }
            if key.len() > MAX_KEY_BYTES {
                return Err(bad(UriProblem::LongKey));
            }
            Ok(S3Uri {
                bucket: bucket.to_string(),
                key: key.to_string(),
            })
        })())
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for S3Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// S3's rules for new bucket names (general purpose buckets).
fn is_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (3..=63).contains(&bytes.len())
        && bytes.iter().all(|&b| edge(b) || b == b'.' || b == b'-')
        && edge(bytes[0])
        && edge(bytes[bytes.len() - 1])
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
}

/// Why an object could not be read. Messages name the object, never a credential.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum S3Error {
    #[error("{uri:?}: not an S3 URI: {problem}")]
    BadUri { uri: String, problem: UriProblem },
    #[error("{uri}: no such bucket {bucket:?}", bucket = uri.bucket)]
    NoSuchBucket { uri: S3Uri },
    #[error("{uri}: no such object (key {key:?} in bucket {bucket:?})", key = uri.key, bucket = uri.bucket)]
    NoSuchKey { uri: S3Uri },
    #[error("{uri}: access denied (s3:GetObject on this object is needed; without s3:ListBucket on the bucket, S3 also says this for a key that does not exist): {detail}")]
    Denied { uri: S3Uri, detail: String },
    #[error("{uri}: S3 refused GetObject: {detail}")]
    Refused { uri: S3Uri, detail: String },
    #[error("{uri}: larger than {limit} bytes, more than an input document may be")]
    TooLarge { uri: S3Uri, limit: u64 },
    #[error("{uri}: no AWS credentials found (the AWS credential chain: environment, profile, web identity, ECS or instance metadata): {detail}")]
    NoCredentials { uri: S3Uri, detail: String },
    #[error("{uri}: S3 could not be reached: {detail}")]
    Unreachable { uri: S3Uri, detail: String },
}

impl HasKind for S3Error {
    fn kind(&self) -> Kind {
        match self {
            S3Error::BadUri { .. }
            | S3Error::NoSuchBucket { .. }
            | S3Error::NoSuchKey { .. }
            | S3Error::Denied { .. }
            | S3Error::Refused { .. }
            | S3Error::TooLarge { .. } => Kind::BadInput,
            S3Error::NoCredentials { .. } => Kind::Credentials,
            S3Error::Unreachable { .. } => Kind::Transport,
        }
    }
}

/// S3 for a process: the client made on first use, so a run that reads no `s3://` document
/// never loads AWS configuration. Share it by reference.
#[derive(Default)]
pub struct S3 {
    config: tokio::sync::OnceCell<SdkConfig>,
    client: tokio::sync::OnceCell<aws_sdk_s3::Client>,
}

impl fmt::Debug for S3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3").finish_non_exhaustive()
    }
}

impl S3 {
    /// S3 with AWS configuration from the environment, loaded on first use.
    pub fn new() -> Self {
        S3::default()
    }

    /// S3 with explicit AWS configuration (tests: an endpoint and static credentials).
    pub fn with_config(config: SdkConfig) -> Self {
        S3 {
            config: tokio::sync::OnceCell::new_with(Some(config)),
            ..S3::default()
        }
    }

    async fn client(&self) -> &aws_sdk_s3::Client {
        let config = self.config.get_or_init(crate::aws::load_aws_config).await;
        self.client
            .get_or_init(|| async {
                let mut conf = aws_sdk_s3::config::Builder::from(config)
                    .retry_config(RetryConfig::standard().with_max_attempts(API_ATTEMPTS))
                    .timeout_config(
                        TimeoutConfig::builder()
                            .operation_timeout(API_TIMEOUT)
                            .build(),
                    );
                if config.region().is_none() {
                    conf = conf.region(Region::new(FALLBACK_REGION));
                }
                // Virtual-hosted URLs (BUCKET.s3.REGION.amazonaws.com) are what AWS prefers
                // and the only style new AWS features get; an endpoint override (moto,
                // LocalStack, MinIO on localhost) rarely resolves BUCKET.HOST, so there
                // the bucket goes in the path.
                if endpoint_overridden(config, &ProcessEnv) {
                    conf = conf.force_path_style(true);
                }
                aws_sdk_s3::Client::from_conf(conf.build())
            })
            .await
    }

    /// The whole object at `uri`, refused once it is larger than `limit` bytes: by its
    /// announced length before reading, else while it streams (never more than `limit` + 1
    /// bytes held).
    pub async fn get(&self, uri: &S3Uri, limit: u64) -> Result<Vec<u8>, S3Error> {
        tracing::debug!(%uri, "reading an input document from S3");
        let output = self
            .client()
            .await
            .get_object()
            .bucket(&uri.bucket)
            .key(&uri.key)
            .send()
            .await
            .map_err(|e| classify(uri, e))?;
        if output
            .content_length()
            .is_some_and(|length| u64::try_from(length).map_or(true, |l| l > limit))
        {
            return Err(S3Error::TooLarge {
                uri: uri.clone(),
                limit,
            });
        }
        read_capped(uri, output.body, limit).await
    }
}

/// Whether S3 requests go somewhere other than AWS's own endpoints: set in the configuration
/// itself (tests) or by the variables the SDK reads.
fn endpoint_overridden(config: &SdkConfig, env: &dyn Env) -> bool {
    config.endpoint_url().is_some()
        || ENDPOINT_VARIABLES
            .iter()
            .any(|name| env.var(name).is_some_and(|v| !v.trim().is_empty()))
}

/// Reads `body` whole, failing as soon as it passes `limit` bytes.
async fn read_capped(uri: &S3Uri, mut body: ByteStream, limit: u64) -> Result<Vec<u8>, S3Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| S3Error::Unreachable {
            uri: uri.clone(),
            detail: format!("reading the object: {}", DisplayErrorContext(&e)),
        })?;
        if (bytes.len() + chunk.len()) as u64 > limit {
            return Err(S3Error::TooLarge {
                uri: uri.clone(),
                limit,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// An SDK failure as the kind of error it is (see the module's comment for the rule).
fn classify(uri: &S3Uri, error: SdkError<GetObjectError, HttpResponse>) -> S3Error {
    let uri = uri.clone();
    let status = error.raw_response().map(|r| r.status().as_u16());
    let code = error.code().map(str::to_string);
    let detail = crate::error::truncate(&DisplayErrorContext(&error).to_string(), 500);
    match (status, code.as_deref()) {
        (_, Some("NoSuchBucket")) => S3Error::NoSuchBucket { uri },
        (_, Some("NoSuchKey")) => S3Error::NoSuchKey { uri },
        (Some(403), _) | (_, Some("AccessDenied")) => S3Error::Denied { uri, detail },
        (Some(400..=499), _) => S3Error::Refused { uri, detail },
        (None, None)
            if matches!(
                error,
                SdkError::ConstructionFailure(_) | SdkError::DispatchFailure(_)
            ) && (detail.contains("credentials") || detail.contains("identity")) =>
        {
            S3Error::NoCredentials { uri, detail }
        }
        _ => S3Error::Unreachable { uri, detail },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::MapEnv;

    fn parse(text: &str) -> Result<S3Uri, S3Error> {
        S3Uri::parse(text).expect("an s3:// URI")
    }

    #[test]
    fn uris_are_checked() {
        let uri = parse("s3://my-bucket.v2/rules/images.yaml").unwrap();
        assert_eq!(
            (uri.bucket(), uri.key()),
            ("my-bucket.v2", "rules/images.yaml")
        );
        assert_eq!(uri.to_string(), "s3://my-bucket.v2/rules/images.yaml");
        let upper = parse("S3://bkt/a b/c%20d.json").unwrap();
        assert_eq!(upper.key(), "a b/c%20d.json");
        assert!(S3Uri::parse("./images.yaml").is_none());
        assert!(S3Uri::parse("s3:/bkt/key").is_none());
        let problem = |text: &str| match parse(text).unwrap_err() {
            S3Error::BadUri { problem, .. } => problem,
            other => panic!("{other}"),
        };
        assert_eq!(problem("s3://bucket"), UriProblem::NoKey);
        assert_eq!(problem("s3://bucket/"), UriProblem::EmptyKey);
        assert_eq!(problem("s3://bucket/a\nb"), UriProblem::ControlCharacter);
        assert_eq!(problem("s3://bucket/a\u{7f}"), UriProblem::ControlCharacter);
        assert_eq!(
            problem(&format!("s3://bucket/{}", "k".repeat(1025))),
            UriProblem::LongKey
        );
        for bucket in [
            "",
            "ab",
            "Upper",
            "a..b",
            "-ab",
            "ab-",
            "a_b",
            "192.168.1.1",
        ] {
            assert_eq!(
                problem(&format!("s3://{bucket}/key")),
                UriProblem::BadBucket(bucket.to_string()),
                "{bucket}"
            );
        }
        assert!(parse(&format!("s3://{}/k", "b".repeat(63))).is_ok());
        assert!(parse(&format!("s3://{}/k", "b".repeat(64))).is_err());
        let message = parse("s3://Bad/key").unwrap_err().to_string();
        assert!(
            message.starts_with("\"s3://Bad/key\": not an S3 URI"),
            "{message}"
        );
        assert_eq!(parse("s3://Bad/key").unwrap_err().kind(), Kind::BadInput);
    }

    #[test]
    fn path_style_only_with_an_endpoint_override() {
        let plain = SdkConfig::builder().build();
        assert!(!endpoint_overridden(&plain, &MapEnv::default()));
        assert!(!endpoint_overridden(
            &plain,
            &MapEnv::new([("AWS_ENDPOINT_URL_S3", " ")])
        ));
        assert!(endpoint_overridden(
            &plain,
            &MapEnv::new([("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:5000")])
        ));
        assert!(endpoint_overridden(
            &plain,
            &MapEnv::new([("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")])
        ));
        let explicit = SdkConfig::builder()
            .endpoint_url("http://127.0.0.1:5000")
            .build();
        assert!(endpoint_overridden(&explicit, &MapEnv::default()));
    }

    #[tokio::test]
    async fn bodies_are_capped_while_they_stream() {
        let uri = parse("s3://bucket/images.yaml").unwrap();
        let body = ByteStream::from(vec![b'a'; 10]);
        assert_eq!(read_capped(&uri, body, 10).await.unwrap().len(), 10);
        let body = ByteStream::from(vec![b'a'; 11]);
        let error = read_capped(&uri, body, 10).await.unwrap_err();
        assert_eq!(error, S3Error::TooLarge { uri, limit: 10 });
        assert!(error
            .to_string()
            .starts_with("s3://bucket/images.yaml: larger than 10 bytes"));
    }
}
