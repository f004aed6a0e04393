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
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
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
        let endpointing_seconds = latency_histogram();
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
        let llm_ttft_seconds = latency_histogram();
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
        let tts_ttfb_seconds = latency_histogram();
        registry.register_with_unit(
            "tts_ttfb",
            "Text handed to text-to-speech to its first audio",
            prometheus_client::registry::Unit::Seconds,
            tts_ttfb_seconds.clone(),
        );
        let turn_latency_seconds = latency_histogram();
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
