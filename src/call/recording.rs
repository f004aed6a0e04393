//! Call recordings: a stereo WAV per call, the caller on the left channel and the agent on the
//! right, at the wire rate, written to disk as the call goes.
//!
//! One [`RecordingWriter`] thread per server owns every open file; a call's [`CallRecording`]
//! (in the session task, beside the socket) decodes both directions' wire frames, pairs them
//! up and hands the writer about [`FLUSH_MS`] of interleaved audio at a time through a bounded
//! channel — the media path never waits on the disk. After each append the writer rewrites the
//! header's two sizes, so a crash (of this process) leaves a valid WAV of everything written so
//! far; [`read_wav`] also repairs a header whose sizes lag the file (a machine crash).
//!
//! The two directions run on different clocks (the gateway's frames arrive with network jitter;
//! the agent's leave on the server's 20 ms clock). Samples are paired in arrival order; when one
//! side falls more than [`MAX_SKEW_MS`] behind the other (the gateway stopped sending, or a gap
//! in the agent's stream), the lagging side is padded with silence so they stay aligned.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

use crate::audio::codec::{Decoder, MAX_DECODED_SAMPLES};
use crate::transport::WireFormat;

/// Audio buffered per call before it is handed to the writer.
pub const FLUSH_MS: u32 = 500;
/// Most one direction may run ahead of the other before the lagging one is padded.
pub const MAX_SKEW_MS: u32 = 1000;
/// Appends waiting for the writer thread (all calls together); when full, audio is dropped and
/// counted rather than the media path blocked.
pub const WRITER_QUEUE: usize = 1024;
/// Size of the canonical 44-byte PCM WAV header.
pub const HEADER_BYTES: u64 = 44;

/// What the writer thread is asked to do.
enum Cmd {
    Open { call_id: String, rate_hz: u32 },
    Append { call_id: String, samples: Vec<i16> },
    Close { call_id: String },
}

/// The server's recording writer: a thread and the folder it writes `<call id>.wav` files in.
#[derive(Debug, Clone)]
pub struct RecordingWriter {
    dir: PathBuf,
    tx: SyncSender<Cmd>,
}

impl RecordingWriter {
    /// Creates `dir` if needed and starts the writer thread (it ends when every handle is gone).
    pub fn start(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let (tx, rx) = sync_channel(WRITER_QUEUE);
        let thread_dir = dir.clone();
        std::thread::Builder::new().name("recordings".into()).spawn(move || write_loop(&thread_dir, rx))?;
        Ok(Self { dir, tx })
    }

    /// Where a call's recording is (whether or not it exists).
    pub fn path(&self, call_id: &str) -> PathBuf {
        recording_path(&self.dir, call_id)
    }

    /// Starts recording a call in `format`; `None` when the format cannot be decoded or the
    /// writer cannot take it.
    pub fn open(&self, call_id: &str, format: WireFormat) -> Option<CallRecording> {
        let caller = Decoder::new(format).ok()?;
        let agent = Decoder::new(format).ok()?;
        let rate = format.sample_rate_hz;
        if let Err(e) = self.tx.try_send(Cmd::Open { call_id: call_id.to_string(), rate_hz: rate }) {
            tracing::warn!(call_id, error = %e, "recording writer unavailable or behind; this call is not recorded");
            return None;
        }
        Some(CallRecording {
            writer: self.tx.clone(),
            call_id: call_id.to_string(),
            caller,
            agent,
            left: Vec::new(),
            right: Vec::new(),
            scratch: vec![0; MAX_DECODED_SAMPLES].into_boxed_slice(),
            flush_samples: (rate * FLUSH_MS / 1000) as usize,
            max_skew: (rate * MAX_SKEW_MS / 1000) as usize,
            dropped: 0,
        })
    }
}

/// Where the recording of `call_id` lives in `dir` (call ids are ULID-based, safe as names).
pub fn recording_path(dir: &Path, call_id: &str) -> PathBuf {
    dir.join(format!("{call_id}.wav"))
}

/// One call's recording in progress.
pub struct CallRecording {
    writer: SyncSender<Cmd>,
    call_id: String,
    caller: Decoder,
    agent: Decoder,
    /// Caller samples not yet paired.
    left: Vec<i16>,
    /// Agent samples not yet paired.
    right: Vec<i16>,
    scratch: Box<[i16]>,
    flush_samples: usize,
    max_skew: usize,
    /// Appends the writer could not take (its queue was full).
    dropped: u64,
}

impl CallRecording {
    /// A wire frame from the caller.
    pub fn caller(&mut self, payload: &[u8]) {
        if let Ok(n) = self.caller.decode(payload, &mut self.scratch) {
            self.left.extend_from_slice(&self.scratch[..n]);
            self.pump();
        }
    }

    /// A wire frame sent to the caller.
    pub fn agent(&mut self, payload: &[u8]) {
        if let Ok(n) = self.agent.decode(payload, &mut self.scratch) {
            self.right.extend_from_slice(&self.scratch[..n]);
            self.pump();
        }
    }

    /// Appends dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Pairs what both sides have, padding a side that lags too far, and flushes full blocks.
    fn pump(&mut self) {
        let (l, r) = (self.left.len(), self.right.len());
        if l > r + self.max_skew {
            self.right.resize(l - self.max_skew / 2, 0);
        } else if r > l + self.max_skew {
            self.left.resize(r - self.max_skew / 2, 0);
        }
        if self.left.len().min(self.right.len()) >= self.flush_samples {
            self.flush(false);
        }
    }

    /// Hands the paired samples to the writer; at the end, pads the shorter side first.
    fn flush(&mut self, end: bool) {
        if end {
            let n = self.left.len().max(self.right.len());
            self.left.resize(n, 0);
            self.right.resize(n, 0);
        }
        let n = self.left.len().min(self.right.len());
        if n == 0 {
            return;
        }
        let mut samples = Vec::with_capacity(2 * n);
        for (l, r) in self.left.drain(..n).zip(self.right.drain(..n)) {
            samples.push(l);
            samples.push(r);
        }
        let cmd = Cmd::Append { call_id: self.call_id.clone(), samples };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.writer.try_send(cmd) {
            self.dropped += 1;
        }
    }

    /// Writes what is left and closes the file. The close waits for room in the queue (it is
    /// sent once per call, off the per-frame path).
    pub fn finish(mut self) {
        self.flush(true);
        let call_id = std::mem::take(&mut self.call_id);
        match self.writer.try_send(Cmd::Close { call_id }) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            // The writer is behind: wait for room off the async worker, so the file is closed.
            Err(TrySendError::Full(cmd)) => {
                let writer = self.writer.clone();
                let spawned = std::thread::Builder::new().name("recording-close".into()).spawn(move || {
                    let _ = writer.send(cmd);
                });
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "recording left open: no thread to close it");
                }
            }
        }
    }
}

/// An open recording file.
struct Open {
    file: File,
    data_bytes: u64,
}

fn write_loop(dir: &Path, rx: Receiver<Cmd>) {
    let mut files: HashMap<String, Open> = HashMap::new();
    while let Ok(cmd) = rx.recv() {
        match cmd {
            Cmd::Open { call_id, rate_hz } => {
                let path = recording_path(dir, &call_id);
                match File::create(&path).and_then(|mut f| f.write_all(&header(rate_hz, 0)).map(|()| f)) {
                    Ok(file) => {
                        files.insert(call_id, Open { file, data_bytes: 0 });
                    }
                    Err(e) => {
                        tracing::error!(call_id, path = %path.display(), error = %e, "cannot create a recording")
                    }
                }
            }
            Cmd::Append { call_id, samples } => {
                let Some(open) = files.get_mut(&call_id) else { continue };
                let mut bytes = Vec::with_capacity(samples.len() * 2);
                for s in samples {
                    bytes.extend_from_slice(&s.to_le_bytes());
                }
                let at = HEADER_BYTES + open.data_bytes;
                let result = open.file.write_all_at(&bytes, at).and_then(|()| {
                    open.data_bytes += bytes.len() as u64;
                    write_sizes(&open.file, open.data_bytes)
                });
                if let Err(e) = result {
                    tracing::error!(call_id, error = %e, "cannot write a recording; it stops here");
                    files.remove(&call_id);
                }
            }
            Cmd::Close { call_id } => {
                if let Some(open) = files.remove(&call_id) {
                    if let Err(e) = open.file.sync_data() {
                        tracing::warn!(call_id, error = %e, "recording not synced to disk");
                    }
                }
            }
        }
    }
}

/// The RIFF and data chunk sizes for `data_bytes` of samples.
fn write_sizes(file: &File, data_bytes: u64) -> std::io::Result<()> {
    let data = u32::try_from(data_bytes).unwrap_or(u32::MAX - 36);
    file.write_all_at(&(data + 36).to_le_bytes(), 4)?;
    file.write_all_at(&data.to_le_bytes(), 40)
}

/// A 16-bit stereo PCM WAV header.
fn header(rate_hz: u32, data_bytes: u32) -> [u8; HEADER_BYTES as usize] {
    let mut h = [0u8; HEADER_BYTES as usize];
    let channels: u16 = 2;
    let block_align = channels * 2;
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(data_bytes + 36).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&rate_hz.to_le_bytes());
    h[28..32].copy_from_slice(&(rate_hz * u32::from(block_align)).to_le_bytes());
    h[32..34].copy_from_slice(&block_align.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_bytes.to_le_bytes());
    h
}

/// Reads a recording for serving; the header's sizes are set from the file's length (a file
/// cut short by a crash keeps every whole stereo frame it has). `None`: no such recording.
pub fn read_wav(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if bytes.len() < HEADER_BYTES as usize || &bytes[0..4] != b"RIFF" {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not a recording"));
    }
    let data = (bytes.len() - HEADER_BYTES as usize) / 4 * 4;
    bytes.truncate(HEADER_BYTES as usize + data);
    let data = u32::try_from(data).unwrap_or(u32::MAX - 36);
    bytes[4..8].copy_from_slice(&(data + 36).to_le_bytes());
    bytes[40..44].copy_from_slice(&data.to_le_bytes());
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::codec::mulaw_encode;

    fn wait_for(path: &Path, bytes: usize) -> Vec<u8> {
        for _ in 0..200 {
            if let Ok(Some(b)) = read_wav(path) {
                if b.len() >= bytes {
                    return b;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("recording {} never reached {bytes} bytes", path.display());
    }

    fn samples(wav: &[u8]) -> Vec<(i16, i16)> {
        wav[HEADER_BYTES as usize..]
            .chunks_exact(4)
            .map(|c| (i16::from_le_bytes([c[0], c[1]]), i16::from_le_bytes([c[2], c[3]])))
            .collect()
    }

    #[test]
    fn pairs_both_directions_left_caller_right_agent_and_pads_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let writer = RecordingWriter::start(dir.path()).unwrap();
        let mut rec = writer.open("call_a", WireFormat::PCMU_8K).unwrap();
        let caller = [mulaw_encode(1000); 160];
        let agent = [mulaw_encode(-2000); 160];
        // 1 s of both (flushed at 0.5 s), then 60 ms more from the caller only.
        for _ in 0..50 {
            rec.caller(&caller);
            rec.agent(&agent);
        }
        for _ in 0..3 {
            rec.caller(&caller);
        }
        // Flushed before the end: the file already holds the first half second (crash-safe).
        let partial = wait_for(&writer.path("call_a"), 44 + 4000 * 4);
        assert_eq!(u32::from_le_bytes(partial[40..44].try_into().unwrap()) as usize, partial.len() - 44);
        rec.finish();
        let total = 53 * 160;
        let wav = wait_for(&writer.path("call_a"), 44 + total * 4);
        assert_eq!(&wav[22..24], &2u16.to_le_bytes(), "stereo");
        assert_eq!(u32::from_le_bytes(wav[24..28].try_into().unwrap()), 8000);
        let s = samples(&wav);
        assert_eq!(s.len(), total);
        let decoded = |x: i16| crate::audio::codec::mulaw_decode(mulaw_encode(x));
        assert!(s[..50 * 160].iter().all(|&p| p == (decoded(1000), decoded(-2000))));
        assert!(s[50 * 160..].iter().all(|&p| p == (decoded(1000), 0)), "agent side padded with silence");
    }

    #[test]
    fn a_silent_gateway_is_padded_so_the_agent_stays_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let writer = RecordingWriter::start(dir.path()).unwrap();
        let mut rec = writer.open("call_b", WireFormat::PCMU_8K).unwrap();
        let agent = [mulaw_encode(500); 160];
        // 3 s of agent audio while the caller sends nothing.
        for _ in 0..150 {
            rec.agent(&agent);
        }
        rec.finish();
        let wav = wait_for(&writer.path("call_b"), 44 + 150 * 160 * 4);
        let s = samples(&wav);
        assert_eq!(s.len(), 150 * 160);
        assert!(s.iter().all(|&(l, _)| l == 0));
    }

    #[test]
    fn a_header_left_behind_by_a_crash_is_repaired_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.wav");
        let mut bytes = header(8000, 0).to_vec();
        bytes.extend_from_slice(&[1, 0, 2, 0, 3, 0, 4, 0, 5, 0]); // two frames and a torn one
        std::fs::write(&path, &bytes).unwrap();
        let wav = read_wav(&path).unwrap().unwrap();
        assert_eq!(wav.len(), 44 + 8);
        assert_eq!(u32::from_le_bytes(wav[40..44].try_into().unwrap()), 8);
        assert_eq!(u32::from_le_bytes(wav[4..8].try_into().unwrap()), 44);
        assert!(read_wav(&dir.path().join("none.wav")).unwrap().is_none());
    }
}
