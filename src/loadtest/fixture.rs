//! Recorded calls for the load tester: a JSON annotation (`audio-fixtures/calls/*.json`) naming a
//! mono WAV file, its caller turns and DTMF presses, and the audio cut into wire frames for one
//! negotiated [`WireFormat`].
//!
//! Annotation: `{"file": "x.mulaw-8k.wav", "callerTurns": [{"startMs", "endMs", "text"}],
//! "dtmf": [{"atMs", "digit", "durationMs"}], "expect": {…}}`; other members are ignored. The WAV
//! may be G.711 μ-law or A-law (format tags 7 and 6) or 16-bit PCM (tag 1), at any rate the
//! resampler takes (8, 12, 16, 24 or 48 kHz).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::audio::codec::{alaw_decode, max_frame_bytes, mulaw_decode, Encoder};
use crate::audio::resample::StreamResampler;
use crate::transport::WireFormat;

/// Why a fixture could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a call annotation: {detail}")]
    Annotation { path: PathBuf, detail: String },
    #[error("{path}: {detail}")]
    Wav { path: PathBuf, detail: String },
    #[error("{path}: no call annotations (*.json) found")]
    Empty { path: PathBuf },
    #[error("cannot encode {name} for the wire: {detail}")]
    Encode { name: String, detail: String },
}

pub type Result<T, E = FixtureError> = std::result::Result<T, E>;

/// One caller turn of a recorded call, in milliseconds of fixture audio.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallerTurn {
    pub start_ms: u32,
    pub end_ms: u32,
    #[serde(default)]
    pub text: String,
}

/// A key press the caller makes, in milliseconds of fixture audio.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DtmfPress {
    pub at_ms: u32,
    pub digit: char,
    /// How long the key is held (Vonage reports it); 250 ms when not given.
    #[serde(default = "default_dtmf_ms")]
    pub duration_ms: u32,
}

fn default_dtmf_ms() -> u32 {
    250
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Annotation {
    file: String,
    caller_turns: Vec<CallerTurn>,
    #[serde(default)]
    dtmf: Vec<DtmfPress>,
}

/// A recorded call, decoded to 16-bit PCM at the file's rate.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The annotation's file stem (`two-turns`).
    pub name: String,
    pub turns: Vec<CallerTurn>,
    /// Sorted by time.
    pub dtmf: Vec<DtmfPress>,
    pub pcm: Vec<i16>,
    pub sample_rate_hz: u32,
}

/// A fixture cut into 20 ms wire frames.
#[derive(Debug)]
pub struct EncodedAudio {
    /// One payload per 20 ms, the last one padded with silence.
    pub frames: Vec<Vec<u8>>,
    /// One 20 ms frame of silence, streamed after the fixture (the tail).
    pub silence: Vec<u8>,
}

impl Fixture {
    /// Length of the audio in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.pcm.len() as u64 * 1000 / u64::from(self.sample_rate_hz)
    }

    /// Loads one annotation and the WAV it names (relative to the annotation's folder).
    pub fn load(path: &Path) -> Result<Fixture> {
        let io = |source| FixtureError::Io { path: path.to_path_buf(), source };
        let text = std::fs::read_to_string(path).map_err(io)?;
        let ann: Annotation = serde_json::from_str(&text)
            .map_err(|e| FixtureError::Annotation { path: path.to_path_buf(), detail: e.to_string() })?;
        let bad = |detail: String| FixtureError::Annotation { path: path.to_path_buf(), detail };
        for t in &ann.caller_turns {
            if t.end_ms < t.start_ms {
                return Err(bad(format!(
                    "caller turn ends ({}) before it starts ({})",
                    t.end_ms, t.start_ms
                )));
            }
        }
        if ann.caller_turns.windows(2).any(|w| w[1].start_ms < w[0].end_ms) {
            return Err(bad("caller turns overlap or are out of order".into()));
        }
        for d in &ann.dtmf {
            if !matches!(d.digit, '0'..='9' | '*' | '#' | 'A'..='D') {
                return Err(bad(format!("dtmf digit {:?} is not one of 0-9 * # A-D", d.digit)));
            }
        }
        let wav_path = path.parent().unwrap_or(Path::new(".")).join(&ann.file);
        let bytes =
            std::fs::read(&wav_path).map_err(|source| FixtureError::Io { path: wav_path.clone(), source })?;
        let (sample_rate_hz, pcm) =
            read_wav(&bytes).map_err(|detail| FixtureError::Wav { path: wav_path.clone(), detail })?;
        let mut dtmf = ann.dtmf;
        dtmf.sort_by_key(|d| d.at_ms);
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Fixture { name, turns: ann.caller_turns, dtmf, pcm, sample_rate_hz })
    }

    /// Loads every fixture named by `paths`: a file is one annotation, a folder gives all its
    /// `*.json` annotations in name order.
    pub fn load_all(paths: &[PathBuf]) -> Result<Vec<Fixture>> {
        let mut out = Vec::new();
        for path in paths {
            if path.is_dir() {
                let io = |source| FixtureError::Io { path: path.clone(), source };
                let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(io)?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect();
                files.sort();
                if files.is_empty() {
                    return Err(FixtureError::Empty { path: path.clone() });
                }
                for f in files {
                    out.push(Fixture::load(&f)?);
                }
            } else {
                out.push(Fixture::load(path)?);
            }
        }
        Ok(out)
    }

    /// The audio as 20 ms frames of `format` (resampled and encoded), plus a silence frame.
    pub fn encode(&self, format: WireFormat) -> Result<EncodedAudio> {
        let err = |detail: String| FixtureError::Encode { name: self.name.clone(), detail };
        let mut resampler = StreamResampler::new(self.sample_rate_hz, format.sample_rate_hz)
            .map_err(|e| err(e.to_string()))?;
        let mut pcm = Vec::with_capacity(resampler.output_len_hint(self.pcm.len()) + 1024);
        resampler.process(&self.pcm, &mut pcm);
        // Push the resampler's delay and its last partial block out with silence, then drop the
        // leading delay so the audio keeps its annotated timing.
        let flush = vec![0i16; self.sample_rate_hz as usize / 50];
        resampler.process(&flush, &mut pcm);
        let delay = resampler.delay_samples().min(pcm.len());
        pcm.drain(..delay);
        let frame = format.frame_samples();
        let frames_total = (self.pcm.len() as u64 * u64::from(format.sample_rate_hz))
            .div_ceil(u64::from(self.sample_rate_hz))
            .div_ceil(frame as u64) as usize;
        pcm.resize(frames_total * frame, 0);

        let mut encoder = Encoder::new(format).map_err(|e| err(e.to_string()))?;
        let mut buf = vec![0u8; max_frame_bytes(format)];
        let mut encode = |samples: &[i16]| -> Result<Vec<u8>> {
            let n = encoder.encode(samples, &mut buf).map_err(|e| err(e.to_string()))?;
            Ok(buf[..n].to_vec())
        };
        let frames = pcm.chunks_exact(frame).map(&mut encode).collect::<Result<Vec<_>>>()?;
        let silence = encode(&vec![0; frame])?;
        Ok(EncodedAudio { frames, silence })
    }
}

/// Mono WAV → (rate, 16-bit samples). G.711 μ-law/A-law or 16-bit PCM.
pub fn read_wav(bytes: &[u8]) -> std::result::Result<(u32, Vec<i16>), String> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file".into());
    }
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len =
            u32::from_le_bytes([bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]]) as usize;
        let body = &bytes[pos + 8..(pos + 8 + len).min(bytes.len())];
        if id == b"fmt " {
            if body.len() < 16 {
                return Err("short fmt chunk".into());
            }
            let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
            let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
            fmt = Some((u16_at(0), u16_at(2), rate, u16_at(14)));
        } else if id == b"data" {
            let (tag, channels, rate, bits) = fmt.ok_or("data chunk before fmt chunk")?;
            if channels != 1 {
                return Err(format!("{channels} channels; fixtures are mono"));
            }
            let pcm = match (tag, bits) {
                (7, 8) => body.iter().map(|&b| mulaw_decode(b)).collect(),
                (6, 8) => body.iter().map(|&b| alaw_decode(b)).collect(),
                (1, 16) => body.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect(),
                _ => {
                    return Err(format!("format tag {tag} with {bits} bits; use μ-law, A-law or 16-bit PCM"))
                }
            };
            return Ok((rate, pcm));
        }
        pos += 8 + len + (len & 1);
    }
    Err("no data chunk".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Encoding;

    fn calls_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("audio-fixtures/calls")
    }

    #[test]
    fn loads_the_recorded_calls_with_their_turns() {
        let all = Fixture::load_all(&[calls_dir()]).unwrap();
        assert!(all.len() >= 6, "{}", all.len());
        let two = all.iter().find(|f| f.name == "two-turns").unwrap();
        assert_eq!(two.turns.len(), 2);
        assert_eq!((two.turns[1].start_ms, two.turns[1].end_ms), (6788, 9226));
        assert_eq!(two.sample_rate_hz, 8000);
        assert!((11_700..11_760).contains(&two.duration_ms()), "{}", two.duration_ms());
    }

    #[test]
    fn frames_per_format_keep_the_length() {
        let two = Fixture::load(&calls_dir().join("two-turns.json")).unwrap();
        let want = two.pcm.len().div_ceil(160);
        let cases = [
            (WireFormat::PCMU_8K, Some(160)),
            (WireFormat { encoding: Encoding::Pcma, sample_rate_hz: 8000 }, Some(160)),
            (WireFormat { encoding: Encoding::L16Le, sample_rate_hz: 16000 }, Some(640)),
            (WireFormat { encoding: Encoding::L16Be, sample_rate_hz: 8000 }, Some(320)),
            (WireFormat { encoding: Encoding::Opus, sample_rate_hz: 48000 }, None),
        ];
        for (format, size) in cases {
            let audio = two.encode(format).unwrap();
            assert_eq!(audio.frames.len(), want, "{format:?}");
            if let Some(size) = size {
                assert!(audio.frames.iter().all(|f| f.len() == size), "{format:?}");
                assert_eq!(audio.silence.len(), size);
            }
        }
        // μ-law to μ-law is the identity (same rate, same codec).
        let mulaw = two.encode(WireFormat::PCMU_8K).unwrap();
        let back: Vec<i16> = mulaw.frames.concat().iter().map(|&b| mulaw_decode(b)).collect();
        assert_eq!(&back[..two.pcm.len()], &two.pcm[..]);
    }

    #[test]
    fn resampled_audio_keeps_its_timing() {
        // A click at 100 ms comes out at 100 ms at 16 kHz (the resampler's delay is removed).
        let mut pcm = vec![0i16; 1600];
        pcm[800] = 20000;
        let f = Fixture { name: "click".into(), turns: vec![], dtmf: vec![], pcm, sample_rate_hz: 8000 };
        let audio = f.encode(WireFormat { encoding: Encoding::L16Le, sample_rate_hz: 16000 }).unwrap();
        let samples: Vec<i16> =
            audio.frames.concat().chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        let peak = samples.iter().enumerate().max_by_key(|(_, s)| s.unsigned_abs()).unwrap().0;
        assert!((1598..=1602).contains(&peak), "peak at sample {peak}");
    }

    #[test]
    fn annotations_with_dtmf_and_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let wav = std::fs::read(calls_dir().join("barge-in.mulaw-8k.wav")).unwrap();
        std::fs::write(dir.path().join("a.wav"), wav).unwrap();
        let write = |name: &str, body: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, body).unwrap();
            p
        };
        let ok = write(
            "keys.json",
            r##"{"file": "a.wav", "callerTurns": [], "dtmf": [{"atMs": 900, "digit": "#"}, {"atMs": 300, "digit": "5", "durationMs": 100}], "expect": {"x": 1}}"##,
        );
        let f = Fixture::load(&ok).unwrap();
        assert_eq!(f.name, "keys");
        assert_eq!(
            f.dtmf,
            [
                DtmfPress { at_ms: 300, digit: '5', duration_ms: 100 },
                DtmfPress { at_ms: 900, digit: '#', duration_ms: 250 }
            ]
        );
        for body in [
            r#"{"callerTurns": []}"#,
            r#"{"file": "a.wav", "callerTurns": [{"startMs": 500, "endMs": 100}]}"#,
            r#"{"file": "a.wav", "callerTurns": [{"startMs": 0, "endMs": 900}, {"startMs": 800, "endMs": 1000}]}"#,
            r#"{"file": "a.wav", "callerTurns": [], "dtmf": [{"atMs": 1, "digit": "x"}]}"#,
        ] {
            let p = write("bad.json", body);
            assert!(matches!(Fixture::load(&p), Err(FixtureError::Annotation { .. })), "{body}");
        }
        let p = write("nowav.json", r#"{"file": "missing.wav", "callerTurns": []}"#);
        assert!(matches!(Fixture::load(&p), Err(FixtureError::Io { .. })));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(Fixture::load_all(&[empty.path().into()]), Err(FixtureError::Empty { .. })));
    }

    #[test]
    fn wav_formats() {
        let wav = |tag: u16, bits: u16, data: &[u8]| {
            let mut w = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0".to_vec();
            w.extend_from_slice(&tag.to_le_bytes());
            w.extend_from_slice(&1u16.to_le_bytes());
            w.extend_from_slice(&8000u32.to_le_bytes());
            w.extend_from_slice(&[0; 6]);
            w.extend_from_slice(&bits.to_le_bytes());
            w.extend_from_slice(b"data");
            w.extend_from_slice(&(data.len() as u32).to_le_bytes());
            w.extend_from_slice(data);
            w
        };
        assert_eq!(read_wav(&wav(1, 16, &[0x10, 0x27])).unwrap(), (8000, vec![10000]));
        assert_eq!(read_wav(&wav(7, 8, &[0xFF, 0x7F])).unwrap(), (8000, vec![0, 0]));
        assert_eq!(read_wav(&wav(6, 8, &[0xD5])).unwrap().1, vec![alaw_decode(0xD5)]);
        assert!(read_wav(&wav(3, 32, &[0; 4])).is_err());
        assert!(read_wav(b"nope").is_err());
    }
}
