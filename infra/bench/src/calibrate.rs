//! The registries' own cost per request, measured before the scenarios so a reader can
//! tell the copiers' cost from the registries': `HEAD` of one manifest, 8 in flight over
//! keep-alive connections, against a fresh registry in each mode, authorised the way the
//! harness's registry client does it (`RegistryApi::authorization`).

use std::time::Instant;

use support::{Mode, Registry};

use crate::{report, runner};

/// The registries' own cost per request: `HEAD` of one manifest, 8 at a time over
/// keep-alive connections, against a registry in each mode.
pub(crate) async fn calibrate() -> anyhow::Result<Vec<report::Calibration>> {
    use futures::StreamExt;
    const N: usize = 2000;
    let mut rows = Vec::new();
    for mode in [Mode::Http, Mode::BasicHttp, Mode::BasicTls, Mode::Token] {
        let reg = Registry::start(mode);
        let image = support::ImageSpec::with_layers(7, 1, 1024);
        reg.seed_image("cal/img", "1", &image).await;
        let http = support::net::client_builder().build()?;
        let url = format!("{}/v2/cal/img/manifests/1", reg.base_url());
        let auth = reg.api().authorization(&["repository:cal/img:pull"]);
        let head = |_| {
            let (http, url, auth) = (http.clone(), url.clone(), auth.clone());
            async move {
                let mut req = http.head(url).header("accept", support::ALL_MANIFEST_TYPES);
                if let Some(a) = auth {
                    req = req.header("authorization", a);
                }
                let resp = req.send().await?;
                anyhow::ensure!(resp.status() == 200, "HEAD answered {}", resp.status());
                Ok::<_, anyhow::Error>(())
            }
        };
        let run = |n: usize| {
            futures::stream::iter(0..n)
                .map(head)
                .buffer_unordered(8)
                .collect::<Vec<_>>()
        };
        for r in run(100).await {
            r?;
        }
        let cpu0 = runner::process_cpu_s(reg.pid());
        let t = Instant::now();
        for r in run(N).await {
            r?;
        }
        let wall = t.elapsed().as_secs_f64();
        let cpu = runner::process_cpu_s(reg.pid()) - cpu0;
        let row = report::Calibration {
            mode: format!("{mode:?}"),
            requests: N,
            wall_s: wall,
            requests_per_s: N as f64 / wall,
            registry_cpu_ms_per_request: cpu * 1000.0 / N as f64,
        };
        eprintln!(
            "calibration {:<10} {:>7.0} HEAD/s, registry CPU {:.2} ms per request",
            row.mode, row.requests_per_s, row.registry_cpu_ms_per_request
        );
        rows.push(row);
    }
    Ok(rows)
}
