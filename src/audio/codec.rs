//! Wire codecs: one [`Decoder`] and one [`Encoder`] per call direction, built from the
//! negotiated [`WireFormat`] and converting between wire payloads and 16-bit mono PCM at the
//! wire rate.
//!
//! * G.711 μ-law / A-law — table-driven, bit-exact with ITU-T G.191 (see `audio/g711.rs`);
//!   any payload length, one sample per byte.
//! * L16 little- and big-endian — any even payload length.
//! * Opus — libopus through the `opus` crate, mono, 20 ms packets in (any legal duration is
//!   decoded, up to 120 ms), exactly one 20 ms frame per [`Encoder::encode`], VoIP
//!   application. Rates 8, 12, 16, 24 and 48 kHz.
//!
//! Both types are enums, so the per-call `match` picks the codec once and the per-sample loop
//! runs without dynamic dispatch. Per-frame methods write into caller-provided buffers and
//! never allocate; size them with [`MAX_DECODED_SAMPLES`] and [`max_frame_bytes`].

pub use super::g711::{alaw_decode, alaw_encode, mulaw_decode, mulaw_encode};
use crate::transport::{Encoding, WireFormat};

/// Largest media payload accepted upstream (the websocket message limit).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Most samples one payload can decode to: a full [`MAX_PAYLOAD_BYTES`] of G.711 (one sample
/// per byte). Covers L16 (half that) and the longest Opus packet, 120 ms at 48 kHz (5760).
pub const MAX_DECODED_SAMPLES: usize = MAX_PAYLOAD_BYTES;

/// Longest Opus packet one 20 ms frame can produce: one TOC byte plus the 1275-byte frame
/// limit of RFC 6716 §3.2.1. Also the `max_data_bytes` the encoder is allowed.
pub const MAX_OPUS_PACKET_BYTES: usize = 1 + 1275;

/// Longest Opus packet duration (RFC 6716 §3.2.5), in samples at 48 kHz.
pub const MAX_OPUS_PACKET_SAMPLES_48K: usize = 120 * 48;

/// Sample rates libopus runs at.
pub const OPUS_RATES_HZ: [u32; 5] = [8000, 12000, 16000, 24000, 48000];

/// Lowest and highest rate accepted for G.711 and L16 (which must also be a multiple of 50 Hz,
/// so a 20 ms frame is a whole number of samples).
pub const PCM_RATE_RANGE_HZ: (u32, u32) = (8000, 48000);

const _: () = assert!(MAX_DECODED_SAMPLES >= MAX_OPUS_PACKET_SAMPLES_48K);

/// Codec faults. Everything here is an expected state on the media path (a bad packet, a
/// caller's buffer too small), never a panic.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("{encoding:?} does not support {rate_hz} Hz (Opus: 8000, 12000, 16000, 24000 or 48000 Hz; G.711/L16: a multiple of 50 Hz in 8000..=48000)")]
    UnsupportedRate { encoding: Encoding, rate_hz: u32 },
    #[error("L16 payload of {bytes} bytes is not a whole number of 16-bit samples")]
    OddL16Length { bytes: usize },
    #[error("output buffer holds {capacity} items, {needed} needed")]
    OutputTooSmall { needed: usize, capacity: usize },
    #[error("Opus encodes one 20 ms frame of {expected} samples, got {got}")]
    FrameLength { expected: usize, got: usize },
    #[error("opus {function} failed: {}", code.description())]
    Opus { function: &'static str, code: opus::ErrorCode },
}

impl From<opus::Error> for CodecError {
    fn from(err: opus::Error) -> Self {
        Self::Opus { function: err.function(), code: err.code() }
    }
}

/// Result alias for this module.
pub type Result<T, E = CodecError> = std::result::Result<T, E>;

/// Opus bitrate for mono speech at a given decoder rate: narrowband 16 kb/s, mediumband
/// 20 kb/s, wideband 24 kb/s, super-wide/fullband 32 kb/s — transparent for speech, a fraction
/// of G.711's 64 kb/s.
pub fn opus_bitrate_bps(rate_hz: u32) -> i32 {
    match rate_hz {
        0..=8000 => 16_000,
        8001..=12000 => 20_000,
        12001..=16000 => 24_000,
        _ => 32_000,
    }
}

/// Largest encoded 20 ms frame in `format`, for sizing [`Encoder::encode`]'s output buffer.
pub fn max_frame_bytes(format: WireFormat) -> usize {
    format.frame_bytes().unwrap_or(MAX_OPUS_PACKET_BYTES)
}

fn validate(format: WireFormat) -> Result<()> {
    let rate_hz = format.sample_rate_hz;
    let ok = match format.encoding {
        Encoding::Opus => OPUS_RATES_HZ.contains(&rate_hz),
        Encoding::Pcmu | Encoding::Pcma | Encoding::L16Le | Encoding::L16Be => {
            (PCM_RATE_RANGE_HZ.0..=PCM_RATE_RANGE_HZ.1).contains(&rate_hz) && rate_hz % 50 == 0
        }
    };
    if ok {
        Ok(())
    } else {
        Err(CodecError::UnsupportedRate { encoding: format.encoding, rate_hz })
    }
}

fn check_capacity(needed: usize, capacity: usize) -> Result<()> {
    if needed > capacity {
        Err(CodecError::OutputTooSmall { needed, capacity })
    } else {
        Ok(())
    }
}

/// Wire payload → 16-bit PCM at the wire rate.
pub enum Decoder {
    Pcmu,
    Pcma,
    L16Le,
    L16Be,
    Opus(OpusDecoder),
}

/// Opus decoding state.
pub struct OpusDecoder {
    /// libopus state (carries the inter-packet prediction and the concealment history).
    inner: opus::Decoder,
    /// Decoder output rate, for packet-duration parsing.
    rate_hz: u32,
    /// Samples in 20 ms: the length concealed for an empty (lost) payload.
    frame_samples: usize,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pcmu => f.write_str("Decoder::Pcmu"),
            Self::Pcma => f.write_str("Decoder::Pcma"),
            Self::L16Le => f.write_str("Decoder::L16Le"),
            Self::L16Be => f.write_str("Decoder::L16Be"),
            Self::Opus(d) => write!(f, "Decoder::Opus({} Hz)", d.rate_hz),
        }
    }
}

impl Decoder {
    /// A decoder for `format`. Opus allocates its state here; the others are stateless.
    pub fn new(format: WireFormat) -> Result<Self> {
        validate(format)?;
        Ok(match format.encoding {
            Encoding::Pcmu => Self::Pcmu,
            Encoding::Pcma => Self::Pcma,
            Encoding::L16Le => Self::L16Le,
            Encoding::L16Be => Self::L16Be,
            Encoding::Opus => Self::Opus(OpusDecoder {
                inner: opus::Decoder::new(format.sample_rate_hz, opus::Channels::Mono)?,
                rate_hz: format.sample_rate_hz,
                frame_samples: format.frame_samples(),
            }),
        })
    }

    /// Decodes one payload into `out`, returning the number of samples written.
    ///
    /// For Opus an empty payload means a lost packet: 20 ms of concealment is written.
    /// `out` of [`MAX_DECODED_SAMPLES`] always suffices.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize> {
        match self {
            Self::Pcmu => {
                check_capacity(payload.len(), out.len())?;
                for (dst, &code) in out.iter_mut().zip(payload) {
                    *dst = mulaw_decode(code);
                }
                Ok(payload.len())
            }
            Self::Pcma => {
                check_capacity(payload.len(), out.len())?;
                for (dst, &code) in out.iter_mut().zip(payload) {
                    *dst = alaw_decode(code);
                }
                Ok(payload.len())
            }
            Self::L16Le | Self::L16Be => {
                if payload.len() % 2 != 0 {
                    return Err(CodecError::OddL16Length { bytes: payload.len() });
                }
                let samples = payload.len() / 2;
                check_capacity(samples, out.len())?;
                let pairs = out.iter_mut().zip(payload.chunks_exact(2));
                if matches!(self, Self::L16Le) {
                    pairs.for_each(|(dst, b)| *dst = i16::from_le_bytes([b[0], b[1]]));
                } else {
                    pairs.for_each(|(dst, b)| *dst = i16::from_be_bytes([b[0], b[1]]));
                }
                Ok(samples)
            }
            Self::Opus(d) => {
                let needed = if payload.is_empty() {
                    d.frame_samples
                } else {
                    opus::packet::get_nb_samples(payload, d.rate_hz)?
                };
                check_capacity(needed, out.len())?;
                Ok(d.inner.decode(payload, &mut out[..needed], false)?)
            }
        }
    }
}

/// 16-bit PCM at the wire rate → wire payload.
pub enum Encoder {
    Pcmu,
    Pcma,
    L16Le,
    L16Be,
    Opus(OpusEncoder),
}

/// Opus encoding state.
pub struct OpusEncoder {
    /// libopus state.
    inner: opus::Encoder,
    /// Encoder input rate.
    rate_hz: u32,
    /// Samples in the one 20 ms frame each `encode` takes.
    frame_samples: usize,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pcmu => f.write_str("Encoder::Pcmu"),
            Self::Pcma => f.write_str("Encoder::Pcma"),
            Self::L16Le => f.write_str("Encoder::L16Le"),
            Self::L16Be => f.write_str("Encoder::L16Be"),
            Self::Opus(e) => write!(f, "Encoder::Opus({} Hz)", e.rate_hz),
        }
    }
}

impl Encoder {
    /// An encoder for `format`. Opus: VoIP application, [`opus_bitrate_bps`], VBR.
    pub fn new(format: WireFormat) -> Result<Self> {
        validate(format)?;
        Ok(match format.encoding {
            Encoding::Pcmu => Self::Pcmu,
            Encoding::Pcma => Self::Pcma,
            Encoding::L16Le => Self::L16Le,
            Encoding::L16Be => Self::L16Be,
            Encoding::Opus => {
                let rate_hz = format.sample_rate_hz;
                let mut inner = opus::Encoder::new(rate_hz, opus::Channels::Mono, opus::Application::Voip)?;
                inner.set_bitrate(opus::Bitrate::Bits(opus_bitrate_bps(rate_hz)))?;
                Self::Opus(OpusEncoder { inner, rate_hz, frame_samples: format.frame_samples() })
            }
        })
    }

    /// Encodes `pcm` into `out`, returning the number of bytes written. G.711 and L16 take
    /// any length; Opus takes exactly one 20 ms frame. `out` of [`max_frame_bytes`] suffices
    /// for a 20 ms frame.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize> {
        match self {
            Self::Pcmu => {
                check_capacity(pcm.len(), out.len())?;
                for (dst, &sample) in out.iter_mut().zip(pcm) {
                    *dst = mulaw_encode(sample);
                }
                Ok(pcm.len())
            }
            Self::Pcma => {
                check_capacity(pcm.len(), out.len())?;
                for (dst, &sample) in out.iter_mut().zip(pcm) {
                    *dst = alaw_encode(sample);
                }
                Ok(pcm.len())
            }
            Self::L16Le | Self::L16Be => {
                let bytes = pcm.len() * 2;
                check_capacity(bytes, out.len())?;
                let pairs = out.chunks_exact_mut(2).zip(pcm);
                if matches!(self, Self::L16Le) {
                    pairs.for_each(|(dst, s)| dst.copy_from_slice(&s.to_le_bytes()));
                } else {
                    pairs.for_each(|(dst, s)| dst.copy_from_slice(&s.to_be_bytes()));
                }
                Ok(bytes)
            }
            Self::Opus(e) => {
                if pcm.len() != e.frame_samples {
                    return Err(CodecError::FrameLength { expected: e.frame_samples, got: pcm.len() });
                }
                let limit = out.len().min(MAX_OPUS_PACKET_BYTES);
                Ok(e.inner.encode(pcm, &mut out[..limit])?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::testutil::{rms, sine, zero_crossing_hz};

    fn fmt(encoding: Encoding, rate_hz: u32) -> WireFormat {
        WireFormat { encoding, sample_rate_hz: rate_hz }
    }

    #[test]
    fn g711_frames_round_trip_within_quantisation_error() {
        for encoding in [Encoding::Pcmu, Encoding::Pcma] {
            for frame_len in [1, 80, 160, 161, 320] {
                let format = fmt(encoding, 8000);
                let (mut enc, mut dec) = (Encoder::new(format).unwrap(), Decoder::new(format).unwrap());
                let pcm = sine(440.0, 8000, frame_len, 20000.0);
                let mut wire = vec![0u8; frame_len];
                let mut back = vec![0i16; frame_len];
                assert_eq!(enc.encode(&pcm, &mut wire).unwrap(), frame_len);
                assert_eq!(dec.decode(&wire, &mut back).unwrap(), frame_len);
                for (&x, &y) in pcm.iter().zip(&back) {
                    // Largest G.711 step is 1024 (μ) / 1024 (A); the error is at most half a
                    // step, and at most ~3.2 % of the magnitude above the linear segments.
                    let err = (x as i32 - y as i32).abs();
                    assert!(err <= 16 + (x as i32).abs() / 31, "{encoding:?}: {x} → {y}");
                }
            }
        }
    }

    #[test]
    fn l16_byte_order() {
        let pcm = [0x1234i16, -2, i16::MIN, i16::MAX];
        let mut wire = [0u8; 8];
        let mut le = Encoder::new(fmt(Encoding::L16Le, 16000)).unwrap();
        assert_eq!(le.encode(&pcm, &mut wire).unwrap(), 8);
        assert_eq!(wire, [0x34, 0x12, 0xFE, 0xFF, 0x00, 0x80, 0xFF, 0x7F]);
        let mut be = Encoder::new(fmt(Encoding::L16Be, 8000)).unwrap();
        assert_eq!(be.encode(&pcm, &mut wire).unwrap(), 8);
        assert_eq!(wire, [0x12, 0x34, 0xFF, 0xFE, 0x80, 0x00, 0x7F, 0xFF]);
        for encoding in [Encoding::L16Le, Encoding::L16Be] {
            for rate_hz in [8000, 16000] {
                let format = fmt(encoding, rate_hz);
                let pcm = sine(300.0, rate_hz, format.frame_samples(), 12000.0);
                let mut wire = vec![0u8; max_frame_bytes(format)];
                let mut back = vec![0i16; MAX_DECODED_SAMPLES];
                let n = Encoder::new(format).unwrap().encode(&pcm, &mut wire).unwrap();
                assert_eq!(n, format.frame_bytes().unwrap());
                let m = Decoder::new(format).unwrap().decode(&wire[..n], &mut back).unwrap();
                assert_eq!(&back[..m], &pcm[..]);
            }
        }
    }

    #[test]
    fn l16_odd_length_is_an_error() {
        let mut dec = Decoder::new(fmt(Encoding::L16Le, 16000)).unwrap();
        let err = dec.decode(&[1, 2, 3], &mut [0; 4]).unwrap_err();
        assert!(matches!(err, CodecError::OddL16Length { bytes: 3 }));
    }

    #[test]
    fn small_output_buffers_are_errors() {
        for encoding in [Encoding::Pcmu, Encoding::Pcma, Encoding::L16Le, Encoding::L16Be] {
            let mut dec = Decoder::new(fmt(encoding, 8000)).unwrap();
            let err = dec.decode(&[0u8; 160], &mut [0i16; 10]).unwrap_err();
            assert!(matches!(err, CodecError::OutputTooSmall { capacity: 10, .. }), "{encoding:?}");
            let mut enc = Encoder::new(fmt(encoding, 8000)).unwrap();
            let err = enc.encode(&[0i16; 160], &mut [0u8; 10]).unwrap_err();
            assert!(matches!(err, CodecError::OutputTooSmall { capacity: 10, .. }), "{encoding:?}");
        }
        let format = fmt(Encoding::Opus, 16000);
        let mut packet = [0u8; MAX_OPUS_PACKET_BYTES];
        let n = Encoder::new(format).unwrap().encode(&[0i16; 320], &mut packet).unwrap();
        let err = Decoder::new(format).unwrap().decode(&packet[..n], &mut [0i16; 319]).unwrap_err();
        assert!(matches!(err, CodecError::OutputTooSmall { needed: 320, capacity: 319 }));
    }

    #[test]
    fn unsupported_rates_name_the_rate() {
        for rate_hz in [0, 11025, 22050, 44100, 96000] {
            let err = Decoder::new(fmt(Encoding::Opus, rate_hz)).unwrap_err();
            assert!(matches!(err, CodecError::UnsupportedRate { rate_hz: r, .. } if r == rate_hz));
            assert!(err.to_string().contains(&format!("{rate_hz} Hz")), "{err}");
            assert!(Encoder::new(fmt(Encoding::Opus, rate_hz)).is_err());
        }
        for rate_hz in OPUS_RATES_HZ {
            assert!(Decoder::new(fmt(Encoding::Opus, rate_hz)).is_ok());
            assert!(Encoder::new(fmt(Encoding::Opus, rate_hz)).is_ok());
        }
        assert!(Decoder::new(fmt(Encoding::Pcmu, 0)).is_err());
        assert!(Decoder::new(fmt(Encoding::L16Le, 8001)).is_err());
        assert!(Decoder::new(fmt(Encoding::L16Le, 44100)).is_ok());
    }

    #[test]
    fn opus_rejects_a_frame_that_is_not_20_ms() {
        let mut enc = Encoder::new(fmt(Encoding::Opus, 8000)).unwrap();
        let err = enc.encode(&[0i16; 80], &mut [0u8; MAX_OPUS_PACKET_BYTES]).unwrap_err();
        assert!(matches!(err, CodecError::FrameLength { expected: 160, got: 80 }));
    }

    #[test]
    fn opus_sine_keeps_its_frequency_and_level() {
        for rate_hz in [8000, 16000, 48000] {
            let format = fmt(Encoding::Opus, rate_hz);
            let (mut enc, mut dec) = (Encoder::new(format).unwrap(), Decoder::new(format).unwrap());
            let frame = format.frame_samples();
            let frames = 50; // one second
            let input = sine(440.0, rate_hz, frame * frames, 10000.0);
            let mut packet = vec![0u8; max_frame_bytes(format)];
            let mut pcm = vec![0i16; MAX_DECODED_SAMPLES];
            let mut output = Vec::with_capacity(input.len());
            for chunk in input.chunks_exact(frame) {
                let n = enc.encode(chunk, &mut packet).unwrap();
                assert!(n > 0 && n <= MAX_OPUS_PACKET_BYTES);
                let m = dec.decode(&packet[..n], &mut pcm).unwrap();
                assert_eq!(m, frame);
                output.extend_from_slice(&pcm[..m]);
            }
            // Skip 200 ms of codec warm-up (look-ahead, bitrate/bandwidth settling).
            let settled = &output[rate_hz as usize / 5..];
            let hz = zero_crossing_hz(settled, rate_hz);
            assert!((hz - 440.0).abs() < 4.0, "{rate_hz} Hz: dominant frequency {hz}");
            let gain_db = 20.0 * (rms(settled) / rms(&input[rate_hz as usize / 5..])).log10();
            assert!(gain_db.abs() < 3.0, "{rate_hz} Hz: level changed by {gain_db:.2} dB");
        }
    }

    #[test]
    fn opus_decodes_a_120_ms_packet_at_48_khz_and_conceals_a_lost_one() {
        let mut raw = opus::Encoder::new(48000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let pcm = sine(440.0, 48000, MAX_OPUS_PACKET_SAMPLES_48K, 8000.0);
        let mut packet = vec![0u8; 4000];
        let n = raw.encode(&pcm, &mut packet).unwrap();
        let mut dec = Decoder::new(fmt(Encoding::Opus, 48000)).unwrap();
        let mut out = vec![0i16; MAX_DECODED_SAMPLES];
        assert_eq!(dec.decode(&packet[..n], &mut out).unwrap(), MAX_OPUS_PACKET_SAMPLES_48K);
        assert_eq!(dec.decode(&[], &mut out).unwrap(), 960, "a lost packet conceals 20 ms");
        let err = dec.decode(&[0xFF, 0xFF, 0xFF], &mut out).unwrap_err();
        assert!(matches!(err, CodecError::Opus { .. }), "{err}");
    }

    #[test]
    fn max_frame_bytes_per_format() {
        assert_eq!(max_frame_bytes(WireFormat::PCMU_8K), 160);
        assert_eq!(max_frame_bytes(fmt(Encoding::Pcma, 8000)), 160);
        assert_eq!(max_frame_bytes(fmt(Encoding::L16Be, 16000)), 640);
        assert_eq!(max_frame_bytes(fmt(Encoding::Opus, 48000)), MAX_OPUS_PACKET_BYTES);
    }
}
