//! `ferry discover` end to end: real-world manifests of every kind (`tests/fixtures/discover`:
//! plain YAML, JSON, `kubectl get -o json` List output, a rendered Helm chart), a live
//! cluster through a stand-in API server (`support::kube`: no real one can be installed
//! here, so it speaks the list endpoints over TLS with the test CA, bearer-token and
//! client-certificate auth, paging and a forbidden namespace), kubeconfig exec plugins and
//! in-cluster credentials, bad input, and finally a discovered file copied between real
//! registries and checked with skopeo.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{json, Value};
use support::{
    client_cert, ferry, free_port, run_ferry, workspace_root, Caller, ImageSpec, KubeApi, Mode,
    Output, Pair, Pki, Registry, Workdir, ADMIN_TOKEN, FAST_RETRIES, LIMITED_TOKEN,
};

fn manifests() -> PathBuf {
    workspace_root().join("tests/fixtures/discover/manifests")
}

fn discover(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut all = vec!["discover"];
    all.extend_from_slice(args);
    let mut all_envs = vec![FAST_RETRIES];
    all_envs.extend_from_slice(envs);
    run_ferry(&all, &all_envs)
}

const POSTGRES: &str = "sha256:4aea012537edfad80f98d870a36e6b90b4c09b27be7f4b4759d72db863baeebb";

/// What every fixture manifest uses, one rule per repository, each commented with its
/// workloads; the Helm placeholder image is a warning, not a rule.
const EVERY_MANIFEST: &str = "\
# Images the workloads use, found by `ferry discover`: edit, then `ferry plan`/`ferry sync`.
# kube-system/DaemonSet/fluent-bit
cr.fluentbit.io/fluent/fluent-bit:3.0: ''
# Pod/release-shop-test-connection, default/Deployment/web, shop/Deployment/api
docker.io/library/busybox:1.36: ''
# default/Deployment/web
docker.io/library/nginx:1.25: ''
# default/StatefulSet/db
docker.io/library/postgres@sha256:4aea012537edfad80f98d870a36e6b90b4c09b27be7f4b4759d72db863baeebb: ''
# batch/CronJob/report, batch/Job/backfill
docker.io/library/python:3.12-slim: ''
# Deployment/release-shop
docker.io/library/redis:7.2: ''
# Deployment/release-shop, Rollout/release-shop-canary
ghcr.io/example/shop:2.4.1,2.5.0: ''
# default/Deployment/web
quay.io/prometheus/nginx-exporter:v1.1.0: ''
# shop/Deployment/api
registry.example.com/team/api:3.1: ''
";

#[test]
fn manifests_of_every_kind_become_one_sorted_rule_per_repository() {
    let dir = manifests();
    let out = discover(&["-f", dir.to_str().unwrap()], &[]);
    out.assert_success();
    assert_eq!(out.stdout, EVERY_MANIFEST, "{out}");
    assert!(
        out.stderr.contains(
            "batch/CronJob/report: container \"uploader\" has image \"{{ .Values.uploader }}\""
        ),
        "{out}"
    );

    // The same files named one by one, in another order, give the same file.
    let files: Vec<String> = [
        "kubectl-get.json",
        "chart/rendered.yaml",
        "app/logging.json",
        "app/batch.yaml",
        "app/web.yaml",
    ]
    .iter()
    .map(|f| dir.join(f).display().to_string())
    .collect();
    let mut args = Vec::new();
    for file in &files {
        args.extend(["-f", file.as_str()]);
    }
    assert_eq!(discover(&args, &[]).assert_success().stdout, EVERY_MANIFEST);

    // Exclusions and namespaces; objects that name no namespace (the chart) always count.
    let work = Workdir::new();
    let output = work.path().join("images.json");
    let out = discover(
        &[
            "-f",
            dir.to_str().unwrap(),
            "--exclude-namespace",
            "kube-system",
            "-n",
            "default",
            "-n",
            "kube-system",
            "--format",
            "json",
            "-o",
            output.to_str().unwrap(),
        ],
        &[],
    );
    out.assert_success();
    assert_eq!(out.stdout, "");
    let written: Value = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    assert_eq!(
        written,
        json!({
            "docker.io/library/busybox:1.36": "",
            "docker.io/library/nginx:1.25": "",
            format!("docker.io/library/postgres@{POSTGRES}"): "",
            "docker.io/library/redis:7.2": "",
            "ghcr.io/example/shop:2.4.1,2.5.0": "",
            "quay.io/prometheus/nginx-exporter:v1.1.0": "",
        })
    );
}

#[test]
fn pin_writes_what_the_pods_run_and_stdin_reads_kubectl_output() {
    let listing = std::fs::read(manifests().join("kubectl-get.json")).unwrap();
    let mut child = ferry()
        .args([
            "discover",
            "-f",
            "-",
            "--pin",
            "--to",
            "mirror.example.com/shop",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&listing).unwrap();
    let out: Output = child.wait_with_output().unwrap().into();
    out.assert_success();
    let a1 = format!("sha256:{}", "a1".repeat(32));
    let b2 = format!("sha256:{}", "b2".repeat(32));
    assert_eq!(
        out.stdout,
        format!(
            "# Images the workloads use, found by `ferry discover`: edit, then `ferry plan`/`ferry sync`.\n\
             # shop/Deployment/api\n\
             docker.io/library/busybox@{b2}: mirror.example.com/shop/library/busybox\n\
             # shop/Deployment/api\n\
             registry.example.com/team/api@{a1}: mirror.example.com/shop/team/api\n"
        ),
        "{out}"
    );
}

#[test]
fn bad_manifests_name_the_file_and_document_and_write_nothing() {
    let work = Workdir::new();
    let dir = work.path().join("m");
    work.write(
        "m/good.yaml",
        "kind: Pod\nmetadata: {name: a}\nspec: {containers: [{image: nginx}]}\n",
    );
    work.write("m/bad.yaml", "kind: Pod\n---\nkind: Deployment\nspec: [\n");
    let output = work.path().join("out.yaml");
    let out = discover(
        &["-f", dir.to_str().unwrap(), "-o", output.to_str().unwrap()],
        &[],
    );
    out.assert_code(2);
    assert!(
        out.stderr.contains("bad.yaml, document 2: malformed YAML"),
        "{out}"
    );
    assert!(!output.exists(), "nothing is written on an error");
    let out = discover(&["-f", work.path().join("missing").to_str().unwrap()], &[]);
    out.assert_code(2);
    assert!(out.stderr.contains("missing: cannot read"), "{out}");
    let out = discover(
        &["-f", dir.to_str().unwrap(), "--to", "Not A Registry"],
        &[],
    );
    out.assert_code(2);
    let out = discover(&["-f", dir.to_str().unwrap(), "-n", "Bad_NS"], &[]);
    out.assert_code(2);
    assert!(out.stderr.contains("not a namespace name"), "{out}");
}

/// A pod template with these images, as `spec.template`.
fn template(images: &[&str]) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
        .collect();
    json!({"spec": {"containers": containers}})
}

fn object(kind: &str, namespace: &str, name: &str, owner: Option<(&str, &str)>) -> Value {
    let mut metadata = json!({"name": name, "namespace": namespace, "uid": format!("uid-{name}")});
    if let Some((kind, name)) = owner {
        metadata["ownerReferences"] =
            json!([{"kind": kind, "name": name, "uid": format!("uid-{name}"), "controller": true}]);
    }
    json!({"kind": kind, "apiVersion": "v1", "metadata": metadata})
}

fn pod(namespace: &str, name: &str, owner: (&str, &str), image: &str, digest: &str) -> Value {
    let mut pod = object("Pod", namespace, name, Some(owner));
    pod["spec"] = json!({"containers": [{"name": "c0", "image": image}]});
    pod["status"] = json!({"containerStatuses": [{"name": "c0", "image": image,
        "imageID": format!("{image}@{digest}")}]});
    pod
}

fn with_template(mut object: Value, images: &[&str]) -> Value {
    object["spec"] = json!({"template": template(images)});
    object
}

const NGINX_RUNNING: &str =
    "sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// A small cluster: a Deployment with its ReplicaSet and three pods, a CronJob with its Job
/// and pod, a DaemonSet in kube-system, a pod an operator's CRD owns, and a namespace
/// (`secret`) the limited token may not read.
fn cluster() -> KubeApi {
    let mut cronjob = object("CronJob", "batch", "report", None);
    cronjob["spec"] = json!({"jobTemplate": {"spec": {"template": template(&["python:3.12"])}}});
    let objects = vec![
        with_template(
            object("Deployment", "default", "web", None),
            &["nginx:1.25", "busybox:1.36"],
        ),
        with_template(
            object(
                "ReplicaSet",
                "default",
                "web-7f9",
                Some(("Deployment", "web")),
            ),
            &["nginx:1.25"],
        ),
        pod(
            "default",
            "web-7f9-a",
            ("ReplicaSet", "web-7f9"),
            "nginx:1.25",
            NGINX_RUNNING,
        ),
        pod(
            "default",
            "web-7f9-b",
            ("ReplicaSet", "web-7f9"),
            "nginx:1.25",
            NGINX_RUNNING,
        ),
        pod(
            "default",
            "web-7f9-c",
            ("ReplicaSet", "web-7f9"),
            "nginx:1.25",
            NGINX_RUNNING,
        ),
        cronjob,
        with_template(
            object("Job", "batch", "report-2890", Some(("CronJob", "report"))),
            &["python:3.12"],
        ),
        pod(
            "batch",
            "report-2890-x",
            ("Job", "report-2890"),
            "python:3.12",
            NGINX_RUNNING.replace('1', "2").as_str(),
        ),
        with_template(
            object("DaemonSet", "kube-system", "kube-proxy", None),
            &["registry.k8s.io/kube-proxy:v1.30.0"],
        ),
        pod(
            "operators",
            "db-0",
            ("PostgresCluster", "db"),
            "postgres:16",
            &NGINX_RUNNING.replace('1', "3"),
        ),
        with_template(
            object("Deployment", "secret", "vault", None),
            &["hashicorp/vault:1.17"],
        ),
    ];
    KubeApi::start(objects, &["empty"], "secret")
}

fn kubeconfig(work: &Workdir, api: &KubeApi, user_yaml: &str) -> String {
    work.write("kubeconfig", api.kubeconfig(user_yaml))
        .display()
        .to_string()
}

fn rules(stdout: &str) -> Vec<(String, String)> {
    // The comment above each rule, paired with the rule's source.
    let lines: Vec<&str> = stdout.lines().skip(1).collect();
    lines
        .chunks(2)
        .map(|pair| {
            let comment = pair[0].trim_start_matches("# ").to_string();
            let source = pair[1]
                .rsplit_once(": ")
                .map_or(pair[1], |(s, _)| s)
                .to_string();
            (source, comment)
        })
        .collect()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn a_live_cluster_is_listed_cluster_wide_in_pages() {
    let api = cluster();
    let work = Workdir::new();
    let config = kubeconfig(&work, &api, &format!("    token: {ADMIN_TOKEN}\n"));
    let out = discover(&["--kubeconfig", &config], &[]);
    out.assert_success();
    assert_eq!(
        rules(&out.stdout),
        owned(&[
            ("docker.io/hashicorp/vault:1.17", "secret/Deployment/vault"),
            ("docker.io/library/busybox:1.36", "default/Deployment/web"),
            ("docker.io/library/nginx:1.25", "default/Deployment/web"),
            (
                "docker.io/library/postgres:16",
                "operators/PostgresCluster/db"
            ),
            ("docker.io/library/python:3.12", "batch/CronJob/report"),
            (
                "registry.k8s.io/kube-proxy:v1.30.0",
                "kube-system/DaemonSet/kube-proxy"
            ),
        ]),
        "{out}"
    );
    let requests = api.requests();
    assert!(requests
        .iter()
        .all(|r| r.caller == Caller::Admin && r.status == 200));
    assert!(
        requests.iter().all(|r| !r.path.contains("/namespaces")),
        "one list per kind"
    );
    let pods: Vec<_> = requests
        .iter()
        .filter(|r| r.path == "/api/v1/pods")
        .collect();
    assert_eq!(pods.len(), 3, "5 pods, 2 a page: {pods:?}");
    assert!(pods[0].query == "limit=500" && pods[2].query == "limit=500&continue=next-4");

    // Excluded namespaces and --pin on the same cluster.
    let out = discover(
        &[
            "--kubeconfig",
            &config,
            "--exclude-namespace",
            "secret",
            "--exclude-namespace",
            "kube-system",
            "--pin",
        ],
        &[],
    );
    out.assert_success();
    let python_running = NGINX_RUNNING.replace('1', "2");
    assert_eq!(
        rules(&out.stdout),
        owned(&[
            ("docker.io/library/busybox:1.36", "default/Deployment/web"),
            (
                &format!("docker.io/library/nginx@{NGINX_RUNNING}"),
                "default/Deployment/web"
            ),
            (
                &format!(
                    "docker.io/library/postgres@{}",
                    NGINX_RUNNING.replace('1', "3")
                ),
                "operators/PostgresCluster/db"
            ),
            (
                &format!("docker.io/library/python@{python_running}"),
                "batch/CronJob/report"
            ),
        ]),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("--pin: no running pod reports the digest of docker.io/library/busybox:1.36"),
        "{out}"
    );
}

#[test]
fn a_namespace_the_credentials_may_not_read_is_a_warning_unless_named() {
    let api = cluster();
    let work = Workdir::new();
    let config = kubeconfig(&work, &api, &format!("    token: {LIMITED_TOKEN}\n"));
    let output = work.path().join("images.yaml");
    let out = discover(
        &["--kubeconfig", &config, "-o", output.to_str().unwrap()],
        &[],
    );
    out.assert_success();
    assert!(
        out.stderr
            .contains("warning: namespace secret: the credentials may not list"),
        "{out}"
    );
    let written = std::fs::read_to_string(&output).unwrap();
    assert!(
        !written.contains("vault") && written.contains("kube-proxy"),
        "{written}"
    );
    let requests = api.requests();
    assert!(requests.iter().any(|r| r.path == "/api/v1/namespaces"));
    assert!(requests
        .iter()
        .any(|r| r.path == "/apis/apps/v1/namespaces/empty/deployments"));

    // Named, the same namespace is an error, and nothing is written.
    std::fs::remove_file(&output).unwrap();
    let out = discover(
        &[
            "--kubeconfig",
            &config,
            "-n",
            "default",
            "-n",
            "secret",
            "-o",
            output.to_str().unwrap(),
        ],
        &[],
    );
    out.assert_code(2);
    assert!(
        out.stderr.contains(
            "context test: the credentials may not list pods in namespace secret (403 Forbidden)"
        ),
        "{out}"
    );
    assert!(!output.exists());
}

#[test]
fn client_certificates_and_refused_or_unreachable_servers() {
    let api = cluster();
    let work = Workdir::new();
    let (cert, key) = client_cert();
    let config = kubeconfig(
        &work,
        &api,
        &format!(
            "    client-certificate: {:?}\n    client-key: {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    );
    let out = discover(&["--kubeconfig", &config, "-n", "default"], &[]);
    out.assert_success();
    assert_eq!(
        rules(&out.stdout),
        owned(&[
            ("docker.io/library/busybox:1.36", "default/Deployment/web"),
            ("docker.io/library/nginx:1.25", "default/Deployment/web"),
        ]),
        "{out}"
    );
    assert!(api
        .requests()
        .iter()
        .all(|r| r.caller == Caller::ClientCert));

    // An expired token: 401, exit 2, and the token never printed.
    let config = kubeconfig(&work, &api, "    token: expired-s3cret-token\n");
    let out = discover(&["--kubeconfig", &config], &[]);
    out.assert_code(2);
    assert!(out.stderr.contains("context test: the API server"), "{out}");
    assert!(
        out.stderr
            .contains("refused the credentials (401 Unauthorized)"),
        "{out}"
    );
    assert!(!out.stderr.contains("expired-s3cret-token"), "{out}");

    // Nothing listening: exit 1, naming the context and server.
    let config = work.write(
        "unreachable",
        format!(
            "current-context: gone\nclusters:\n- name: c\n  cluster: {{server: 'https://127.0.0.1:{}', certificate-authority: {:?}}}\n\
             contexts:\n- name: gone\n  context: {{cluster: c, user: u}}\nusers:\n- name: u\n  user: {{token: t}}\n",
            free_port(),
            Pki::get().ca_cert.display().to_string()
        ),
    );
    let out = discover(&["--kubeconfig", config.to_str().unwrap()], &[]);
    out.assert_code(1);
    assert!(
        out.stderr
            .contains("context gone: cannot reach the API server https://127.0.0.1:"),
        "{out}"
    );
}

fn plugin(work: &Workdir, name: &str, body: &str) -> PathBuf {
    let path = work.write(name, format!("#!/bin/sh\n{body}"));
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn exec_user(command: &Path, api_version: &str) -> String {
    format!(
        "    exec:\n      apiVersion: {api_version}\n      command: {:?}\n      args: [--cluster, test]\n\
         \x20     env:\n      - name: PLUGIN_EXPECTS\n        value: hello\n      interactiveMode: Never\n      provideClusterInfo: true\n",
        command.display().to_string()
    )
}

#[test]
fn exec_plugins_and_in_cluster_service_accounts_log_in() {
    let api = cluster();
    let work = Workdir::new();
    let good = plugin(
        &work,
        "get-token",
        &format!(
            "[ \"$1 $2\" = '--cluster test' ] || {{ echo \"bad args: $*\" >&2; exit 3; }}\n\
             [ \"$PLUGIN_EXPECTS\" = hello ] || {{ echo 'env not passed' >&2; exit 4; }}\n\
             case \"$KUBERNETES_EXEC_INFO\" in *'\"interactive\":false'*'{}'*) ;; *) echo \"exec info: $KUBERNETES_EXEC_INFO\" >&2; exit 5;; esac\n\
             printf '{{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{ADMIN_TOKEN}\",\"expirationTimestamp\":\"2099-01-01T00:00:00Z\"}}}}'\n",
            api.server()
        ),
    );
    let config = kubeconfig(
        &work,
        &api,
        &exec_user(&good, "client.authentication.k8s.io/v1beta1"),
    );
    let out = discover(&["--kubeconfig", &config, "-n", "batch"], &[]);
    out.assert_success();
    assert_eq!(
        rules(&out.stdout),
        owned(&[("docker.io/library/python:3.12", "batch/CronJob/report")]),
        "{out}"
    );
    assert!(api.requests().iter().all(|r| r.caller == Caller::Admin));

    // A failing plugin: its standard error is quoted, its standard output (a token) never.
    let failing = plugin(
        &work,
        "expired",
        "echo 'plugin-stdout-s3cret'\necho 'login expired: run aws sso login' >&2\nexit 1\n",
    );
    let config = kubeconfig(
        &work,
        &api,
        &exec_user(&failing, "client.authentication.k8s.io/v1"),
    );
    let out = discover(&["--kubeconfig", &config], &[]);
    out.assert_code(1);
    assert!(
        out.stderr.contains("exec credential plugin")
            && out.stderr.contains("login expired: run aws sso login"),
        "{out}"
    );
    assert!(!out.stderr.contains("plugin-stdout-s3cret"), "{out}");

    // A pod's service account, with no kubeconfig anywhere.
    let sa = work.path().join("serviceaccount");
    std::fs::create_dir_all(&sa).unwrap();
    std::fs::write(sa.join("token"), format!("{ADMIN_TOKEN}\n")).unwrap();
    std::fs::copy(&Pki::get().ca_cert, sa.join("ca.crt")).unwrap();
    let port = api.server().rsplit_once(':').unwrap().1.to_string();
    let out = discover(
        &["-n", "kube-system"],
        &[
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", &port),
            ("FERRY_SERVICE_ACCOUNT_DIR", sa.to_str().unwrap()),
        ],
    );
    out.assert_success();
    assert_eq!(
        rules(&out.stdout),
        owned(&[(
            "registry.k8s.io/kube-proxy:v1.30.0",
            "kube-system/DaemonSet/kube-proxy"
        )]),
        "{out}"
    );
    let out = discover(&[], &[]);
    out.assert_code(2);
    assert!(out.stderr.contains("no cluster to read"), "{out}");
}

/// Manifests naming images on a real registry, discovered with `--to`, planned and synced:
/// every image lands under the target namespace, byte for byte.
#[tokio::test(flavor = "multi_thread")]
async fn discovered_images_copy_between_real_registries() {
    let src = Registry::start(Mode::Http);
    src.seed_image("library/nginx", "1.25", &ImageSpec::with_layers(1, 2, 2048))
        .await;
    src.seed_image("team/init", "1", &ImageSpec::with_layers(2, 1, 1024))
        .await;
    src.seed_image("team/worker", "2.0", &ImageSpec::with_layers(3, 1, 1024))
        .await;
    let tool = src
        .seed_image("team/tool", "0.9", &ImageSpec::with_layers(4, 1, 1024))
        .await;
    let pair = Pair::with_source(src, Mode::Http);
    let (s, d) = (pair.src.host(), pair.dst.host());
    pair.write(
        "manifests/app.yaml",
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: shop}}\nspec:\n  template:\n    spec:\n\
             \x20     initContainers: [{{name: init, image: '{s}/team/init:1'}}]\n\
             \x20     containers:\n      - {{name: web, image: '{s}/library/nginx:1.25'}}\n      - {{name: tool, image: '{s}/team/tool@{}'}}\n\
             \x20     - {{name: mirrored, image: '{d}/already/there:1'}}\n",
            tool.digest
        ),
    );
    pair.write(
        "manifests/jobs/cron.json",
        json!({"kind": "CronJob", "metadata": {"name": "nightly", "namespace": "shop"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
                {"name": "w", "image": format!("{s}/team/worker:2.0")},
                {"name": "again", "image": format!("{s}/library/nginx:1.25")}]}}}}}})
        .to_string(),
    );
    let images = pair.path().join("images.yaml");
    let out = discover(
        &[
            "-f",
            pair.path().join("manifests").to_str().unwrap(),
            "--to",
            &format!("{d}/mirror"),
            "-o",
            images.to_str().unwrap(),
        ],
        &[],
    );
    out.assert_success();
    assert!(
        out.stderr.contains(&format!(
            "{d}/already/there:1 is already on the --to registry"
        )),
        "{out}"
    );

    // ferry's own rules parser reads it: plan resolves every rule against the source.
    let plan = pair.plan(&images, &[], &[]);
    plan.assert_success();
    let mut pairs = plan.pairs();
    pairs.sort();
    let expected = |from: &str, to: &str| (format!("{s}/{from}"), format!("{d}/mirror/{to}"));
    assert_eq!(
        pairs,
        vec![
            expected("library/nginx:1.25", "library/nginx:1.25"),
            expected("team/init:1", "team/init:1"),
            expected(
                &format!("team/tool@{}", tool.digest),
                &format!("team/tool@{}", tool.digest)
            ),
            expected("team/worker:2.0", "team/worker:2.0"),
        ],
        "{plan}"
    );

    pair.sync(&images, &[]).assert_success();
    pair.assert_copied("library/nginx:1.25", "mirror/library/nginx:1.25");
    pair.assert_copied("team/init:1", "mirror/team/init:1");
    pair.assert_copied("team/worker:2.0", "mirror/team/worker:2.0");
    pair.assert_copied(
        &format!("team/tool@{}", tool.digest),
        &format!("mirror/team/tool@{}", tool.digest),
    );
}
