//! The release binaries `infra/release.sh` leaves in `dist/`, smoke-tested: the static Linux
//! binary is static (`file`, `ldd`) and syncs between real registries from an empty root
//! directory (a chroot holding nothing but the binary and its input files: no libc, no
//! certificate store), trusting a TLS registry through the auth file's `ca` and through
//! `SSL_CERT_FILE`; the Windows binary runs under Wine and plans against a registry on
//! loopback; the macOS binaries are only checked for format and architecture with `file`
//! (nothing here can run them); `SHA256SUMS` matches every binary.
//!
//! Those tests take minutes (five cross builds first) and are ignored unless
//! `FERRY_RELEASE_TESTS=1 ./infra/test.sh` runs them; `ferry --version`'s format is checked
//! on the ordinary debug binary every time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{
    ferry, ferry_at, run_bounded, sync_args, workspace_root, ImageSpec, Mode, Output, Pair, Pki,
    Registry, Workdir, FAST_RETRIES,
};

/// Every run of a release binary (Wine's first start included) gives up after this long.
const RUN_LIMIT: Duration = Duration::from_secs(600);

/// `ferry --version`'s commit and root store, checked: `ferry X.Y.Z (commit C, TLS roots: R)`.
fn version_parts(out: &Output) -> (String, String) {
    assert!(out.success(), "{out}");
    let line = out.stdout.trim_end();
    let prefix = format!("ferry {} (commit ", env!("CARGO_PKG_VERSION"));
    let rest = line
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not `{prefix}…)`: {line:?}"));
    let (commit, roots) = rest
        .split_once(", TLS roots: ")
        .unwrap_or_else(|| panic!("no TLS roots in {line:?}"));
    let hex = (7..=40).contains(&commit.len()) && commit.bytes().all(|b| b.is_ascii_hexdigit());
    assert!(hex || commit == "unknown", "commit {commit:?} in {line:?}");
    (commit.to_string(), roots.to_string())
}

#[test]
fn version_names_the_commit_and_the_root_store() {
    let out: Output = ferry().arg("--version").output().unwrap().into();
    let (_, roots) = version_parts(&out);
    // The workspace's ordinary build: the operating system's store.
    assert_eq!(roots, "system");
}

/// `dist/NAME`, which must exist: the release tests run after `infra/release.sh`.
fn dist(name: &str) -> PathBuf {
    let path = workspace_root().join("dist").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run infra/release.sh first",
        path.display()
    );
    path
}

/// A tool's output as text, the tool run to completion within [`RUN_LIMIT`].
fn run_tool(cmd: Command) -> Output {
    run_bounded(cmd, RUN_LIMIT).into()
}

/// `file -b PATH`.
fn file_type(path: &Path) -> String {
    let mut cmd = Command::new("file");
    cmd.arg("-b").arg(path);
    let out = run_tool(cmd);
    assert!(out.success(), "{out}");
    out.stdout.trim().to_string()
}

#[test]
#[ignore = "release binaries: FERRY_RELEASE_TESTS=1 ./infra/test.sh builds and runs them"]
fn checksums_match_every_binary() {
    let sums = dist("SHA256SUMS");
    let listed = std::fs::read_to_string(&sums).unwrap();
    for target in [
        "x86_64-unknown-linux-musl",
        "aarch64-unknown-linux-musl",
        "x86_64-pc-windows-gnu",
        "aarch64-apple-darwin",
        "x86_64-apple-darwin",
    ] {
        let exe = if target.contains("windows") {
            ".exe"
        } else {
            ""
        };
        let name = format!("ferry-{target}{exe}");
        dist(&name);
        assert!(
            listed.contains(&format!("  {name}\n")),
            "{name} not in\n{listed}"
        );
    }
    let mut cmd = Command::new("sha256sum");
    cmd.arg("--check").arg("--strict").arg("SHA256SUMS");
    cmd.current_dir(sums.parent().unwrap());
    let out = run_tool(cmd);
    assert!(out.success(), "{out}");
}

#[test]
#[ignore = "release binaries: FERRY_RELEASE_TESTS=1 ./infra/test.sh builds and runs them"]
fn linux_binaries_are_static() {
    let x86 = dist("ferry-x86_64-unknown-linux-musl");
    let kind = file_type(&x86);
    assert!(kind.contains("x86-64"), "{kind}");
    assert!(
        kind.contains("statically linked") || kind.contains("static-pie linked"),
        "{kind}"
    );
    let mut ldd = Command::new("ldd");
    ldd.arg(&x86);
    let out = run_tool(ldd);
    // glibc's ldd: "not a dynamic executable" (exit 1) for a static binary, "statically
    // linked" for a static PIE.
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(
        said.contains("not a dynamic executable") || said.contains("statically linked"),
        "{out}"
    );

    let arm = file_type(&dist("ferry-aarch64-unknown-linux-musl"));
    assert!(arm.contains("ARM aarch64"), "{arm}");
    assert!(
        arm.contains("statically linked") || arm.contains("static-pie linked"),
        "{arm}"
    );
}

/// An empty root directory for `chroot`: the static binary as `/ferry`, nothing else until
/// a test writes its input files there.
struct BareRoot {
    dir: Workdir,
}

impl BareRoot {
    fn new() -> BareRoot {
        let dir = Workdir::new();
        std::fs::copy(
            dist("ferry-x86_64-unknown-linux-musl"),
            dir.path().join("ferry"),
        )
        .unwrap();
        BareRoot { dir }
    }

    /// Writes `contents` at `/name` inside the root; the path as the binary sees it.
    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> String {
        self.dir.write(name, contents);
        format!("/{name}")
    }

    /// `/ferry ARGS` run inside the root, with `envs` and short retry delays.
    fn run(&self, args: &[String], envs: &[(&str, &str)]) -> Output {
        let mut cmd = ferry_at("chroot");
        cmd.arg(self.dir.path()).arg("/ferry").args(args);
        cmd.env("HOME", "/").env(FAST_RETRIES.0, FAST_RETRIES.1);
        // The machine's certificate settings name files the empty root does not have.
        cmd.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        run_tool(cmd)
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "release binaries: FERRY_RELEASE_TESTS=1 ./infra/test.sh builds and runs them"]
async fn static_linux_binary_syncs_from_an_empty_root() {
    let root = BareRoot::new();
    let (_, roots) = version_parts(&root.run(&["--version".into()], &[]));
    assert_eq!(roots, "bundled Mozilla");

    // A plain HTTP source, a TLS target with token auth trusted through the auth file's `ca`.
    let p = Pair::start(Mode::Http, Mode::Token);
    p.src
        .seed_image("team/app", "1.0", &ImageSpec::with_layers(71, 2, 64 * 1024))
        .await;
    let ca = root.write("ca.pem", Pki::get().ca_pem());
    let auth = std::fs::read_to_string(p.auth())
        .unwrap()
        .replace(&Pki::get().ca_cert.display().to_string(), &ca);
    let auth = root.write("auth.yaml", auth);
    let images = root.write(
        "images.yaml",
        format!(
            "{}: {}\n",
            p.src.image("team/app:1.0"),
            p.dst.image("mirror/app")
        ),
    );
    let out = root.run(&sync_args(Path::new(&auth), Path::new(&images), &[]), &[]);
    assert!(out.success(), "{out}");
    p.assert_copied("team/app:1.0", "mirror/app:1.0");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "release binaries: FERRY_RELEASE_TESTS=1 ./infra/test.sh builds and runs them"]
async fn static_linux_binary_trusts_ssl_cert_file() {
    let root = BareRoot::new();
    let reg = Registry::start(Mode::BasicTls);
    reg.seed_image("team/app", "1.0", &ImageSpec::with_layers(72, 1, 1024))
        .await;
    let (user, password) = reg.credentials().unwrap();
    // No `ca`: only the bundled Mozilla roots, and SSL_CERT_FILE when set.
    let auth = root.write(
        "auth.yaml",
        format!(
            "{:?}: {{username: {user:?}, password: {password:?}}}\n",
            reg.host()
        ),
    );
    let images = root.write(
        "images.yaml",
        format!(
            "{}: {}\n",
            reg.image("team/app:1.0"),
            reg.image("mirror/app")
        ),
    );
    let plan = |envs: &[(&str, &str)]| {
        let args = [
            "plan".to_string(),
            format!("--auth={auth}"),
            format!("--images={images}"),
        ];
        root.run(&args, envs)
    };

    let untrusted = plan(&[]);
    assert!(
        !untrusted.success(),
        "the test CA is no Mozilla root\n{untrusted}"
    );

    let ca = root.write("ca.pem", Pki::get().ca_pem());
    let trusted = plan(&[("SSL_CERT_FILE", &ca)]);
    assert!(trusted.success(), "{trusted}");
    assert_eq!(
        trusted.pairs(),
        [(reg.image("team/app:1.0"), reg.image("mirror/app:1.0"))]
    );
}

/// Wine's loader: `wine64` or `wine` on PATH, else where Debian's wine64 package puts it.
fn wine() -> PathBuf {
    for name in ["wine64", "wine"] {
        let mut which = Command::new("sh");
        which.args(["-c", &format!("command -v {name}")]);
        let out = run_tool(which);
        if out.success() {
            return PathBuf::from(out.stdout.trim());
        }
    }
    let debian = PathBuf::from("/usr/lib/wine/wine64");
    assert!(
        debian.is_file(),
        "no wine64 or wine: apt-get install wine64"
    );
    debian
}

/// A Unix path as a Windows program under Wine names it (Wine's `Z:` is `/`).
fn wine_path(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "release binaries: FERRY_RELEASE_TESTS=1 ./infra/test.sh builds and runs them"]
async fn windows_binary_plans_under_wine() {
    let exe = dist("ferry-x86_64-pc-windows-gnu.exe");
    let kind = file_type(&exe);
    assert!(
        kind.contains("PE32+ executable") && kind.contains("x86-64"),
        "{kind}"
    );
    // Its own Wine prefix, created on the first run: nothing of the machine's is used.
    let prefix = Workdir::new();
    // Debian's Wine 8 lacks bcryptprimitives.dll (Windows 10 and later have it), whose
    // ProcessPrng Rust's standard library calls: a stand-in built from
    // tests/fixtures/wine/bcryptprimitives.c sits next to a copy of the binary. Nothing else
    // of Windows is faked.
    let exe = {
        let copy = prefix.path().join("ferry.exe");
        std::fs::copy(&exe, &copy).unwrap();
        let shim = support::workspace_root().join("tests/fixtures/wine/bcryptprimitives.c");
        let mut gcc = Command::new("x86_64-w64-mingw32-gcc");
        gcc.args(["-shared", "-O2", "-o"])
            .arg(prefix.path().join("bcryptprimitives.dll"))
            .arg(&shim)
            .arg("-ladvapi32");
        let built = run_tool(gcc);
        assert!(built.success(), "building the Wine stand-in DLL: {built}");
        copy
    };
    let run = |args: &[String]| -> Output {
        let mut cmd = ferry_at(wine());
        cmd.arg(&exe).args(args);
        cmd.env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .env("WINEPREFIX", prefix.path())
            .env("WINEDEBUG", "-all")
            .env(FAST_RETRIES.0, FAST_RETRIES.1);
        run_tool(cmd)
    };
    let (_, roots) = version_parts(&run(&["--version".into()]));
    assert_eq!(roots, "bundled Mozilla");

    let p = Pair::start(Mode::Http, Mode::Http);
    p.src
        .seed_image("team/app", "1.0", &ImageSpec::with_layers(73, 1, 1024))
        .await;
    let images = p.rule("team/app:1.0", "mirror/app");
    let out = run(&[
        "plan".into(),
        format!("--auth={}", wine_path(p.auth())),
        format!("--images={}", wine_path(&images)),
    ]);
    assert!(out.success(), "{out}");
    assert_eq!(
        out.pairs(),
        [(p.src.image("team/app:1.0"), p.dst.image("mirror/app:1.0"))]
    );
}

/// Only their format and architecture: nothing here runs a macOS binary.
#[test]
#[ignore = "release binaries: FERRY_RELEASE_TESTS=1 ./infra/test.sh builds and runs them"]
fn macos_binaries_are_mach_o_for_their_architecture() {
    let arm = file_type(&dist("ferry-aarch64-apple-darwin"));
    assert!(
        arm.starts_with("Mach-O 64-bit") && arm.contains("arm64"),
        "{arm}"
    );
    let x86 = file_type(&dist("ferry-x86_64-apple-darwin"));
    assert!(
        x86.starts_with("Mach-O 64-bit") && x86.contains("x86_64"),
        "{x86}"
    );
}
