//! Amazon ECR as a registry's credential source and repository keeper: registry passwords
//! from `GetAuthorizationToken` through the AWS credential chain (the Lambda's role, the
//! environment, a profile, ECS or instance metadata), cached per registry id and region,
//! and target repositories created on first push (`DescribeRepositories`, then
//! `CreateRepository`), since ECR, unlike most registries, does not create them itself.
//! Which hosts are ECR's is `host`'s; what an auth entry may say, `settings`'; when a
//! password is renewed, `tokens`'. Which entry applies to a repository is `auth`'s.

mod host;
mod settings;
mod tokens;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{Region, SdkConfig};
use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ecr::types::{
    EncryptionConfiguration, EncryptionType, ImageScanningConfiguration, ImageTagMutability,
};
use base64::Engine as _;
use thiserror::Error;

pub use host::{is_account, is_region, EcrHost, PUBLIC_HOST, PUBLIC_REGION};
pub use settings::{
    CreatePolicy, EcrSettings, EcrSettingsProblem, Encryption, NewRepository, TagMutability,
};
pub use tokens::TokenKey;

use crate::credentials::{Credentials, Secret};
use crate::error::{HasKind, Kind};
use tokens::{IssuedToken, TokenCache};

/// Attempts per ECR API call (the SDK's standard retry mode: backoff with jitter, on
/// throttling, 5xx and connection errors).
const API_ATTEMPTS: u32 = 4;
/// One ECR API call, all attempts included.
const API_TIMEOUT: Duration = Duration::from_secs(60);
/// An authorization token is a few kilobytes; anything bigger is not one.
const MAX_TOKEN_LEN: usize = 64 << 10;

/// Which ECR registry a host's credentials come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EcrRegistry {
    /// The host as in references, for messages.
    pub host: String,
    pub key: TokenKey,
}

impl EcrRegistry {
    /// From what the host's name says and what its auth entry's `ecr:` adds (the entry
    /// wins). `None` if neither gives a region.
    pub fn new(
        host: &str,
        named: Option<&EcrHost>,
        settings: Option<&EcrSettings>,
    ) -> Option<Self> {
        let (named_account, named_region, public) = match named {
            Some(EcrHost::Private { account, region }) => {
                (Some(account.clone()), Some(region.clone()), false)
            }
            Some(EcrHost::Public) => (None, Some(PUBLIC_REGION.to_string()), true),
            None => (None, None, false),
        };
        let region = settings.and_then(|s| s.region.clone()).or(named_region)?;
        let registry_id = settings
            .and_then(|s| s.registry_id.clone())
            .or(named_account);
        Some(EcrRegistry {
            host: host.to_string(),
            key: TokenKey {
                registry_id,
                region,
                public,
            },
        })
    }
}

/// Why ECR could not give what ferry asked. Messages name the registry and never hold a
/// token.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EcrError {
    #[error("ECR registry {registry}: no AWS credentials found (the AWS credential chain: environment, profile, web identity, ECS or instance metadata): {detail}")]
    NoCredentials { registry: String, detail: String },
    #[error("ECR registry {registry}: {operation} failed: {detail}")]
    Api {
        registry: String,
        operation: &'static str,
        detail: String,
        /// AWS said the caller may not.
        denied: bool,
    },
    #[error("ECR registry {registry}: GetAuthorizationToken answered no usable token")]
    BadToken { registry: String },
    #[error("ECR registry {registry}: repository {repository} does not exist, and the auth file says create: false")]
    RepositoryMissing {
        registry: String,
        repository: String,
    },
    #[error("ECR registry {registry}: {reason}")]
    Listing { registry: String, reason: String },
}

impl HasKind for EcrError {
    fn kind(&self) -> Kind {
        match self {
            EcrError::NoCredentials { .. } | EcrError::BadToken { .. } => Kind::Credentials,
            EcrError::Api { denied: true, .. } => Kind::Denied,
            EcrError::Api { .. } => Kind::Transport,
            EcrError::RepositoryMissing { .. } => Kind::NotFound,
            EcrError::Listing { .. } => Kind::Protocol,
        }
    }
}

/// `DescribeRepositories` pages read for one listing (of up to [`LISTING_PAGE_SIZE`]
/// repositories each): 100,000 repositories, ECR's quota is 100,000 per region.
const MAX_LISTING_PAGES: usize = 100;
/// Repositories per `DescribeRepositories` page, the API's maximum.
const LISTING_PAGE_SIZE: i32 = 1000;

/// Set once a repository is known to exist; callers for one repository wait for one check.
type KnownRepository = Arc<tokio::sync::OnceCell<()>>;

/// ECR for a process: SDK clients per region, made on first use, the password cache and
/// the repositories known to exist. Share it behind an `Arc`.
#[derive(Default)]
pub struct Ecr {
    config: tokio::sync::OnceCell<SdkConfig>,
    private: Mutex<HashMap<String, aws_sdk_ecr::Client>>,
    public: tokio::sync::OnceCell<aws_sdk_ecrpublic::Client>,
    tokens: TokenCache,
    /// Repositories that exist (found or created), per registry: asked once each.
    repositories: Mutex<HashMap<(TokenKey, String), KnownRepository>>,
}

impl std::fmt::Debug for Ecr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ecr").finish_non_exhaustive()
    }
}

impl Ecr {
    /// ECR with AWS configuration from the environment, loaded on first use.
    pub fn new() -> Self {
        Ecr::default()
    }

    /// ECR with explicit AWS configuration (tests: an endpoint and static credentials).
    pub fn with_config(config: SdkConfig) -> Self {
        Ecr {
            config: tokio::sync::OnceCell::new_with(Some(config)),
            ..Ecr::default()
        }
    }

    /// The password for `registry`: cached, or asked of ECR.
    pub async fn credentials(&self, registry: &EcrRegistry) -> Result<Credentials, EcrError> {
        self.tokens
            .get_or_fetch(&registry.key, || self.fetch_token(registry))
            .await
    }

    /// The registry refused the password: renew it on the next lookup (see `tokens`).
    pub fn refused(&self, registry: &EcrRegistry) {
        self.tokens.refused(&registry.key);
    }

    /// Makes sure `repository` exists in `registry` before a push: found, or created as
    /// `policy` says. Once per repository per process; a race with another creator is
    /// success.
    pub async fn ensure_repository(
        &self,
        registry: &EcrRegistry,
        repository: &str,
        policy: &CreatePolicy,
    ) -> Result<(), EcrError> {
        let cell = {
            let mut known = self
                .repositories
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(
                known
                    .entry((registry.key.clone(), repository.to_string()))
                    .or_default(),
            )
        };
        cell.get_or_try_init(|| self.find_or_create(registry, repository, policy))
            .await
            .map(|_| ())
    }

    /// Every repository of `registry`, by `DescribeRepositories` (ECR has no `_catalog`),
    /// page after page: at most [`MAX_LISTING_PAGES`] pages, a repeated page token an error.
    pub async fn repositories(&self, registry: &EcrRegistry) -> Result<Vec<String>, EcrError> {
        let listing = |reason: String| EcrError::Listing {
            registry: registry.host.clone(),
            reason,
        };
        if registry.key.public {
            return Err(listing(
                "listing an ECR Public registry's repositories is not supported; name them".into(),
            ));
        }
        let client = self.private_client(&registry.key.region).await;
        let mut names = Vec::new();
        let mut tokens = HashSet::new();
        let mut next: Option<String> = None;
        for _ in 0..MAX_LISTING_PAGES {
            let mut describe = client
                .describe_repositories()
                .max_results(LISTING_PAGE_SIZE)
                .set_next_token(next.clone());
            if let Some(id) = &registry.key.registry_id {
                describe = describe.registry_id(id);
            }
            let page = describe
                .send()
                .await
                .map_err(|e| api_error(registry, "DescribeRepositories", e))?;
            names.extend(
                page.repositories()
                    .iter()
                    .filter_map(|r| r.repository_name().map(str::to_string)),
            );
            match page.next_token() {
                None | Some("") => return Ok(names),
                Some(token) if !tokens.insert(token.to_string()) => {
                    return Err(listing("DescribeRepositories repeated a page token".into()))
                }
                Some(token) => next = Some(token.to_string()),
            }
        }
        Err(listing(format!(
            "more than {MAX_LISTING_PAGES} pages of repositories"
        )))
    }

    async fn sdk_config(&self) -> &SdkConfig {
        self.config.get_or_init(crate::aws::load_aws_config).await
    }

    async fn private_client(&self, region: &str) -> aws_sdk_ecr::Client {
        let config = self.sdk_config().await;
        let mut clients = self.private.lock().unwrap_or_else(PoisonError::into_inner);
        clients
            .entry(region.to_string())
            .or_insert_with(|| aws_sdk_ecr::Client::new(&api_config(config, region)))
            .clone()
    }

    async fn public_client(&self) -> &aws_sdk_ecrpublic::Client {
        let config = self.sdk_config().await;
        self.public
            .get_or_init(|| async {
                aws_sdk_ecrpublic::Client::new(&api_config(config, PUBLIC_REGION))
            })
            .await
    }

    async fn fetch_token(&self, registry: &EcrRegistry) -> Result<IssuedToken, EcrError> {
        let operation = "GetAuthorizationToken";
        tracing::debug!(registry = %registry.host, region = %registry.key.region, "asking ECR for a registry password");
        let (token, expires_at) = if registry.key.public {
            let output = self
                .public_client()
                .await
                .get_authorization_token()
                .send()
                .await
                .map_err(|e| api_error(registry, operation, e))?;
            let data = output.authorization_data();
            (
                data.and_then(|d| d.authorization_token())
                    .map(str::to_string),
                data.and_then(|d| d.expires_at()).copied(),
            )
        } else {
            let mut call = self
                .private_client(&registry.key.region)
                .await
                .get_authorization_token();
            if let Some(id) = &registry.key.registry_id {
                // Deprecated by AWS but still honoured: without it ECR answers for the
                // caller's own account, which is wrong for a cross-account registry.
                #[allow(deprecated)]
                {
                    call = call.registry_ids(id);
                }
            }
            let output = call
                .send()
                .await
                .map_err(|e| api_error(registry, operation, e))?;
            let data = output.authorization_data().first();
            (
                data.and_then(|d| d.authorization_token())
                    .map(str::to_string),
                data.and_then(|d| d.expires_at()).copied(),
            )
        };
        let credentials =
            token
                .as_deref()
                .and_then(decode_token)
                .ok_or_else(|| EcrError::BadToken {
                    registry: registry.host.clone(),
                })?;
        Ok(IssuedToken {
            credentials,
            expires_at: expires_at.and_then(|at| SystemTime::try_from(at).ok()),
        })
    }

    async fn find_or_create(
        &self,
        registry: &EcrRegistry,
        repository: &str,
        policy: &CreatePolicy,
    ) -> Result<(), EcrError> {
        if registry.key.public {
            // ECR Public repositories are created in the console or by their own API with a
            // catalogue entry; ferry does not invent one.
            return Ok(());
        }
        let client = self.private_client(&registry.key.region).await;
        let mut describe = client.describe_repositories().repository_names(repository);
        if let Some(id) = &registry.key.registry_id {
            describe = describe.registry_id(id);
        }
        match describe.send().await {
            Ok(_) => return Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_repository_not_found_exception()) => {}
            Err(e) => return Err(api_error(registry, "DescribeRepositories", e)),
        }
        let new = match policy {
            CreatePolicy::Refuse => {
                return Err(EcrError::RepositoryMissing {
                    registry: registry.host.clone(),
                    repository: repository.to_string(),
                })
            }
            CreatePolicy::Create(new) => new,
        };
        let mut create = client.create_repository().repository_name(repository);
        if let Some(id) = &registry.key.registry_id {
            create = create.registry_id(id);
        }
        if let Some(mutability) = new.tag_mutability {
            create = create.image_tag_mutability(match mutability {
                TagMutability::Mutable => ImageTagMutability::Mutable,
                TagMutability::Immutable => ImageTagMutability::Immutable,
            });
        }
        if let Some(scan) = new.scan_on_push {
            create = create.image_scanning_configuration(
                ImageScanningConfiguration::builder()
                    .scan_on_push(scan)
                    .build(),
            );
        }
        if let Some(encryption) = &new.encryption {
            let (kind, key) = match encryption {
                Encryption::Aes256 => (EncryptionType::Aes256, None),
                Encryption::Kms { key } => (EncryptionType::Kms, key.clone()),
            };
            let configuration = EncryptionConfiguration::builder()
                .encryption_type(kind)
                .set_kms_key(key)
                .build()
                .map_err(|e| EcrError::Api {
                    registry: registry.host.clone(),
                    operation: "CreateRepository",
                    detail: e.to_string(),
                    denied: false,
                })?;
            create = create.encryption_configuration(configuration);
        }
        match create.send().await {
            Ok(_) => {
                tracing::info!(registry = %registry.host, repository, "created ECR repository");
                Ok(())
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_repository_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(api_error(registry, "CreateRepository", e)),
        }
    }
}

/// The configuration of one region's ECR API: the process's, with ferry's attempts and
/// timeout.
fn api_config(config: &SdkConfig, region: &str) -> SdkConfig {
    config
        .to_builder()
        .region(Region::new(region.to_string()))
        .retry_config(RetryConfig::standard().with_max_attempts(API_ATTEMPTS))
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(API_TIMEOUT)
                .build(),
        )
        .build()
}

/// `base64("AWS:<password>")` into Basic credentials.
fn decode_token(token: &str) -> Option<Credentials> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (username, password) = text.split_once(':')?;
    if username.is_empty() || password.is_empty() {
        return None;
    }
    Some(Credentials::Basic {
        username: username.to_string(),
        password: Secret::new(password),
    })
}

fn api_error<E, R>(
    registry: &EcrRegistry,
    operation: &'static str,
    error: SdkError<E, R>,
) -> EcrError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = error.code().map(str::to_string);
    let detail = DisplayErrorContext(&error).to_string();
    let no_credentials = matches!(
        error,
        SdkError::ConstructionFailure(_) | SdkError::DispatchFailure(_)
    ) && (detail.contains("credentials") || detail.contains("identity"));
    if no_credentials && code.is_none() {
        return EcrError::NoCredentials {
            registry: registry.host.clone(),
            detail: crate::error::truncate(&detail, 300),
        };
    }
    let denied = code.as_deref().is_some_and(|c| {
        matches!(
            c,
            "AccessDeniedException" | "AccessDenied" | "UnrecognizedClientException"
        )
    });
    EcrError::Api {
        registry: registry.host.clone(),
        operation,
        detail: crate::error::truncate(&detail, 500),
        denied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_decode_into_basic_credentials() {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode("AWS:123456789012-auth-token");
        assert_eq!(
            decode_token(&encoded),
            Some(Credentials::Basic {
                username: "AWS".into(),
                password: Secret::new("123456789012-auth-token")
            })
        );
        for bad in [
            "",
            "!!!",
            &base64::engine::general_purpose::STANDARD.encode("no-colon"),
        ] {
            assert_eq!(decode_token(bad), None, "{bad}");
        }
        assert_eq!(decode_token(&"A".repeat(MAX_TOKEN_LEN + 4)), None);
    }

    #[test]
    fn the_entry_wins_over_the_name() {
        let named = EcrHost::recognise("123456789012.dkr.ecr.us-east-1.amazonaws.com");
        let settings = EcrSettings {
            region: Some("eu-west-1".into()),
            registry_id: None,
        };
        let registry = EcrRegistry::new("h", named.as_ref(), Some(&settings)).unwrap();
        assert_eq!(registry.key.region, "eu-west-1");
        assert_eq!(registry.key.registry_id.as_deref(), Some("123456789012"));
        // A host that is not ECR's, with `ecr:` but no region: nothing to ask.
        assert_eq!(
            EcrRegistry::new("h", None, Some(&EcrSettings::default())),
            None
        );
        let public = EcrRegistry::new(PUBLIC_HOST, Some(&EcrHost::Public), None).unwrap();
        assert!(public.key.public);
        assert_eq!(public.key.region, PUBLIC_REGION);
    }
}
