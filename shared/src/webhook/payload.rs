//! Reading a payload: [`At`] walks a JSON value keeping the path it took
//! (`events[2].target.digest`), so every [`PayloadError`] names the field at fault; a
//! [`PayloadProblem`] says what is wrong there.
//!
//! What the fields mean, and which of them a format reads, is left to `formats.rs`; whether
//! a name read from a field is a valid repository, tag or digest to `push.rs`.

use std::fmt;

use serde_json::Value;

use super::push::{quote, NameProblem, QUOTE_LIMIT};
use super::REGISTRY_VARIABLE;
use crate::error::{truncate, HasKind, Kind};
use crate::reference::ReferenceError;

/// What is wrong with a known format's payload, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError {
    /// The field at fault (`events[0].target.repository`); for a [`PayloadProblem::Name`],
    /// the event the name was read from (`events[0]`; empty for the payload itself).
    pub path: String,
    pub problem: PayloadProblem,
}

/// What a payload's field or name gets wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadProblem {
    /// Required and absent, `null` or empty.
    Missing,
    /// A value of another JSON type; `found` is the value as JSON, cut short.
    WrongType { expected: Expected, found: String },
    /// No registry host in the payload, and no `FERRY_WEBHOOK_REGISTRY` to fall back on.
    NoRegistry,
    /// A `host/path` field without the `host/`.
    NoHost { value: String },
    /// A reference field that does not parse.
    Reference(ReferenceError),
    /// A name read from the payload is not a valid repository, host, tag or digest.
    Name(NameProblem),
}

/// The JSON types a payload's fields are read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    Object,
    String,
    List,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expected::Object => "an object",
            Expected::String => "a string",
            Expected::List => "a list",
        })
    }
}

impl From<NameProblem> for PayloadProblem {
    fn from(problem: NameProblem) -> Self {
        PayloadProblem::Name(problem)
    }
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = &self.path;
        match &self.problem {
            PayloadProblem::Missing => write!(f, "{path} is missing"),
            PayloadProblem::WrongType { expected, found } => {
                write!(f, "{path} must be {expected}, not {found}")
            }
            PayloadProblem::NoRegistry => write!(
                f,
                "{path} is missing and {REGISTRY_VARIABLE} is not set, so the registry is unknown"
            ),
            PayloadProblem::NoHost { value } => {
                write!(f, "{path} {} names no registry host", quote(value))
            }
            PayloadProblem::Reference(error) => write!(f, "{path}: {error}"),
            // The name is quoted, which says more than where it was.
            PayloadProblem::Name(problem) => write!(f, "{problem}"),
        }
    }
}

impl std::error::Error for PayloadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.problem {
            PayloadProblem::Reference(error) => Some(error),
            PayloadProblem::Name(problem) => Some(problem),
            _ => None,
        }
    }
}

impl HasKind for PayloadError {
    fn kind(&self) -> Kind {
        Kind::BadInput
    }
}

static NULL: Value = Value::Null;

/// A JSON value and where it is in the payload. A missing field reads as `null`; looking
/// into something that is not an object is an error, reported when a value below it is
/// read, so lookups chain without a `?` at every step.
pub(super) struct At<'a> {
    pub(super) value: &'a Value,
    pub(super) path: String,
    /// Why this path cannot be read: an ancestor is not an object.
    unreadable: Option<PayloadError>,
}

impl<'a> At<'a> {
    pub(super) fn root(value: &'a Value) -> Self {
        At {
            value,
            path: String::new(),
            unreadable: None,
        }
    }

    pub(super) fn get(&self, key: &str) -> At<'a> {
        let path = if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        };
        let unreadable = match (&self.unreadable, self.value) {
            (Some(why), _) => Some(why.clone()),
            (None, Value::Object(_) | Value::Null) => None,
            (None, other) => Some(self.wrong_type(Expected::Object, other)),
        };
        At {
            value: self.value.get(key).unwrap_or(&NULL),
            path,
            unreadable,
        }
    }

    /// A string, trimmed; absent, `null` and empty all mean "not given".
    pub(super) fn text(&self) -> Result<Option<&'a str>, PayloadError> {
        self.readable()?;
        match self.value {
            Value::Null => Ok(None),
            Value::String(s) if s.trim().is_empty() => Ok(None),
            Value::String(s) => Ok(Some(s.trim())),
            other => Err(self.wrong_type(Expected::String, other)),
        }
    }

    pub(super) fn required_text(&self) -> Result<&'a str, PayloadError> {
        self.text()?
            .ok_or_else(|| self.error(PayloadProblem::Missing))
    }

    /// The elements of a list; absent or `null` is an empty list.
    pub(super) fn items(&self) -> Result<Vec<At<'a>>, PayloadError> {
        self.readable()?;
        match self.value {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, value)| At {
                    value,
                    path: format!("{}[{i}]", self.path),
                    unreadable: None,
                })
                .collect()),
            other => Err(self.wrong_type(Expected::List, other)),
        }
    }

    /// `problem`, here.
    pub(super) fn error(&self, problem: impl Into<PayloadProblem>) -> PayloadError {
        PayloadError {
            path: self.path.clone(),
            problem: problem.into(),
        }
    }

    fn readable(&self) -> Result<(), PayloadError> {
        match &self.unreadable {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    fn wrong_type(&self, expected: Expected, found: &Value) -> PayloadError {
        self.error(PayloadProblem::WrongType {
            expected,
            found: truncate(&found.to_string(), QUOTE_LIMIT),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn errors_name_the_path_and_an_excerpt() {
        let payload = json!({"a": [{"b": 3}, {"b": {"c": "x".repeat(100)}}]});
        let root = At::root(&payload);
        let items = root.get("a").items().unwrap();
        let error = items[0].get("b").get("c").text().unwrap_err();
        assert_eq!(error.path, "a[0].b");
        assert_eq!(error.to_string(), "a[0].b must be an object, not 3");
        let error = items[1].get("b").get("c").items().err().unwrap();
        assert_eq!(
            error.to_string(),
            format!("a[1].b.c must be a list, not \"{}…", "x".repeat(79))
        );
        let missing = items[1].get("d").required_text().unwrap_err();
        assert_eq!(missing.problem, PayloadProblem::Missing);
        assert_eq!(missing.kind(), Kind::BadInput);
        assert_eq!(root.get("z").items().unwrap().len(), 0);
    }
}
