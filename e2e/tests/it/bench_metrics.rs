//! `bench_metrics_cost` (ignored; run by `scripts/bench.sh`): CPU the services spend on
//! `/metrics` at a 1 s scrape interval.
//!
//! Under a steady load of 1000 lead changes/s the whole stack (relay, projector, gateway and the
//! load itself, all in this process) uses some CPU per second: the baseline. Then each
//! service's `/metrics` is scraped back to back, with the registries as the load left them, and
//! the process CPU time per scrape is taken — client and server side together, so an upper
//! bound. At one scrape a second that is the share of one core the scrape costs.

use std::time::{Duration, Instant};

use crate::bench_util::{
    Load, emit_figure, env_usize, load_average, process_cpu_seconds, runs, seed_background_leads,
    wait_projected,
};
use crate::support::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_metrics_cost() {
    let seconds = env_usize("BENCH_SECONDS", 10) as u64;
    let scrapes = env_usize("BENCH_SCRAPES", 300);
    let stack = Stack::start().await;
    stack.nats.skip_catalog_check("benchmark: the integration tests validate events against the catalog; here it would only lengthen the run");
    let pool = stack.db.pool.clone();
    let ids = seed_background_leads(&pool, "m", 100, 10_000).await;
    wait_projected(&pool).await;
    let endpoints = [
        ("relay", format!("http://{}/metrics", stack.relay_ops)),
        (
            "projector",
            format!("http://{}/metrics", stack.projector_ops),
        ),
        ("gateway", stack.url("/metrics")),
    ];
    let http = reqwest::Client::new();
    for run in 0..runs() {
        let (cpu, started) = (process_cpu_seconds(), Instant::now());
        let load = Load::start(pool.clone(), ids.clone(), 1000);
        // Scrape as Prometheus would, once a second, so the registries are exercised.
        let end = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_secs(1)).await;
            for (_, url) in &endpoints {
                http.get(url).send().await.unwrap().bytes().await.unwrap();
            }
        }
        let rate = load.stop().await;
        let stack_cores = (process_cpu_seconds() - cpu) / started.elapsed().as_secs_f64();
        wait_projected(&pool).await;
        for (service, url) in &endpoints {
            let body = http.get(url).send().await.unwrap().bytes().await.unwrap();
            let (cpu, started) = (process_cpu_seconds(), Instant::now());
            for _ in 0..scrapes {
                http.get(url).send().await.unwrap().bytes().await.unwrap();
            }
            let per_scrape = (process_cpu_seconds() - cpu) / scrapes as f64;
            let wall = started.elapsed().as_secs_f64() / scrapes as f64;
            // Percent of one core at one scrape per second.
            let percent = per_scrape * 100.0;
            println!(
                "run {run}: {service}: /metrics {} bytes, {:.3} ms CPU per scrape ({:.3} ms wall) = {percent:.3} % of a core at 1 s; stack under load ({rate:.0} changes/s) {:.1} % of a core (load average {})",
                body.len(),
                per_scrape * 1000.0,
                wall * 1000.0,
                stack_cores * 100.0,
                load_average()
            );
            emit_figure(
                &format!("metrics_cpu_{service}"),
                run,
                percent,
                "% of a core",
                Some(stack_cores * 100.0),
            );
        }
    }
}
