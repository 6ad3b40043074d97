//! Which registry hosts are Amazon ECR's, and what their names say: the account (registry
//! id) and region of a private registry (`<account>.dkr.ecr.<region>.amazonaws.com`, its
//! FIPS and China spellings, the dual-stack `<account>.dkr-ecr.<region>.on.aws`), or ECR
//! Public (`public.ecr.aws`). Where a host's credentials come from is `ecr`'s and `auth`'s
//! business; this file only reads names.

/// An ECR registry as its host name gives it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EcrHost {
    /// A private registry: account (the registry id) and region.
    Private { account: String, region: String },
    /// ECR Public (`public.ecr.aws`), whose API lives in us-east-1.
    Public,
}

/// ECR Public's registry host.
pub const PUBLIC_HOST: &str = "public.ecr.aws";

/// The region of ECR Public's API.
pub const PUBLIC_REGION: &str = "us-east-1";

impl EcrHost {
    /// `registry` as in `Repository::registry()` (a host, maybe with a port), if it is one
    /// of ECR's.
    pub fn recognise(registry: &str) -> Option<EcrHost> {
        let host = registry.to_ascii_lowercase();
        if host == PUBLIC_HOST {
            return Some(EcrHost::Public);
        }
        let labels: Vec<&str> = host.split('.').collect();
        match labels.as_slice() {
            // `<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`, and the dual-stack
            // `<account>.dkr-ecr[-fips].<region>.on.aws`.
            [account, "dkr", "ecr" | "ecr-fips", region, "amazonaws", "com"]
            | [account, "dkr", "ecr" | "ecr-fips", region, "amazonaws", "com", "cn"]
            | [account, "dkr-ecr" | "dkr-ecr-fips", region, "on", "aws"]
                if is_account(account) && is_region(region) =>
            {
                Some(EcrHost::Private {
                    account: account.to_string(),
                    region: region.to_string(),
                })
            }
            _ => None,
        }
    }
}

/// A registry id: an AWS account number, twelve digits.
pub fn is_account(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

/// An AWS region's shape: lowercase words joined by hyphens, ending in a number
/// (`us-east-1`, `us-gov-west-1`, `cn-north-1`, `eu-isoe-west-1`).
pub fn is_region(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    (3..=5).contains(&parts.len())
        && text.len() <= 32
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private(account: &str, region: &str) -> Option<EcrHost> {
        Some(EcrHost::Private {
            account: account.into(),
            region: region.into(),
        })
    }

    #[test]
    fn recognises_every_spelling_of_an_ecr_host() {
        let id = "123456789012";
        for (host, region) in [
            ("123456789012.dkr.ecr.us-east-1.amazonaws.com", "us-east-1"),
            (
                "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
                "us-gov-west-1",
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                "cn-north-1",
            ),
            ("123456789012.dkr-ecr.eu-west-3.on.aws", "eu-west-3"),
            ("123456789012.DKR.ECR.US-EAST-1.AMAZONAWS.COM", "us-east-1"),
        ] {
            assert_eq!(EcrHost::recognise(host), private(id, region), "{host}");
        }
        assert_eq!(EcrHost::recognise("public.ecr.aws"), Some(EcrHost::Public));
    }

    #[test]
    fn refuses_look_alikes() {
        for host in [
            "docker.io",
            "127.0.0.1:5000",
            "12345678901.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:443",
            "123456789012.dkr.ecr.US_EAST.amazonaws.com",
            "123456789012.dkr.ecr..amazonaws.com",
            "123456789012.dkr-ecr.eu-west-3.on.aws.example",
            "x.public.ecr.aws",
            "",
        ] {
            assert_eq!(EcrHost::recognise(host), None, "{host}");
        }
    }

    #[test]
    fn regions_and_accounts() {
        for region in [
            "us-east-1",
            "us-gov-west-1",
            "eu-isoe-west-1",
            "ap-southeast-5",
        ] {
            assert!(is_region(region), "{region}");
        }
        for region in [
            "us east 1",
            "US-EAST-1",
            "us-east",
            "us--1",
            "us-east-123",
            "",
        ] {
            assert!(!is_region(region), "{region}");
        }
        assert!(is_account("000000000000"));
        assert!(!is_account("12345678901a"));
    }
}
