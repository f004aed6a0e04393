//! Media-plane capacity: N concurrent Twilio loopback calls against the real server binary.
//!
//! Starts `switchboard serve` as a separate process (fresh SQLite file, warn-level logs), ramps
//! up N callers (each at a random phase of the 20 ms frame, as real calls start; `ALIGNED=1`
//! for the exact ramp) that each stream μ-law frames on an absolute 20 ms clock and record when every
//! returned frame arrives, holds them for the measured window, then reports:
//! egress jitter (|inter-arrival − 20 ms|) percentiles, gaps (> 40 ms between frames), frames
//! sent/received, the server's late-frame and drop counters (from /metrics), and the server
//! process's CPU time per call-second and resident memory per call.
//!
//! Beside it, a probe thread (in the bench process, sleeping 1 ms at a time) records every time it
//! woke [`STALL`] or more late: the machine did not run it. The server's late-frame counter is
//! read every 100 ms, and the report says how many late frames fell in a 100 ms window that
//! overlaps such a stall — late frames the whole machine caused, not the server.
//!
//! ```text
//! cargo bench --bench capacity                       # 500 calls, 20 s
//! CALLS=1000 SECONDS=30 RAMP=10 cargo bench --bench capacity
//! SERVER_BIN=/path/to/other/switchboard cargo bench --bench capacity   # an A/B
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

#[path = "support/server.rs"]
mod support;

use support::{cpu_seconds, env_or, metric, Server};

const KEY: &str = "sb_bench_capacity_key";
/// A probe wake-up at least this late counts as a machine stall.
const STALL: Duration = Duration::from_millis(5);
/// How often the server's late-frame counter is read during the window (`LATE_SAMPLE_MS`).
static LATE_SAMPLE: std::sync::LazyLock<Duration> =
    std::sync::LazyLock::new(|| Duration::from_millis(env_or("LATE_SAMPLE_MS", 100)));

/// Stalls (start, end) a thread sleeping 1 ms at a time saw until `stop`.
fn stall_probe(stop: Arc<std::sync::atomic::AtomicBool>) -> Vec<(std::time::Instant, std::time::Instant)> {
    let mut stalls = Vec::new();
    let mut prev = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(1));
        let now = std::time::Instant::now();
        if now.duration_since(prev) >= STALL + Duration::from_millis(1) {
            stalls.push((prev, now));
        }
        prev = now;
    }
    stalls
}

/// Steal time of each CPU so far, in USER_HZ ticks (10 ms): time the hypervisor ran something
/// else while this VM's vCPU wanted to run. The probe thread cannot see a steal on the other
/// vCPU; this can.
fn steal_ticks() -> Vec<u64> {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| l.split_whitespace().nth(8).and_then(|v| v.parse().ok()).unwrap_or(0))
        .collect()
}

/// What one simulated caller saw.
#[derive(Default)]
struct CallStats {
    ok: bool,
    sent: u64,
    received: u64,
    /// |inter-arrival − 20 ms| in µs, for frames inside the measured window.
    jitter_us: Vec<u32>,
    gaps: u64,
}

fn media_message(seq: usize, payload_b64: &str) -> Message {
    Message::text(format!(
        r#"{{"event":"media","sequenceNumber":"{}","streamSid":"MZbench","media":{{"track":"inbound","chunk":"{}","timestamp":"{}","payload":"{payload_b64}"}}}}"#,
        seq + 2,
        seq + 1,
        seq * 20
    ))
}

async fn caller(addr: String, hold: Duration, warmup: Duration, payload: Arc<String>) -> CallStats {
    let mut stats = CallStats::default();
    // A small read buffer: tungstenite zero-fills the whole buffer on every read.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096);
    let Ok((ws, _)) =
        tokio_tungstenite::connect_async_with_config(format!("ws://{addr}/twilio/media"), Some(config), true)
            .await
    else {
        return stats;
    };
    let (mut tx, mut rx) = ws.split();
    let start = format!(
        r#"{{"event":"start","sequenceNumber":"1","streamSid":"MZbench","start":{{"accountSid":"AC1","streamSid":"MZbench","callSid":"CA1","tracks":["inbound"],"customParameters":{{"token":"{KEY}","mode":"loopback"}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
    );
    if tx.send(Message::text(start)).await.is_err() {
        return stats;
    }
    let t0 = Instant::now();
    let measure_from = t0 + warmup;
    let end = t0 + hold;
    let mut next_send = t0;
    let mut seq = 0usize;
    let mut last_arrival: Option<Instant> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next_send) => {
                if next_send >= end {
                    break;
                }
                if tx.send(media_message(seq, &payload)).await.is_err() {
                    return stats;
                }
                stats.sent += 1;
                seq += 1;
                next_send = t0 + Duration::from_millis(20 * seq as u64);
            }
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    if t.as_str().starts_with(r#"{"event":"media""#) {
                        let now = Instant::now();
                        stats.received += 1;
                        if let Some(prev) = last_arrival {
                            if prev >= measure_from {
                                let dt = now.duration_since(prev);
                                let dev = (dt.as_micros() as i64 - 20_000).unsigned_abs();
                                stats.jitter_us.push(dev.min(u64::from(u32::MAX)) as u32);
                                if dt > Duration::from_millis(40) {
                                    stats.gaps += 1;
                                }
                            }
                        }
                        last_arrival = Some(now);
                    } else if t.as_str().starts_with(r#"{"event":"mark""#) {
                        let echo = t.as_str().replace("\"streamSid\":\"MZbench\",", "");
                        let _ = tx.send(Message::text(echo)).await;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return stats,
                _ => {}
            }
        }
    }
    let _ = tx.send(Message::text(r#"{"event":"stop","streamSid":"MZbench"}"#)).await;
    stats.ok = true;
    stats
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run only under bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let calls: usize = env_or("CALLS", 500);
    let seconds: u64 = env_or("SECONDS", 20);
    let ramp: f64 = env_or("RAMP", 5.0);
    let client_threads: usize = env_or("CLIENT_THREADS", 1);
    let server = Server::start(KEY, calls + 10, &[]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_threads)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if http.get(format!("http://{}/healthz", server.addr)).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let silence = vec![0xFFu8; 160];
        let payload = Arc::new(base64::engine::general_purpose::STANDARD.encode(&silence));
        let hold = Duration::from_secs(seconds) + Duration::from_secs_f64(ramp);
        let warmup = Duration::from_secs(2);
        let started = Arc::new(AtomicU64::new(0));
        let (cpu0, rss0) = server.usage();
        let mut tasks = Vec::with_capacity(calls);
        let t0 = Instant::now();
        // Real calls start at random moments, so their 20 ms clocks have random phases. An exact
        // ramp does not: 500 calls 10 ms apart share two phases, and 250 playout ticks (and 250
        // inbound frames) land in the same millisecond every 20 ms — a synchronised burst no
        // gateway produces. Each start gets a pseudo-random offset within one frame (fixed
        // seed, so runs are comparable); ALIGNED=1 keeps the exact ramp to see that worst case.
        let aligned = env_or("ALIGNED", 0u8) == 1;
        let mut seed = 0x2545_f491_u32;
        for i in 0..calls {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let phase_us = if aligned { 0 } else { u64::from(seed >> 8) % 20_000 };
            let at = t0
                + Duration::from_secs_f64(ramp * i as f64 / calls as f64)
                + Duration::from_micros(phase_us);
            let (addr, payload, started) = (server.addr.clone(), payload.clone(), started.clone());
            // Every call holds until the same end time, so the measured window has all N live.
            let my_hold = hold - at.duration_since(t0);
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                started.fetch_add(1, Ordering::Relaxed);
                caller(addr, my_hold, warmup, payload).await
            }));
        }
        // Sample the server while every call is live.
        tokio::time::sleep(Duration::from_secs_f64(ramp) + warmup).await;
        let (cpu_a, rss_full) = server.usage();
        let late_a = metric(&http.get(format!("http://{}/metrics", server.addr)).send().await.unwrap().text().await.unwrap(), "switchboard_playout_late_frames_total");
        let client_a = cpu_seconds("/proc/self/stat");
        let window_start = Instant::now();
        let window_end = window_start + hold.saturating_sub(window_start.duration_since(t0)).saturating_sub(Duration::from_millis(200));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let probe = {
            let stop = stop.clone();
            std::thread::spawn(move || stall_probe(stop))
        };
        // (when read, counter) every LATE_SAMPLE until the window ends.
        let mut late_samples = vec![(std::time::Instant::now(), late_a)];
        let mut steals = vec![steal_ticks()];
        while Instant::now() + *LATE_SAMPLE < window_end {
            tokio::time::sleep(*LATE_SAMPLE).await;
            let Ok(resp) = http.get(format!("http://{}/metrics", server.addr)).send().await else { continue };
            let text = resp.text().await.unwrap_or_default();
            late_samples.push((std::time::Instant::now(), metric(&text, "switchboard_playout_late_frames_total")));
            steals.push(steal_ticks());
        }
        tokio::time::sleep_until(window_end).await;
        stop.store(true, Ordering::Relaxed);
        let stalls = probe.join().unwrap();
        let (cpu_b, _) = server.usage();
        let late_b = metric(&http.get(format!("http://{}/metrics", server.addr)).send().await.unwrap().text().await.unwrap(), "switchboard_playout_late_frames_total");
        let client_b = cpu_seconds("/proc/self/stat");
        let window = window_start.elapsed().as_secs_f64();
        let mut all: Vec<CallStats> = Vec::with_capacity(calls);
        for t in tasks {
            all.push(t.await.unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let metrics = http.get(format!("http://{}/metrics", server.addr)).send().await.unwrap().text().await.unwrap();

        let ok = all.iter().filter(|s| s.ok).count();
        let mut jitter: Vec<u32> = all.iter().flat_map(|s| s.jitter_us.iter().copied()).collect();
        jitter.sort_unstable();
        let gaps: u64 = all.iter().map(|s| s.gaps).sum();
        let sent: u64 = all.iter().map(|s| s.sent).sum();
        let received: u64 = all.iter().map(|s| s.received).sum();
        let late = metric(&metrics, "switchboard_playout_late_frames_total");
        let dropped = metric(&metrics, "switchboard_frames_dropped_total");
        let cpu_ms_per_call_s = (cpu_b - cpu_a) * 1000.0 / (window * calls as f64);
        println!(
            "capacity: {calls} concurrent Twilio loopback calls, {seconds} s held (ramp {ramp} s, {} phases), client threads {client_threads}",
            if aligned { "aligned" } else { "random" }
        );
        println!("  calls ok            {ok}/{calls}");
        println!("  frames sent/recv    {sent} / {received}");
        println!(
            "  egress jitter ms    p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  ({} intervals)",
            percentile(&jitter, 0.5),
            percentile(&jitter, 0.9),
            percentile(&jitter, 0.99),
            percentile(&jitter, 1.0),
            jitter.len()
        );
        println!("  gaps > 40 ms        {gaps}");
        println!(
            "  server late frames  {} while all calls were live; {late_a} before (ramp + warm-up), {} after (hang-ups: every call ends at once)",
            late_b - late_a,
            late - late_b
        );
        // A late frame is counted when the server runs again after the stall: the read after
        // it sees it. Slack of one sample period on the early side.
        let mut in_stall = 0.0;
        for pair in late_samples.windows(2) {
            let ((t_prev, v_prev), (t_now, v_now)) = (pair[0], pair[1]);
            let from = t_prev.checked_sub(*LATE_SAMPLE).unwrap_or(t_prev);
            if v_now > v_prev && stalls.iter().any(|&(s, e)| e >= from && s <= t_now) {
                in_stall += v_now - v_prev;
            }
        }
        let longest = stalls.iter().map(|&(s, e)| e.duration_since(s)).max().unwrap_or_default();
        println!(
            "  machine stalls      {} ≥ {} ms seen by an idle probe thread over the window (longest {:.1} ms); {in_stall} of the late frames while live fell in a {} ms read window overlapping one",
            stalls.len(),
            STALL.as_millis(),
            longest.as_secs_f64() * 1e3,
            LATE_SAMPLE.as_millis()
        );
        // Late frames read in a sample whose 100 ms (or the one before) saw a vCPU stolen.
        let stolen = |i: usize| steals[i].iter().zip(&steals[i - 1]).any(|(b, a)| b > a);
        let mut in_steal = 0.0;
        for i in 1..late_samples.len().min(steals.len()) {
            let grew = late_samples[i].1 - late_samples[i - 1].1;
            if grew > 0.0 && (stolen(i) || (i > 1 && stolen(i - 1))) {
                in_steal += grew;
            }
        }
        let steal_total: u64 = steals
            .last()
            .zip(steals.first())
            .map(|(b, a)| b.iter().zip(a).map(|(b, a)| b - a).sum())
            .unwrap_or(0);
        println!(
            "  vCPU steal          {} ms over the window (/proc/stat, 10 ms ticks, all vCPUs); {in_steal} of the late frames while live were read in or right after a {} ms sample with steal",
            steal_total * 10,
            LATE_SAMPLE.as_millis()
        );
        println!("  server drops        {dropped}");
        println!(
            "  server CPU          {:.3} CPU-ms per call-second ({:.0}% of one core over the window; total {:.1} s)",
            cpu_ms_per_call_s,
            (cpu_b - cpu_a) / window * 100.0,
            cpu_b - cpu0
        );
        println!(
            "  load generator CPU  {:.0}% of one core over the window (same machine)",
            (client_b - client_a) / window * 100.0
        );
        println!(
            "  server memory       {:.1} MiB RSS with all calls live, {:.1} KiB per call over idle",
            rss_full as f64 / 1048576.0,
            rss_full.saturating_sub(rss0) as f64 / 1024.0 / calls as f64
        );
    });
}
