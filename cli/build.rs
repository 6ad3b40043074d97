//! Stamps the commit into the binary for `ferry --version`: `FERRY_COMMIT` from the
//! environment when set (a release build, or a source tarball built outside git), else
//! `git rev-parse --short=12 HEAD` when the sources are a git checkout, else "unknown".
//! Never fails the build: `cargo install` from a tarball or a registry has no git.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=FERRY_COMMIT");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = match std::env::var("FERRY_COMMIT") {
        Ok(commit) if is_commit_label(&commit) => commit,
        _ => git_commit(&manifest_dir).unwrap_or_else(|| "unknown".to_string()),
    };
    println!("cargo:rustc-env=FERRY_COMMIT={commit}");
}

/// A label fit for one line of `--version`: short, printable, no spaces.
fn is_commit_label(label: &str) -> bool {
    !label.is_empty() && label.len() <= 64 && label.bytes().all(|b| b.is_ascii_graphic())
}

/// HEAD's short hash, and the files to watch so a new commit stamps again; None outside git.
fn git_commit(dir: &Path) -> Option<String> {
    let commit = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    // HEAD names the branch; the branch's ref file (or packed-refs) moves on a commit.
    let mut watched = vec![git(dir, &["rev-parse", "--git-path", "HEAD"])?];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.extend(git(dir, &["rev-parse", "--git-path", &branch]));
    }
    watched.extend(git(dir, &["rev-parse", "--git-path", "packed-refs"]));
    for path in watched {
        let path = dir.join(path);
        // A path that does not exist would make cargo run this script on every build.
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    is_commit_label(&commit).then_some(commit)
}

/// One line of git's output in `dir`, or None when git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!line.is_empty()).then_some(line)
}
