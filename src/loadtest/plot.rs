//! The report's latency plot as a standalone SVG (no plotting dependency): a histogram of
//! response latency with its p50/p95 marked, and response latency against when the caller's turn
//! ended in the run (unanswered turns as red crosses along the top).

use std::fmt::Write as _;

use super::report::Report;

const WIDTH: f64 = 900.0;
const PANEL: f64 = 320.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 25.0;
const TOP: f64 = 45.0;
const BOTTOM: f64 = 50.0;
/// Histogram bars aimed for.
const BINS: f64 = 30.0;

/// 1, 2 or 5 × a power of ten, at least `raw`.
fn nice(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * p).find(|&v| v >= raw * (1.0 - 1e-9)).unwrap_or(10.0 * p)
}

/// An axis from 0 to a round number at least `max`, and its tick step.
fn axis(max: f64) -> (f64, f64) {
    let step = nice(max.max(1e-9) / 5.0);
    ((max / step).ceil().max(1.0) * step, step)
}

/// An axis for counts: whole-number ticks.
fn count_axis(max: f64) -> (f64, f64) {
    let step = nice(max.max(1.0) / 5.0).max(1.0);
    ((max / step).ceil().max(1.0) * step, step)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn label(v: f64) -> String {
    if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// A panel's frame: plot area origin `top`, axes with ticks and titles. Returns the plot area
/// (x0, y0, width, height) with y0 at the top.
fn frame(
    s: &mut String,
    top: f64,
    title: &str,
    x: (f64, f64, &str),
    y: (f64, f64, &str),
) -> (f64, f64, f64, f64) {
    let (x0, y0) = (LEFT, top + TOP);
    let (w, h) = (WIDTH - LEFT - RIGHT, PANEL - TOP - BOTTOM);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" font-size="15" font-weight="bold">{}</text>"#,
        LEFT,
        top + 25.0,
        esc(title)
    );
    let _ = writeln!(s, r##"<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#444"/>"##);
    let (xmax, xstep, xtitle) = x;
    let mut v = 0.0;
    while v <= xmax + xstep * 1e-6 {
        let px = x0 + v / xmax * w;
        let _ = writeln!(
            s,
            r##"<line x1="{px:.1}" y1="{}" x2="{px:.1}" y2="{}" stroke="#444"/>"##,
            y0 + h,
            y0 + h + 5.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{px:.1}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
            y0 + h + 18.0,
            label(v)
        );
        v += xstep;
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" font-size="12" text-anchor="middle">{}</text>"#,
        x0 + w / 2.0,
        y0 + h + 38.0,
        esc(xtitle)
    );
    let (ymax, ystep, ytitle) = y;
    let mut v = 0.0;
    while v <= ymax + ystep * 1e-6 {
        let py = y0 + h - v / ymax * h;
        let _ =
            writeln!(s, r##"<line x1="{}" y1="{py:.1}" x2="{}" y2="{py:.1}" stroke="#ddd"/>"##, x0, x0 + w);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"#,
            x0 - 6.0,
            py + 4.0,
            label(v)
        );
        v += ystep;
    }
    let _ = writeln!(
        s,
        r#"<text x="18" y="{:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 18 {:.1})">{}</text>"#,
        y0 + h / 2.0,
        y0 + h / 2.0,
        esc(ytitle)
    );
    (x0, y0, w, h)
}

/// The SVG document for `report`.
pub fn svg(report: &Report) -> String {
    let mut s = String::new();
    let height = 2.0 * PANEL + 30.0;
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let o = &report.options;
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="18" font-size="12" fill="#555">{} calls, {} ({}), concurrency {}, speed {}x — {} ok, {} failed</text>"##,
        report.totals.calls,
        esc(&o.url),
        o.protocol,
        o.concurrency,
        o.speed,
        report.totals.ok,
        report.totals.failed
    );
    let latencies: Vec<f64> =
        report.calls.iter().flat_map(|c| c.turns.iter().filter_map(|t| t.latency_ms)).collect();
    let max_latency = latencies.iter().copied().fold(0.0, f64::max);

    // Histogram.
    let bin = nice(max_latency.max(1.0) / BINS);
    let nbins = ((max_latency / bin).floor() as usize + 1).max(1);
    let mut counts = vec![0u32; nbins];
    for &l in &latencies {
        counts[((l / bin).floor() as usize).min(nbins - 1)] += 1;
    }
    let (xmax, xstep) = axis(nbins as f64 * bin);
    let (ymax, ystep) = count_axis(f64::from(counts.iter().copied().max().unwrap_or(0)));
    let title =
        format!("Response latency (end of caller turn → first agent audio), {} turns", latencies.len());
    let (x0, y0, w, h) = frame(&mut s, 20.0, &title, (xmax, xstep, "latency (ms)"), (ymax, ystep, "turns"));
    for (i, &c) in counts.iter().enumerate().filter(|(_, c)| **c > 0) {
        let bx = x0 + i as f64 * bin / xmax * w;
        let bh = f64::from(c) / ymax * h;
        let _ = writeln!(
            s,
            r##"<rect class="bar" x="{bx:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="#4a7fc1"/>"##,
            y0 + h - bh,
            (bin / xmax * w - 1.0).max(1.0)
        );
    }
    let st = &report.metrics.response_latency_ms;
    for (row, (name, v)) in [("p50", st.p50), ("p95", st.p95)].into_iter().enumerate() {
        if let Some(v) = v {
            let px = x0 + v / xmax * w;
            let _ = writeln!(
                s,
                r##"<line x1="{px:.1}" y1="{y0}" x2="{px:.1}" y2="{}" stroke="#c33" stroke-dasharray="5,4"/>"##,
                y0 + h
            );
            // Labels on the right of their line, or on the left near the right edge.
            let (lx, anchor) = if px > x0 + w - 90.0 { (px - 4.0, "end") } else { (px + 4.0, "start") };
            let ly = y0 + 14.0 + 14.0 * row as f64;
            let _ = writeln!(
                s,
                r##"<text x="{lx:.1}" y="{ly}" font-size="11" fill="#c33" text-anchor="{anchor}">{name} {v:.0} ms</text>"##
            );
        }
    }
    if latencies.is_empty() {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="13" text-anchor="middle">no answered turns</text>"#,
            x0 + w / 2.0,
            y0 + h / 2.0
        );
    }

    // Latency over the run.
    let (tmax, tstep) = axis(report.duration_s.max(1.0));
    let (lmax, lstep) = axis(max_latency.max(1.0));
    let (x0, y0, w, h) = frame(
        &mut s,
        20.0 + PANEL,
        "Response latency over the run",
        (tmax, tstep, "time in the run when the caller's turn ended (s)"),
        (lmax, lstep, "latency (ms)"),
    );
    for c in &report.calls {
        for t in c.turns.iter().filter(|t| t.played) {
            let px = x0 + t.at_s / tmax * w;
            match t.latency_ms {
                Some(l) => {
                    let _ = writeln!(
                        s,
                        r##"<circle class="answered" cx="{px:.1}" cy="{:.1}" r="3" fill="#4a7fc1" fill-opacity="0.7"/>"##,
                        y0 + h - l / lmax * h
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        r##"<path class="unanswered" d="M{:.1} {:.1} l6 6 m0 -6 l-6 6" stroke="#c33" stroke-width="1.5"/>"##,
                        px - 3.0,
                        y0 + 3.0
                    );
                }
            }
        }
    }
    let _ = writeln!(s, "</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtest::report::{CallReport, Metrics, Report, RunOptions, Stats, Totals, TurnReport};

    fn turn(at_s: f64, latency_ms: Option<f64>) -> TurnReport {
        TurnReport { index: 0, caller_start_ms: 0, caller_end_ms: 1000, played: true, latency_ms, at_s }
    }

    fn report(turns: Vec<TurnReport>) -> Report {
        let call: CallReport = serde_json::from_value(serde_json::json!({
            "index": 0, "fixture": "f", "ok": true, "error": null, "errorKind": null, "startS": 0.0,
            "durationS": 10.0, "endedBy": "caller", "close": null, "hangup": null, "transfer": null,
            "connectMs": 1.0, "greetingMs": null, "answered": 0, "turns": [], "bargeIns": [],
            "jitterP99Ms": null, "gaps": 0, "pauses": 0, "framesSent": 0, "lateSends": 0,
            "framesReceived": 0, "marksReceived": 0, "marksAnswered": 0, "clears": 0, "dtmfSent": 0, "faults": {}
        }))
        .unwrap();
        let latencies = turns.iter().filter_map(|t| t.latency_ms).collect();
        Report {
            schema: 1,
            started_at: String::new(),
            duration_s: 12.0,
            options: RunOptions {
                url: "ws://h/<x>&".into(),
                protocol: "twilio".into(),
                codec: "pcmu".into(),
                sample_rate_hz: 8000,
                fixtures: vec![],
                calls: 1,
                concurrency: 1,
                ramp_s: 0.0,
                speed: 1.0,
                tail_s: 3.0,
                silence_dbfs: -45.0,
                agent_id: None,
                key_given: false,
                params: Default::default(),
            },
            totals: Totals::default(),
            metrics: Metrics { response_latency_ms: Stats::of(latencies), ..Metrics::default() },
            errors: Default::default(),
            calls: vec![CallReport { turns, ..call }],
        }
    }

    #[test]
    fn one_point_per_turn_and_bars_that_add_up() {
        let turns =
            vec![turn(1.0, Some(620.0)), turn(4.0, Some(810.0)), turn(7.5, Some(640.0)), turn(9.0, None)];
        let svg = svg(&report(turns));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches(r#"class="answered""#).count(), 3);
        assert_eq!(svg.matches(r#"class="unanswered""#).count(), 1);
        assert!(svg.contains("ws://h/&lt;x&gt;&amp;"), "text is escaped");
        assert!(svg.contains("p50 640 ms"), "{svg}");
        // Bins are nice(810 / 30) = 50 ms wide: 620 and 640 share the 600–650 bar.
        assert_eq!(svg.matches(r#"class="bar""#).count(), 2);
    }

    #[test]
    fn empty_runs_still_draw() {
        let svg = svg(&report(vec![]));
        assert!(svg.contains("no answered turns"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn nice_numbers() {
        assert_eq!(nice(27.0), 50.0);
        assert_eq!(nice(0.13), 0.2);
        assert_eq!(nice(100.0), 100.0);
        assert_eq!(axis(810.0), (1000.0, 200.0));
        assert_eq!(count_axis(2.0), (2.0, 1.0), "whole-number ticks for counts");
        assert_eq!(count_axis(0.0), (1.0, 1.0));
    }
}
