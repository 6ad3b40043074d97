//! The secret check: whether a request presents `FERRY_WEBHOOK_SECRET`, as
//! `Authorization: Bearer`, as the Basic password with any user name, or as `?token=` for
//! registries that cannot set headers, compared in constant time.
//!
//! Where the secret comes from and what a refused request is answered is the handler's
//! business (`mod.rs`); keeping credentials out of logs is `http.rs`'s.

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// Whether a request presents `secret`: as `Authorization: Bearer <secret>`, as the password
/// of `Authorization: Basic` (any user name), or as `token=<secret>` in the query string
/// (Docker Hub and Quay cannot set headers). No secret, or an empty one, refuses everything.
///
/// Both sides are hashed before comparing, so the comparison is over equal-length digests
/// and reveals nothing about the secret's length or content through timing.
pub fn authorize(secret: Option<&str>, headers: &[(String, String)], query: Option<&str>) -> bool {
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return false;
    };
    let expected = Sha256::digest(secret.as_bytes());
    presented(headers, query)
        .iter()
        .any(|candidate| constant_time_eq(&Sha256::digest(candidate.as_bytes()), &expected))
}

/// Every credential the request carries.
fn presented(headers: &[(String, String)], query: Option<&str>) -> Vec<String> {
    let from_headers = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .filter_map(|(_, value)| credential(value));
    let from_query = query.into_iter().flat_map(|q| {
        url::form_urlencoded::parse(q.trim_start_matches('?').as_bytes())
            .filter(|(key, _)| key == "token")
            .map(|(_, value)| value.into_owned())
    });
    from_headers.chain(from_query).collect()
}

/// The secret in one `Authorization` value, if it is Bearer or Basic.
fn credential(header: &str) -> Option<String> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_string());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest)
        .ok()?;
    let (_user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(password.to_string())
}

/// Equal-length comparison that does not stop at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;
    use crate::webhook::testing::{header, SECRET};

    fn basic(user: &str, password: &str) -> String {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}")
    }

    #[test]
    fn the_secret_is_accepted_three_ways() {
        let ok = |headers: &[(String, String)], query: Option<&str>| {
            authorize(Some(SECRET), headers, query)
        };
        assert!(ok(&header(&format!("Bearer {SECRET}")), None));
        assert!(ok(&header(&format!("bearer  {SECRET} ")), None));
        assert!(ok(&header(&basic("anyone", SECRET)), None));
        assert!(ok(&header(&basic("", SECRET)), None));
        assert!(ok(&[], Some(&format!("token={SECRET}"))));
        assert!(ok(&[], Some(&format!("x=1&token={SECRET}"))));
        // Percent-encoded, as a registry's URL field may hold it.
        assert!(authorize(Some("a b&c"), &[], Some("token=a%20b%26c")));
        // A wrong header does not hide a right token.
        assert!(ok(&header("Bearer nope"), Some(&format!("token={SECRET}"))));
    }

    #[test]
    fn anything_else_is_refused() {
        let refused = |headers: &[(String, String)], query: Option<&str>| {
            !authorize(Some(SECRET), headers, query)
        };
        assert!(refused(&[], None));
        assert!(refused(&header("Bearer wrong"), None));
        assert!(refused(&header(&format!("Bearer {SECRET}x")), None));
        assert!(refused(&header(&basic(SECRET, "wrong")), None));
        assert!(refused(&header(&format!("Basic {SECRET}")), None));
        assert!(refused(&header(&format!("Token {SECRET}")), None));
        assert!(refused(&header(SECRET), None));
        assert!(refused(&[], Some(&format!("secret={SECRET}"))));
        assert!(refused(&[], Some("token=")));
        // No secret configured: nothing gets in, not even an empty credential.
        assert!(!authorize(None, &header("Bearer "), Some("token=")));
        assert!(!authorize(Some(""), &header("Bearer "), Some("token=")));
        assert!(!authorize(None, &header(&format!("Bearer {SECRET}")), None));
    }
}
