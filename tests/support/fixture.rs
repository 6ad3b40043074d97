//! The set-up most end-to-end tests share, in one place: a work directory holding ferry's
//! input files (an auth file, images files) and its reports ([`Workdir`]), ferry's
//! `sync` and `plan` runs on them with short retry delays ([`ferry_sync`], [`ferry_plan`],
//! [`Workdir::sync_reporting`] for a run and its JSON report), and a source and a target
//! registry with a work directory trusting both ([`Pair`]), whose copies are compared
//! byte for byte with skopeo ([`Pair::assert_copied`]). The auth file a harness registry
//! needs ([`auth_yaml`]) is also what the benchmark gives ferry.
//!
//! What the registries hold, and what a test asserts about them, stay the tests' own:
//! seeding is `seed.rs`'s, raw reads `api.rs`'s, request counts `registry.rs`'s.

use std::ops::Deref;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::certs::Pki;
use crate::ferry::{run_ferry, Output};
use crate::registry::{Mode, Registry};
use crate::skopeo::assert_same_raw;
use crate::{temp_dir, write_file};

/// Short retry delays so fault tests stay quick (every [`ferry_sync`] and [`ferry_plan`]
/// sets it).
pub const FAST_RETRIES: (&str, &str) = ("FERRY_RETRY_BASE_MS", "5");

/// An auth file (YAML) trusting `registries` as the harness serves them: `insecure` for
/// plain HTTP, the test CA for TLS, and the harness credentials where the mode has them.
pub fn auth_yaml(registries: &[&Registry]) -> String {
    let ca = Pki::get().ca_cert.display().to_string();
    let mut yaml = String::new();
    for reg in registries {
        yaml += &format!("{:?}:\n", reg.host());
        if reg.is_tls() {
            yaml += &format!("  ca: {ca:?}\n");
        } else {
            yaml += "  insecure: true\n";
        }
        if let Some((user, password)) = reg.credentials() {
            yaml += &format!("  username: {user:?}\n  password: {password:?}\n");
        }
    }
    yaml
}

/// An auth file (YAML) marking each of `hosts` (`HOST:PORT`) `insecure` (plain HTTP, no
/// credentials): for proxies and ports with nothing behind them.
pub fn insecure_auth_yaml(hosts: &[String]) -> String {
    hosts
        .iter()
        .map(|h| format!("{h}: {{insecure: true}}\n"))
        .collect()
}

/// The arguments of `ferry` (sync, the default command) with these files and extra
/// arguments: what [`ferry_sync`] runs, and what a test that spawns ferry itself passes.
pub fn sync_args(auth: &Path, images: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        format!("--auth={}", auth.display()),
        format!("--images={}", images.display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Runs `ferry` (sync, the default command) with these files and extra arguments.
pub fn ferry_sync(auth: &Path, images: &Path, extra: &[&str]) -> Output {
    ferry_sync_with(auth, images, extra, &[])
}

/// [`ferry_sync`] with extra environment (after [`FAST_RETRIES`], so it may override it).
pub fn ferry_sync_with(
    auth: &Path,
    images: &Path,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> Output {
    let mut all_envs = vec![FAST_RETRIES];
    all_envs.extend_from_slice(envs);
    run_ferry(&sync_args(auth, images, extra), &all_envs)
}

/// Runs `ferry plan` with these files, extra arguments and environment.
pub fn ferry_plan(
    auth: Option<&Path>,
    images: &Path,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> Output {
    let mut args: Vec<String> = vec!["plan".into(), format!("--images={}", images.display())];
    if let Some(auth) = auth {
        args.push(format!("--auth={}", auth.display()));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut all_envs = vec![FAST_RETRIES];
    all_envs.extend_from_slice(envs);
    run_ferry(&args, &all_envs)
}

/// A JSON file ferry wrote (a report, a success list).
pub fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// A temporary directory for one test's ferry input files and reports, with an auth file
/// (`auth.yaml`) or none. Removed when dropped.
pub struct Workdir {
    dir: tempfile::TempDir,
    auth: Option<PathBuf>,
}

impl Workdir {
    /// An empty work directory, no auth file.
    pub fn new() -> Workdir {
        Workdir {
            dir: temp_dir(),
            auth: None,
        }
    }

    /// A work directory whose `auth.yaml` holds `yaml`.
    pub fn with_auth(yaml: impl AsRef<[u8]>) -> Workdir {
        let mut work = Workdir::new();
        work.auth = Some(work.write("auth.yaml", yaml));
        work
    }

    /// A work directory whose auth file trusts `registries` ([`auth_yaml`]).
    pub fn trusting(registries: &[&Registry]) -> Workdir {
        Workdir::with_auth(auth_yaml(registries))
    }

    /// A work directory whose auth file marks `hosts` insecure ([`insecure_auth_yaml`]).
    pub fn insecure(hosts: &[String]) -> Workdir {
        Workdir::with_auth(insecure_auth_yaml(hosts))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The auth file (panics when the work directory has none).
    pub fn auth(&self) -> &Path {
        self.auth
            .as_deref()
            .expect("this work directory has no auth file")
    }

    /// Write `contents` to `name` in the directory; its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        write_file(self.path(), name, contents)
    }

    /// Write `yaml` as `images.yaml`; its path.
    pub fn images(&self, yaml: impl AsRef<[u8]>) -> PathBuf {
        self.write("images.yaml", yaml)
    }

    /// Where [`Workdir::sync_reporting`] has ferry write its report.
    pub fn report_path(&self) -> PathBuf {
        self.path().join("report.json")
    }

    /// `ferry sync` with the auth file, `images` and `extra` arguments.
    pub fn sync(&self, images: &Path, extra: &[&str]) -> Output {
        ferry_sync(self.auth(), images, extra)
    }

    /// [`Workdir::sync`] with `--report` added; the output and the report it wrote.
    pub fn sync_reporting(&self, images: &Path, extra: &[&str]) -> (Output, Value) {
        self.sync_reporting_with(images, extra, &[])
    }

    /// [`Workdir::sync_reporting`] with extra environment (see [`ferry_sync_with`]).
    pub fn sync_reporting_with(
        &self,
        images: &Path,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> (Output, Value) {
        let report = self.report_path();
        let flag = format!("--report={}", report.display());
        let mut args = extra.to_vec();
        args.push(&flag);
        let out = ferry_sync_with(self.auth(), images, &args, envs);
        if !report.exists() {
            panic!("ferry wrote no report\n{out}");
        }
        (out, read_json(&report))
    }

    /// `ferry plan` with the auth file (if any), `images`, `extra` arguments and `envs`.
    pub fn plan(&self, images: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Output {
        ferry_plan(self.auth.as_deref(), images, extra, envs)
    }
}

impl Default for Workdir {
    fn default() -> Self {
        Workdir::new()
    }
}

/// A source and a target registry and a [`Workdir`] whose auth file trusts both (it
/// derefs to the work directory, for its files and runs).
pub struct Pair {
    /// Where images are copied from.
    pub src: Registry,
    /// Where they are copied to.
    pub dst: Registry,
    /// Input files and reports.
    pub work: Workdir,
}

impl Pair {
    /// Start a source in `src` and a target in `dst` mode.
    pub fn start(src: Mode, dst: Mode) -> Pair {
        Pair::with_source(Registry::start(src), dst)
    }

    /// Use `src` (started, perhaps seeded) as the source; start a target in `dst` mode.
    pub fn with_source(src: Registry, dst: Mode) -> Pair {
        let dst = Registry::start(dst);
        let work = Workdir::trusting(&[&src, &dst]);
        Pair { src, dst, work }
    }

    /// An images file `name` with one rule per `(from, to)`: `SRC/from: DST/to`.
    pub fn rules(&self, name: &str, rules: &[(&str, &str)]) -> PathBuf {
        let yaml: String = rules
            .iter()
            .map(|(from, to)| format!("{}: {}\n", self.src.image(from), self.dst.image(to)))
            .collect();
        self.work.write(name, yaml)
    }

    /// `images.yaml` with the one rule `SRC/from: DST/to`.
    pub fn rule(&self, from: &str, to: &str) -> PathBuf {
        self.rules("images.yaml", &[(from, to)])
    }

    /// Asserts that `skopeo inspect --raw` reads the same manifest bytes at `SRC/from` and
    /// `DST/to`.
    #[track_caller]
    pub fn assert_copied(&self, from: &str, to: &str) {
        assert_same_raw(&self.src, from, &self.dst, to);
    }
}

impl Deref for Pair {
    type Target = Workdir;

    fn deref(&self) -> &Workdir {
        &self.work
    }
}
