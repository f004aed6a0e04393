//! Typed metrics and their Prometheus text exposition (`GET /metrics`).
//!
//! Names follow Prometheus conventions under `switchboard_*`: seconds, `_total` counters,
//! histograms with buckets chosen for voice (10 ms … 10 s). Later stages add their own families
//! here, so every metric the process exports is declared in this one file.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency buckets (seconds) for request and voice-path timings: 1 ms … 10 s.
pub const LATENCY_BUCKETS_SECONDS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 2.0, 5.0, 10.0];

/// Voice-path buckets (seconds): 10 ms … 10 s, finest between 100 ms and 1 s where turn
/// latencies live (a p95 of 740 ms and one of 800 ms land in different buckets).
pub const VOICE_BUCKETS_SECONDS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5,
    2.0, 3.0, 5.0, 10.0,
];

/// Per-frame processing buckets (seconds): 1 µs … 10 ms.
pub const FRAME_BUCKETS_SECONDS: &[f64] =
    &[1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2];

/// Labels of the call counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// `twilio`, `telnyx`, `vonage`, `plivo`, `native`.
    pub transport: String,
    /// `completed`, `failed`, `refused`, `rejected` (bad start/auth).
    pub outcome: String,
}

/// Labels of the frame-drop counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// `ingress` (caller audio into the listener), `egress` (frames to the socket),
    /// `playout` (speech waiting to be played), `invalid` (undecodable payloads).
    pub queue: String,
}

/// Labels of the webhook delivery counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// `delivered`, `failed` (given up, or a live turn/test without a 2xx answer), `retry`
    /// (an event attempt failed and is queued again).
    pub status: String,
}

/// Labels of an HTTP request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The route template (`/v1/agents/{id}`), never the raw path, to bound cardinality.
    pub route: String,
    pub status: String,
}

/// Labels of an HTTP latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_SECONDS.iter().copied())
}

fn voice_histogram() -> Histogram {
    Histogram::new(VOICE_BUCKETS_SECONDS.iter().copied())
}

/// Labels of `switchboard_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
    /// `release` or `debug`.
    pub profile: String,
}

/// The process's own resource use, read from `/proc/self` at each scrape.
#[derive(Debug, Default)]
struct ProcessMetrics {
    cpu_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    resident_bytes: Gauge,
    virtual_bytes: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    threads: Gauge,
    start_time_seconds: Gauge,
    /// CPU seconds already added to the counter.
    cpu_reported: std::sync::Mutex<f64>,
}

impl ProcessMetrics {
    fn register(&self, registry: &mut Registry) {
        use prometheus_client::registry::Unit;
        registry.register_with_unit(
            "process_cpu",
            "CPU time used by the process (user + system)",
            Unit::Seconds,
            self.cpu_seconds.clone(),
        );
        registry.register_with_unit(
            "process_resident_memory",
            "Resident memory of the process",
            Unit::Bytes,
            self.resident_bytes.clone(),
        );
        registry.register_with_unit(
            "process_virtual_memory",
            "Virtual memory of the process",
            Unit::Bytes,
            self.virtual_bytes.clone(),
        );
        registry.register(
            "process_open_fds",
            "Open file descriptors (sockets included)",
            self.open_fds.clone(),
        );
        registry.register("process_max_fds", "The open file descriptor limit", self.max_fds.clone());
        registry.register("process_threads", "OS threads of the process", self.threads.clone());
        registry.register_with_unit(
            "process_start_time",
            "Start of the process, Unix time",
            Unit::Seconds,
            self.start_time_seconds.clone(),
        );
    }

    /// Reads `/proc/self` (Linux); elsewhere the values stay 0.
    fn refresh(&self) {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return };
        // Fields after the parenthesised command name (which may contain spaces).
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { return };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // SAFETY: sysconf only reads a configuration value.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
        // stat(5) fields 14/15 (utime, stime), 20 (threads), 22 (starttime), 23 (vsize), 24 (rss):
        // here 0-based from field 3.
        let cpu = (num(11) + num(12)) as f64 / ticks;
        let mut reported = self.cpu_reported.lock().unwrap_or_else(|e| e.into_inner());
        if cpu > *reported {
            self.cpu_seconds.inc_by(cpu - *reported);
            *reported = cpu;
        }
        self.threads.set(num(17) as i64);
        self.virtual_bytes.set(num(20) as i64);
        self.resident_bytes.set((num(21) * page) as i64);
        if let Some(boot) = boot_time_seconds() {
            self.start_time_seconds.set((boot as f64 + num(19) as f64 / ticks) as i64);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(dir.count() as i64);
        }
        if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
            let max = limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<i64>().ok());
            if let Some(max) = max {
                self.max_fds.set(max);
            }
        }
    }
}

/// System boot time (Unix seconds), from `/proc/stat`'s `btime`; read once (the kernel sums
/// every CPU's counters to produce that file).
fn boot_time_seconds() -> Option<u64> {
    static BTIME: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *BTIME.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
    })
}

/// All metrics of the process.
pub struct Metrics {
    registry: Registry,
    /// REST requests by method, route and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// REST request latency by method and route.
    pub http_request_duration: HistogramFamily<RouteLabels>,
    /// REST requests being served right now.
    pub http_requests_in_flight: Gauge,
    /// Calls live on this node.
    pub calls_active: Gauge,
    /// Calls by transport and outcome.
    pub calls: Family<CallLabels, Counter>,
    /// Audio frames received from gateways.
    pub frames_in: Counter,
    /// Audio frames sent to gateways.
    pub frames_out: Counter,
    /// Frames dropped, by queue.
    pub frames_dropped: Family<QueueLabels, Counter>,
    /// Outbound frames that left more than half a frame after their deadline.
    pub playout_late_frames: Counter,
    /// Time to process one inbound frame (decode, resample, listener stages).
    pub frame_processing: Histogram,
    /// Speech-to-text compute per request, by pass (`partial`, `final`, `accurate`).
    pub stt_seconds: HistogramFamily<KindLabels>,
    /// Speculative final passes (started during the VAD hangover) by outcome: `hit` (used as the
    /// final transcript), `miss` (the caller spoke again; the result was dropped).
    pub stt_speculative: Family<KindLabels, Counter>,
    /// End of the caller's speech → the turn handed on.
    pub endpointing_seconds: Histogram,
    /// Barge-ins, false interruptions, ignored backchannels.
    pub interruptions: Family<KindLabels, Counter>,
    /// Reply requested → first text from the language model.
    pub llm_ttft_seconds: Histogram,
    /// Replies asked on a tentative transcript, by outcome (`used`, `dropped`).
    pub preemptive_replies: Family<KindLabels, Counter>,
    /// Text handed to the speech engine → its first audio.
    pub tts_ttfb_seconds: Histogram,
    /// End of the caller's speech → first agent audio frame on the wire.
    pub turn_latency_seconds: Histogram,
    /// Provider failures by pipeline stage and provider.
    pub provider_errors: Family<ProviderLabels, Counter>,
    /// Webhook delivery attempts by outcome.
    pub webhook_deliveries: Family<StatusLabels, Counter>,
    /// Frames of agent audio queued for the media websockets (all calls): what playout holds
    /// ready to send. Grows when speech is synthesised faster than real time (as it should);
    /// a depth that never drains means sockets are not keeping up.
    pub ws_send_queue_depth: Gauge,
    process: ProcessMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub stage: String,
    pub provider: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchboard");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "REST requests by method, route and status",
            http_requests.clone(),
        );
        let http_request_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "http_request_duration",
            "REST request latency by method and route",
            prometheus_client::registry::Unit::Seconds,
            http_request_duration.clone(),
        );
        let http_requests_in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "REST requests being served right now",
            http_requests_in_flight.clone(),
        );
        let calls_active = Gauge::default();
        registry.register("calls_active", "Calls live on this node", calls_active.clone());
        let calls = Family::<CallLabels, Counter>::default();
        registry.register("calls", "Calls by transport and outcome", calls.clone());
        let frames_in = Counter::default();
        registry.register("frames_in", "Audio frames received from gateways", frames_in.clone());
        let frames_out = Counter::default();
        registry.register("frames_out", "Audio frames sent to gateways", frames_out.clone());
        let frames_dropped = Family::<QueueLabels, Counter>::default();
        registry.register("frames_dropped", "Audio frames dropped, by queue", frames_dropped.clone());
        let playout_late_frames = Counter::default();
        registry.register(
            "playout_late_frames",
            "Outbound frames sent more than half a frame after their deadline",
            playout_late_frames.clone(),
        );
        let frame_processing = Histogram::new(FRAME_BUCKETS_SECONDS.iter().copied());
        registry.register_with_unit(
            "frame_processing",
            "Time to process one inbound 20 ms frame",
            prometheus_client::registry::Unit::Seconds,
            frame_processing.clone(),
        );
        let stt_seconds: HistogramFamily<KindLabels> =
            Family::new_with_constructor(voice_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "stt",
            "Speech-to-text compute per request, by pass",
            prometheus_client::registry::Unit::Seconds,
            stt_seconds.clone(),
        );
        let stt_speculative = Family::<KindLabels, Counter>::default();
        registry.register(
            "stt_speculative",
            "Final passes started during the end-of-speech hangover, by outcome (hit, miss)",
            stt_speculative.clone(),
        );
        let endpointing_seconds = voice_histogram();
        registry.register_with_unit(
            "endpointing",
            "End of the caller's speech to the end of their turn",
            prometheus_client::registry::Unit::Seconds,
            endpointing_seconds.clone(),
        );
        let interruptions = Family::<KindLabels, Counter>::default();
        registry.register(
            "interruptions",
            "Caller interruptions by kind (barge_in, false, backchannel_ignored)",
            interruptions.clone(),
        );
        let llm_ttft_seconds = voice_histogram();
        registry.register_with_unit(
            "llm_ttft",
            "Reply requested to the language model's first text",
            prometheus_client::registry::Unit::Seconds,
            llm_ttft_seconds.clone(),
        );
        let preemptive_replies = Family::<KindLabels, Counter>::default();
        registry.register(
            "preemptive_replies",
            "Replies asked before the caller's turn was decided, by outcome (used, dropped)",
            preemptive_replies.clone(),
        );
        let tts_ttfb_seconds = voice_histogram();
        registry.register_with_unit(
            "tts_ttfb",
            "Text handed to text-to-speech to its first audio",
            prometheus_client::registry::Unit::Seconds,
            tts_ttfb_seconds.clone(),
        );
        let turn_latency_seconds = voice_histogram();
        registry.register_with_unit(
            "turn_latency",
            "End of the caller's speech to the first agent audio frame on the wire",
            prometheus_client::registry::Unit::Seconds,
            turn_latency_seconds.clone(),
        );
        let provider_errors = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "provider_errors",
            "Provider failures by stage (stt, llm, tts, webhook) and provider",
            provider_errors.clone(),
        );
        let webhook_deliveries = Family::<StatusLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts by outcome (delivered, failed, retry)",
            webhook_deliveries.clone(),
        );
        let ws_send_queue_depth = Gauge::default();
        registry.register(
            "ws_send_queue_depth",
            "Frames of agent audio queued to be sent on the media websockets, all calls",
            ws_send_queue_depth.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
                profile: if cfg!(debug_assertions) { "debug" } else { "release" }.to_string(),
            })
            .set(1);
        registry.register(
            "build_info",
            "Version and build profile of the running binary (always 1)",
            build_info,
        );
        let process = ProcessMetrics::default();
        process.register(&mut registry);
        Self {
            registry,
            http_requests,
            http_request_duration,
            http_requests_in_flight,
            calls_active,
            calls,
            frames_in,
            frames_out,
            frames_dropped,
            playout_late_frames,
            frame_processing,
            stt_seconds,
            stt_speculative,
            endpointing_seconds,
            interruptions,
            llm_ttft_seconds,
            preemptive_replies,
            tts_ttfb_seconds,
            turn_latency_seconds,
            provider_errors,
            webhook_deliveries,
            ws_send_queue_depth,
            process,
        }
    }

    /// The drop counter of one queue (resolve once per call, then `inc` is one atomic add).
    pub fn dropped(&self, queue: &str) -> Counter {
        self.frames_dropped.get_or_create(&QueueLabels { queue: queue.to_string() }).clone()
    }

    /// Counts a call's outcome.
    pub fn stt(&self, pass: &str) -> Histogram {
        self.stt_seconds.get_or_create(&KindLabels { kind: pass.to_string() }).clone()
    }

    /// Counts a preemptive reply's outcome.
    pub fn preemptive_reply(&self, outcome: &str) {
        self.preemptive_replies.get_or_create(&KindLabels { kind: outcome.to_string() }).inc();
    }

    pub fn provider_error(&self, stage: &str, provider: &str) {
        self.provider_errors
            .get_or_create(&ProviderLabels { stage: stage.to_string(), provider: provider.to_string() })
            .inc();
    }

    pub fn interruption(&self, kind: &str) {
        self.interruptions.get_or_create(&KindLabels { kind: kind.to_string() }).inc();
    }

    pub fn call_outcome(&self, transport: &str, outcome: &str) {
        self.calls
            .get_or_create(&CallLabels { transport: transport.to_string(), outcome: outcome.to_string() })
            .inc();
    }

    /// Counts one webhook delivery attempt (`delivered`, `failed`, `retry`).
    pub fn webhook_delivery(&self, status: &str) {
        self.webhook_deliveries.get_or_create(&StatusLabels { status: status.to_string() }).inc();
    }

    /// Records one finished REST request.
    pub fn observe_http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.to_string(),
                route: route.to_string(),
                status: status.to_string(),
            })
            .inc();
        self.http_request_duration
            .get_or_create(&RouteLabels { method: method.to_string(), route: route.to_string() })
            .observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        self.process.refresh();
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_counters_and_histograms_with_units() {
        let m = Metrics::new();
        m.observe_http("GET", "/v1/agents", 200, Duration::from_millis(3));
        m.observe_http("GET", "/v1/agents", 200, Duration::from_millis(30));
        let text = m.encode();
        assert!(
            text.contains(
                r#"switchboard_http_requests_total{method="GET",route="/v1/agents",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains("switchboard_http_request_duration_seconds_bucket"), "{text}");
        assert!(text.contains(r#"{le="0.005",method="GET",route="/v1/agents"} 1"#), "{text}");
    }
}
