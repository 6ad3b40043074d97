//! Registry rate limits, played by a proxy in front of a real `docker-registry` (which has
//! none): one emulating Docker Hub's pull budget (`ratelimit-limit`/`ratelimit-remaining`
//! with `;w=` windows on manifest answers, a manifest GET spending one pull, a 429
//! `TOOMANYREQUESTS` with none left once spent), and one answering 429 + `Retry-After` to
//! some requests without any budget. What got copied is checked byte for byte with skopeo.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ::ferry::registry::DEFAULT_REQUESTS_IN_FLIGHT;
use serde_json::Value;
use support::{assert_same_raw, Fault, ImageSpec, Mode, Proxy, ProxyRequest, Registry, Workdir};

/// Docker Hub's window: six hours.
const WINDOW: &str = "w=21600";

/// Docker Hub's pull budget of `budget` pulls: manifest GETs and HEADs get the budget
/// headers, a GET spends a pull, and once none is left GETs get Hub's 429.
fn docker_hub(budget: usize) -> impl Fn(&ProxyRequest) -> Option<Fault> + Send + Sync {
    let spent = AtomicUsize::new(0);
    move |r: &ProxyRequest| {
        if !r.path.contains("/manifests/") {
            return None;
        }
        let budget_headers = |left: usize| {
            vec![
                ("ratelimit-limit".to_string(), format!("{budget};{WINDOW}")),
                (
                    "ratelimit-remaining".to_string(),
                    format!("{left};{WINDOW}"),
                ),
                (
                    "docker-ratelimit-source".to_string(),
                    "127.0.0.1".to_string(),
                ),
            ]
        };
        match r.method.as_str() {
            "HEAD" => Some(Fault::AddResponseHeaders(budget_headers(
                budget.saturating_sub(spent.load(Ordering::SeqCst)),
            ))),
            "GET" => {
                let pull = spent.fetch_add(1, Ordering::SeqCst);
                if pull < budget {
                    return Some(Fault::AddResponseHeaders(budget_headers(budget - pull - 1)));
                }
                let mut refused = Fault::Respond {
                    status: 429,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}"#.to_vec(),
                };
                for (name, value) in budget_headers(0) {
                    refused = refused.with_header(&name, &value);
                }
                Some(refused)
            }
            _ => None,
        }
    }
}

/// The report's images with this status, by tag.
fn tags_with_status(report: &Value, status: &str) -> Vec<String> {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == status)
        .map(|i| {
            i["source"]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// The report's entry for `registry`.
fn usage<'a>(report: &'a Value, registry: &str) -> &'a Value {
    report["registries"]
        .as_array()
        .unwrap_or_else(|| panic!("no registries in the report: {report}"))
        .iter()
        .find(|r| r["registry"] == registry)
        .unwrap_or_else(|| panic!("no entry for {registry}: {report}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spent_pull_budget_fails_the_rest_at_once_and_says_until_when() {
    const BUDGET: usize = 3;
    const IMAGES: usize = 10;
    let src = Registry::start(Mode::Http);
    for i in 0..IMAGES {
        let spec = ImageSpec::with_layers(1300 + i as u64, 1, 256);
        src.seed_image("library/app", &format!("t{i}"), &spec).await;
    }
    let dst = Registry::start(Mode::Http);
    let hub = Proxy::start(&src, docker_hub(BUDGET));
    let work = Workdir::insecure(&[hub.host(), dst.host()]);
    let images = work.images(format!(
        "{}/library/app: {}/mirror/app\n",
        hub.host(),
        dst.host()
    ));
    // One transfer permit, so four images look up manifests at once (`--proc` × 4): when
    // the budget runs out, at most three other pulls are already on their way.
    let (out, report) = work.sync_reporting(&images, &["--proc=1"]);
    out.assert_code(1);

    let copied = tags_with_status(&report, "copied");
    assert_eq!(copied.len(), BUDGET, "{report}");
    for tag in &copied {
        assert_same_raw(
            &src,
            &format!("library/app:{tag}"),
            &dst,
            &format!("mirror/app:{tag}"),
        );
    }
    let failed: Vec<&Value> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), IMAGES - BUDGET, "{report}");
    for image in &failed {
        let reason = image["reason"].as_str().unwrap();
        assert!(reason.contains("rate limited until 20"), "{reason}");
        assert!(reason.contains("(3 pulls per 21600s; "), "{reason}");
        assert!(
            reason.ends_with(" were left when the run began)"),
            "{reason}"
        );
        assert_eq!(image["kind"], "rate_limited", "{image}");
        assert_eq!(image["attempts"], 1, "no further rounds: {image}");
    }

    // No retry storm: every manifest GET after the budget ran out was already on its way
    // when it did, none was retried, and the images left were failed without asking.
    let gets = hub.count("GET", "/manifests/");
    let refused = hub
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.status == Some(429))
        .count();
    assert_eq!(gets, BUDGET + refused, "{:?}", hub.requests());
    assert!(
        refused <= 3,
        "{refused} pulls refused: {:?}",
        hub.requests()
    );
    let paths: HashSet<String> = hub
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains("/manifests/"))
        .map(|r| r.path)
        .collect();
    assert_eq!(paths.len(), gets, "a manifest GET was sent twice");

    // The report and the summary say how many pulls were left, and until when none are.
    let hub_usage = usage(&report, &hub.host());
    assert_eq!(hub_usage["pull_limit"], BUDGET, "{hub_usage}");
    assert_eq!(hub_usage["pull_window_secs"], 21600, "{hub_usage}");
    // The first answer ferry read said how many were left: as the pulls were concurrent,
    // that is not certain to be the first pull's answer.
    let at_start = hub_usage["pulls_left_at_start"].as_u64().unwrap();
    assert!(at_start < BUDGET as u64, "{hub_usage}");
    assert_eq!(hub_usage["pulls_left"], 0, "{hub_usage}");
    let until = hub_usage["spent_until"].as_str().expect("spent_until");
    assert_eq!(hub_usage["too_many_requests"], refused, "{hub_usage}");
    let began = match at_start {
        0 => String::new(),
        n => format!(" ({n} when the run began)"),
    };
    let line = format!(
        "ferry: registry {}: 0 of 3 pulls left{began}; no pulls until {until}",
        hub.host()
    );
    assert!(out.stderr.contains(&line), "{line}\n{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_requests_lower_the_requests_in_flight_and_the_copy_completes() {
    let src = Registry::start(Mode::Http);
    let tags = ["a", "b", "c", "d"];
    for (i, tag) in tags.iter().enumerate() {
        let spec = ImageSpec::with_layers(1400 + 10 * i as u64, 3, 2048);
        src.seed_image("team/app", tag, &spec).await;
    }
    let dst = Registry::start(Mode::Http);
    // Every other GET path, the first time it is asked for, gets 429 + Retry-After: 1
    // and no budget headers; asked again, it is served.
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let throttling = Proxy::start(&src, move |r: &ProxyRequest| {
        if r.method != "GET" || r.path == "/v2/" {
            return None;
        }
        let mut seen = seen.lock().unwrap();
        let first = seen.insert(r.path.clone());
        (first && seen.len() % 2 == 1).then(|| Fault::too_many_requests(1))
    });
    let work = Workdir::insecure(&[throttling.host(), dst.host()]);
    let images = work.images(format!(
        "{}/team/app: {}/mirror/app\n",
        throttling.host(),
        dst.host()
    ));
    let (out, report) = work.sync_reporting(&images, &["--proc=4"]);
    out.assert_success();
    for tag in tags {
        assert_same_raw(
            &src,
            &format!("team/app:{tag}"),
            &dst,
            &format!("mirror/app:{tag}"),
        );
    }
    let refused = throttling
        .requests()
        .iter()
        .filter(|r| r.status == Some(429))
        .count();
    assert!(refused >= 4, "{:?}", throttling.requests());
    let usage = usage(&report, &throttling.host());
    assert_eq!(usage["too_many_requests"], refused, "{usage}");
    let lowest = usage["lowest_in_flight"]
        .as_u64()
        .unwrap_or_else(|| panic!("the requests in flight were not lowered: {usage}"));
    assert!(
        (1..DEFAULT_REQUESTS_IN_FLIGHT as u64).contains(&lowest),
        "{usage}"
    );
    assert!(usage.get("pull_limit").is_none(), "{usage}");
    assert!(usage.get("spent_until").is_none(), "{usage}");
    assert!(
        out.stderr.contains(&format!(
            "ferry: registry {}: {refused} answers 429 Too Many Requests (requests in flight lowered to {lowest})",
            throttling.host()
        )),
        "{out}"
    );
    // The target said nothing of rate limits: it has no entry.
    assert!(
        report["registries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["registry"] != dst.host()),
        "{report}"
    );
}
