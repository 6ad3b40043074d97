//! Command-line flags, image-syncer's names and meanings kept (`--auth`, `--images`,
//! `--config`, `--registry`, `--namespace`, `--log`, `--proc`, `--retries`, `--os`, `--arch`,
//! `--force`). These are the raw flags as clap parsed them; `settings` validates what clap
//! cannot (platform filters) before anything is contacted.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use ferry::dispatch::FanOut;
use ferry::files::DocumentSource;
use ferry::image::Referrers;
use ferry::platform::{PlatformError, PlatformFilter};
use regex::Regex;

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Copy container images between Docker Registry V2 / OCI registries",
    long_about = None,
    // image-syncer has no subcommands, so its command lines (`ferry --auth=… --images=…`)
    // must mean `ferry sync`. Sync flags before a subcommand would be ambiguous: refuse them.
    args_conflicts_with_subcommands = true,
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    sync: SyncArgs,
}

impl Cli {
    /// The command to run: no subcommand means `sync` with the top-level flags.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Sync(self.sync))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy every image the rules select to its targets (the default command).
    Sync(SyncArgs),
    /// Resolve the rules against the source registries and print one JSON line per copy,
    /// or with --queue-url enqueue one job per image not yet in sync.
    Plan(PlanArgs),
    /// Run the copy jobs of a queue (what the copier Lambda does), from any machine.
    Worker(WorkerArgs),
    /// Serve registry push webhooks and copy each pushed image the rules select (the
    /// webhook Lambda, with the copier built in). The secret comes from FERRY_WEBHOOK_SECRET.
    Serve(ServeArgs),
    /// Show the jobs waiting, in flight and dead on a queue; exit 0 only when the queue and
    /// its dead-letter queue are empty, to wait for a migration in a script.
    #[command(after_help = STATUS_EXIT_CODES)]
    Status(StatusArgs),
    /// The dead-letter queue of a queue (from its redrive policy): list or redrive its jobs.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Write an images file of every image a Kubernetes cluster's workloads use (or its
    /// manifests name), to edit and then give to plan or sync.
    #[command(after_help = DISCOVER_HELP)]
    Discover(DiscoverArgs),
}

/// `ferry discover`'s details, for `--help`.
const DISCOVER_HELP: &str =
    "What counts: Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs,
CronJobs, ReplicationControllers and (in manifests) any object with a pod template at
spec.template or spec.jobTemplate.spec.template; containers, initContainers and
ephemeralContainers. kube-system is not excluded unless --exclude-namespace names it.

Exit status: 0 written (warnings on standard error), 2 bad input (a malformed manifest,
refused credentials, a --namespace the credentials may not list), 1 the API server could
not be reached. Nothing is written to -o unless the exit status is 0.";

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// Read these manifests instead of a cluster: files, directories (walked for .yaml,
    /// .yml and .json) or `-` for standard input (repeatable).
    #[arg(short = 'f', long = "filename", value_name = "PATH",
        conflicts_with_all = ["kubeconfig", "context"])]
    pub files: Vec<PathBuf>,
    /// The kubeconfig [default: $KUBECONFIG, then ~/.kube/config, then the pod's service
    /// account].
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context [default: its current-context].
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Only this namespace (repeatable) [default: every namespace].
    #[arg(short = 'n', long = "namespace", value_name = "NS")]
    pub namespaces: Vec<String>,
    /// Leave this namespace out (repeatable).
    #[arg(long = "exclude-namespace", value_name = "NS")]
    pub exclude_namespaces: Vec<String>,
    /// Target every image to the same repository path under this registry (and namespace);
    /// images already on it are left out. Without it targets are empty, for --registry and
    /// --namespace of sync to fill.
    #[arg(long, value_name = "REGISTRY[/NAMESPACE]")]
    pub to: Option<String>,
    /// Write the digests the cluster's pods run (repo@sha256:…) instead of their tags.
    #[arg(long)]
    pub pin: bool,
    /// YAML (with a comment naming the workloads of each rule) or JSON.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = ImagesFormat::Yaml)]
    pub format: ImagesFormat,
    /// Write the images file here instead of standard output.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `ferry status`'s exit statuses, for `--help`.
const STATUS_EXIT_CODES: &str = "Exit status:
  0  done: the queue and its dead-letter queue are empty
  3  running: jobs are waiting, in flight or delayed on the queue
  4  dead jobs: the queue is empty, jobs are left in the dead-letter queue
  1  the queue could not be read (2: bad flags)

Wait for a migration:
  while ferry status --queue-url URL >/dev/null; [ $? -eq 3 ]; do sleep 30; done";

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The SQS queue (AWS configuration from the environment; AWS_ENDPOINT_URL_SQS for a
    /// local SQS).
    #[arg(long, value_name = "URL")]
    pub queue_url: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Show each dead job (source, targets, digest, receive count, first sent) without
    /// removing it: each is received, hidden for a moment, and made visible again.
    List(DlqListArgs),
    /// Send the dead jobs back to the queue: each is sent to the queue before it is deleted
    /// from the dead-letter queue, so an interruption can at worst leave a job in both
    /// (running a job twice is harmless).
    Redrive(DlqRedriveArgs),
}

#[derive(Debug, Args)]
pub struct DlqListArgs {
    /// The queue whose dead-letter queue to read (the queue jobs are sent to, not the
    /// dead-letter queue itself).
    #[arg(long, value_name = "URL")]
    pub queue_url: String,
    /// List at most N jobs.
    #[arg(long, value_name = "N", default_value_t = 1000,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub limit: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DlqRedriveArgs {
    /// The queue to send the dead jobs back to; its dead-letter queue is found from its
    /// redrive policy.
    #[arg(long, value_name = "URL")]
    pub queue_url: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

impl Command {
    /// `--log FILE`, whichever command was given.
    pub fn log_file(&self) -> Option<&Path> {
        match self {
            Command::Sync(args) => args.input.log.as_deref(),
            Command::Plan(args) => args.input.log.as_deref(),
            Command::Worker(args) => args.log.as_deref(),
            Command::Serve(args) => args.input.log.as_deref(),
            Command::Status(_) | Command::Dlq(_) | Command::Discover(_) => None,
        }
    }
}

/// The input files and defaults every command reads. Each file is a local path or
/// s3://BUCKET/KEY (AWS configuration from the environment; AWS_ENDPOINT_URL_S3 for a local S3).
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Auth file (YAML or JSON; a path or s3://BUCKET/KEY): registry or registry/namespace →
    /// username, password, insecure, ca. Defaults to ./auth.json if it exists.
    #[arg(long, value_name = "FILE")]
    pub auth: Option<DocumentSource>,
    /// Images file (YAML or JSON; a path or s3://BUCKET/KEY): source → target or [targets].
    /// Defaults to ./images.json.
    #[arg(long, value_name = "FILE")]
    pub images: Option<DocumentSource>,
    /// Legacy image-syncer config (JSON or YAML; a path or s3://BUCKET/KEY) with "auth" and
    /// "images" keys.
    #[arg(long, value_name = "FILE")]
    pub config: Option<DocumentSource>,
    /// Default target registry for rules with an empty target [env: DEFAULT_REGISTRY].
    #[arg(long, value_name = "REGISTRY")]
    pub registry: Option<String>,
    /// Default target namespace for rules with an empty target [env: DEFAULT_NAMESPACE].
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Write logs to FILE instead of standard error.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Page size asked of tags/list and _catalog (the registry's own default, and 1,000
    /// repositories, when unset).
    #[arg(long, value_name = "N", hide = true)]
    pub tags_page_size: Option<usize>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Enqueue one job per image not yet in sync on this SQS queue instead of printing
    /// (AWS configuration from the environment; AWS_ENDPOINT_URL_SQS for a local SQS).
    #[arg(long, value_name = "URL")]
    pub queue_url: Option<String>,
    #[command(flatten)]
    pub platforms: PlatformArgs,
    #[command(flatten)]
    pub referrer_args: ReferrerArgs,
    /// With --queue-url: enqueue images even when their targets are in sync, and push again.
    #[arg(long, requires = "queue_url")]
    pub force: bool,
    /// With --queue-url: for a large migration, send plan jobs (slices of the rules) that
    /// workers expand into copy jobs, instead of checking every image here. WHEN is auto
    /// (the default: above 1,000 images), always, never, or a number of images.
    #[arg(
        long,
        value_name = "WHEN",
        num_args = 0..=1,
        default_missing_value = "auto",
        requires = "queue_url",
        value_parser = parse_fan_out
    )]
    pub fan_out: Option<FanOut>,
    /// Also print on standard error, per rule, every tag it saw and why each was dropped
    /// (not matched, not included, not semver, outside the range, excluded, beyond latest).
    #[arg(long, conflicts_with = "queue_url")]
    pub explain: bool,
    // With --queue-url: a copy of a matching tag to a target that lists it is in sync
    // without a HEAD.
    #[command(flatten)]
    pub immutable: ImmutableArgs,
}

fn parse_fan_out(text: &str) -> Result<FanOut, String> {
    text.parse()
}

/// `--proc`, shared by the commands that copy.
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// Blob transfers kept in flight, largest blobs first; blobs under 1 MiB (configs,
    /// small layers) have as many again, so they do not queue behind the large ones.
    #[arg(
        long,
        short = 'p',
        value_name = "N",
        default_value_t = 5,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..),
    )]
    pub proc: usize,
}

/// `--immutable-tags`, shared by the commands that copy.
#[derive(Debug, Args)]
pub struct ImmutableArgs {
    /// Tags never re-pushed, such as release tags (a regex matched anywhere in the source
    /// tag; `/^v\d/` and `^v\d` are the same): a target whose tag list has such a tag
    /// already has it, and no request is spent on it. A tag re-pushed at the source is then
    /// not noticed; --force copies it anyway.
    #[arg(long, value_name = "REGEX", env = "FERRY_IMMUTABLE_TAGS",
        value_parser = ferry::rules::parse_immutable_pattern)]
    pub immutable_tags: Option<Regex>,
}

/// `--os` and `--arch`, shared by the commands that copy or plan copies.
#[derive(Debug, Args)]
pub struct PlatformArgs {
    /// Copy only these OSes of multi-platform images (comma-separated, repeatable;
    /// `os:version` pins an OS version, e.g. windows:10.0.17763).
    #[arg(long, value_name = "OS[,OS…]")]
    pub os: Vec<String>,
    /// Copy only these architectures (comma-separated, repeatable; `arch:variant`, e.g. arm64:v8).
    #[arg(long, value_name = "ARCH[,ARCH…]")]
    pub arch: Vec<String>,
}

impl PlatformArgs {
    /// The flags parsed into the filter every later stage uses.
    pub fn filter(&self) -> Result<PlatformFilter, PlatformError> {
        PlatformFilter::parse(&self.os, &self.arch)
    }
}

/// `--referrers` and `--referrers-type`, shared by the commands that copy or plan copies.
#[derive(Debug, Args)]
pub struct ReferrerArgs {
    /// Copy each image's referrers with it: signatures, SBOMs, attestations (OCI 1.1
    /// referrers, the `sha256-<hex>` fallback tag, cosign's `.sig`/`.att`/`.sbom` tags).
    /// `--referrers=false` copies none and asks for none.
    #[arg(
        long,
        value_name = "BOOL",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub referrers: bool,
    /// Copy only referrers of this artifact type (repeatable); a cosign tag's type is its
    /// config's or its layers' media type.
    #[arg(long = "referrers-type", value_name = "TYPE")]
    pub referrers_type: Vec<String>,
}

impl ReferrerArgs {
    pub fn options(&self) -> Referrers {
        Referrers {
            enabled: self.referrers,
            types: self.referrers_type.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    #[command(flatten)]
    pub transfers: TransferArgs,
    #[command(flatten)]
    pub platforms: PlatformArgs,
    #[command(flatten)]
    pub referrer_args: ReferrerArgs,
    #[command(flatten)]
    pub immutable: ImmutableArgs,
    /// Registry of payloads that name none (Docker Hub's) [env: FERRY_WEBHOOK_REGISTRY].
    #[arg(long, value_name = "REGISTRY", env = "FERRY_WEBHOOK_REGISTRY")]
    pub webhook_registry: Option<String>,
    /// Where accepted jobs are journaled until copied, so a restart (even after SIGKILL)
    /// copies every push that was answered 202.
    #[arg(long, value_name = "DIR", default_value = ".ferry-serve")]
    pub state_dir: PathBuf,
    /// Send accepted jobs to this SQS queue instead, for `ferry worker` or the copier
    /// Lambda to run; nothing is copied in this process.
    #[arg(long, value_name = "URL", conflicts_with = "state_dir")]
    pub queue_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The SQS queue to consume (AWS configuration from the environment;
    /// AWS_ENDPOINT_URL_SQS for a local SQS).
    #[arg(long, value_name = "URL")]
    pub queue_url: String,
    /// Auth file (YAML or JSON; a path or s3://BUCKET/KEY), as for sync; the Docker config
    /// is the fallback.
    #[arg(long, value_name = "FILE")]
    pub auth: Option<DocumentSource>,
    /// Images file (a path or s3://BUCKET/KEY): run only jobs whose source and targets its
    /// rules select (a job none selects fails, and is never copied). Without it every
    /// well-formed job runs.
    #[arg(long, value_name = "FILE")]
    pub images: Option<DocumentSource>,
    #[command(flatten)]
    pub transfers: TransferArgs,
    /// `--referrers=false` copies no job's referrers.
    #[command(flatten)]
    pub referrer_args: ReferrerArgs,
    #[command(flatten)]
    pub immutable: ImmutableArgs,
    /// Jobs (images) kept in flight.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 10,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..),
    )]
    pub jobs: usize,
    /// Seconds a received job stays hidden from other workers; renewed while it runs.
    #[arg(long, value_name = "SECONDS", default_value_t = 120,
        value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(2..=43200))]
    pub visibility: u64,
    /// Seconds to long-poll for jobs per receive (0..=20).
    #[arg(long, value_name = "SECONDS", default_value_t = 20,
        value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(0..=20))]
    pub wait: u64,
    /// Exit once the queue is empty and every job has ended, instead of waiting for more.
    #[arg(long)]
    pub exit_when_empty: bool,
    /// Write logs to FILE instead of standard error.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub transfers: TransferArgs,
    /// Rounds of retrying failed images after every image was tried once.
    #[arg(long, short = 'r', value_name = "N", default_value_t = 2)]
    pub retries: u32,
    #[command(flatten)]
    pub platforms: PlatformArgs,
    #[command(flatten)]
    pub referrer_args: ReferrerArgs,
    /// Copy images even when their targets already have the source digest.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub immutable: ImmutableArgs,
    /// Write the images now in their targets to FILE, as an images file (source → [targets]).
    #[arg(long, value_name = "FILE")]
    pub output_success_images: Option<PathBuf>,
    /// Format of --output-success-images.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = ImagesFormat::Yaml)]
    pub output_images_format: ImagesFormat,
    /// Write a JSON report of every image (status, reason, bytes, blobs, duration) to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImagesFormat {
    Yaml,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("ferry").chain(args.iter().copied()))
            .map(Cli::into_command)
    }

    fn sync(args: &[&str]) -> SyncArgs {
        match parse(args).unwrap() {
            Command::Sync(args) => args,
            other => panic!("expected sync, got {other:?}"),
        }
    }

    #[test]
    fn image_syncer_command_line_is_sync() {
        let args = sync(&[
            "--auth=./auth.yaml",
            "--images=./images.yaml",
            "--proc=6",
            "--retries=3",
            "--log=./log",
        ]);
        let local = |path: &str| Some(DocumentSource::Local(path.into()));
        assert_eq!(args.input.auth, local("./auth.yaml"));
        assert_eq!(args.input.images, local("./images.yaml"));
        assert_eq!(args.transfers.proc, 6);
        assert_eq!(args.retries, 3);
        assert_eq!(args.input.log.as_deref(), Some(Path::new("./log")));
    }

    #[test]
    fn defaults() {
        let args = sync(&[]);
        assert_eq!(
            (args.transfers.proc, args.retries, args.force),
            (5, 2, false)
        );
        assert_eq!(args.output_images_format, ImagesFormat::Yaml);
        assert!(args.platforms.os.is_empty() && args.platforms.arch.is_empty());
    }

    #[test]
    fn sync_subcommand_short_and_spaced_flags() {
        let line = "sync -p 3 -r 0 --os linux --arch amd64 --arch arm64:v8 --force \
                    --output-images-format json --report r.json";
        let args = sync(&line.split_whitespace().collect::<Vec<_>>());
        assert_eq!(
            (args.transfers.proc, args.retries, args.force),
            (3, 0, true)
        );
        assert_eq!(args.platforms.os, ["linux"]);
        assert_eq!(args.platforms.arch, ["amd64", "arm64:v8"]);
        assert_eq!(args.output_images_format, ImagesFormat::Json);
        assert_eq!(args.report.as_deref(), Some(Path::new("r.json")));
    }

    #[test]
    fn input_files_may_be_in_s3() {
        let args = sync(&[
            "--images=s3://rules/images.yaml",
            "--auth",
            "s3://rules/auth.json",
        ]);
        assert_eq!(
            args.input.images.map(|s| s.to_string()).as_deref(),
            Some("s3://rules/images.yaml")
        );
        assert!(matches!(args.input.auth, Some(DocumentSource::S3(_))));
        match parse(&["worker", "--queue-url=u", "--images=s3://rules/i.yaml"]).unwrap() {
            Command::Worker(args) => assert!(matches!(args.images, Some(DocumentSource::S3(_)))),
            other => panic!("expected worker, got {other:?}"),
        }
        // A bad URI is a usage error, before anything is read.
        let error = parse(&["plan", "--config=s3://Bad_Bucket/c.yaml"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("not a bucket name"), "{error}");
        assert!(parse(&["--images=s3://bucket/"]).is_err());
    }

    #[test]
    fn immutable_tags_take_a_regex_with_or_without_slashes() {
        let pattern = |args: &[&str]| sync(args).immutable.immutable_tags.map(|r| r.to_string());
        assert_eq!(
            pattern(&["--immutable-tags=/^v\\d/"]).as_deref(),
            Some("^v\\d")
        );
        assert_eq!(pattern(&["--immutable-tags", "^v"]).as_deref(), Some("^v"));
        assert!(parse(&["--immutable-tags=/(/"]).is_err());
        match parse(&["worker", "--queue-url=u", "--immutable-tags=^v"]).unwrap() {
            Command::Worker(args) => assert!(args.immutable.immutable_tags.is_some()),
            other => panic!("expected worker, got {other:?}"),
        }
    }

    #[test]
    fn rejected_flags() {
        assert!(parse(&["--proc=0"]).is_err());
        assert!(parse(&["--output-images-format=toml"]).is_err());
        // Sync flags belong to sync, not to plan, and not before a subcommand.
        assert!(parse(&["plan", "--proc=2"]).is_err());
        assert!(parse(&["--proc=2", "plan"]).is_err());
    }

    #[test]
    fn status_and_dlq_commands() {
        match parse(&["status", "--queue-url=http://q/1", "--json"]).unwrap() {
            Command::Status(args) => {
                assert_eq!((args.queue_url.as_str(), args.json), ("http://q/1", true))
            }
            other => panic!("expected status, got {other:?}"),
        }
        match parse(&["dlq", "list", "--queue-url", "http://q/1"]).unwrap() {
            Command::Dlq(DlqCommand::List(args)) => {
                assert_eq!((args.limit, args.json), (1000, false))
            }
            other => panic!("expected dlq list, got {other:?}"),
        }
        assert!(matches!(
            parse(&["dlq", "redrive", "--queue-url=u"]).unwrap(),
            Command::Dlq(DlqCommand::Redrive(_))
        ));
        assert!(parse(&["status"]).is_err(), "--queue-url is required");
        assert!(parse(&["dlq", "list", "--queue-url=u", "--limit=0"]).is_err());
        assert!(
            parse(&["dlq", "--queue-url=u"]).is_err(),
            "a subcommand is required"
        );
        assert_eq!(
            parse(&["status", "--queue-url=u"]).unwrap().log_file(),
            None
        );
    }

    #[test]
    fn discover_flags() {
        let line = "discover -f a.yaml -f dir -n web -n api --exclude-namespace kube-system \
                    --to reg.io/mirror --pin --format json -o out.json";
        match parse(&line.split_whitespace().collect::<Vec<_>>()).unwrap() {
            Command::Discover(args) => {
                assert_eq!(args.files, [Path::new("a.yaml"), Path::new("dir")]);
                assert_eq!(args.namespaces, ["web", "api"]);
                assert_eq!(args.exclude_namespaces, ["kube-system"]);
                assert_eq!(args.to.as_deref(), Some("reg.io/mirror"));
                assert!(args.pin && args.format == ImagesFormat::Json);
                assert_eq!(args.output.as_deref(), Some(Path::new("out.json")));
            }
            other => panic!("expected discover, got {other:?}"),
        }
        assert!(parse(&["discover", "-f", "a", "--context", "x"]).is_err());
        assert_eq!(parse(&["discover"]).unwrap().log_file(), None);
    }

    #[test]
    fn log_file_covers_every_command() {
        let log = Some(Path::new("l"));
        assert_eq!(parse(&["--log=l"]).unwrap().log_file(), log);
        assert_eq!(parse(&["sync", "--log=l"]).unwrap().log_file(), log);
        assert_eq!(parse(&["plan", "--log", "l"]).unwrap().log_file(), log);
    }
}
