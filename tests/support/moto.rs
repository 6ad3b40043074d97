//! A local SQS (and S3, for input files in buckets) for the queue tests: one `moto_server`
//! process per [`Moto`], on a free loopback port, killed and reaped on drop (and, like the
//! registries, SIGKILLed when the test process dies).
//!
//! The binary is `$FERRY_MOTO_SERVER`, else `<repo>/.venv/bin/moto_server` (what
//! `infra/setup.sh` installs), else `moto_server` from `PATH`. The SDK is configured
//! explicitly — endpoint, region `us-east-1`, static credentials `testing`/`testing` — so
//! no test reads the developer's AWS configuration or environment, and no test mutates
//! process-wide environment variables.
//!
//! moto facts the tests rely on (moto 5): queue URLs are built from the request's host
//! (`http://127.0.0.1:PORT/123456789012/NAME`); `ApproximateReceiveCount` counts every
//! delivery; a message whose receive count has reached a queue's `RedrivePolicy`
//! `maxReceiveCount` is moved to the dead-letter queue by the next ReceiveMessage instead
//! of being delivered. S3 is answered on the same port, with the bucket in the path (so
//! clients must use path-style URLs); a missing bucket is `NoSuchBucket`, a missing key in
//! an existing bucket `NoSuchKey`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use aws_sdk_sqs::types::QueueAttributeName;
use ferry::queue::SqsQueue;

use crate::net;
use crate::registry::{capture, spawn_with_pdeathsig};

/// moto imports a lot of Python before it listens.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The region and the fake credentials every test client uses.
pub const MOTO_REGION: &str = "us-east-1";
pub const MOTO_ACCESS_KEY: &str = "testing";

/// A running `moto_server`.
pub struct Moto {
    port: u16,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Moto {
    /// Starts `moto_server` and waits (bounded) until it answers. Panics with its output
    /// when it does not start.
    pub fn start() -> Moto {
        Moto::start_with_env(&[])
    }

    /// [`Moto::start`] with extra environment variables for the server (moto's settings,
    /// such as `MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR`).
    pub fn start_with_env(env: &[(&str, &str)]) -> Moto {
        let bin = moto_bin();
        let mut last_failure = String::new();
        // The port is only reserved until released: retry if another process took it.
        for _attempt in 0..3 {
            let port = net::free_port();
            let mut moto = Moto::spawn(&bin, port, env);
            match moto.wait_ready() {
                Ok(()) => return moto,
                Err(why) => {
                    moto.kill();
                    let logs = moto.logs.lock().unwrap().join("\n");
                    last_failure = format!("{why}\n{logs}");
                    if !logs.contains("Address already in use") {
                        break;
                    }
                }
            }
        }
        panic!(
            "moto_server ({}) did not start: {last_failure}\n(run infra/setup.sh to install it into .venv)",
            bin.display()
        );
    }

    fn spawn(bin: &PathBuf, port: u16, env: &[(&str, &str)]) -> Moto {
        let mut cmd = Command::new(bin);
        cmd.args(["-p", &port.to_string(), "-H", "127.0.0.1"])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn_with_pdeathsig(cmd)
            .unwrap_or_else(|e| panic!("spawning {}: {e} (run infra/setup.sh)", bin.display()));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            capture(child.stdout.take().expect("stdout"), logs.clone()),
            capture(child.stderr.take().expect("stderr"), logs.clone()),
        ];
        Moto {
            port,
            child,
            logs,
            readers,
        }
    }

    /// Waits until this process said it runs on our port (so the answer is not from some
    /// other server that took the port) and the port answers HTTP.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let running = format!("Running on http://127.0.0.1:{}", self.port);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("moto_server exited early: {status}"));
            }
            let said_running = self
                .logs
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(&running));
            if said_running && self.answers() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not ready on port {} within {READY_TIMEOUT:?}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn answers(&self) -> bool {
        let url = format!("{}/", self.endpoint());
        net::block_on_bg(async move {
            net::bg_client()
                .get(url)
                .timeout(Duration::from_millis(500))
                .send()
                .await
                .is_ok()
        })
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line moto printed so far (its request log among them).
    pub fn log_lines(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// AWS configuration pointing at this server, with fake static credentials.
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        let credentials =
            Credentials::new(MOTO_ACCESS_KEY, MOTO_ACCESS_KEY, None, None, "ferry-tests");
        aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(MOTO_REGION))
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .endpoint_url(self.endpoint())
            .http_client(ferry::aws::https_client())
            .build()
    }

    /// The environment a `ferry` process needs to reach this server as its SQS and S3,
    /// with the fake credentials (for `run_ferry`).
    pub fn cli_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL_SQS", self.endpoint()),
            ("AWS_ENDPOINT_URL_S3", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", MOTO_ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", MOTO_ACCESS_KEY.to_string()),
            ("AWS_REGION", MOTO_REGION.to_string()),
        ]
    }

    /// A raw SQS client for this server (queue set-up and inspection).
    pub fn client(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk_config())
    }

    /// A raw S3 client for this server (path-style, as moto needs).
    pub fn s3_client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk_config())
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// ferry's S3 reader aimed at this server.
    pub fn s3(&self) -> ferry::s3::S3 {
        ferry::s3::S3::with_config(self.sdk_config())
    }

    /// Creates bucket `name`.
    pub async fn create_bucket(&self, name: &str) {
        self.s3_client()
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating bucket {name}: {}", err(e)));
    }

    /// Stores `body` as `s3://BUCKET/KEY`, returning that URI.
    pub async fn put_object(&self, bucket: &str, key: &str, body: impl Into<Vec<u8>>) -> String {
        self.s3_client()
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from(body.into()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("putting s3://{bucket}/{key}: {}", err(e)));
        format!("s3://{bucket}/{key}")
    }

    /// ferry's queue at `url` on this server.
    pub fn queue(&self, url: &str) -> SqsQueue {
        SqsQueue::with_config(&self.sdk_config(), url)
    }

    /// Creates queue `name`; with `dlq_max_receives`, also `NAME-dlq` and a redrive policy
    /// moving a message there once it was received that many times. Returns the queue's
    /// URL and the dead-letter queue's.
    pub async fn create_queue(
        &self,
        name: &str,
        dlq_max_receives: Option<u32>,
    ) -> (String, Option<String>) {
        let client = self.client();
        let mut create = client.create_queue().queue_name(name);
        let mut dlq_url = None;
        if let Some(max) = dlq_max_receives {
            let url = create_plain(&client, &format!("{name}-dlq")).await;
            let arn = queue_arn(&client, &url).await;
            let policy = serde_json::json!({
                "deadLetterTargetArn": arn,
                "maxReceiveCount": max.to_string(),
            });
            create = create.attributes(QueueAttributeName::RedrivePolicy, policy.to_string());
            dlq_url = Some(url);
        }
        let output = create
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating queue {name}: {}", err(e)));
        (
            output.queue_url.expect("CreateQueue returns a URL"),
            dlq_url,
        )
    }

    /// Sets the queue's default visibility timeout.
    pub async fn set_visibility_timeout(&self, url: &str, seconds: u32) {
        self.client()
            .set_queue_attributes()
            .queue_url(url)
            .attributes(QueueAttributeName::VisibilityTimeout, seconds.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("setting VisibilityTimeout of {url}: {}", err(e)));
    }

    /// `ApproximateNumberOfMessages` + `…NotVisible` of the queue.
    pub async fn message_count(&self, url: &str) -> usize {
        let output = self
            .client()
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap_or_else(|e| panic!("reading attributes of {url}: {}", err(e)));
        output
            .attributes
            .unwrap_or_default()
            .values()
            .map(|n| n.parse::<usize>().expect("a count"))
            .sum()
    }
}

async fn create_plain(client: &aws_sdk_sqs::Client, name: &str) -> String {
    client
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating queue {name}: {}", err(e)))
        .queue_url
        .expect("CreateQueue returns a URL")
}

async fn queue_arn(client: &aws_sdk_sqs::Client, url: &str) -> String {
    client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap_or_else(|e| panic!("reading QueueArn of {url}: {}", err(e)))
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .expect("GetQueueAttributes returns the QueueArn")
}

fn err(e: impl std::error::Error) -> String {
    aws_sdk_sqs::error::DisplayErrorContext(e).to_string()
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let logs = self.logs.lock().unwrap();
            let skip = logs.len().saturating_sub(40);
            eprintln!(
                "---- moto_server on port {} (last {} log lines) ----",
                self.port,
                logs.len() - skip
            );
            for l in &logs[skip..] {
                eprintln!("{l}");
            }
        }
    }
}

/// `$FERRY_MOTO_SERVER`, else `<repo>/.venv/bin/moto_server`, else `moto_server` on `PATH`.
pub fn moto_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("FERRY_MOTO_SERVER") {
        return PathBuf::from(bin);
    }
    let venv = crate::workspace_root().join(".venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("moto_server")
}
