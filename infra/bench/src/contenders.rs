//! Running one contender on one copy: the command for ferry (`sync` with an auth and an
//! images file), for `skopeo sync --all` (one YAML source) and for the raw floor (its JSON
//! spec), each with a clean environment, then measured between the two registries
//! (`runner.rs`) and counted from their access logs (`counts.rs`). Checking the copy is the
//! scenario's.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use support::{auth_yaml, Pki, Registry};

use crate::corpus::Corpus;
use crate::runner::{self, clean_command, run_measured, Between};
use crate::seeding::Seeded;
use crate::{floor, Bench, Run, Tool};

/// One copy a contender is asked to make: `corpus`, seeded as `seeded` into `source`, to
/// `target`.
pub(crate) struct CopyJob<'a> {
    pub source: &'a Registry,
    pub target: &'a Registry,
    pub corpus: &'a Corpus,
    pub seeded: &'a Seeded,
    /// More target registries, each given every repository too (ferry only).
    pub also: &'a [Registry],
    /// Flags added to ferry's command line.
    pub flags: &'a [&'a str],
}

impl Bench {
    /// Run `tool` copying `corpus` from `source` to `target`, measured and counted (not
    /// verified).
    pub(crate) async fn run_tool(
        &mut self,
        job: &CopyJob<'_>,
        tool: Tool,
        round: usize,
        what: &str,
    ) -> anyhow::Result<Run> {
        let dir = self.next_dir(&format!("{what}-{}-{round}", tool.name()))?;
        let cmd = match tool {
            Tool::Ferry => self.ferry_command(job, &dir)?,
            Tool::Skopeo => self.skopeo_command(job, &dir)?,
            Tool::Floor => self.floor_command(job, &dir, false)?,
            Tool::FloorH2 => self.floor_command(job, &dir, true)?,
        };
        let log = dir.join("output.log");
        let between = Between {
            source: job.source,
            target: job.target,
        };
        between.prepare();
        let cpu_before = between.cpu_s();
        let measured = tokio::task::block_in_place(|| run_measured(cmd, &log))?;
        let registry_cpu_s = between.cpu_s() - cpu_before;
        if !measured.success {
            anyhow::bail!(
                "{} failed on {what} ({}); its output ({}):\n{}",
                tool.name(),
                measured.exit,
                log.display(),
                runner::tail(&log, 40)
            );
        }
        let requests = between.requests();
        Ok(Run {
            tool,
            round,
            measured,
            registry_cpu_s,
            requests,
            extra: BTreeMap::new(),
        })
    }

    pub(crate) fn credentials(&self) -> (&'static str, &'static str) {
        self.mode
            .credentials()
            .expect("auth modes have credentials")
    }

    fn ferry_command(&self, job: &CopyJob<'_>, dir: &Path) -> anyhow::Result<Command> {
        let (source, target) = (job.source, job.target);
        let mut registries = vec![source, target];
        registries.extend(job.also.iter());
        let auth = auth_yaml(&registries);
        let mut images = String::new();
        for repo in job.corpus.repos() {
            let targets: Vec<String> = registries[1..]
                .iter()
                .map(|t| format!("{:?}", t.image(&repo)))
                .collect();
            images += &format!("{:?}: [{}]\n", source.image(&repo), targets.join(", "));
        }
        std::fs::write(dir.join("auth.yaml"), auth)?;
        std::fs::write(dir.join("images.yaml"), images)?;
        let mut cmd = clean_command(&self.ferry, &dir.join("home"));
        cmd.arg("sync")
            .arg(format!("--auth={}", dir.join("auth.yaml").display()))
            .arg(format!("--images={}", dir.join("images.yaml").display()))
            .arg(format!("--proc={}", self.args.proc))
            .arg(format!("--report={}", dir.join("report.json").display()))
            .args(job.flags);
        Ok(cmd)
    }

    fn skopeo_command(&self, job: &CopyJob<'_>, dir: &Path) -> anyhow::Result<Command> {
        let corpus = job.corpus;
        let (user, password) = self.credentials();
        let ca_dir = Pki::get().ca_dir().display().to_string();
        // All repositories in one skopeo process, like ferry's one run: a YAML source.
        let prefix = corpus
            .repos()
            .first()
            .and_then(|r| r.rsplit_once('/').map(|(p, _)| p.to_string()))
            .expect("corpus repositories have a prefix");
        let mut yaml = format!("{:?}:\n  images:\n", job.source.host());
        for repo in corpus.repos() {
            yaml += &format!("    {repo:?}: []\n");
        }
        yaml += &format!(
            "  credentials:\n    username: {user:?}\n    password: {password:?}\n  tls-verify: true\n  cert-dir: {ca_dir:?}\n"
        );
        std::fs::write(dir.join("sync.yaml"), yaml)?;
        let mut cmd = clean_command("skopeo", &dir.join("home"));
        cmd.args([
            "--insecure-policy",
            "sync",
            "--all",
            "--src",
            "yaml",
            "--dest",
            "docker",
        ])
        .arg(format!("--dest-cert-dir={ca_dir}"))
        .arg(format!("--dest-creds={user}:{password}"))
        .arg(dir.join("sync.yaml"))
        .arg(job.target.image(&prefix));
        Ok(cmd)
    }

    fn floor_command(&self, job: &CopyJob<'_>, dir: &Path, http2: bool) -> anyhow::Result<Command> {
        let (source, target) = (job.source, job.target);
        let (user, password) = self.credentials();
        let mut by_digest: BTreeMap<&str, (u64, Vec<String>)> = BTreeMap::new();
        for p in &job.seeded.placements {
            let e = by_digest
                .entry(p.digest.as_str())
                .or_insert((p.size, Vec::new()));
            e.1.push(p.repo.clone());
        }
        let spec = floor::Spec {
            source: source.base_url(),
            target: target.base_url(),
            ca: Pki::get().ca_cert.clone(),
            username: user.into(),
            password: password.into(),
            token: target
                .issuer()
                .map(|i| (i.realm().to_string(), support::TOKEN_SERVICE.to_string())),
            parallel: self.args.proc,
            http2,
            blobs: by_digest
                .into_iter()
                .map(|(digest, (size, repos))| floor::FloorBlob {
                    digest: digest.into(),
                    size,
                    from: repos[0].clone(),
                    to: repos,
                })
                .collect(),
        };
        std::fs::write(dir.join("floor.json"), serde_json::to_vec(&spec)?)?;
        let mut cmd = clean_command(std::env::current_exe()?, &dir.join("home"));
        cmd.arg("floor").arg(dir.join("floor.json"));
        Ok(cmd)
    }
}
