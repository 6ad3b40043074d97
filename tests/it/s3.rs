//! Input files in S3, against real parts: moto is S3 (and SQS), registries are
//! docker-registry. An images file of several hundred rules, far past the 4 KB a Lambda's
//! environment holds, and an auth file whose `${VAR}` references the environment fills are
//! read from a bucket by `ferry plan`, `ferry` (sync), the planner function (again for each
//! run, so a new object counts without a restart) and the copier function; every way an object can be unusable stops ferry with a message naming its
//! `s3://` URI and the exit status a local file would give.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::ferry::ecr::Ecr;
use ::ferry::env::MapEnv;
use ::ferry::files::MAX_DOCUMENT_BYTES;
use ::ferry::job::Job;
use copier::CopierFunction;
use planner::Planner;
use support::{assert_same_raw, free_port, run_ferry, ImageSpec, Mode, Moto, Registry, BASIC_USER};

use crate::serverless::sqs_event;
use crate::{fixture, receive_at_least};

/// Rules in the images file: each tag of one repository, so a few hundred rules cost one
/// seeded image.
const RULES: usize = 300;
const BUCKET: &str = "ferry-rules";

/// A source that needs the credentials the auth file names by variable, a target, and the
/// two files in a moto bucket.
struct Rules {
    src: Registry,
    dst: Registry,
    moto: Moto,
    images: String,
    auth: String,
}

impl Rules {
    async fn start() -> Rules {
        let src = Registry::start(Mode::BasicHttp);
        let dst = Registry::start(Mode::Http);
        let image = src
            .seed_image("team/app", "v0", &ImageSpec::with_layers(18, 1, 512))
            .await;
        let tags: Vec<String> = (1..RULES).map(|i| format!("v{i}")).collect();
        src.tag_many("team/app", &tags, &image).await;
        let images: String = (0..RULES)
            .map(|i| format!("{}/team/app:v{i}: {}/mirror/app\n", src.host(), dst.host()))
            .collect();
        assert!(images.len() > 4 * 4096, "{} bytes", images.len());
        let auth = format!(
            "{:?}: {{username: \"${{SRC_USER}}\", password: \"${{SRC_PASSWORD}}\", insecure: true}}\n\
             {:?}: {{insecure: true}}\n",
            src.host(),
            dst.host()
        );
        let moto = Moto::start();
        moto.create_bucket(BUCKET).await;
        let images = moto.put_object(BUCKET, "rules/images.yaml", images).await;
        let auth = moto.put_object(BUCKET, "rules/auth.yaml", auth).await;
        Rules {
            src,
            dst,
            moto,
            images,
            auth,
        }
    }

    /// The source's credentials, as the auth file's variables.
    fn secrets(&self) -> [(&'static str, String); 2] {
        let (user, password) = self.src.credentials().expect("a Basic auth source");
        assert_eq!(user, BASIC_USER);
        [
            ("SRC_USER", user.to_string()),
            ("SRC_PASSWORD", password.to_string()),
        ]
    }

    /// A function's environment: both files in S3, the secrets, fast retries, and `extra`.
    fn function_env(&self, extra: &[(&str, &str)]) -> MapEnv {
        let mut env = MapEnv::new([
            ("FERRY_IMAGES_FILE", self.images.as_str()),
            ("FERRY_AUTH_FILE", self.auth.as_str()),
            ("FERRY_RETRY_BASE_MS", "5"),
        ]);
        let secrets = self
            .secrets()
            .map(|(name, value)| (name.to_string(), value));
        let extra = extra.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        env.0.extend(secrets.into_iter().chain(extra));
        env
    }

    /// `ferry ARGS` with the AWS environment aimed at moto, the secrets, and `extra`.
    fn ferry(&self, args: &[&str], secrets: bool, extra: &[(&str, String)]) -> support::Output {
        let mut envs: Vec<(&str, String)> = self.moto.cli_env();
        envs.push(("FERRY_RETRY_BASE_MS", "5".into()));
        if secrets {
            envs.extend(self.secrets());
        }
        envs.extend(extra.iter().cloned());
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_ferry(args, &envs)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_and_sync_read_rules_and_auth_from_s3() {
    let rules = Rules::start().await;
    let (images, auth) = (
        format!("--images={}", rules.images),
        format!("--auth={}", rules.auth),
    );

    let plan = rules.ferry(&["plan", &images, &auth], true, &[]);
    plan.assert_success();
    let pairs = plan.pairs();
    assert_eq!(pairs.len(), RULES, "{plan}");
    assert!(
        pairs.contains(&(
            format!("{}/team/app:v299", rules.src.host()),
            format!("{}/mirror/app:v299", rules.dst.host())
        )),
        "{plan}"
    );

    // The auth file keeps its references: without the variables it is bad input, named.
    let unset = rules.ferry(&["plan", &images, &auth], false, &[]);
    unset.assert_code(2);
    assert!(
        unset.stderr.contains(&rules.auth) && unset.stderr.contains("SRC_USER"),
        "{unset}"
    );

    let sync = rules.ferry(&[&images, &auth], true, &[]);
    sync.assert_success();
    for tag in ["v0", "v150", "v299"] {
        assert_same_raw(
            &rules.src,
            &format!("team/app:{tag}"),
            &rules.dst,
            &format!("mirror/app:{tag}"),
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_planner_and_copier_functions_read_their_files_from_s3() {
    let rules = Rules::start().await;
    let (url, _) = rules.moto.create_queue("ferry-jobs", None).await;
    let queue = Arc::new(rules.moto.queue(&url));
    let env = rules.function_env(&[]);
    let s3 = Arc::new(rules.moto.s3());
    let planner = Planner::with_s3(Arc::new(env.clone()), queue.clone(), s3.clone())
        .await
        .unwrap();
    let summary = planner
        .handle(&fixture("schedule-event.json"))
        .await
        .unwrap();
    assert!(summary.errors.is_empty(), "{summary:?}");
    assert_eq!(summary.jobs_enqueued, RULES, "{summary:?}");

    // The copier reads the same files: the credentials come from S3's auth file and the
    // environment, and the rules from S3 admit the jobs.
    let deliveries = receive_at_least(queue.as_ref(), 3).await;
    let copier = CopierFunction::with_aws(Arc::new(env.clone()), Arc::new(Ecr::new()), s3.clone())
        .await
        .unwrap();
    let event = sqs_event(
        &deliveries
            .iter()
            .map(|d| (d.message_id.clone(), d.body.clone()))
            .collect::<Vec<_>>(),
    );
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(60);
    let response = copier
        .handle(event, Some(deadline.as_millis() as u64))
        .await;
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
    let copied = Job::parse(&deliveries[0].body).unwrap();
    let tag = copied.source.rsplit(':').next().unwrap().to_string();
    assert_same_raw(
        &rules.src,
        &format!("team/app:{tag}"),
        &rules.dst,
        &format!("mirror/app:{tag}"),
    );

    // A new object under the same key counts from the next run on, without a restart.
    let one_rule = format!(
        "{}/team/app:v0: {}/renamed/app\n",
        rules.src.host(),
        rules.dst.host()
    );
    rules
        .moto
        .put_object(BUCKET, "rules/images.yaml", one_rule)
        .await;
    let summary = planner
        .handle(&fixture("schedule-event.json"))
        .await
        .unwrap();
    assert!(summary.errors.is_empty(), "{summary:?}");
    assert_eq!(summary.jobs_enqueued, 1, "{summary:?}");

    // A missing object stops the cold start, named.
    let missing = MapEnv::new([("FERRY_IMAGES_FILE", "s3://ferry-rules/rules/gone.yaml")]);
    let error = Planner::with_s3(Arc::new(missing), queue, s3)
        .await
        .err()
        .expect("a missing images file fails")
        .to_string();
    assert!(
        error.contains("s3://ferry-rules/rules/gone.yaml: no such object"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unusable_objects_are_named_by_their_uri() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET).await;
    let malformed = moto
        .put_object(BUCKET, "bad.yaml", "127.0.0.1:1/a/b: [x\n")
        .await;
    let big = moto
        .put_object(
            BUCKET,
            "big.yaml",
            vec![b'#'; MAX_DOCUMENT_BYTES as usize + 1],
        )
        .await;
    let toml = moto.put_object(BUCKET, "rules.toml", "a = 1\n").await;
    let config = moto
        .put_object(BUCKET, "config.yaml", "images: {}\nmirrors: {}\n")
        .await;
    let relative_ca = moto
        .put_object(BUCKET, "auth.yaml", "127.0.0.1:1: {ca: certs/ca.pem}\n")
        .await;
    let images = moto
        .put_object(BUCKET, "images.yaml", "127.0.0.1:1/a/b:v1: 127.0.0.1:1/c\n")
        .await;
    let missing_key = format!("s3://{BUCKET}/rules/none.yaml");
    let missing_bucket = "s3://no-such-bucket/images.yaml".to_string();
    let cases: Vec<(Vec<String>, &str, Vec<String>)> = vec![
        (
            vec![format!("--images={missing_key}")],
            "a missing object",
            vec![format!("{missing_key}: no such object")],
        ),
        (
            vec![format!("--images={missing_bucket}")],
            "a missing bucket",
            vec![format!("{missing_bucket}: no such bucket")],
        ),
        (
            vec![format!("--images={big}")],
            "a too large object",
            vec![format!("{big}: larger than {MAX_DOCUMENT_BYTES} bytes")],
        ),
        (
            vec![format!("--images={malformed}")],
            "a malformed file",
            vec![format!("{malformed}: malformed YAML")],
        ),
        (
            vec![format!("--images={toml}")],
            "an unknown extension",
            vec![format!("{toml}: unknown file extension")],
        ),
        (
            vec![format!("--config={config}")],
            "a bad legacy config",
            vec![format!("{config}: unknown key \"mirrors\"")],
        ),
        (
            vec![
                format!("--images={images}"),
                format!("--auth={relative_ca}"),
            ],
            "a relative ca path",
            vec![format!(
                "{relative_ca}: entry \"127.0.0.1:1\": ca \"certs/ca.pem\" is relative"
            )],
        ),
        (
            vec!["--images=s3://Not_A_Bucket/images.yaml".to_string()],
            "a bad URI",
            vec!["not a bucket name".to_string()],
        ),
    ];
    for (args, case, needles) in cases {
        let mut all = vec!["plan".to_string()];
        all.extend(args);
        let envs = moto.cli_env();
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = run_ferry(&all, &envs);
        out.assert_code(2);
        for needle in needles {
            assert!(
                out.stderr.contains(&needle),
                "{case}: missing {needle:?}\n{out}"
            );
        }
        assert!(out.stdout.is_empty(), "{case}: {out}");
    }

    // S3 out of reach is not the file's fault: exit 1, as for an unreachable registry.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let mut envs = moto.cli_env();
    envs.retain(|(k, _)| *k != "AWS_ENDPOINT_URL_S3");
    envs.push(("AWS_ENDPOINT_URL_S3", closed));
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = run_ferry(&["plan", &format!("--images={images}")], &envs);
    out.assert_code(1);
    assert!(
        out.stderr
            .contains(&format!("{images}: S3 could not be reached")),
        "{out}"
    );
}

/// Warm copier and webhook functions (issue 18): with files in S3 they read them again
/// between batches (`FERRY_RELOAD_SECONDS`, 0 here so every batch reads), so an uploaded
/// images file admits jobs and pushes without a restart; an upload that does not parse
/// leaves the last good rules in use.
#[tokio::test(flavor = "multi_thread")]
async fn warm_copier_and_webhook_functions_use_an_uploaded_images_file() {
    use ::ferry::queue::{MemoryQueue, Queue as _};
    use webhook::WebhookFunction;

    let rules = Rules::start().await;
    let env = rules.function_env(&[
        ("FERRY_RELOAD_SECONDS", "0"),
        ("FERRY_WEBHOOK_SECRET", "reload-secret"),
    ]);
    let s3 = Arc::new(rules.moto.s3());
    let copier = CopierFunction::with_aws(Arc::new(env.clone()), Arc::new(Ecr::new()), s3.clone())
        .await
        .unwrap();
    let renamed = |tag: &str| {
        format!(
            r#"{{"v":1,"source":"{}/team/app:{tag}","targets":["{}/renamed/app:{tag}"]}}"#,
            rules.src.host(),
            rules.dst.host()
        )
    };
    let deadline = || {
        let at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(60);
        Some(at.as_millis() as u64)
    };
    // No rule copies to renamed/: refused (left to redeliver, and in the end to the dead-letter
    // queue), nothing written.
    let response = copier
        .handle(sqs_event(&[("m1".into(), renamed("v1"))]), deadline())
        .await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert!(rules
        .dst
        .fetch_manifest("renamed/app", "v1")
        .await
        .is_none());

    // The webhook, on the same files: a push to a repository no rule names is ignored.
    let queue = Arc::new(MemoryQueue::default());
    let webhook = WebhookFunction::with_s3(Arc::new(env.clone()), queue.clone(), s3.clone())
        .await
        .unwrap();
    let ecr_push = fixture("webhook/ecr.json");
    let outcome = webhook.handle(ecr_push.clone()).await.unwrap();
    let ignored = outcome["ignored"].as_str().unwrap_or_default();
    assert!(ignored.starts_with("no rule selects"), "{outcome}");

    // A new images file: the same job and the same push are now the rules'.
    let ecr_source = "123456789012.dkr.ecr.us-west-2.amazonaws.com/my-repository-name";
    let new_rules = format!(
        "{src}/team/app: {dst}/renamed/app\n{ecr_source}: {dst}/mirror/ecr\n",
        src = rules.src.host(),
        dst = rules.dst.host()
    );
    rules
        .moto
        .put_object(BUCKET, "rules/images.yaml", new_rules)
        .await;
    let response = copier
        .handle(sqs_event(&[("m2".into(), renamed("v1"))]), deadline())
        .await;
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
    assert_same_raw(&rules.src, "team/app:v1", &rules.dst, "renamed/app:v1");
    let outcome = webhook.handle(ecr_push.clone()).await.unwrap();
    assert_eq!(outcome["queued"], 1, "{outcome}");

    // An upload that does not parse: the last good rules stay in use.
    rules
        .moto
        .put_object(BUCKET, "rules/images.yaml", "{ not: [yaml")
        .await;
    let response = copier
        .handle(sqs_event(&[("m3".into(), renamed("v2"))]), deadline())
        .await;
    assert!(response.batch_item_failures.is_empty());
    assert_same_raw(&rules.src, "team/app:v2", &rules.dst, "renamed/app:v2");
    let outcome = webhook.handle(ecr_push).await.unwrap();
    assert_eq!(outcome["queued"], 1, "{outcome}");
    assert_eq!(queue.receive(10, Duration::ZERO).await.unwrap().len(), 2);
}
