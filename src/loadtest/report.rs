//! The load test's result: per-call entries, totals, percentiles per metric, errors by kind —
//! serialised as the JSON report (schema below, camelCase) and printed as a table.
//!
//! ```text
//! {schema: 1, startedAt, durationS,
//!  options: {url, protocol, codec, sampleRateHz, fixtures: [name], calls, concurrency, rampS,
//!            speed, tailS, silenceDbfs, agentId, keyGiven, params: {name: value}},
//!  totals: {calls, ok, failed, turns, answered, unanswered, bargeIns, bargeInsStopped, dtmfSent,
//!           framesSent, lateSends, framesReceived, marksReceived, marksAnswered, clears, gaps, pauses},
//!  metrics: {responseLatencyMs, bargeInReactionMs, jitterMs, greetingMs, connectMs:
//!            {count, mean, p50, p90, p95, p99, max}},          (null figures when count is 0)
//!  errors: {kind: count},                                       (kinds: see FaultKind)
//!  calls: [{index, fixture, ok, error, errorKind, startS, durationS, endedBy, close: {code, reason},
//!           hangup, transfer, connectMs, greetingMs, answered,
//!           turns: [{index, callerStartMs, callerEndMs, played, latencyMs, atS}],
//!           bargeIns: [{turn, reactionMs, by: clear|silence}], jitterP99Ms, gaps, pauses,
//!           framesSent, lateSends, framesReceived, marksReceived, marksAnswered, clears, dtmfSent,
//!           faults: {kind: count}}]}
//! ```
//! Times in a call (`callerStartMs`, `callerEndMs`) are fixture milliseconds; `atS` is when the
//! turn ended in seconds from the start of the run (for plotting latency over time).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::analysis::{Measures, StoppedBy};
use super::caller::CallRecord;
use super::fixture::Fixture;
use super::Options;

/// Version of the JSON layout.
pub const SCHEMA: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub schema: u32,
    pub started_at: String,
    pub duration_s: f64,
    pub options: RunOptions,
    pub totals: Totals,
    pub metrics: Metrics,
    pub errors: BTreeMap<String, u64>,
    pub calls: Vec<CallReport>,
}

/// The options of the run, as reported (the key itself never is).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunOptions {
    pub url: String,
    pub protocol: String,
    pub codec: String,
    pub sample_rate_hz: u32,
    pub fixtures: Vec<String>,
    pub calls: usize,
    pub concurrency: usize,
    pub ramp_s: f64,
    pub speed: f64,
    pub tail_s: f64,
    pub silence_dbfs: f64,
    pub agent_id: Option<String>,
    pub key_given: bool,
    pub params: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub calls: u64,
    pub ok: u64,
    pub failed: u64,
    /// Caller turns played (their audio was sent completely).
    pub turns: u64,
    pub answered: u64,
    pub unanswered: u64,
    pub barge_ins: u64,
    /// Barge-ins the agent reacted to (clear or silence).
    pub barge_ins_stopped: u64,
    pub dtmf_sent: u64,
    pub frames_sent: u64,
    /// Caller frames sent more than 10 ms late: the load generator itself lagged.
    pub late_sends: u64,
    pub frames_received: u64,
    pub marks_received: u64,
    pub marks_answered: u64,
    pub clears: u64,
    pub gaps: u64,
    pub pauses: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    pub response_latency_ms: Stats,
    pub barge_in_reaction_ms: Stats,
    pub jitter_ms: Stats,
    pub greeting_ms: Stats,
    pub connect_ms: Stats,
}

/// Distribution of one metric (nearest-rank percentiles); figures are null without samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub count: u64,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallReport {
    pub index: usize,
    pub fixture: String,
    pub ok: bool,
    pub error: Option<String>,
    pub error_kind: Option<String>,
    /// When the call started, seconds from the start of the run.
    pub start_s: f64,
    pub duration_s: f64,
    /// `caller` (hung up after the tail), `server` (closed normally or hung up first), `error`.
    pub ended_by: String,
    pub close: Option<Close>,
    pub hangup: Option<String>,
    pub transfer: Option<String>,
    pub connect_ms: Option<f64>,
    pub greeting_ms: Option<f64>,
    pub answered: u32,
    pub turns: Vec<TurnReport>,
    pub barge_ins: Vec<BargeInReport>,
    pub jitter_p99_ms: Option<f64>,
    pub gaps: u32,
    pub pauses: u32,
    pub frames_sent: u64,
    pub late_sends: u64,
    pub frames_received: u64,
    pub marks_received: u32,
    pub marks_answered: u32,
    pub clears: u32,
    pub dtmf_sent: u32,
    pub faults: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Close {
    pub code: u16,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnReport {
    pub index: usize,
    pub caller_start_ms: u32,
    pub caller_end_ms: u32,
    pub played: bool,
    pub latency_ms: Option<f64>,
    /// When the caller turn ended, seconds from the start of the run.
    pub at_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BargeInReport {
    pub turn: usize,
    pub reaction_ms: Option<f64>,
    pub by: Option<StoppedBy>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Three decimals: µs for figures in ms, ms for figures in s (the clocks resolve no finer).
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Nearest-rank percentile `p` (0–100) of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

impl Stats {
    pub fn of(mut samples: Vec<f64>) -> Stats {
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        Stats {
            count: n as u64,
            mean: (n > 0).then(|| round3(samples.iter().sum::<f64>() / n as f64)),
            p50: percentile(&samples, 50.0),
            p90: percentile(&samples, 90.0),
            p95: percentile(&samples, 95.0),
            p99: percentile(&samples, 99.0),
            max: samples.last().copied(),
        }
    }
}

/// Jitter samples of a whole run, in fixed 50 µs buckets up to the pause threshold (a run of
/// many long calls has millions of frames; their exact values are not kept).
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    n: u64,
    sum_us: u64,
    max_us: u64,
}

impl Histogram {
    pub const BUCKET_US: u64 = 50;
    const BUCKETS: usize = (super::analysis::PAUSE_US / Self::BUCKET_US) as usize + 1;

    pub fn new() -> Histogram {
        Histogram { counts: vec![0; Self::BUCKETS], n: 0, sum_us: 0, max_us: 0 }
    }

    pub fn add(&mut self, us: u32) {
        let us = u64::from(us);
        let i = ((us / Self::BUCKET_US) as usize).min(Self::BUCKETS - 1);
        self.counts[i] += 1;
        self.n += 1;
        self.sum_us += us;
        self.max_us = self.max_us.max(us);
    }

    /// Percentiles at bucket resolution (a bucket's upper edge, never above the maximum), ms.
    pub fn stats(&self) -> Stats {
        if self.n == 0 {
            return Stats::default();
        }
        let at = |p: f64| {
            let rank = ((p / 100.0) * self.n as f64).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in self.counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Some(ms(((i as u64 + 1) * Self::BUCKET_US).min(self.max_us)));
                }
            }
            Some(ms(self.max_us))
        };
        Stats {
            count: self.n,
            mean: Some(round3(ms(self.sum_us) / self.n as f64)),
            p50: at(50.0),
            p90: at(90.0),
            p95: at(95.0),
            p99: at(99.0),
            max: Some(ms(self.max_us)),
        }
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl CallReport {
    /// One call's entry. `start_s`: when it started in the run; `t0_s`: when its audio clock
    /// started (the opening messages), both from the start of the run.
    pub fn new(
        index: usize,
        fixture: &Fixture,
        rec: &CallRecord,
        m: &Measures,
        start_s: f64,
        t0_s: f64,
    ) -> CallReport {
        let turns: Vec<TurnReport> = m
            .turns
            .iter()
            .map(|t| {
                let turn = &fixture.turns[t.index];
                let end_us = rec.timeline.turns[t.index].end_us;
                TurnReport {
                    index: t.index,
                    caller_start_ms: turn.start_ms,
                    caller_end_ms: turn.end_ms,
                    played: t.played,
                    latency_ms: t.latency_us.map(ms),
                    at_s: round3(t0_s + end_us as f64 / 1e6),
                }
            })
            .collect();
        let mut jitter: Vec<f64> = m.jitter_us.iter().map(|&j| ms(u64::from(j))).collect();
        jitter.sort_by(f64::total_cmp);
        let ended_by = if rec.error.is_some() {
            "error"
        } else if rec.ended_by_server {
            "server"
        } else {
            "caller"
        };
        CallReport {
            index,
            fixture: fixture.name.clone(),
            ok: rec.error.is_none(),
            error: rec.error.as_ref().map(|(_, d)| d.clone()),
            error_kind: rec.error.as_ref().map(|(k, _)| k.to_string()),
            start_s: round3(start_s),
            duration_s: round3((t0_s - start_s) + rec.timeline.end_us as f64 / 1e6),
            ended_by: ended_by.into(),
            close: rec.close.clone().map(|(code, reason)| Close { code, reason }),
            hangup: rec.hangup.clone(),
            transfer: rec.transfer.clone(),
            connect_ms: rec.connect_us.map(ms),
            greeting_ms: m.greeting_us.map(ms),
            answered: turns.iter().filter(|t| t.latency_ms.is_some()).count() as u32,
            turns,
            barge_ins: m
                .barge_ins
                .iter()
                .map(|b| BargeInReport { turn: b.turn, reaction_ms: b.reaction_us.map(ms), by: b.by })
                .collect(),
            jitter_p99_ms: percentile(&jitter, 99.0),
            gaps: m.gaps,
            pauses: m.pauses,
            frames_sent: rec.frames_sent,
            late_sends: rec.late_sends,
            frames_received: rec.frames_received,
            marks_received: rec.marks_received,
            marks_answered: rec.marks_answered,
            clears: rec.clears,
            dtmf_sent: rec.dtmf_sent,
            faults: rec.faults.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }
}

/// Collects call entries as they finish.
#[derive(Debug, Default)]
pub struct Builder {
    calls: Vec<CallReport>,
    jitter: Histogram,
    latencies: Vec<f64>,
    /// Median of `latencies`, updated per call.
    p50_latency_ms: Option<f64>,
}

impl Builder {
    pub fn add(&mut self, call: CallReport, jitter_us: &[u32]) {
        for &j in jitter_us {
            self.jitter.add(j);
        }
        self.latencies.extend(call.turns.iter().filter_map(|t| t.latency_ms));
        self.calls.push(call);
        if !self.latencies.is_empty() {
            let mut v = self.latencies.clone();
            let rank = v.len().div_ceil(2) - 1;
            self.p50_latency_ms = Some(*v.select_nth_unstable_by(rank, f64::total_cmp).1);
        }
    }

    pub fn done(&self) -> usize {
        self.calls.len()
    }

    pub fn failed(&self) -> usize {
        self.calls.iter().filter(|c| !c.ok).count()
    }

    /// Median response latency so far (for the progress bar).
    pub fn p50_latency_ms(&self) -> Option<f64> {
        self.p50_latency_ms
    }

    pub fn finish(
        mut self,
        options: &Options,
        fixtures: &[std::sync::Arc<Fixture>],
        started_at: String,
        duration_s: f64,
    ) -> Report {
        self.calls.sort_by_key(|c| c.index);
        let calls = self.calls;
        let mut t = Totals { calls: calls.len() as u64, ..Totals::default() };
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        for c in &calls {
            t.ok += u64::from(c.ok);
            t.failed += u64::from(!c.ok);
            t.turns += c.turns.iter().filter(|x| x.played).count() as u64;
            t.answered += u64::from(c.answered);
            t.barge_ins += c.barge_ins.len() as u64;
            t.barge_ins_stopped += c.barge_ins.iter().filter(|b| b.reaction_ms.is_some()).count() as u64;
            t.dtmf_sent += u64::from(c.dtmf_sent);
            t.frames_sent += c.frames_sent;
            t.late_sends += c.late_sends;
            t.frames_received += c.frames_received;
            t.marks_received += u64::from(c.marks_received);
            t.marks_answered += u64::from(c.marks_answered);
            t.clears += u64::from(c.clears);
            t.gaps += u64::from(c.gaps);
            t.pauses += u64::from(c.pauses);
            for (k, v) in &c.faults {
                *errors.entry(k.clone()).or_default() += u64::from(*v);
            }
        }
        t.unanswered = t.turns - t.answered;
        let collect = |f: &dyn Fn(&CallReport) -> Vec<f64>| Stats::of(calls.iter().flat_map(f).collect());
        let metrics = Metrics {
            response_latency_ms: Stats::of(self.latencies),
            barge_in_reaction_ms: collect(&|c| c.barge_ins.iter().filter_map(|b| b.reaction_ms).collect()),
            jitter_ms: self.jitter.stats(),
            greeting_ms: collect(&|c| c.greeting_ms.into_iter().collect()),
            connect_ms: collect(&|c| c.connect_ms.into_iter().collect()),
        };
        let redact =
            |k: &str, v: &str| if k.eq_ignore_ascii_case("token") { "(given)".into() } else { v.to_owned() };
        Report {
            schema: SCHEMA,
            started_at,
            duration_s: round3(duration_s),
            options: RunOptions {
                url: options.url.clone(),
                protocol: options.protocol.as_str().into(),
                codec: format!("{:?}", options.format.encoding).to_lowercase(),
                sample_rate_hz: options.format.sample_rate_hz,
                fixtures: fixtures.iter().map(|f| f.name.clone()).collect(),
                calls: options.calls,
                concurrency: options.concurrency,
                ramp_s: options.ramp.as_secs_f64(),
                speed: options.speed,
                tail_s: options.tail.as_secs_f64(),
                silence_dbfs: options.silence_dbfs,
                agent_id: options.agent_id.clone(),
                key_given: options.key.is_some(),
                params: options.params.iter().map(|(k, v)| (k.clone(), redact(k, v))).collect(),
            },
            totals: t,
            metrics,
            errors,
            calls,
        }
    }
}

impl Report {
    /// The end-of-run table.
    pub fn table(&self) -> String {
        let o = &self.options;
        let t = &self.totals;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "switchboard loadtest: {} calls over {} ({}, {} {} Hz), concurrency {}, speed {}x, {:.1} s",
            t.calls, o.url, o.protocol, o.codec, o.sample_rate_hz, o.concurrency, o.speed, self.duration_s
        );
        let _ = writeln!(
            s,
            "{:<24}{:>8}{:>9}{:>9}{:>9}{:>9}{:>9}",
            "", "count", "p50", "p90", "p95", "p99", "max"
        );
        let m = &self.metrics;
        for (name, st) in [
            ("response latency (ms)", &m.response_latency_ms),
            ("barge-in reaction (ms)", &m.barge_in_reaction_ms),
            ("egress jitter (ms)", &m.jitter_ms),
            ("greeting (ms)", &m.greeting_ms),
            ("connect (ms)", &m.connect_ms),
        ] {
            let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
            let _ = writeln!(
                s,
                "{name:<24}{:>8}{:>9}{:>9}{:>9}{:>9}{:>9}",
                st.count,
                f(st.p50),
                f(st.p90),
                f(st.p95),
                f(st.p99),
                f(st.max)
            );
        }
        let _ = writeln!(s, "calls      ok {}, failed {}", t.ok, t.failed);
        let _ = writeln!(
            s,
            "turns      {} played, {} answered, {} unanswered; barge-ins {} ({} stopped); DTMF sent {}",
            t.turns, t.answered, t.unanswered, t.barge_ins, t.barge_ins_stopped, t.dtmf_sent
        );
        let _ = writeln!(
            s,
            "frames     sent {} ({} late), received {}; gaps > 40 ms {}, pauses > 1 s {}; marks {}/{} answered, clears {}",
            t.frames_sent, t.late_sends, t.frames_received, t.gaps, t.pauses, t.marks_answered, t.marks_received, t.clears
        );
        if self.errors.is_empty() {
            let _ = writeln!(s, "errors     none");
        } else {
            let list: Vec<String> = self.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(s, "errors     {}", list.join(", "));
            // The first failure of each kind, described.
            let mut shown: Vec<&str> = Vec::new();
            for c in self.calls.iter().filter(|c| !c.ok) {
                if let (Some(kind), Some(err)) = (&c.error_kind, &c.error) {
                    if !shown.contains(&kind.as_str()) {
                        shown.push(kind);
                        let _ = writeln!(s, "           e.g. call {} ({}): {err}", c.index, c.fixture);
                    }
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 1.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        let s = Stats::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.count, s.p50, s.max, s.mean), (3, Some(2.0), Some(3.0), Some(2.0)));
        assert_eq!(Stats::of(vec![]), Stats::default());
    }

    #[test]
    fn histogram_matches_exact_percentiles_to_a_bucket() {
        let mut h = Histogram::new();
        let samples: Vec<u32> = (0..1000).map(|i| (i * 37 % 4000) as u32).collect();
        for &s in &samples {
            h.add(s);
        }
        h.add(5_000_000); // beyond the last bucket: counted, and the maximum
        let st = h.stats();
        let mut exact: Vec<f64> = samples.iter().map(|&s| f64::from(s) / 1000.0).collect();
        exact.push(5000.0);
        let exact = Stats::of(exact);
        for (got, want) in [(st.p50, exact.p50), (st.p90, exact.p90), (st.p99, exact.p99)] {
            let (got, want) = (got.unwrap(), want.unwrap());
            assert!(got >= want && got - want <= 0.05, "{got} vs {want}");
        }
        assert_eq!(st.max, Some(5000.0));
        assert_eq!(st.count, 1001);
        assert_eq!(Histogram::new().stats(), Stats::default());
    }
}
