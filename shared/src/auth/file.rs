//! The entries of image-syncer's auth file (`--auth`, or the legacy `--config` file's `auth`
//! object): the fields an entry may have (`username`, `password`, `insecure`, `ca`, and for
//! ECR `ecr` and `create`, whose values `ecr::settings` reads), their
//! types, `$VAR` and `${VAR}` references, the CA file check, and the TLS settings per host
//! that the entries add up to. Reading the file, its keys and choosing an entry for a
//! repository are left to `auth` and `auth::key`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use thiserror::Error;

use super::key::{Key, Keyed};
use crate::credentials::{Credentials, TlsSettings};
use crate::ecr::{CreatePolicy, EcrHost, EcrRegistry, EcrSettings, EcrSettingsProblem};
use crate::env::Env;
use crate::files::{local_directory, scalar_string};

/// One entry of the auth file.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) key: Key,
    pub(super) credentials: Option<Credentials>,
    pub(super) insecure: bool,
    pub(super) ca: Option<PathBuf>,
    /// `ecr:`: this host's password comes from ECR.
    pub(super) ecr: Option<EcrSettings>,
    /// `create:`: what repositories ferry creates under this key get.
    pub(super) create: Option<CreatePolicy>,
}

impl Keyed for Entry {
    fn key(&self) -> &Key {
        &self.key
    }
}

/// A field an entry may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Username,
    Password,
    Insecure,
    Ca,
    Ecr,
    Create,
}

impl Field {
    fn from_name(name: &str) -> Option<Field> {
        Some(match name {
            "username" => Field::Username,
            "password" => Field::Password,
            "insecure" => Field::Insecure,
            "ca" => Field::Ca,
            "ecr" => Field::Ecr,
            "create" => Field::Create,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Field::Username => "username",
            Field::Password => "password",
            Field::Insecure => "insecure",
            Field::Ca => "ca",
            Field::Ecr => "ecr",
            Field::Create => "create",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is wrong with one entry.
#[derive(Debug, Error)]
pub enum EntryProblem {
    #[error("expected a map with username, password, insecure, ca, ecr, create")]
    NotAMap,
    #[error("unknown field {field:?} (expected username, password, insecure, ca, ecr or create)")]
    UnknownField { field: String },
    #[error("{field} must be text")]
    NotText { field: Field },
    #[error("{field} must be true or false")]
    NotABool { field: Field },
    #[error("ca must be the path of a PEM file")]
    CaNotAPath,
    /// An auth file in S3 has no local directory for a relative path to be relative to.
    #[error("ca {path:?} is relative, but this auth file is in S3: give an absolute path")]
    CaRelativeInS3 { path: String },
    /// TLS is per connection, so a namespace cannot turn verification off for itself alone:
    /// it would for every entry of the host, credentialed ones included.
    #[error(
        "insecure applies to the whole host: set it on the entry {host:?}, not on a namespace"
    )]
    InsecureNamespace { host: String },
    /// An ECR password comes from the AWS credential chain; a second source would make
    /// the choice arbitrary.
    #[error("ecr and username/password both given: ECR's password comes from the AWS credential chain; keep one")]
    EcrWithCredentials,
    /// ECR's password is per registry, like TLS.
    #[error("ecr applies to the whole host: set it on the entry {host:?}, not on a namespace")]
    EcrNamespace { host: String },
    #[error("ecr: {host} is not an ECR host name, so ecr needs a region")]
    EcrWithoutRegion { host: String },
    #[error("create applies to ECR registries: {host} is not an ECR host name and no entry for it has ecr")]
    CreateNotEcr { host: String },
    #[error(transparent)]
    EcrSettings(#[from] EcrSettingsProblem),
    #[error("{field} is \"${{{variable}}}\" but environment variable {variable} is not set")]
    MissingVariable { field: Field, variable: String },
    /// `path` is resolved against the auth file's directory.
    #[error("CA file {}: {problem}", path.display())]
    CaFile {
        path: PathBuf,
        #[source]
        problem: CaProblem,
    },
}

/// Why a `ca` file cannot be used.
#[derive(Debug, Error)]
pub enum CaProblem {
    #[error("{0}")]
    Unreadable(std::io::Error),
    #[error("no PEM certificate (-----BEGIN CERTIFICATE-----) in it")]
    NotPem,
}

/// An entry's problem, with the file and the key as written.
#[derive(Debug)]
pub struct EntryError {
    pub file: PathBuf,
    pub key: String,
    pub problem: EntryProblem,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (file, key, problem) = (self.file.display(), &self.key, &self.problem);
        write!(f, "{file}: entry {key:?}: {problem}")
    }
}

/// The problem is part of the message; its cause (a CA file's) is this error's cause.
impl std::error::Error for EntryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.problem.source()
    }
}

/// Where a value came from: for warnings, and `ca` paths are relative to the file.
struct Origin<'a> {
    file: &'a Path,
    key: &'a str,
}

/// What an entry's fields say.
#[derive(Default)]
struct Fields {
    credentials: Option<Credentials>,
    insecure: bool,
    ca: Option<PathBuf>,
    ecr: Option<EcrSettings>,
    create: Option<CreatePolicy>,
}

/// Reads the entry `value` under `key` of the auth file `file`, expanding `$VAR`
/// references through `env`.
pub(super) fn parse_entry(
    file: &Path,
    key: Key,
    value: &Value,
    env: &dyn Env,
) -> Result<Entry, EntryError> {
    let origin = Origin {
        file,
        key: &key.raw,
    };
    let error = |problem| EntryError {
        file: file.to_path_buf(),
        key: key.raw.clone(),
        problem,
    };
    let fields = parse_fields(&origin, value, env).map_err(error)?;
    if fields.insecure && key.normalised != key.registry {
        return Err(error(EntryProblem::InsecureNamespace {
            host: key.registry.clone(),
        }));
    }
    if fields.ecr.is_some() {
        if fields.credentials.is_some() {
            return Err(error(EntryProblem::EcrWithCredentials));
        }
        if key.normalised != key.registry {
            return Err(error(EntryProblem::EcrNamespace {
                host: key.registry.clone(),
            }));
        }
        let named = EcrHost::recognise(&key.registry);
        if EcrRegistry::new(&key.registry, named.as_ref(), fields.ecr.as_ref()).is_none() {
            return Err(error(EntryProblem::EcrWithoutRegion {
                host: key.registry.clone(),
            }));
        }
    }
    Ok(Entry {
        key,
        credentials: fields.credentials,
        insecure: fields.insecure,
        ca: fields.ca,
        ecr: fields.ecr,
        create: fields.create,
    })
}

fn parse_fields(origin: &Origin, value: &Value, env: &dyn Env) -> Result<Fields, EntryProblem> {
    let empty = Map::new();
    let map = match value {
        // `quay.io:` with nothing under it.
        Value::Null => &empty,
        Value::Object(map) => map,
        _ => return Err(EntryProblem::NotAMap),
    };
    let (mut username, mut password) = (None, None);
    let mut fields = Fields::default();
    for (name, value) in map {
        let Some(field) = Field::from_name(name) else {
            return Err(EntryProblem::UnknownField {
                field: name.clone(),
            });
        };
        match field {
            Field::Username => username = text_field(origin, field, value, env)?,
            Field::Password => password = text_field(origin, field, value, env)?,
            Field::Insecure => fields.insecure = bool_field(field, value)?,
            Field::Ca => fields.ca = ca_field(origin, value)?,
            Field::Ecr => fields.ecr = Some(EcrSettings::from_value(value)?),
            Field::Create => fields.create = Some(CreatePolicy::from_value(value)?),
        }
    }
    fields.credentials = Credentials::basic_unless_empty(username, password);
    Ok(fields)
}

fn text_field(
    origin: &Origin,
    field: Field,
    value: &Value,
    env: &dyn Env,
) -> Result<Option<String>, EntryProblem> {
    if value.is_null() {
        return Ok(None);
    }
    let text = scalar_string(value).ok_or(EntryProblem::NotText { field })?;
    expand_variable(origin, field, text, env).map(Some)
}

fn bool_field(field: Field, value: &Value) -> Result<bool, EntryProblem> {
    match value {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        _ => Err(EntryProblem::NotABool { field }),
    }
}

/// Resolves `ca` against the auth file's directory (an absolute path is needed in an auth
/// file read from S3) and checks it holds a PEM certificate, so a wrong path fails at
/// startup rather than as a TLS error mid-copy.
fn ca_field(origin: &Origin, value: &Value) -> Result<Option<PathBuf>, EntryProblem> {
    let text = match value {
        Value::Null => return Ok(None),
        Value::String(text) if !text.trim().is_empty() => text.trim(),
        _ => return Err(EntryProblem::CaNotAPath),
    };
    let path = match local_directory(origin.file) {
        Some(base) => base.join(text),
        None if Path::new(text).is_absolute() => PathBuf::from(text),
        None => {
            return Err(EntryProblem::CaRelativeInS3 {
                path: text.to_string(),
            })
        }
    };
    let problem = match std::fs::read(&path) {
        Err(e) => CaProblem::Unreadable(e),
        Ok(pem) if !contains_certificate(&pem) => CaProblem::NotPem,
        Ok(_) => return Ok(Some(path)),
    };
    Err(EntryProblem::CaFile { path, problem })
}

fn contains_certificate(pem: &[u8]) -> bool {
    let marker = b"-----BEGIN CERTIFICATE-----";
    pem.windows(marker.len()).any(|w| w == marker)
}

/// `${NAME}` must be set; `$NAME` is replaced only if set, since literal values such as
/// Quay's `$oauthtoken` username look the same; anything else (`robot$name`) is literal.
fn expand_variable(
    origin: &Origin,
    field: Field,
    text: String,
    env: &dyn Env,
) -> Result<String, EntryProblem> {
    let braced = text
        .strip_prefix("${")
        .and_then(|rest| rest.strip_suffix('}'))
        .filter(|name| is_variable_name(name));
    if let Some(name) = braced {
        return env.var(name).ok_or_else(|| EntryProblem::MissingVariable {
            field,
            variable: name.to_string(),
        });
    }
    let Some(name) = text.strip_prefix('$').filter(|name| is_variable_name(name)) else {
        return Ok(text);
    };
    if let Some(value) = env.var(name) {
        return Ok(value);
    }
    // Naming the variable would reveal a literal password, so only usernames are shown.
    let shown = if field == Field::Password {
        "(value hidden)"
    } else {
        text.as_str()
    };
    tracing::warn!(
        file = %origin.file.display(),
        key = origin.key,
        "{field} {shown} looks like an environment variable that is not set; using it literally"
    );
    Ok(text)
}

fn is_variable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// TLS per host: insecure if any entry on the host says so; `ca` from the longest entry
/// that has one (entries are sorted longest first).
pub(super) fn tls_by_host(entries: &[Entry]) -> HashMap<String, TlsSettings> {
    let mut tls: HashMap<String, TlsSettings> = HashMap::new();
    for entry in entries {
        let settings = tls.entry(entry.key.registry.clone()).or_default();
        settings.insecure |= entry.insecure;
        if settings.ca.is_none() {
            settings.ca.clone_from(&entry.ca);
        }
    }
    tls
}

#[cfg(test)]
mod tests {
    use crate::auth::testing::{basic, load_yaml, repo, write};
    use crate::auth::AuthConfig;
    use crate::credentials::TlsSettings;
    use crate::env::MapEnv;

    #[test]
    fn yaml_and_json_with_numbers_as_text() {
        let dir = tempfile::tempdir().unwrap();
        let env = MapEnv::default();
        let yaml = write(
            dir.path(),
            "auth.yml",
            "hub.kce.ksyun.com:\n  username: 12345\n  password: 12345678\n",
        );
        let auth = AuthConfig::load(&yaml, &env).unwrap();
        assert_eq!(
            auth.credentials_for(&repo("hub.kce.ksyun.com/ns/repo"))
                .unwrap(),
            basic("12345", "12345678")
        );
        let json = write(
            dir.path(),
            "auth.json",
            r#"{"quay.io": {"username": "u", "password": 42, "insecure": true}}"#,
        );
        let auth = AuthConfig::load(&json, &env).unwrap();
        assert_eq!(
            auth.credentials_for(&repo("quay.io/a/b")).unwrap(),
            basic("u", "42")
        );
        assert!(auth.tls_for("quay.io").insecure);
    }

    #[test]
    fn braced_variables_must_be_set() {
        let env = MapEnv::new([("HUB_USER", "alice"), ("HUB_PASS", "s3cret")]);
        let auth = load_yaml(
            "docker.io:\n  username: \"${HUB_USER}\"\n  password: \"${HUB_PASS}\"\n",
            &env,
        )
        .unwrap();
        assert_eq!(
            auth.credentials_for(&repo("nginx")).unwrap(),
            basic("alice", "s3cret")
        );

        let err = load_yaml("quay.io:\n  username: u\n  password: \"${NOPE}\"\n", &env)
            .unwrap_err()
            .to_string();
        for part in ["auth.yaml", "\"quay.io\"", "password", "NOPE"] {
            assert!(err.contains(part), "{part} missing from: {err}");
        }
    }

    #[test]
    fn bare_variables_are_optional_and_other_dollars_literal() {
        let env = MapEnv::new([("QUAY_PASS", "from-env")]);
        let auth = load_yaml(
            "quay.io:\n  username: $oauthtoken\n  password: $QUAY_PASS\n\
             harbor.example.com:\n  username: robot$name\n  password: pa$$word\n\
             ghcr.io:\n  username: \"${lower case}\"\n  password: \"$\"\n",
            &env,
        )
        .unwrap();
        assert_eq!(
            auth.credentials_for(&repo("quay.io/a/b")).unwrap(),
            basic("$oauthtoken", "from-env")
        );
        assert_eq!(
            auth.credentials_for(&repo("harbor.example.com/p/r"))
                .unwrap(),
            basic("robot$name", "pa$$word")
        );
        assert_eq!(
            auth.credentials_for(&repo("ghcr.io/a/b")).unwrap(),
            basic("${lower case}", "$")
        );
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_errors() {
        let env = MapEnv::default();
        let err = load_yaml("quay.io/coreos:\n  username: u\n  pasword: p\n", &env)
            .unwrap_err()
            .to_string();
        for part in ["auth.yaml", "quay.io/coreos", "pasword", "unknown field"] {
            assert!(err.contains(part), "{part} missing from: {err}");
        }
        let err = load_yaml("quay.io: {insecure: \"yes\"}\n", &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("insecure must be true or false"), "{err}");
    }

    /// Issue 12, row 13: `insecure` on one namespace turned TLS verification off for every
    /// entry of the host, credentialed ones included.
    #[test]
    fn insecure_on_a_namespace_is_refused() {
        let env = MapEnv::default();
        let err = load_yaml(
            "quay.io: {username: u, password: p}\nquay.io/team: {insecure: true}\n",
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("\"quay.io/team\"")
                && err.contains(
                    "insecure applies to the whole host: set it on the entry \"quay.io\""
                ),
            "{err}"
        );
        let host = load_yaml(
            "quay.io: {insecure: true}\nquay.io/team: {username: u}\n",
            &env,
        );
        assert!(host.unwrap().tls_for("quay.io").insecure);
        let err = load_yaml("quay.io: {username: [a]}\n", &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("username must be text"), "{err}");
        let err = load_yaml("quay.io: [a]\n", &env).unwrap_err().to_string();
        assert!(err.contains("expected a map"), "{err}");
    }

    #[test]
    fn tls_is_per_host() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("certs")).unwrap();
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        write(&dir.path().join("certs"), "team.pem", pem);
        let host_ca = write(dir.path(), "host.pem", pem);
        let file = write(
            dir.path(),
            "auth.yaml",
            &format!(
                "127.0.0.1:5000: {{insecure: true}}\n\
                 127.0.0.1:5000/team: {{username: u, password: p, ca: certs/team.pem}}\n\
                 registry.example.com: {{ca: {}}}\n",
                host_ca.display()
            ),
        );
        let auth = AuthConfig::load(&file, &MapEnv::default()).unwrap();
        let local = auth.tls_for(repo("127.0.0.1:5000/team/x").registry());
        assert!(local.insecure);
        assert_eq!(local.ca, Some(dir.path().join("certs/team.pem")));
        assert_eq!(
            auth.tls_for("registry.example.com"),
            TlsSettings {
                insecure: false,
                ca: Some(host_ca)
            }
        );
        assert_eq!(auth.tls_for("quay.io"), TlsSettings::default());
        assert_eq!(auth.tls_for("index.docker.io"), TlsSettings::default());

        let missing = write(dir.path(), "bad.yaml", "quay.io: {ca: nope.pem}\n");
        let err = AuthConfig::load(&missing, &MapEnv::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.yaml") && err.contains("nope.pem"),
            "{err}"
        );
        write(dir.path(), "empty.pem", "not a cert");
        let not_pem = write(dir.path(), "bad2.yaml", "quay.io: {ca: empty.pem}\n");
        let err = AuthConfig::load(&not_pem, &MapEnv::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
    }

    /// The message and its cause read as they did when the cause was an `io::Error`.
    #[test]
    fn ca_file_errors_keep_their_cause() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "empty.pem", "not a cert");
        let file = write(dir.path(), "auth.yaml", "quay.io: {ca: empty.pem}\n");
        let err = AuthConfig::load(&file, &MapEnv::default()).unwrap_err();
        let cause = std::error::Error::source(&err).map(ToString::to_string);
        let not_pem = "no PEM certificate (-----BEGIN CERTIFICATE-----) in it";
        assert_eq!(cause.as_deref(), Some(not_pem));
        assert!(err.to_string().ends_with(&format!("empty.pem: {not_pem}")));
    }
}
