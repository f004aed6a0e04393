//! Load-test settings in two layers: [`LoadtestArgs`] as given on the command line, and the
//! validated [`Options`] a run takes (full websocket URL, negotiated wire format, durations).

use std::path::PathBuf;
use std::time::Duration;

use super::wire;
use crate::audio::resample::StreamResampler;
use crate::transport::{Encoding, Protocol, WireFormat};

/// A setting that cannot be used, naming the flag.
#[derive(Debug, thiserror::Error)]
#[error("--{flag}: {detail}")]
pub struct InvalidOption {
    pub flag: &'static str,
    pub detail: String,
}

fn invalid(flag: &'static str, detail: impl Into<String>) -> InvalidOption {
    InvalidOption { flag, detail: detail.into() }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtocolArg {
    Twilio,
    Telnyx,
    Vonage,
    Plivo,
    Native,
}

impl From<ProtocolArg> for Protocol {
    fn from(p: ProtocolArg) -> Protocol {
        match p {
            ProtocolArg::Twilio => Protocol::Twilio,
            ProtocolArg::Telnyx => Protocol::Telnyx,
            ProtocolArg::Vonage => Protocol::Vonage,
            ProtocolArg::Plivo => Protocol::Plivo,
            ProtocolArg::Native => Protocol::Native,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CodecArg {
    Pcmu,
    Pcma,
    L16,
    Opus,
}

/// `switchboard loadtest` as given.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadtestArgs {
    /// Media websocket URL, ws:// or wss://. Without a path, the protocol's path on a Switchboard
    /// server is used (/twilio/media, /telnyx/media, /vonage/media, /plivo/media, /v1/media).
    #[arg(long)]
    pub url: String,
    /// The gateway protocol the simulated callers speak.
    #[arg(long, value_enum, default_value_t = ProtocolArg::Twilio)]
    pub protocol: ProtocolArg,
    /// Recorded calls: a folder of annotations (*.json, e.g. audio-fixtures/calls) or single
    /// annotation files; repeatable. Calls take them round-robin.
    #[arg(long, required = true, num_args = 1..)]
    pub fixtures: Vec<PathBuf>,
    /// Calls to make in all.
    #[arg(long, default_value_t = 1)]
    pub calls: usize,
    /// Calls live at once; a new call starts as one ends.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Seconds over which the first `concurrency` calls start.
    #[arg(long, default_value_t = 0.0)]
    pub ramp: f64,
    /// Play the fixtures this many times faster than real time (the server's audio is still
    /// played back in real time).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Agent id, sent as the custom parameter `agentId`.
    #[arg(long)]
    pub agent: Option<String>,
    /// API key or media token, sent as the custom parameter `token`.
    #[arg(long, env = "SWITCHBOARD_LOADTEST_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Another custom parameter, NAME=VALUE (repeatable), e.g. mode=loopback.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Audio codec (telnyx: pcmu|pcma|l16|opus; plivo: pcmu|l16; native: all; twilio: pcmu;
    /// vonage: l16) [default: pcmu, vonage l16].
    #[arg(long, value_enum)]
    pub codec: Option<CodecArg>,
    /// Sample rate in Hz [default: 8000 for pcmu/pcma, 16000 for l16, 48000 for opus].
    #[arg(long)]
    pub sample_rate: Option<u32>,
    /// Seconds of silence streamed after the fixture, so the last answer is heard.
    #[arg(long, default_value_t = 3.0)]
    pub tail: f64,
    /// Agent frames quieter than this RMS level (dBFS) count as silence.
    #[arg(long, default_value_t = -45.0, allow_hyphen_values = true)]
    pub silence_dbfs: f64,
    /// Seconds allowed for connecting and the websocket handshake.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Write the JSON report here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the SVG latency plot here [default: next to --out, with .svg].
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
}

/// A validated run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Websocket URL of the media endpoint, path included.
    pub url: String,
    pub protocol: Protocol,
    /// Codec and rate of both directions.
    pub format: WireFormat,
    /// Annotation files or folders.
    pub fixtures: Vec<PathBuf>,
    pub calls: usize,
    /// At most this many calls live at once (≤ `calls`).
    pub concurrency: usize,
    /// The first `concurrency` calls start spread over this.
    pub ramp: Duration,
    /// Caller audio plays this many times faster than real time.
    pub speed: f64,
    /// Silence streamed after the fixture.
    pub tail: Duration,
    pub agent_id: Option<String>,
    pub key: Option<String>,
    /// Further custom parameters.
    pub params: Vec<(String, String)>,
    /// RMS level (dBFS) under which an agent frame is silence.
    pub silence_dbfs: f64,
    pub connect_timeout: Duration,
    /// Draw the progress bar (when stderr is a terminal).
    pub progress: bool,
}

impl Options {
    /// A run of one call with the defaults, the protocol's default codec.
    pub fn new(url: &str, protocol: Protocol, fixtures: Vec<PathBuf>) -> Result<Options, InvalidOption> {
        let format = default_format(protocol, None, None)?;
        Ok(Options {
            url: full_url(url, protocol)?,
            protocol,
            format,
            fixtures,
            calls: 1,
            concurrency: 1,
            ramp: Duration::ZERO,
            speed: 1.0,
            tail: Duration::from_secs(3),
            agent_id: None,
            key: None,
            params: Vec::new(),
            silence_dbfs: -45.0,
            connect_timeout: Duration::from_secs(10),
            progress: false,
        })
    }
}

impl LoadtestArgs {
    pub fn resolve(&self) -> Result<Options, InvalidOption> {
        let protocol = Protocol::from(self.protocol);
        let seconds = |flag: &'static str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(invalid(flag, format!("{v} is not a number of seconds ≥ 0")))
            }
        };
        if self.calls == 0 {
            return Err(invalid("calls", "at least 1"));
        }
        if self.concurrency == 0 {
            return Err(invalid("concurrency", "at least 1"));
        }
        if !(self.speed.is_finite() && self.speed > 0.0 && self.speed <= 20.0) {
            return Err(invalid("speed", format!("{} is not in (0, 20]", self.speed)));
        }
        if !(self.silence_dbfs.is_finite() && self.silence_dbfs < 0.0) {
            return Err(invalid("silence-dbfs", "a level below 0 dBFS, e.g. -45"));
        }
        let connect_timeout = seconds("connect-timeout", self.connect_timeout)?;
        if connect_timeout.is_zero() {
            return Err(invalid("connect-timeout", "more than 0 seconds"));
        }
        let params = self
            .params
            .iter()
            .map(|p| match p.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
                _ => Err(invalid("param", format!("{p:?} is not NAME=VALUE"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Options {
            url: full_url(&self.url, protocol)?,
            protocol,
            format: default_format(protocol, self.codec, self.sample_rate)?,
            fixtures: self.fixtures.clone(),
            calls: self.calls,
            concurrency: self.concurrency.min(self.calls),
            ramp: seconds("ramp", self.ramp)?,
            speed: self.speed,
            tail: seconds("tail", self.tail)?,
            agent_id: self.agent.clone(),
            key: self.key.clone(),
            params,
            silence_dbfs: self.silence_dbfs,
            connect_timeout,
            progress: !self.quiet,
        })
    }

    /// Where the plot goes: `--plot`, else next to `--out` with an `.svg` extension.
    pub fn plot_path(&self) -> Option<PathBuf> {
        self.plot.clone().or_else(|| self.out.as_ref().map(|o| o.with_extension("svg")))
    }
}

/// `ws://host:port` → `ws://host:port/twilio/media`; a URL with a path is kept as it is.
fn full_url(url: &str, protocol: Protocol) -> Result<String, InvalidOption> {
    let mut parsed = reqwest::Url::parse(url).map_err(|e| invalid("url", format!("{url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "ws" | "wss") {
        return Err(invalid("url", format!("{url:?}: use ws:// or wss://")));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("url", format!("{url:?}: no host")));
    }
    if matches!(parsed.path(), "" | "/") {
        parsed.set_path(wire::default_path(protocol));
    }
    Ok(parsed.to_string())
}

fn default_format(
    protocol: Protocol,
    codec: Option<CodecArg>,
    rate: Option<u32>,
) -> Result<WireFormat, InvalidOption> {
    let allowed = wire::formats(protocol);
    let encoding = match codec {
        None => allowed[0],
        Some(CodecArg::Pcmu) => Encoding::Pcmu,
        Some(CodecArg::Pcma) => Encoding::Pcma,
        // Telnyx carries RTP payloads: L16 in network byte order.
        Some(CodecArg::L16) if protocol == Protocol::Telnyx => Encoding::L16Be,
        Some(CodecArg::L16) => Encoding::L16Le,
        Some(CodecArg::Opus) => Encoding::Opus,
    };
    if !allowed.contains(&encoding) {
        return Err(invalid("codec", format!("{encoding:?} is not a {} codec", protocol.as_str())));
    }
    let sample_rate_hz = rate.unwrap_or(match encoding {
        Encoding::Pcmu | Encoding::Pcma => 8000,
        Encoding::L16Le | Encoding::L16Be => 16000,
        Encoding::Opus => 48000,
    });
    let ok = match (protocol, encoding) {
        (_, Encoding::Pcmu | Encoding::Pcma) => sample_rate_hz == 8000,
        (Protocol::Vonage | Protocol::Plivo, _) => matches!(sample_rate_hz, 8000 | 16000),
        _ => StreamResampler::SUPPORTED_RATES_HZ.contains(&sample_rate_hz),
    };
    if !ok {
        return Err(invalid(
            "sample-rate",
            format!("{sample_rate_hz} Hz is not a {} rate for {encoding:?}", protocol.as_str()),
        ));
    }
    Ok(WireFormat { encoding, sample_rate_hz })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadtestArgs,
    }

    fn parse(extra: &[&str]) -> Result<Options, InvalidOption> {
        let mut argv = vec!["loadtest", "--url", "ws://127.0.0.1:8080", "--fixtures", "x"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).expect("parses").args.resolve()
    }

    #[test]
    fn defaults_and_paths() {
        let o = parse(&[]).unwrap();
        assert_eq!(o.url, "ws://127.0.0.1:8080/twilio/media");
        assert_eq!((o.calls, o.concurrency, o.speed), (1, 1, 1.0));
        assert_eq!(o.format, WireFormat::PCMU_8K);
        assert_eq!(o.tail, Duration::from_secs(3));
        let o = parse(&["--protocol", "vonage", "--calls", "5", "--concurrency", "9"]).unwrap();
        assert_eq!(o.url, "ws://127.0.0.1:8080/vonage/media");
        assert_eq!(o.format, WireFormat { encoding: Encoding::L16Le, sample_rate_hz: 16000 });
        assert_eq!(o.concurrency, 5, "never more live calls than calls");
        let o = Cli::try_parse_from(["l", "--url", "wss://media.example.com/custom/path", "--fixtures", "x"])
            .unwrap()
            .args
            .resolve()
            .unwrap();
        assert_eq!(o.url, "wss://media.example.com/custom/path", "a given path is kept");
        let o = parse(&[
            "--protocol",
            "telnyx",
            "--codec",
            "l16",
            "--param",
            "mode=loopback",
            "--param",
            "a=b=c",
        ])
        .unwrap();
        assert_eq!(o.format, WireFormat { encoding: Encoding::L16Be, sample_rate_hz: 16000 });
        assert_eq!(o.params, [("mode".into(), "loopback".into()), ("a".into(), "b=c".into())]);
        let o = parse(&["--protocol", "native", "--codec", "opus", "--silence-dbfs", "-50"]).unwrap();
        assert_eq!(o.format, WireFormat { encoding: Encoding::Opus, sample_rate_hz: 48000 });
        assert_eq!(o.silence_dbfs, -50.0);
    }

    #[test]
    fn bad_settings_name_their_flag() {
        for (extra, flag) in [
            (&["--calls", "0"][..], "calls"),
            (&["--concurrency", "0"], "concurrency"),
            (&["--speed", "0"], "speed"),
            (&["--ramp=-1"], "ramp"),
            (&["--codec", "l16"], "codec"),
            (&["--protocol", "vonage", "--sample-rate", "48000"], "sample-rate"),
            (&["--protocol", "native", "--codec", "pcmu", "--sample-rate", "16000"], "sample-rate"),
            (&["--param", "novalue"], "param"),
            (&["--silence-dbfs", "3"], "silence-dbfs"),
        ] {
            let err = parse(extra).unwrap_err();
            assert_eq!(err.flag, flag, "{extra:?}: {err}");
        }
        for url in ["http://x:1", "ws://", "nonsense"] {
            let err = Cli::try_parse_from(["l", "--url", url, "--fixtures", "x"])
                .unwrap()
                .args
                .resolve()
                .unwrap_err();
            assert_eq!(err.flag, "url", "{url}");
        }
    }

    #[test]
    fn the_plot_goes_next_to_the_report() {
        let cli = Cli::try_parse_from(["l", "--url", "ws://h", "--fixtures", "x", "--out", "r/report.json"])
            .unwrap();
        assert_eq!(cli.args.plot_path(), Some(PathBuf::from("r/report.svg")));
        let cli =
            Cli::try_parse_from(["l", "--url", "ws://h", "--fixtures", "x", "--plot", "p.svg"]).unwrap();
        assert_eq!(cli.args.plot_path(), Some(PathBuf::from("p.svg")));
    }
}
