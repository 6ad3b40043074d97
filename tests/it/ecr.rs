//! Amazon ECR as a target, with real parts: ECR's API is `moto_server` (its
//! GetAuthorizationToken answers user `AWS` and password `<account>-auth-token`), and the
//! registry is a real `docker-registry` over TLS whose htpasswd holds exactly that user and
//! password, marked `ecr:` in the auth file. A passthrough proxy in front of moto counts the
//! API calls by their `X-Amz-Target`; where ECR must misbehave (a failing token API, an
//! immutable tag) the proxy plays it, in front of the real server.

use std::sync::{Arc, Mutex};

use ::ferry::ecr::Ecr;
use ::ferry::env::MapEnv;
use ::ferry::job::Job;
use ::ferry::s3::S3;
use aws_lambda_events::event::sqs::SqsEvent;
use copier::CopierFunction;
use serde_json::Value;
use support::{
    assert_same_raw, run_ferry, Fault, ImageSpec, Mode, Moto, Options, Pki, Proxy, ProxyRequest,
    Registry, Workdir, MOTO_ACCESS_KEY, MOTO_REGION,
};

use crate::fixture;

/// What moto's GetAuthorizationToken gives for its default account.
const ECR_USER: &str = "AWS";
const ECR_PASSWORD: &str = "123456789012-auth-token";

/// A TLS registry that accepts exactly ECR's (moto's) credentials.
fn ecr_registry() -> Registry {
    Registry::start_with(
        Mode::BasicTls,
        Options {
            basic_credentials: Some((ECR_USER, ECR_PASSWORD)),
            ..Options::default()
        },
    )
}

/// moto behind a proxy that records each ECR API call's operation (`X-Amz-Target`'s
/// suffix) and lets a test answer some with a fault.
struct EcrApi {
    moto: Moto,
    front: Proxy,
    calls: Arc<Mutex<Vec<String>>>,
}

type ApiFault = Arc<Mutex<Option<(String, Fault)>>>;

impl EcrApi {
    fn start() -> (EcrApi, ApiFault) {
        let moto = Moto::start();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let fault: ApiFault = Arc::new(Mutex::new(None));
        let (log, chosen) = (Arc::clone(&calls), Arc::clone(&fault));
        let front = Proxy::start_url(&moto.endpoint(), move |r: &ProxyRequest| {
            let operation = r
                .header("x-amz-target")
                .and_then(|t| t.rsplit('.').next())
                .unwrap_or("")
                .to_string();
            log.lock().unwrap().push(operation.clone());
            match &*chosen.lock().unwrap() {
                Some((op, fault)) if *op == operation => Some(fault.clone()),
                _ => None,
            }
        });
        (EcrApi { moto, front, calls }, fault)
    }

    fn count(&self, operation: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| *c == operation)
            .count()
    }

    /// The environment a ferry process needs to reach this ECR API.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", MOTO_ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", MOTO_ACCESS_KEY.to_string()),
            ("AWS_REGION", MOTO_REGION.to_string()),
            ("AWS_ENDPOINT_URL_ECR", self.front.base_url()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
            ("FERRY_RETRY_BASE_MS", "5".to_string()),
        ]
    }

    fn client(&self) -> aws_sdk_ecr::Client {
        aws_sdk_ecr::Client::new(&self.moto.sdk_config())
    }

    /// The repositories moto's ECR holds.
    async fn repositories(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .client()
            .describe_repositories()
            .send()
            .await
            .unwrap()
            .repositories()
            .iter()
            .filter_map(|r| r.repository_name().map(str::to_string))
            .collect();
        names.sort();
        names
    }
}

/// A plain source holding `team/app:v1` (layers from `seed`), an ECR stand-in and its API.
async fn one_image_into_ecr(seed: u64) -> (Registry, Registry, EcrApi, ApiFault) {
    let src = Registry::start(Mode::Http);
    src.seed_image("team/app", "v1", &ImageSpec::with_layers(seed, 1, 1024))
        .await;
    let dst = ecr_registry();
    let (api, fault) = EcrApi::start();
    (src, dst, api, fault)
}

/// The images file copying `src`'s `team/app` to `mirror/app` on `target_host`.
fn app_rule(work: &Workdir, src: &Registry, target_host: &str) -> std::path::PathBuf {
    work.images(format!(
        "{}/team/app: {target_host}/mirror/app\n",
        src.host()
    ))
}

/// An auth file: `src` plain HTTP, `ecr_host` marked `ecr:` (trusting the test CA, or
/// insecure for a proxy), with `extra` YAML under the ECR entry.
fn ecr_auth(src: &Registry, ecr_host: &str, tls: bool, extra: &str) -> Workdir {
    let connect = match tls {
        true => format!("ca: {:?}", Pki::get().ca_cert.display().to_string()),
        false => "insecure: true".to_string(),
    };
    Workdir::with_auth(format!(
        "{}: {{insecure: true}}\n{ecr_host:?}:\n  ecr: {{region: us-east-1}}\n  {connect}\n{extra}",
        src.host()
    ))
}

fn sync(work: &Workdir, images: &std::path::Path, env: &[(&str, String)]) -> support::Output {
    let report = work.report_path();
    let args = [
        format!("--auth={}", work.auth().display()),
        format!("--images={}", images.display()),
        format!("--report={}", report.display()),
        "--retries=1".to_string(),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run_ferry(&args, &env)
}

fn assert_no_secret(out: &support::Output, report: &Value) {
    for text in [&out.stdout, &out.stderr, &report.to_string()] {
        assert!(
            !text.contains(ECR_PASSWORD),
            "the ECR password leaked:\n{text}"
        );
    }
}

/// Twenty images into twenty repositories, one of which exists: the API calls per run are
/// one token and one check per repository, whatever the number of requests to the registry.
#[tokio::test(flavor = "multi_thread")]
async fn a_sync_into_ecr_creates_the_missing_repositories_with_one_token() {
    const IMAGES: usize = 20;
    let src = Registry::start(Mode::Http);
    for i in 0..IMAGES {
        src.seed_image(
            &format!("team/app{i}"),
            "v1",
            &ImageSpec::with_layers(300 + i as u64, 2, 1024),
        )
        .await;
    }
    src.seed_image("team/app0", "v2", &ImageSpec::with_layers(310, 1, 1024))
        .await;
    let dst = ecr_registry();
    let (api, _) = EcrApi::start();
    // One repository exists already: found, not created.
    api.client()
        .create_repository()
        .repository_name("mirror/app19")
        .send()
        .await
        .unwrap();
    let work = ecr_auth(&src, &dst.host(), true, "");
    let rules: String = (0..IMAGES)
        .map(|i| {
            format!(
                "{0}/team/app{i}: {1}/mirror/app{i}\n",
                src.host(),
                dst.host()
            )
        })
        .collect();
    let images = work.images(rules);
    let out = sync(&work, &images, &api.env());
    out.assert_success();
    for i in 0..IMAGES {
        assert_same_raw(
            &src,
            &format!("team/app{i}:v1"),
            &dst,
            &format!("mirror/app{i}:v1"),
        );
    }
    assert_same_raw(&src, "team/app0:v2", &dst, "mirror/app0:v2");
    let mut expected: Vec<String> = (0..IMAGES).map(|i| format!("mirror/app{i}")).collect();
    expected.sort();
    assert_eq!(api.repositories().await, expected);
    eprintln!(
        "ECR API calls for a {IMAGES}-image sync: {} GetAuthorizationToken, {} DescribeRepositories, {} CreateRepository; registry requests: {}",
        api.count("GetAuthorizationToken"),
        api.count("DescribeRepositories"),
        api.count("CreateRepository"),
        dst.requests().len()
    );
    assert_eq!(api.count("GetAuthorizationToken"), 1, "{:?}", api.calls);
    // The proxy sees ferry's calls only (the test's own go to moto directly).
    assert_eq!(api.count("CreateRepository"), IMAGES - 1);
    assert_eq!(
        api.count("DescribeRepositories"),
        IMAGES,
        "once per repository"
    );
    assert_no_secret(&out, &support::read_json(&work.report_path()));

    // Again: everything in sync, nothing created, still one token per run.
    let out = sync(&work, &images, &api.env());
    out.assert_success();
    assert_eq!(api.count("CreateRepository"), IMAGES - 1);
    assert_eq!(api.count("GetAuthorizationToken"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_ecr_entries_are_refused_before_anything_is_sent() {
    let src = Registry::start(Mode::Http);
    let dst = ecr_registry();
    dst.clear_requests();
    let (api, _) = EcrApi::start();
    for (entry, named) in [
        ("ecr: {regoin: us-east-1}", "regoin"),
        ("ecr: {region: us east 1}", "us east 1"),
        ("ecr: {region: us-east-1, registry_id: '12'}", "registry_id"),
        (
            "ecr: {region: us-east-1}\n  username: u\n  password: p",
            "keep one",
        ),
        ("create: {tag_mutability: sometimes}", "sometimes"),
    ] {
        let work = Workdir::with_auth(format!(
            "{}: {{insecure: true}}\n{:?}:\n  {entry}\n",
            src.host(),
            dst.host()
        ));
        let images = app_rule(&work, &src, &dst.host());
        let out = sync(&work, &images, &api.env());
        out.assert_code(2);
        assert!(out.stderr.contains(named), "{entry}\n{out}");
        assert!(
            out.stderr.contains(&work.auth().display().to_string()),
            "{out}"
        );
    }
    assert!(api.calls.lock().unwrap().is_empty());
    assert!(dst.requests().is_empty(), "the registry was contacted");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_aws_credentials_the_image_fails_naming_the_registry_and_nothing_is_written() {
    let (src, dst, api, _) = one_image_into_ecr(320).await;
    let work = ecr_auth(&src, &dst.host(), true, "");
    let images = app_rule(&work, &src, &dst.host());
    let nowhere = work.path().join("no-such-aws-file");
    let nowhere = nowhere.display().to_string();
    let env = vec![
        ("AWS_REGION", MOTO_REGION.to_string()),
        ("AWS_ENDPOINT_URL_ECR", api.front.base_url()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ("AWS_SHARED_CREDENTIALS_FILE", nowhere.clone()),
        ("AWS_CONFIG_FILE", nowhere),
        ("FERRY_RETRY_BASE_MS", "5".to_string()),
    ];
    let out = sync(&work, &images, &env);
    out.assert_code(1);
    assert!(out.stderr.contains("no AWS credentials"), "{out}");
    assert!(out.stderr.contains(&dst.host()), "{out}");
    assert_eq!(dst.count("PUT", "/"), 0, "something was written");
    assert_eq!(dst.count("POST", "/"), 0, "something was written");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_token_api_is_retried_then_fails_the_image() {
    let (src, dst, api, fault) = one_image_into_ecr(330).await;
    *fault.lock().unwrap() = Some(("GetAuthorizationToken".into(), Fault::status(500)));
    let work = ecr_auth(&src, &dst.host(), true, "");
    let images = app_rule(&work, &src, &dst.host());
    let out = sync(&work, &images, &api.env());
    out.assert_code(1);
    assert!(out.stderr.contains("GetAuthorizationToken"), "{out}");
    assert!(out.stderr.contains(&dst.host()), "{out}");
    let calls = api.count("GetAuthorizationToken");
    // The SDK's attempts per call (4), for a bounded number of lookups.
    assert!((4..=64).contains(&calls), "{calls} token calls");
    assert_eq!(dst.count("PUT", "/"), 0, "something was written");

    // Once the API answers, the same run's files copy.
    *fault.lock().unwrap() = None;
    sync(&work, &images, &api.env()).assert_success();
    assert_same_raw(&src, "team/app:v1", &dst, "mirror/app:v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn create_false_fails_the_image_naming_the_missing_repository() {
    let (src, dst, api, _) = one_image_into_ecr(340).await;
    let work = ecr_auth(&src, &dst.host(), true, "  create: false\n");
    let images = app_rule(&work, &src, &dst.host());
    let out = sync(&work, &images, &api.env());
    out.assert_code(1);
    assert!(
        out.stderr.contains("repository mirror/app does not exist"),
        "{out}"
    );
    assert_eq!(api.count("CreateRepository"), 0);
    assert!(api.repositories().await.is_empty());
    assert_eq!(dst.count("PUT", "/"), 0, "something was written");
}

/// ECR answers a push over an existing tag of an `IMMUTABLE` repository with 400
/// `TAG_INVALID`; distribution cannot, so the proxy in front of it does.
#[tokio::test(flavor = "multi_thread")]
async fn an_immutable_tag_fails_its_image_once_and_is_never_retried() {
    let (src, dst, api, _) = one_image_into_ecr(350).await;
    let front = Proxy::start(&dst, |r: &ProxyRequest| {
        (r.method == "PUT" && r.path.contains("/manifests/")).then(|| Fault::Respond {
            status: 400,
            headers: vec![("content-type".into(), "application/json".into())],
            body: br#"{"errors":[{"code":"TAG_INVALID","message":"The image tag 'v1' already exists in the 'mirror/app' repository and cannot be overwritten because the repository is immutable."}]}"#.to_vec(),
        })
    });
    let work = ecr_auth(&src, &front.host(), false, "");
    let images = app_rule(&work, &src, &front.host());
    let out = sync(&work, &images, &api.env());
    out.assert_code(1);
    let report = support::read_json(&work.report_path());
    let image = &report["images"][0];
    assert_eq!(image["kind"], "immutable", "{report}");
    assert!(
        image["reason"].as_str().unwrap().contains("immutable"),
        "{report}"
    );
    assert_eq!(front.count("PUT", "/manifests/"), 1, "the push was retried");
}

/// The copier Lambda, called directly, copies into an ECR-marked target with no credential
/// in its configuration.
#[tokio::test(flavor = "multi_thread")]
async fn the_copier_function_copies_into_ecr_with_no_configured_credential() {
    let (src, dst, api, _) = one_image_into_ecr(360).await;
    let ca = Pki::get().ca_cert.display().to_string();
    let auth = format!(
        "{}: {{insecure: true}}\n{:?}: {{ecr: {{region: us-east-1}}, ca: {ca:?}}}\n",
        src.host(),
        dst.host()
    );
    let rules = format!("{}/team/app: {}/mirror/app\n", src.host(), dst.host());
    let env = MapEnv::new([
        ("FERRY_IMAGES", rules.as_str()),
        ("FERRY_AUTH", auth.as_str()),
        ("FERRY_RETRY_BASE_MS", "5"),
    ]);
    let mut aws = api.moto.sdk_config().into_builder();
    aws.set_endpoint_url(Some(api.front.base_url()));
    let function = CopierFunction::with_aws(
        Arc::new(env.clone()),
        Arc::new(Ecr::with_config(aws.build())),
        Arc::new(S3::new()),
    )
    .await
    .unwrap();

    let job = serde_json::json!({
        "v": 1,
        "source": format!("{}/team/app:v1", src.host()),
        "targets": [format!("{}/mirror/app:v1", dst.host())],
    });
    Job::parse(&job.to_string()).expect("a valid job");
    let mut event = fixture("sqs-event.json");
    event["Records"][0]["messageId"] = Value::from("m-1");
    event["Records"][0]["body"] = Value::from(job.to_string());
    let event: SqsEvent = serde_json::from_value(event).unwrap();
    let response = function.handle(event, None).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_same_raw(&src, "team/app:v1", &dst, "mirror/app:v1");
    assert_eq!(api.repositories().await, vec!["mirror/app".to_string()]);
    assert_eq!(api.count("GetAuthorizationToken"), 1);
}

/// ECR as a source: an all-tags rule lists the ECR repository's tags and pulls them with the
/// same password, into a registry that is not ECR's (nothing is created anywhere).
#[tokio::test(flavor = "multi_thread")]
async fn an_ecr_source_is_listed_and_pulled_with_the_roles_password() {
    let src = ecr_registry();
    src.seed_image("team/app", "v1", &ImageSpec::with_layers(370, 1, 1024))
        .await;
    src.seed_image("team/app", "v2", &ImageSpec::with_layers(371, 1, 1024))
        .await;
    let dst = Registry::start(Mode::Http);
    let (api, _) = EcrApi::start();
    let ca = Pki::get().ca_cert.display().to_string();
    let work = Workdir::with_auth(format!(
        "{:?}: {{ecr: {{region: us-east-1}}, ca: {ca:?}}}\n{}: {{insecure: true}}\n",
        src.host(),
        dst.host()
    ));
    let images = app_rule(&work, &src, &dst.host());
    let out = sync(&work, &images, &api.env());
    out.assert_success();
    assert_same_raw(&src, "team/app:v1", &dst, "mirror/app:v1");
    assert_same_raw(&src, "team/app:v2", &dst, "mirror/app:v2");
    assert_eq!(api.count("GetAuthorizationToken"), 1);
    assert_eq!(api.count("CreateRepository"), 0);
    assert_eq!(
        api.count("DescribeRepositories"),
        0,
        "a source is never created"
    );
}

/// A wildcard rule on an ECR source (issue 14): ECR serves no `_catalog`, so its
/// repositories come from `DescribeRepositories` (moto's), and the rule takes those under
/// its prefix, paths kept below the target.
#[tokio::test(flavor = "multi_thread")]
async fn a_wildcard_ecr_source_is_listed_with_the_ecr_api() {
    let src = ecr_registry();
    let (api, _) = EcrApi::start();
    for (i, repository) in ["team/app", "team/tools/db", "other/x"].iter().enumerate() {
        src.seed_image(
            repository,
            "v1",
            &ImageSpec::with_layers(380 + i as u64, 1, 512),
        )
        .await;
        api.client()
            .create_repository()
            .repository_name(*repository)
            .send()
            .await
            .unwrap();
    }
    let dst = Registry::start(Mode::Http);
    let ca = Pki::get().ca_cert.display().to_string();
    let work = Workdir::with_auth(format!(
        "{:?}: {{ecr: {{region: us-east-1}}, ca: {ca:?}}}\n{}: {{insecure: true}}\n",
        src.host(),
        dst.host()
    ));
    let images = work.images(format!("{}/team/**: {}/mirror\n", src.host(), dst.host()));
    let out = sync(&work, &images, &api.env());
    out.assert_success();
    assert_same_raw(&src, "team/app:v1", &dst, "mirror/app:v1");
    assert_same_raw(&src, "team/tools/db:v1", &dst, "mirror/tools/db:v1");
    assert!(
        dst.fetch_manifest("mirror/x", "v1").await.is_none(),
        "{out}"
    );
    assert!(api.count("DescribeRepositories") >= 1);
    assert_eq!(
        src.count("GET", "/v2/_catalog"),
        0,
        "ECR has no catalogue to ask"
    );
}
