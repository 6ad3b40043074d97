//! Transport behaviour against faults a real registry cannot produce on demand, injected by
//! a proxy in front of a real one: 5xx and 429 retried (honouring `Retry-After`), connection
//! resets retried, and `Link` pagination of tags/list followed (distribution 2.8 answers
//! every tag at once, so the proxy pages the real list the way Docker Hub and GHCR do).

use std::sync::Arc;

use support::{
    fail_first, matching, Fault, ImageSpec, Mode, Proxy, ProxyRequest, Registry, Workdir,
};

#[tokio::test(flavor = "multi_thread")]
async fn transient_faults_are_retried() {
    let reg = Registry::start(Mode::Http);
    reg.seed_image("team/app", "v1", &ImageSpec::with_layers(5, 1, 128))
        .await;
    let proxy = Proxy::passthrough(&reg);
    let unavailable = fail_first(2, matching("HEAD", "/manifests/v1"), Fault::unavailable());
    let limited = fail_first(
        1,
        matching("GET", "/tags/list"),
        Fault::too_many_requests(1),
    );
    let reset = fail_first(1, matching("GET", "/v2/"), Fault::Reset);
    proxy.set_hook(move |r: &ProxyRequest| {
        unavailable(r).or_else(|| limited(r)).or_else(|| reset(r))
    });
    let work = Workdir::insecure(&[proxy.host()]);
    let images = work.images(format!(
        "{0}/team/app:v1: dst.example.com/a\n{0}/team/app: dst.example.com/b\n",
        proxy.host()
    ));
    let started = std::time::Instant::now();
    let out = work.plan(&images, &[], &[]);
    out.assert_success();
    assert_eq!(out.pairs().len(), 2, "{out}");
    assert_eq!(proxy.faults_injected(), 4, "{:?}", proxy.requests());
    assert_eq!(proxy.count("GET", "/tags/list"), 2);
    // Retry-After: 1 was honoured (a correctness check of the wait, not a timing assertion
    // of speed: the delay is the server's to ask for).
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn persistent_server_errors_fail_the_rule_after_retries() {
    let reg = Registry::start(Mode::Http);
    reg.seed_image("team/app", "v1", &ImageSpec::with_layers(6, 1, 128))
        .await;
    let proxy = Proxy::passthrough(&reg);
    proxy.set_hook(fail_first(
        usize::MAX,
        matching("HEAD", "/manifests/"),
        Fault::status(502),
    ));
    let work = Workdir::insecure(&[proxy.host()]);
    let images = work.images(format!("{}/team/app:v1: dst.example.com/a\n", proxy.host()));
    let out = work.plan(&images, &[], &[]);
    out.assert_code(1);
    assert!(out.stderr.contains("502"), "{out}");
    assert_eq!(
        proxy.count("HEAD", "/manifests/v1"),
        5,
        "five attempts in all"
    );
}

/// Serves the real tag list in pages of `page` with `Link` headers.
fn paging_hook(
    tags: Arc<Vec<String>>,
    repo: &'static str,
    page: usize,
) -> impl Fn(&ProxyRequest) -> Option<Fault> + Send + Sync {
    let path = format!("/v2/{repo}/tags/list");
    pages_hook(
        tags,
        path,
        String::new(),
        page,
        move |chunk| serde_json::json!({"name": repo, "tags": chunk}),
    )
}

/// Serves `items` at `path` in pages of `page`, each page's body made by `body`, with a
/// `Link` to the next page (`link_base` before the path: empty for a relative link, as
/// distribution writes them, or a scheme and host for an absolute one).
fn pages_hook(
    items: Arc<Vec<String>>,
    path: String,
    link_base: String,
    page: usize,
    body: impl Fn(&[&String]) -> serde_json::Value + Send + Sync,
) -> impl Fn(&ProxyRequest) -> Option<Fault> + Send + Sync {
    move |r: &ProxyRequest| {
        if r.method != "GET" || !r.path.starts_with(&path) {
            return None;
        }
        let last = r
            .path
            .split_once("last=")
            .map(|(_, l)| l.split('&').next().unwrap_or("").replace("%2F", "/"));
        let start = last.map_or(0, |l| {
            items
                .iter()
                .position(|t| *t == l)
                .map_or(items.len(), |i| i + 1)
        });
        let chunk: Vec<&String> = items.iter().skip(start).take(page).collect();
        let mut fault = Fault::Respond {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body(&chunk).to_string().into_bytes(),
        };
        if start + page < items.len() {
            let next = format!(
                "<{link_base}{path}?n={page}&last={}>; rel=\"next\"",
                chunk.last().unwrap()
            );
            fault = fault.with_header("link", &next);
        }
        Some(fault)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_pagination_is_followed() {
    let reg = Registry::start(Mode::Http);
    let image = reg
        .seed_image("team/app", "t000", &ImageSpec::with_layers(7, 1, 128))
        .await;
    let mut tags: Vec<String> = (1..230).map(|i| format!("t{i:03}")).collect();
    reg.tag_many("team/app", &tags, &image).await;
    tags.insert(0, "t000".into());
    let listed = reg.list_tags("team/app").await;
    let proxy = Proxy::passthrough(&reg);
    proxy.set_hook(paging_hook(Arc::new(listed), "team/app", 50));
    let work = Workdir::insecure(&[proxy.host()]);
    let images = work.images(format!("{}/team/app: dst.example.com/a\n", proxy.host()));
    let out = work.plan(&images, &[], &[]);
    out.assert_success();
    let planned: Vec<String> = out
        .pairs()
        .into_iter()
        .map(|(_, t)| t.rsplit(':').next().unwrap().to_string())
        .collect();
    tags.sort();
    assert_eq!(planned, tags);
    assert_eq!(
        proxy.count("GET", "/tags/list"),
        5,
        "230 tags in pages of 50"
    );
}

/// `_catalog` pagination through the paginating proxy (issue 14): a proxy in front of a
/// real registry serves its repositories in pages of 4 with absolute `Link` URLs (as some
/// registries write them, unlike distribution's relative ones), and a wildcard rule takes
/// every page.
#[tokio::test(flavor = "multi_thread")]
async fn catalog_pagination_is_followed_through_a_proxy() {
    let reg = Registry::start(Mode::Http);
    let image = ImageSpec::with_layers(8, 1, 128);
    let mut repos: Vec<String> = (0..7).map(|i| format!("team/r{i}")).collect();
    repos.extend((0..6).map(|i| format!("team/deep/d{i}")));
    for repo in &repos {
        reg.seed_image(repo, "v1", &image).await;
    }
    repos.sort();
    let proxy = Proxy::passthrough(&reg);
    proxy.set_hook(pages_hook(
        Arc::new(repos.clone()),
        "/v2/_catalog".into(),
        format!("http://{}", proxy.host()),
        4,
        |chunk| serde_json::json!({ "repositories": chunk }),
    ));
    let work = Workdir::insecure(&[proxy.host()]);
    let images = work.images(format!("{}/team/**: dst.example.com/b\n", proxy.host()));
    let out = work.plan(&images, &[], &[]);
    out.assert_success();
    let mut planned: Vec<String> = out.pairs().into_iter().map(|(_, t)| t).collect();
    planned.sort();
    let expected: Vec<String> = repos
        .iter()
        .map(|r| format!("dst.example.com/b/{}:v1", r.strip_prefix("team/").unwrap()))
        .collect();
    assert_eq!(planned, expected, "{out}");
    assert_eq!(
        proxy.count("GET", "/v2/_catalog"),
        4,
        "13 repositories in pages of 4"
    );
}
