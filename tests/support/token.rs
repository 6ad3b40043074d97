//! In-process Docker token issuer (the `auth: token:` realm of a registry):
//! `GET /token?service=..&scope=..&account=..` (and the OAuth2 password grant
//! `POST /token`) answer an RS256 JWT signed with the test token key, with
//! the certificate in the `x5c` header, which distribution checks against its
//! `rootcertbundle`. [`TOKEN_USER`]/[`TOKEN_PASSWORD`] get every action they
//! ask for; anonymous callers get `pull` on `public/*` repositories and an
//! empty grant otherwise; a wrong password gets 401. Every request is
//! recorded so tests can assert token caching, and the token lifetime can be
//! changed on the fly.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::certs::Pki;
use crate::net;

/// User the token issuer accepts.
pub const TOKEN_USER: &str = "ferry-token";
/// Password of [`TOKEN_USER`] (differs from the Basic-auth registry's).
pub const TOKEN_PASSWORD: &str = "token-s3cret";
/// `service` the issuer signs for (the JWT `aud`).
pub const TOKEN_SERVICE: &str = "ferry-test-registry";
/// `issuer` of the JWTs (the JWT `iss`).
pub const TOKEN_ISSUER: &str = "ferry-test-issuer";
/// Default `expires_in` (seconds) and JWT lifetime.
pub const DEFAULT_EXPIRES_IN: u64 = 300;

/// One entry of a token's `access` claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// `repository`, `registry`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Repository name (or `catalog`).
    pub name: String,
    /// Granted actions (`pull`, `push`, `delete`, `*`).
    pub actions: Vec<String>,
}

/// A request the issuer answered.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// Raw query string (GET) or form body (POST).
    pub query: String,
    /// `service` parameter, if given.
    pub service: Option<String>,
    /// `account` parameter (GET) or `username` (POST), if given.
    pub account: Option<String>,
    /// Every scope asked for, in order (space-separated scopes are split).
    pub scopes: Vec<String>,
    /// User name from the credentials, if any were sent.
    pub user: Option<String>,
    /// Whether valid credentials were presented.
    pub authenticated: bool,
    /// The status answered (200, or 401 for bad credentials, 400...).
    pub status: u16,
    /// What the token granted (empty unless 200).
    pub granted: Vec<Access>,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
    nbf: i64,
    iat: i64,
    jti: String,
    access: Vec<Access>,
}

pub(crate) struct IssuerState {
    key: jsonwebtoken::EncodingKey,
    x5c: String,
    expires_in: AtomicU64,
    /// If not `i64::MIN`: the JWT `exp` is `now + this` instead of
    /// `now + expires_in`.
    exp_override: AtomicI64,
    requests: Mutex<Vec<TokenRequest>>,
}

/// A running token issuer; dropping it stops it.
pub struct TokenIssuer {
    state: Arc<IssuerState>,
    addr: std::net::SocketAddr,
    tls: bool,
    task: JoinHandle<()>,
}

impl TokenIssuer {
    /// Start an issuer on a free loopback port, over HTTPS (test server
    /// certificate) when `tls`, else plain HTTP.
    pub fn start(tls: bool) -> TokenIssuer {
        let pki = Pki::get();
        let key_pem = std::fs::read(&pki.token_key).expect("reading token key");
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&key_pem).expect("parsing token key");
        let cert = CertificateDer::from_pem_file(&pki.token_cert).expect("reading token cert");
        let state = Arc::new(IssuerState {
            key,
            x5c: base64::engine::general_purpose::STANDARD.encode(cert.as_ref()),
            expires_in: AtomicU64::new(DEFAULT_EXPIRES_IN),
            exp_override: AtomicI64::new(i64::MIN),
            requests: Mutex::new(Vec::new()),
        });
        let router = axum::Router::new()
            .route("/token", get(get_token).post(post_token))
            .with_state(state.clone());
        let (listener, addr) = net::bind_loopback();
        let task = net::serve_router(listener, tls, router);
        TokenIssuer {
            state,
            addr,
            tls,
            task,
        }
    }

    /// The realm URL: `http(s)://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/token", self.addr)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// How many tokens were issued (200 answers).
    pub fn issued(&self) -> usize {
        self.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.status == 200)
            .count()
    }

    /// Forget the recorded requests.
    pub fn clear_requests(&self) {
        self.state.requests.lock().unwrap().clear();
    }

    /// Set `expires_in` (and the JWT lifetime) for tokens issued from now on.
    pub fn set_expires_in(&self, secs: u64) {
        self.state.expires_in.store(secs, Ordering::SeqCst);
    }

    /// Make the JWT `exp` claim `now + offset_secs` regardless of
    /// `expires_in` (`None` to go back to `now + expires_in`). Distribution
    /// allows 60 s of clock leeway, so a token the registry rejects needs an
    /// offset below -60.
    pub fn set_exp_offset(&self, offset_secs: Option<i64>) {
        self.state
            .exp_override
            .store(offset_secs.unwrap_or(i64::MIN), Ordering::SeqCst);
    }

    /// Sign a token for [`TOKEN_USER`] granting `scopes` as asked, without
    /// recording a request (the seeding helpers use this).
    pub fn mint(&self, scopes: &[&str]) -> String {
        self.state.mint(scopes)
    }

    pub(crate) fn state(&self) -> Arc<IssuerState> {
        self.state.clone()
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl IssuerState {
    pub(crate) fn mint(&self, scopes: &[&str]) -> String {
        let access = scopes.iter().filter_map(|s| grant(s, true)).collect();
        self.sign(TOKEN_USER, access).0
    }

    /// Returns (token, expires_in).
    fn sign(&self, sub: &str, access: Vec<Access>) -> (String, u64) {
        let now = net::now_unix() as i64;
        let expires_in = self.expires_in.load(Ordering::SeqCst);
        let exp = match self.exp_override.load(Ordering::SeqCst) {
            i64::MIN => now + expires_in as i64,
            off => now + off,
        };
        let claims = Claims {
            iss: TOKEN_ISSUER.into(),
            sub: sub.into(),
            aud: TOKEN_SERVICE.into(),
            exp,
            nbf: now - 1,
            iat: now,
            jti: format!("{:016x}", net::random_u64()),
            access,
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.typ = Some("JWT".into());
        header.x5c = Some(vec![self.x5c.clone()]);
        let token = jsonwebtoken::encode(&header, &claims, &self.key).expect("signing JWT");
        (token, expires_in)
    }

    fn answer(&self, mut rec: TokenRequest, password: Option<String>) -> Response {
        if let Some(user) = &rec.user {
            rec.authenticated = user == TOKEN_USER && password.as_deref() == Some(TOKEN_PASSWORD);
            if !rec.authenticated {
                rec.status = 401;
                self.requests.lock().unwrap().push(rec);
                let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
                return (
                    StatusCode::UNAUTHORIZED,
                    [
                        ("content-type", "application/json"),
                        ("www-authenticate", "Basic realm=\"ferry-token\""),
                    ],
                    body,
                )
                    .into_response();
            }
        }
        rec.granted = rec
            .scopes
            .iter()
            .filter_map(|s| grant(s, rec.authenticated))
            .collect();
        rec.status = 200;
        let sub = if rec.authenticated { TOKEN_USER } else { "" };
        let (token, expires_in) = self.sign(sub, rec.granted.clone());
        self.requests.lock().unwrap().push(rec);
        axum::Json(serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": expires_in,
            "issued_at": net::rfc3339(net::now_unix()),
        }))
        .into_response()
    }
}

/// What a scope string grants; `None` if nothing.
fn grant(scope: &str, authenticated: bool) -> Option<Access> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let asked = actions.split(',').filter(|a| !a.is_empty());
    let actions: Vec<String> = if authenticated {
        asked
            .filter(|a| matches!(*a, "pull" | "push" | "delete" | "*"))
            .map(String::from)
            .collect()
    } else if kind == "repository" && name.starts_with("public/") {
        asked.filter(|a| *a == "pull").map(String::from).collect()
    } else {
        Vec::new()
    };
    (!actions.is_empty()).then(|| Access {
        kind: kind.into(),
        name: name.into(),
        actions,
    })
}

/// `(user, password)` from a Basic `Authorization` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let (u, p) = String::from_utf8(raw)
        .ok()?
        .split_once(':')
        .map(|(u, p)| (u.to_owned(), p.to_owned()))?;
    Some((u, p))
}

fn split_scopes(v: &str) -> impl Iterator<Item = String> + '_ {
    v.split(' ').filter(|s| !s.is_empty()).map(String::from)
}

async fn get_token(
    State(state): State<Arc<IssuerState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    let mut rec = TokenRequest {
        method: "GET".into(),
        query: query.clone(),
        service: None,
        account: None,
        scopes: Vec::new(),
        user: None,
        authenticated: false,
        status: 0,
        granted: Vec::new(),
    };
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "service" => rec.service = Some(v.into_owned()),
            "account" => rec.account = Some(v.into_owned()),
            "scope" => rec.scopes.extend(split_scopes(&v)),
            _ => {}
        }
    }
    let (user, password) = basic_credentials(&headers).unzip();
    rec.user = user;
    state.answer(rec, password)
}

async fn post_token(State(state): State<Arc<IssuerState>>, body: String) -> Response {
    let mut rec = TokenRequest {
        method: "POST".into(),
        query: body.clone(),
        service: None,
        account: None,
        scopes: Vec::new(),
        user: None,
        authenticated: false,
        status: 0,
        granted: Vec::new(),
    };
    let mut grant_type = None;
    let mut password = None;
    for (k, v) in url::form_urlencoded::parse(body.as_bytes()) {
        match &*k {
            "grant_type" => grant_type = Some(v.into_owned()),
            "service" => rec.service = Some(v.into_owned()),
            "username" => rec.user = Some(v.into_owned()),
            "password" => password = Some(v.into_owned()),
            "scope" => rec.scopes.extend(split_scopes(&v)),
            _ => {}
        }
    }
    rec.account = rec.user.clone();
    if grant_type.as_deref() != Some("password") {
        rec.status = 400;
        state.requests.lock().unwrap().push(rec);
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error": "unsupported_grant_type"})),
        )
            .into_response();
    }
    state.answer(rec, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants() {
        let a = grant("repository:foo/bar:pull,push", true).unwrap();
        assert_eq!(a.name, "foo/bar");
        assert_eq!(a.actions, ["pull", "push"]);
        assert!(grant("repository:foo/bar:pull", false).is_none());
        let a = grant("repository:public/x:pull,push", false).unwrap();
        assert_eq!(a.actions, ["pull"]);
        let a = grant("registry:catalog:*", true).unwrap();
        assert_eq!((a.kind.as_str(), a.name.as_str()), ("registry", "catalog"));
    }
}
