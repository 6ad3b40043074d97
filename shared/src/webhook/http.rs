//! HTTP as the shells hand it over: [`HttpRequest`], whose `Debug` output hides the
//! credentials it may carry, and [`HttpResponse`], a status, headers and a JSON body.
//!
//! Translating to and from a real server's or Lambda's types is the shells' business; what
//! a request is answered is the handler's (`mod.rs`).

use std::fmt;

use serde_json::{json, Value};

/// An HTTP request as the shells see it. `query` is the raw query string, without `?`.
/// Shells must not log `query` or the `Authorization` header themselves: both may carry the
/// secret. The `Debug` output hides them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let secret = name.eq_ignore_ascii_case("authorization");
                (name.as_str(), if secret { "***" } else { value.as_str() })
            })
            .collect();
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query.as_ref().map(|_| "***"))
            .field("headers", &headers)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// The answer: a status, headers to send (`Content-Type`, and `Allow` or
/// `WWW-Authenticate` where HTTP asks for them) and a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl HttpResponse {
    /// A JSON answer.
    pub fn new(status: u16, body: Value) -> Self {
        HttpResponse {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body,
        }
    }

    /// A refusal, `{"error": message}`: how the library and the shells answer a request
    /// they will not act on.
    pub fn error(status: u16, message: impl fmt::Display) -> Self {
        HttpResponse::new(status, json!({ "error": message.to_string() }))
    }

    pub(super) fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::testing::{post, SECRET};

    #[test]
    fn requests_print_without_their_credentials() {
        // Requests print without their credentials.
        let request = HttpRequest {
            query: Some(format!("token={SECRET}")),
            ..post("{}")
        };
        assert!(!format!("{request:?}").contains(SECRET), "{request:?}");
    }

    #[test]
    fn errors_are_json_with_a_content_type() {
        let response = HttpResponse::error(400, "body is not valid base64");
        assert_eq!(response.status, 400);
        assert_eq!(
            response.headers,
            [("Content-Type".to_string(), "application/json".to_string())]
        );
        assert_eq!(response.body, json!({"error": "body is not valid base64"}));
    }
}
