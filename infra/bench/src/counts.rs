//! Request counts, read from the registries' own access logs (every request a registry
//! answered, 401s included) and, in token mode, the token issuer's record. Counting from
//! the logs needs no proxy in the path, so the counted runs are the timed runs.

use std::collections::BTreeMap;

use serde::Serialize;
use support::{AccessLine, Registry};

/// What kind of endpoint a request hit.
pub fn kind(line: &AccessLine) -> &'static str {
    let path = line.path.split('?').next().unwrap_or("");
    if path == "/v2/" || path == "/v2" {
        "ping"
    } else if path.contains("/manifests/") {
        "manifest"
    } else if path.contains("/blobs/uploads") {
        if line.method == "POST" && line.path.contains("mount=") {
            "mount"
        } else {
            "upload"
        }
    } else if path.contains("/blobs/") {
        "blob"
    } else if path.ends_with("/tags/list") {
        "tags"
    } else if path.ends_with("/_catalog") {
        "catalog"
    } else {
        "other"
    }
}

/// Requests one registry (or both) answered during a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    pub total: u64,
    /// `"HEAD manifest"` → n, ...
    pub by_kind: BTreeMap<String, u64>,
    /// Answers by status: `"401"` → n, ...
    pub by_status: BTreeMap<String, u64>,
    /// Requests by protocol: `"HTTP/1.1"`, `"HTTP/2.0"`.
    pub by_protocol: BTreeMap<String, u64>,
    /// Body bytes of `GET` blob answers (what was read from the registry).
    pub blob_bytes_served: u64,
    /// Token requests the issuer answered (token mode only).
    pub token_requests: u64,
}

impl Counts {
    pub fn from_lines(lines: &[AccessLine]) -> Counts {
        let mut c = Counts::default();
        for l in lines {
            c.total += 1;
            *c.by_kind
                .entry(format!("{} {}", l.method, kind(l)))
                .or_default() += 1;
            *c.by_status.entry(l.status.to_string()).or_default() += 1;
            *c.by_protocol.entry(l.protocol.clone()).or_default() += 1;
            if l.method == "GET" && kind(l) == "blob" {
                c.blob_bytes_served += l.bytes.unwrap_or(0);
            }
        }
        c
    }

    /// Requests of `registry` since its last `clear_requests`.
    pub fn of(registry: &Registry) -> Counts {
        let mut c = Counts::from_lines(&registry.requests());
        c.token_requests = registry.token_requests().len() as u64;
        c
    }

    pub fn get(&self, key: &str) -> u64 {
        self.by_kind.get(key).copied().unwrap_or(0)
    }

    /// Requests of `method` to endpoints of `kind`.
    pub fn method_kind(&self, method: &str, kind: &str) -> u64 {
        self.get(&format!("{method} {kind}"))
    }

    /// Every request of one method.
    pub fn method(&self, method: &str) -> u64 {
        self.by_kind
            .iter()
            .filter(|(k, _)| k.split(' ').next() == Some(method))
            .map(|(_, v)| *v)
            .sum()
    }

    pub fn add(&self, other: &Counts) -> Counts {
        let mut c = self.clone();
        c.total += other.total;
        for (k, v) in &other.by_kind {
            *c.by_kind.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.by_status {
            *c.by_status.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.by_protocol {
            *c.by_protocol.entry(k.clone()).or_default() += v;
        }
        c.blob_bytes_served += other.blob_bytes_served;
        c.token_requests += other.token_requests;
        c
    }
}

/// Counts on each side of a copy.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SideCounts {
    pub source: Counts,
    pub target: Counts,
}

impl SideCounts {
    pub fn of(source: &Registry, target: &Registry) -> SideCounts {
        SideCounts {
            source: Counts::of(source),
            target: Counts::of(target),
        }
    }

    pub fn both(&self) -> Counts {
        self.source.add(&self.target)
    }

    /// Total requests including token fetches.
    pub fn total(&self) -> u64 {
        let b = self.both();
        b.total + b.token_requests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(method: &str, path: &str) -> AccessLine {
        AccessLine {
            method: method.into(),
            path: path.into(),
            protocol: "HTTP/1.1".into(),
            status: 200,
            bytes: Some(10),
            user_agent: String::new(),
        }
    }

    #[test]
    fn kinds() {
        assert_eq!(kind(&line("GET", "/v2/")), "ping");
        assert_eq!(kind(&line("HEAD", "/v2/a/b/manifests/1.0")), "manifest");
        assert_eq!(kind(&line("GET", "/v2/a/blobs/sha256:00")), "blob");
        assert_eq!(kind(&line("POST", "/v2/a/blobs/uploads/")), "upload");
        assert_eq!(
            kind(&line("POST", "/v2/a/blobs/uploads/?mount=sha256:00&from=b")),
            "mount"
        );
        assert_eq!(
            kind(&line("PUT", "/v2/a/blobs/uploads/uuid?_state=x&digest=y")),
            "upload"
        );
        assert_eq!(kind(&line("GET", "/v2/a/tags/list")), "tags");
        let c = Counts::from_lines(&[line("GET", "/v2/a/blobs/sha256:00"), line("GET", "/v2/")]);
        assert_eq!(c.total, 2);
        assert_eq!(c.blob_bytes_served, 10);
        assert_eq!(c.method("GET"), 2);
    }
}
