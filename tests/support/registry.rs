//! Real `docker-registry` (distribution 2.8) processes for tests, one per
//! [`Registry`], in one of the [`Mode`]s: plain HTTP, Basic auth over HTTP or
//! TLS, or token auth with an in-process [`TokenIssuer`]. Each gets a free
//! loopback port, its own temporary storage and config, and has its stdout
//! and stderr captured line by line; the access-log lines are parsed into
//! [`AccessLine`]s so tests can count requests. Dropping a `Registry` kills
//! and reaps the process (and the process dies with the test binary anyway:
//! it is spawned with `PR_SET_PDEATHSIG`).
//!
//! Distribution 2.8.2 facts the tests rely on (checked empirically):
//! - the access log goes to stdout in Apache combined format:
//!   `127.0.0.1 - - [22/Nov/2026:14:25:55 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"`,
//!   written after the response, so [`Registry::requests`] first round-trips
//!   a sentinel request to be sure earlier lines have arrived;
//! - `GET /v2/<name>/tags/list` ignores `n` and `last`: it always returns
//!   every tag, in storage order (not sorted), with no `Link` header;
//! - a Docker schema 2 manifest fetched *by tag* without schema 2 in
//!   `Accept` is down-converted to schema 1 (and that fails with 400
//!   `MANIFEST_INVALID` if the config has no `history`), whatever
//!   `compatibility.schema1.enabled` says; that setting only governs pushing
//!   schema 1 manifests;
//! - schema 1 manifests are stored without signatures and re-signed with the
//!   registry's own key on every read: the bytes differ on each GET and
//!   `Docker-Content-Digest` is the digest of the payload without the
//!   signatures, never sha256 of the body (see
//!   [`Registry::seed_schema1_image`]); asking for schema 2 still gets schema 1;
//! - a blob `PUT` sent with `Content-Type: application/x-www-form-urlencoded`
//!   (curl's default) has its body eaten by Go's form parsing and fails with
//!   `DIGEST_INVALID`; send `application/octet-stream`;
//! - upload `Location`s are absolute URLs built from the request's `Host`
//!   (and `X-Forwarded-Proto`/`-Host`) unless `http.relativeurls` is set.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::certs::Pki;
use crate::net;
use crate::token::{
    TokenIssuer, TokenRequest, TOKEN_ISSUER, TOKEN_PASSWORD, TOKEN_SERVICE, TOKEN_USER,
};

/// User of the Basic-auth registries.
pub const BASIC_USER: &str = "ferry";
/// Password of [`BASIC_USER`].
pub const BASIC_PASSWORD: &str = "basic-s3cret";
/// `realm` of the Basic-auth registries' `WWW-Authenticate` challenge.
pub const BASIC_REALM: &str = "ferry-basic";

const READY_TIMEOUT: Duration = Duration::from_secs(10);
const SYNC_MARK: &str = "ferry-support-sync=";

/// How a test registry is served and authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Plain HTTP, no auth.
    Http,
    /// Plain HTTP, htpasswd Basic auth ([`BASIC_USER`]).
    BasicHttp,
    /// TLS (test CA), htpasswd Basic auth ([`BASIC_USER`]).
    BasicTls,
    /// TLS, token auth; the issuer is HTTPS too ([`TOKEN_USER`]).
    Token,
    /// Plain HTTP registry and plain HTTP token issuer (the "insecure" case).
    TokenHttp,
    /// TLS registry whose token realm is plain `http://`: a client must not
    /// send credentials there.
    TokenInsecureRealm,
}

impl Mode {
    /// Every mode, for table-driven tests.
    pub const ALL: [Mode; 6] = [
        Mode::Http,
        Mode::BasicHttp,
        Mode::BasicTls,
        Mode::Token,
        Mode::TokenHttp,
        Mode::TokenInsecureRealm,
    ];

    /// Whether the registry itself speaks TLS.
    pub fn is_tls(self) -> bool {
        matches!(
            self,
            Mode::BasicTls | Mode::Token | Mode::TokenInsecureRealm
        )
    }

    /// Whether the registry uses token auth.
    pub fn is_token(self) -> bool {
        matches!(
            self,
            Mode::Token | Mode::TokenHttp | Mode::TokenInsecureRealm
        )
    }

    /// Whether the registry uses Basic auth.
    pub fn is_basic(self) -> bool {
        matches!(self, Mode::BasicHttp | Mode::BasicTls)
    }

    /// The good `(user, password)` for this mode, if it has auth.
    pub fn credentials(self) -> Option<(&'static str, &'static str)> {
        if self.is_basic() {
            Some((BASIC_USER, BASIC_PASSWORD))
        } else if self.is_token() {
            Some((TOKEN_USER, TOKEN_PASSWORD))
        } else {
            None
        }
    }

    fn issuer_tls(self) -> bool {
        self == Mode::Token
    }
}

/// Less common knobs for [`Registry::start_with`].
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Set `http.relativeurls: true` (upload `Location`s become relative).
    pub relative_urls: bool,
    /// Initial token lifetime for token modes (default 300 s); can also be
    /// changed later through [`Registry::issuer`].
    pub token_expires_in: Option<u64>,
    /// Send push/pull notifications (`notifications: endpoints:`) to this URL, with these
    /// extra request headers; the registry retries every second until it is answered.
    pub notify: Option<(String, Vec<(String, String)>)>,
    /// The htpasswd user and password of Basic modes, instead of [`BASIC_USER`]'s (an ECR
    /// stand-in holds the user and password ECR's token API gives).
    pub basic_credentials: Option<(&'static str, &'static str)>,
}

/// One parsed access-log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLine {
    /// `GET`, `HEAD`, `PUT`, ...
    pub method: String,
    /// Request target: path and query, as sent.
    pub path: String,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub protocol: String,
    /// Response status.
    pub status: u16,
    /// Response body bytes written (`None` for `-`).
    pub bytes: Option<u64>,
    /// `User-Agent` header.
    pub user_agent: String,
}

impl AccessLine {
    /// Parse an Apache combined log line as distribution writes it; `None`
    /// for any other line (e.g. logrus `time="..." level=...` lines).
    pub fn parse(line: &str) -> Option<AccessLine> {
        // 127.0.0.1 - - [22/Nov/2026:14:25:55 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"
        let rest = &line[line.find("] \"")? + 3..];
        let (request, rest) = rest.split_once("\" ")?;
        let mut req = request.split(' ');
        let (method, path, protocol) = (req.next()?, req.next()?, req.next()?);
        if req.next().is_some() || !protocol.starts_with("HTTP/") {
            return None;
        }
        let mut fields = rest.splitn(3, ' ');
        let status = fields.next()?.parse().ok()?;
        let bytes = fields.next()?.parse().ok();
        let user_agent = fields
            .next()
            .and_then(|quoted| quoted.rsplit_once(" \""))
            .map(|(_, ua)| ua.trim_end_matches('"').to_owned())
            .unwrap_or_default();
        Some(AccessLine {
            method: method.into(),
            path: path.into(),
            protocol: protocol.into(),
            status,
            bytes,
            user_agent,
        })
    }
}

/// A running `docker-registry` process (plus its token issuer in token
/// modes). Dropping it kills the process and stops the issuer.
pub struct Registry {
    mode: Mode,
    port: u16,
    proc: Proc,
    baseline: Mutex<usize>,
    sync_seq: AtomicU64,
    issuer: Option<TokenIssuer>,
    dir: tempfile::TempDir,
    basic_credentials: Option<(&'static str, &'static str)>,
}

impl Registry {
    /// Start a registry in `mode` with default [`Options`]; blocks until it
    /// answers `GET /v2/` (at most ~10 s, else panics with its log).
    pub fn start(mode: Mode) -> Registry {
        Registry::start_with(mode, Options::default())
    }

    /// Start a registry in `mode` with `opts`.
    pub fn start_with(mode: Mode, opts: Options) -> Registry {
        let pki = mode.is_tls().then(Pki::get);
        let issuer = mode.is_token().then(|| {
            let issuer = TokenIssuer::start(mode.issuer_tls());
            if let Some(secs) = opts.token_expires_in {
                issuer.set_expires_in(secs);
            }
            issuer
        });
        let dir = tempfile::Builder::new()
            .prefix("ferry-registry-")
            .tempdir()
            .expect("creating registry temp dir");
        let htpasswd = dir.path().join("htpasswd");
        if mode.is_basic() {
            let (user, password) = opts
                .basic_credentials
                .unwrap_or((BASIC_USER, BASIC_PASSWORD));
            let hash = bcrypt::hash_with_result(password, 4)
                .expect("bcrypt")
                .format_for_version(bcrypt::Version::TwoA);
            std::fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("writing htpasswd");
        }
        let mut last_failure = String::new();
        // The port is only reserved until we release it: retry if another
        // process grabbed it in between.
        for _attempt in 0..3 {
            let port = net::free_port();
            let mut cfg = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
                 \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: ferry-test-secret\n  relativeurls: {rel}\n",
                data = yaml_str(&dir.path().join("data")),
                rel = opts.relative_urls,
            );
            if let Some(pki) = pki {
                cfg += &format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    yaml_str(&pki.server_cert),
                    yaml_str(&pki.server_key)
                );
            }
            if mode.is_basic() {
                cfg += &format!(
                    "auth:\n  htpasswd:\n    realm: {BASIC_REALM}\n    path: {}\n",
                    yaml_str(&htpasswd)
                );
            }
            if let Some(issuer) = &issuer {
                cfg += &format!(
                    "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                    issuer.realm(),
                    yaml_str(&Pki::get().token_cert)
                );
            }
            if let Some((url, headers)) = &opts.notify {
                // A receiver that answers after `timeout` gets the event again: `ferry serve`
                // syncs each accepted job to disk before its 202, which a loaded test machine
                // can stretch past a couple of seconds.
                cfg += &format!(
                    "notifications:\n  endpoints:\n    - name: test\n      url: {url}\n      timeout: 10s\n      threshold: 3\n      backoff: 1s\n"
                );
                if !headers.is_empty() {
                    cfg += "      headers:\n";
                    for (name, value) in headers {
                        cfg += &format!("        {name}: [{value:?}]\n");
                    }
                }
            }
            cfg += "compatibility:\n  schema1:\n    enabled: true\n";
            let config = dir.path().join("config.yml");
            std::fs::write(&config, cfg).expect("writing registry config");

            let mut cmd = Command::new(registry_bin());
            cmd.arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            // Distribution overrides its config from REGISTRY_* variables.
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("REGISTRY_") {
                    cmd.env_remove(k);
                }
            }
            let mut proc = Proc::spawn(cmd);
            let url = format!(
                "{}://127.0.0.1:{port}/v2/",
                if mode.is_tls() { "https" } else { "http" }
            );
            match proc.wait_ready(port, &url) {
                Ok(()) => {
                    return Registry {
                        mode,
                        port,
                        proc,
                        baseline: Mutex::new(0),
                        sync_seq: AtomicU64::new(0),
                        issuer,
                        dir,
                        basic_credentials: opts.basic_credentials.filter(|_| mode.is_basic()),
                    }
                }
                Err(why) => {
                    proc.kill();
                    let logs = proc.logs.lock().unwrap().join("\n");
                    last_failure = format!("{why}\n{logs}");
                    if !logs.contains("address already in use") {
                        break;
                    }
                }
            }
        }
        panic!("docker-registry ({mode:?}) did not start: {last_failure}");
    }

    /// The mode it was started in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The process id of the `docker-registry` child.
    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`: the registry part of an image reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        let scheme = if self.is_tls() { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// Whether it speaks TLS (certificate from the test CA).
    pub fn is_tls(&self) -> bool {
        self.mode.is_tls()
    }

    /// Good `(user, password)`, if the mode has auth.
    pub fn credentials(&self) -> Option<(&'static str, &'static str)> {
        self.basic_credentials.or(self.mode.credentials())
    }

    /// `host/reference`, e.g. `reg.image("foo/bar:1")` → `127.0.0.1:PORT/foo/bar:1`.
    pub fn image(&self, reference: &str) -> String {
        format!("{}/{reference}", self.host())
    }

    /// The token issuer, in token modes.
    pub fn issuer(&self) -> Option<&TokenIssuer> {
        self.issuer.as_ref()
    }

    /// The registry's storage root (`storage.filesystem.rootdirectory`).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The config file it was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yml")
    }

    /// Every line captured so far from stdout and stderr, in arrival order.
    pub fn log_lines(&self) -> Vec<String> {
        self.proc.logs.lock().unwrap().clone()
    }

    /// Access-log entries since start (or since [`Registry::clear_requests`]),
    /// excluding the helper's own sync requests. Waits until every request
    /// answered before the call has been logged.
    pub fn requests(&self) -> Vec<AccessLine> {
        self.sync_log();
        let from = *self.baseline.lock().unwrap();
        self.proc.logs.lock().unwrap()[from..]
            .iter()
            .filter(|l| !l.contains(SYNC_MARK))
            .filter_map(|l| AccessLine::parse(l))
            .collect()
    }

    /// How many requests had `method` (`"*"` for any, as [`crate::Proxy::count`]) and a path
    /// containing `path_substring`.
    pub fn count(&self, method: &str, path_substring: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| {
                (method == "*" || r.method.eq_ignore_ascii_case(method))
                    && r.path.contains(path_substring)
            })
            .count()
    }

    /// Start counting afresh: later [`Registry::requests`] calls only see
    /// requests answered after this call (e.g. to ignore seeding). Also
    /// clears the token issuer's record.
    pub fn clear_requests(&self) {
        self.sync_log();
        let len = self.proc.logs.lock().unwrap().len();
        *self.baseline.lock().unwrap() = len;
        if let Some(issuer) = &self.issuer {
            issuer.clear_requests();
        }
    }

    /// Requests the token issuer answered (empty for non-token modes).
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.issuer
            .as_ref()
            .map(|i| i.requests())
            .unwrap_or_default()
    }

    /// How many tokens the issuer handed out (0 for non-token modes).
    pub fn tokens_issued(&self) -> usize {
        self.issuer.as_ref().map_or(0, |i| i.issued())
    }

    /// Send a sentinel request and wait (bounded) until its access-log line
    /// arrives: the registry logs each request after answering it, so a
    /// client may see its response before the line is written.
    fn sync_log(&self) {
        let mark = format!(
            "{SYNC_MARK}{}",
            self.sync_seq.fetch_add(1, Ordering::SeqCst)
        );
        let url = format!("{}/v2/?{mark}", self.base_url());
        net::block_on_bg(async move {
            let _ = net::bg_client()
                .get(url)
                .timeout(Duration::from_secs(5))
                .send()
                .await;
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self
                .proc
                .logs
                .lock()
                .unwrap()
                .iter()
                .rev()
                .any(|l| l.contains(&mark) && AccessLine::parse(l).is_some())
            {
                // Let lines racing with the sentinel land too.
                std::thread::sleep(Duration::from_millis(5));
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub(crate) fn auth(&self) -> crate::api::Auth {
        match (self.credentials(), &self.issuer) {
            (_, Some(issuer)) => crate::api::Auth::Token(issuer.state()),
            (Some((u, p)), None) => crate::api::Auth::Basic(u, p),
            (None, None) => crate::api::Auth::None,
        }
    }
}

/// The child process and its log capture.
struct Proc {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Proc {
    fn spawn(cmd: Command) -> Proc {
        let mut child = spawn_with_pdeathsig(cmd).expect("spawning docker-registry");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            capture(child.stdout.take().expect("stdout"), logs.clone()),
            capture(child.stderr.take().expect("stderr"), logs.clone()),
        ];
        Proc {
            child,
            logs,
            readers,
        }
    }

    /// Wait until this process logged that it listens on `port` (so it is
    /// not some other server that took the port) and `url` answers anything
    /// (bounded by [`READY_TIMEOUT`]).
    fn wait_ready(&mut self, port: u16, url: &str) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let listening = format!("listening on 127.0.0.1:{port}");
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("docker-registry exited early: {status}"));
            }
            if !self
                .logs
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(&listening))
            {
                if Instant::now() > deadline {
                    return Err(format!(
                        "no {listening:?} log line within {READY_TIMEOUT:?}"
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            let u = url.to_owned();
            let answered = net::block_on_bg(async move {
                net::bg_client()
                    .get(u)
                    .timeout(Duration::from_millis(500))
                    .send()
                    .await
                    .is_ok()
            });
            if answered {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("no answer on {url} within {READY_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.proc.kill();
        if std::thread::panicking() {
            let logs = self.proc.logs.lock().unwrap();
            let skip = logs.len().saturating_sub(60);
            eprintln!(
                "---- docker-registry {:?} on {} (last {} log lines) ----",
                self.mode,
                self.host(),
                logs.len() - skip
            );
            for l in &logs[skip..] {
                eprintln!("{l}");
            }
        }
    }
}

/// Path of the registry binary: `$FERRY_TEST_REGISTRY_BIN` or
/// `docker-registry` from `PATH`.
pub fn registry_bin() -> PathBuf {
    std::env::var_os("FERRY_TEST_REGISTRY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("docker-registry"))
}

fn yaml_str(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

pub(crate) fn capture(
    stream: impl Read + Send + 'static,
    logs: Arc<Mutex<Vec<String>>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    logs.lock()
                        .unwrap()
                        .push(line.trim_end_matches(['\r', '\n']).to_owned());
                }
            }
        }
    })
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawn `cmd` so that it is SIGKILLed when the test process dies. The
/// parent-death signal fires when the *thread* that forked exits, so all
/// spawning happens on one long-lived thread.
pub(crate) fn spawn_with_pdeathsig(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("support-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    use std::os::unix::process::CommandExt;
                    // SAFETY: prctl is async-signal-safe; nothing else runs
                    // between fork and exec.
                    unsafe {
                        cmd.pre_exec(|| {
                            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                            Ok(())
                        });
                    }
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawning the spawner thread");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    spawner
        .lock()
        .unwrap()
        .send((cmd, tx))
        .expect("spawner thread is gone");
    rx.recv().expect("spawner thread is gone")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_access_lines() {
        let l = AccessLine::parse(
            r#"127.0.0.1 - - [22/Nov/2026:14:25:55 +0000] "GET /v2/foo/tags/list?n=2 HTTP/1.1" 200 48 "" "ferry/0.1 (x)""#,
        )
        .unwrap();
        assert_eq!(l.method, "GET");
        assert_eq!(l.path, "/v2/foo/tags/list?n=2");
        assert_eq!(l.protocol, "HTTP/1.1");
        assert_eq!(l.status, 200);
        assert_eq!(l.bytes, Some(48));
        assert_eq!(l.user_agent, "ferry/0.1 (x)");
        let l = AccessLine::parse(
            r#"127.0.0.1 - - [22/Nov/2026:14:25:55 +0000] "HEAD /v2/ HTTP/2.0" 401 - "" """#,
        )
        .unwrap();
        assert_eq!((l.status, l.bytes, l.user_agent.as_str()), (401, None, ""));
        assert!(AccessLine::parse(
            r#"time="2026-11-22T14:25:54Z" level=info msg="listening on 127.0.0.1:5099""#
        )
        .is_none());
    }
}
