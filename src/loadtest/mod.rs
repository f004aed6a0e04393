//! `switchboard loadtest`: simulated callers against any server speaking a media-websocket
//! protocol (PROTOCOLS.md §2), as a gateway would speak it.
//!
//! Each caller plays a recorded call in real time (or `speed` times faster), answers marks,
//! records every frame the server sends, and measures per caller turn the response latency, the
//! barge-in reaction, egress jitter and gaps, and protocol faults. [`run`] makes `calls` calls
//! with at most `concurrency` live at once (the first ones spread over `ramp`, each at its own
//! phase of the 20 ms frame: [`phase_offset`]), fixtures taken round-robin, and returns the
//! [`Report`]; the binary prints its table and writes the JSON and the SVG plot.
//!
//! ```text
//! options    LoadtestArgs (flags) → Options (validated)
//! fixture    call annotations + WAV → 20 ms frames in the wire format
//! wire       the gateway side of each protocol: opening, media, DTMF, mark answers, parsing
//! caller     one call: pacing, playback model, recording → CallRecord
//! analysis   pure: timeline → latency, barge-in, jitter, gaps per call
//! report     totals, percentiles, JSON schema, the table
//! plot       SVG: latency histogram and latency over the run
//! ```

pub mod analysis;
pub mod caller;
pub mod fixture;
pub mod options;
pub mod plot;
pub mod report;
pub mod wire;

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use caller::{CallPlan, CallRecord};
use fixture::{Fixture, FixtureError};
pub use options::{InvalidOption, LoadtestArgs, Options};
pub use report::Report;

#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    #[error(transparent)]
    Option(#[from] InvalidOption),
    #[error(transparent)]
    Fixture(#[from] FixtureError),
}

/// Runs the load test to the end and returns its report. Call failures are in the report; only
/// unusable fixtures are an error.
pub async fn run(options: Options) -> Result<Report, LoadtestError> {
    let fixtures: Vec<Arc<Fixture>> =
        Fixture::load_all(&options.fixtures)?.into_iter().map(Arc::new).collect();
    let audio =
        fixtures.iter().map(|f| f.encode(options.format).map(Arc::new)).collect::<Result<Vec<_>, _>>()?;
    let options = Arc::new(options);
    // Tags this run's stream and call ids (the random part of a ULID).
    let run_tag: Arc<str> = Arc::from(&ulid::Ulid::new().to_string()[16..]);
    let progress = Progress::new(options.calls, options.progress);
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let run_start = Instant::now();

    let slots = Arc::new(Semaphore::new(options.concurrency));
    let mut live: JoinSet<(usize, f64, CallRecord)> = JoinSet::new();
    let mut builder = report::Builder::default();
    let mut next = 0usize;
    while next < options.calls || !live.is_empty() {
        tokio::select! {
            permit = slots.clone().acquire_owned(), if next < options.calls => {
                let permit = permit.expect("the semaphore is never closed");
                let index = next;
                next += 1;
                let n = index % fixtures.len();
                let plan = CallPlan { index, fixture: fixtures[n].clone(), audio: audio[n].clone() };
                let (options, run_tag) = (options.clone(), run_tag.clone());
                // The first `concurrency` calls are spread over the ramp; later ones take a
                // slot as soon as a call ends.
                let start_at = (index < options.concurrency).then(|| {
                    run_start + options.ramp.mul_f64(index as f64 / options.concurrency as f64) + phase_offset(index)
                });
                live.spawn(async move {
                    let _slot = permit;
                    if let Some(at) = start_at {
                        tokio::time::sleep_until(at).await;
                    }
                    let start_s = run_start.elapsed().as_secs_f64();
                    let rec = caller::call(&options, &run_tag, &plan).await;
                    (index, start_s, rec)
                });
                progress.update(&builder, live.len());
            }
            Some(joined) = live.join_next() => {
                let (index, start_s, rec) = joined.expect("a call task never panics");
                let fixture = &fixtures[index % fixtures.len()];
                let measures = analysis::analyze(&rec.timeline);
                let t0_s = rec.t0.map_or(start_s, |t| t.duration_since(run_start).as_secs_f64());
                let entry = report::CallReport::new(index, fixture, &rec, &measures, start_s, t0_s);
                builder.add(entry, &measures.jitter_us);
                progress.update(&builder, live.len());
            }
        }
    }
    progress.finish();
    let duration_s = run_start.elapsed().as_secs_f64();
    Ok(builder.finish(&options, &fixtures, started_at, duration_s))
}

/// How far into its 20 ms frame call `index` of the first wave starts: a fixed pseudo-random
/// offset in [0, 20 ms). Real calls start at random moments, so their frame clocks have random
/// phases; an exact ramp (calls 10 or 200 ms apart, or all at once) would line every caller's
/// frames — and the server's ticks — up in the same millisecond, a synchronised burst no gateway
/// produces (on the capacity bench it doubled p99 jitter). Deterministic, so runs compare.
fn phase_offset(index: usize) -> Duration {
    let mut x = (index as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    Duration::from_micros((x ^ (x >> 31)) % 20_000)
}

/// The live progress bar: calls done of all, failed, live, median latency so far.
struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// Redraws of the elapsed time while nothing else changes.
    const TICK: Duration = Duration::from_millis(250);

    fn new(calls: usize, enabled: bool) -> Progress {
        let target = if enabled && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(calls as u64), target);
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:32.cyan/blue} {pos}/{len} calls  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Self::TICK);
        Progress { bar }
    }

    fn update(&self, b: &report::Builder, live: usize) {
        self.bar.set_position(b.done() as u64);
        let p50 = b.p50_latency_ms().map_or("-".to_string(), |v| format!("{v:.0} ms"));
        self.bar.set_message(format!("live {live}, failed {}, p50 latency {p50}", b.failed()));
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_wave_phases_fall_inside_one_frame_and_spread_over_it() {
        let offsets: Vec<Duration> = (0..200).map(phase_offset).collect();
        assert!(offsets.iter().all(|d| *d < Duration::from_millis(20)));
        let mut bins = [0u32; 20];
        for d in &offsets {
            bins[d.as_millis() as usize] += 1;
        }
        // 200 draws over 20 one-millisecond bins: every bin used, none holding a quarter.
        assert!(bins.iter().all(|&n| (1..50).contains(&n)), "{bins:?}");
        assert_eq!(phase_offset(7), phase_offset(7), "deterministic");
    }
}
