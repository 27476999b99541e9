//! Throughput of the emulator, measured in-process over loopback HTTP:
//! small GETs per second (`GET /datasets?limit=10` from concurrent clients) and MiB/s for one
//! streamed export download.
//!
//! `cargo run --release --example emulator_bench -- [SECONDS] [CONCURRENCY] [EXPORT_MIB]`
//! (defaults 5, 32, 1024). Client and server share the machine's cores, so the GET figure is a
//! lower bound of what the emulator alone could serve.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use avala_pipe::emulator::{Emulator, EmulatorOptions};

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numeric arguments"))
        .collect();
    let seconds = args.first().copied().unwrap_or(5);
    let concurrency = args.get(1).copied().unwrap_or(32);
    let export_mib = args.get(2).copied().unwrap_or(1024);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let emulator = Emulator::start(EmulatorOptions {
        datasets: 100_000,
        export_bytes: export_mib * 1024 * 1024,
        export_polls: 0,
        journal_limit: 10_000,
        ..Default::default()
    })
    .await
    .expect("emulator starts");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let (base, key) = (emulator.base_url(), emulator.demo_key());

    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, key, done) = (
                client.clone(),
                format!("{base}/datasets?limit=10"),
                key.clone(),
                done.clone(),
            );
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let response = client
                        .get(&url)
                        .header("X-Avala-Api-Key", &key)
                        .send()
                        .await
                        .unwrap();
                    assert!(response.status().is_success());
                    response.bytes().await.unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let requests = done.load(Ordering::Relaxed);
    println!(
        "GET /datasets?limit=10: {requests} requests in {seconds} s with {concurrency} clients \
         = {:.0} requests/s",
        requests as f64 / seconds as f64
    );

    let export: serde_json::Value = client
        .post(format!("{base}/exports"))
        .header("X-Avala-Api-Key", &key)
        .json(&serde_json::json!({"project_id": "prj_0001"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = export["download_url"].as_str().expect("a download URL");
    let started = Instant::now();
    let mut response = client.get(url).send().await.unwrap();
    let mut bytes = 0u64;
    while let Some(chunk) = response.chunk().await.unwrap() {
        bytes += chunk.len() as u64;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "download: {} MiB in {elapsed:.2} s = {:.0} MiB/s",
        bytes >> 20,
        (bytes >> 20) as f64 / elapsed
    );
    emulator.shutdown().await;
}
