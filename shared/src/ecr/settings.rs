//! What an auth file entry may say about ECR: `ecr: {region, registry_id}` (ask ECR for this
//! host's credentials, for hosts whose names do not say it, such as a VPC endpoint or a test
//! registry) and `create:` (what repositories ferry creates on push get, or `false` to
//! refuse). Parsing and checking the values is here; which entry applies is `auth`'s.

use serde_json::Value;
use thiserror::Error;

use super::host::{is_account, is_region};

/// An entry's `ecr:` map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EcrSettings {
    /// The region of the ECR API; defaults to the region in the host's name.
    pub region: Option<String>,
    /// The registry id (account) to ask a token for; defaults to the account in the
    /// host's name, else the caller's own registry.
    pub registry_id: Option<String>,
}

/// What ferry does when a target repository does not exist in ECR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreatePolicy {
    /// Create it with these settings (the default, with ECR's defaults).
    Create(NewRepository),
    /// Fail the image, naming the missing repository (`create: false`).
    Refuse,
}

impl Default for CreatePolicy {
    fn default() -> Self {
        CreatePolicy::Create(NewRepository::default())
    }
}

/// What a repository ferry creates gets. `None` leaves a setting to ECR's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRepository {
    pub tag_mutability: Option<TagMutability>,
    pub scan_on_push: Option<bool>,
    pub encryption: Option<Encryption>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagMutability {
    Mutable,
    Immutable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encryption {
    Aes256,
    /// KMS, with a key ARN or ECR's AWS-managed key.
    Kms {
        key: Option<String>,
    },
}

/// What is wrong with `ecr:` or `create:`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EcrSettingsProblem {
    #[error("ecr must be a map with region and registry_id")]
    EcrNotAMap,
    #[error("ecr: unknown field {0:?} (expected region or registry_id)")]
    UnknownEcrField(String),
    #[error("ecr: region {0:?} is not an AWS region (like us-east-1)")]
    BadRegion(String),
    #[error("ecr: registry_id {0:?} is not a 12-digit AWS account id")]
    BadRegistryId(String),
    #[error(
        "create must be false or a map with tag_mutability, scan_on_push, encryption, kms_key"
    )]
    CreateNotAMap,
    #[error("create: unknown field {0:?} (expected tag_mutability, scan_on_push, encryption or kms_key)")]
    UnknownCreateField(String),
    #[error("create: tag_mutability {0:?} must be MUTABLE or IMMUTABLE")]
    BadTagMutability(String),
    #[error("create: scan_on_push must be true or false")]
    BadScanOnPush,
    #[error("create: encryption {0:?} must be AES256 or KMS")]
    BadEncryption(String),
    #[error("create: kms_key must be a KMS key ARN or id, and needs encryption: KMS")]
    BadKmsKey,
}

impl EcrSettings {
    /// The value of an entry's `ecr:` (`ecr:` with nothing under it means all defaults).
    pub fn from_value(value: &Value) -> Result<EcrSettings, EcrSettingsProblem> {
        let mut settings = EcrSettings::default();
        let map = match value {
            Value::Null => return Ok(settings),
            Value::Object(map) => map,
            _ => return Err(EcrSettingsProblem::EcrNotAMap),
        };
        for (name, value) in map {
            let text = text(value);
            match name.as_str() {
                "region" => {
                    let region = text
                        .filter(|r| is_region(r))
                        .ok_or_else(|| EcrSettingsProblem::BadRegion(shown(value)))?;
                    settings.region = Some(region);
                }
                "registry_id" => {
                    let id = text
                        .filter(|id| is_account(id))
                        .ok_or_else(|| EcrSettingsProblem::BadRegistryId(shown(value)))?;
                    settings.registry_id = Some(id);
                }
                other => return Err(EcrSettingsProblem::UnknownEcrField(other.to_string())),
            }
        }
        Ok(settings)
    }
}

impl CreatePolicy {
    /// The value of an entry's `create:`.
    pub fn from_value(value: &Value) -> Result<CreatePolicy, EcrSettingsProblem> {
        let map = match value {
            Value::Null | Value::Bool(true) => return Ok(CreatePolicy::default()),
            Value::Bool(false) => return Ok(CreatePolicy::Refuse),
            Value::Object(map) => map,
            _ => return Err(EcrSettingsProblem::CreateNotAMap),
        };
        let mut new = NewRepository::default();
        let mut kms_key = None;
        for (name, value) in map {
            match name.as_str() {
                "tag_mutability" => {
                    new.tag_mutability = Some(match text(value).as_deref() {
                        Some("MUTABLE") => TagMutability::Mutable,
                        Some("IMMUTABLE") => TagMutability::Immutable,
                        _ => return Err(EcrSettingsProblem::BadTagMutability(shown(value))),
                    })
                }
                "scan_on_push" => match value {
                    Value::Bool(b) => new.scan_on_push = Some(*b),
                    _ => return Err(EcrSettingsProblem::BadScanOnPush),
                },
                "encryption" => {
                    new.encryption = Some(match text(value).as_deref() {
                        Some("AES256") => Encryption::Aes256,
                        Some("KMS") => Encryption::Kms { key: None },
                        _ => return Err(EcrSettingsProblem::BadEncryption(shown(value))),
                    })
                }
                "kms_key" => {
                    let key = text(value)
                        .filter(|k| is_kms_key(k))
                        .ok_or(EcrSettingsProblem::BadKmsKey)?;
                    kms_key = Some(key);
                }
                other => return Err(EcrSettingsProblem::UnknownCreateField(other.to_string())),
            }
        }
        if let Some(key) = kms_key {
            match &mut new.encryption {
                Some(Encryption::Kms { key: slot }) => *slot = Some(key),
                _ => return Err(EcrSettingsProblem::BadKmsKey),
            }
        }
        Ok(CreatePolicy::Create(new))
    }
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(|s| s.trim().to_string())
}

/// A value for a message: short, and never more than a line.
fn shown(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    crate::error::truncate(&text, 80)
}

/// A KMS key ARN, alias or id: printable, no spaces, bounded.
fn is_kms_key(text: &str) -> bool {
    !text.is_empty() && text.len() <= 2048 && text.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ecr_settings() {
        assert_eq!(
            EcrSettings::from_value(&json!({"region": "us-east-1", "registry_id": "123456789012"}))
                .unwrap(),
            EcrSettings {
                region: Some("us-east-1".into()),
                registry_id: Some("123456789012".into())
            }
        );
        assert_eq!(
            EcrSettings::from_value(&Value::Null).unwrap(),
            EcrSettings::default()
        );
        for (value, problem) in [
            (
                json!({"regoin": "us-east-1"}),
                EcrSettingsProblem::UnknownEcrField("regoin".into()),
            ),
            (
                json!({"region": "us east 1"}),
                EcrSettingsProblem::BadRegion("us east 1".into()),
            ),
            (
                json!({"region": 1}),
                EcrSettingsProblem::BadRegion("1".into()),
            ),
            (
                json!({"registry_id": "12"}),
                EcrSettingsProblem::BadRegistryId("12".into()),
            ),
            (json!("us-east-1"), EcrSettingsProblem::EcrNotAMap),
        ] {
            assert_eq!(
                EcrSettings::from_value(&value).unwrap_err(),
                problem,
                "{value}"
            );
        }
    }

    #[test]
    fn create_policies() {
        assert_eq!(
            CreatePolicy::from_value(&json!(false)).unwrap(),
            CreatePolicy::Refuse
        );
        assert_eq!(
            CreatePolicy::from_value(&json!(true)).unwrap(),
            CreatePolicy::default()
        );
        assert_eq!(
            CreatePolicy::from_value(&json!({
                "tag_mutability": "IMMUTABLE", "scan_on_push": true,
                "encryption": "KMS", "kms_key": "arn:aws:kms:us-east-1:123456789012:key/abc"
            }))
            .unwrap(),
            CreatePolicy::Create(NewRepository {
                tag_mutability: Some(TagMutability::Immutable),
                scan_on_push: Some(true),
                encryption: Some(Encryption::Kms {
                    key: Some("arn:aws:kms:us-east-1:123456789012:key/abc".into())
                }),
            })
        );
        for (value, problem) in [
            (
                json!({"tag_mutability": "mutable"}),
                EcrSettingsProblem::BadTagMutability("mutable".into()),
            ),
            (
                json!({"scan_on_push": "yes"}),
                EcrSettingsProblem::BadScanOnPush,
            ),
            (
                json!({"encryption": "DES"}),
                EcrSettingsProblem::BadEncryption("DES".into()),
            ),
            (json!({"kms_key": "k"}), EcrSettingsProblem::BadKmsKey),
            (
                json!({"encryption": "AES256", "kms_key": "k"}),
                EcrSettingsProblem::BadKmsKey,
            ),
            (
                json!({"size": 1}),
                EcrSettingsProblem::UnknownCreateField("size".into()),
            ),
            (json!("no"), EcrSettingsProblem::CreateNotAMap),
        ] {
            assert_eq!(
                CreatePolicy::from_value(&value).unwrap_err(),
                problem,
                "{value}"
            );
        }
    }
}
