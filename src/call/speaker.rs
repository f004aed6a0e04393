//! Speaker: text in, 16 kHz speech out as [`SpeechChunk`]s tagged with their utterance.
//!
//! `Say` requests are synthesized in order by the agent's text-to-speech engine (at its voice
//! and speed); its stream's chunks are handed to playout in [`CHUNK_MS`] pieces as they come,
//! and an empty piece marked `last` closes the utterance. `Cancel` drops the synthesis in
//! flight (its stream, killing the engine's process) and everything queued, at once.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use futures_util::StreamExt;

use super::{PlayoutCommand, SpeakerCommand, SpeechChunk, UtteranceId, PIPELINE_RATE_HZ};
use crate::metrics::Metrics;
use crate::providers::tts::{SharedTts, TtsError, TtsRequest};

/// Speech is handed to playout in chunks of this length.
pub const CHUNK_MS: usize = 200;
const CHUNK_SAMPLES: usize = PIPELINE_RATE_HZ as usize * CHUNK_MS / 1000;

/// The speaker's connections.
pub struct SpeakerIo {
    pub commands: mpsc::Receiver<SpeakerCommand>,
    /// Where synthesized speech goes.
    pub playout: mpsc::Sender<PlayoutCommand>,
    /// `switchboard_tts_ttfb_seconds`, `switchboard_provider_errors_total{stage="tts"}`.
    pub metrics: Arc<Metrics>,
}

/// The agent's voice: engine, voice and speed.
#[derive(Clone)]
pub struct Voice {
    pub tts: SharedTts,
    /// The engine's own voice name.
    pub engine_voice: String,
    /// 0.5 … 2.0.
    pub speed: f64,
}

/// Chunks of one utterance's speech, from a task that drives the engine's stream.
type Synthesis = mpsc::Receiver<Result<Vec<i16>, TtsError>>;

/// Runs `tts.stream(req)` on its own task; dropping the receiver stops it.
fn synthesis(tts: SharedTts, req: TtsRequest) -> Synthesis {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut stream = tts.stream(req);
        while let Some(item) = stream.next().await {
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    rx
}

/// Runs until cancelled or the conversation is gone. Without a voice (loopback diagnostics),
/// `Say` is logged and produces no audio.
pub async fn run(voice: Option<Voice>, mut io: SpeakerIo, cancel: CancellationToken) {
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    let mut queue: VecDeque<(UtteranceId, String, bool)> = VecDeque::new();
    // The utterance being synthesized: id, `last`, its chunks, whether audio came yet.
    let mut current: Option<(UtteranceId, bool, Synthesis, bool)> = None;
    let mut started = std::time::Instant::now();
    loop {
        if current.is_none() {
            if let (Some(voice), Some((id, text, last))) = (&voice, queue.pop_front()) {
                let req = TtsRequest { text, engine_voice: voice.engine_voice.clone(), speed: voice.speed };
                current = Some((id, last, synthesis(voice.tts.clone(), req), false));
                started = std::time::Instant::now();
            }
        }
        let next_chunk = async {
            match current.as_mut() {
                Some((_, _, rx, _)) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = &mut cancelled => break,
            cmd = io.commands.recv() => match cmd {
                None => break,
                Some(SpeakerCommand::Say { utterance_id, text, last }) => {
                    if voice.is_none() {
                        tracing::debug!(utterance_id, "speaker: no voice in this mode");
                    } else {
                        queue.push_back((utterance_id, text, last));
                    }
                }
                Some(SpeakerCommand::Cancel) => {
                    queue.clear();
                    current = None;
                }
            },
            item = next_chunk => {
                let Some((id, last, _, got_audio)) = current.as_mut() else { continue };
                let id = *id;
                let sent = match item {
                    Some(Ok(pcm)) => {
                        if !*got_audio && !pcm.is_empty() {
                            *got_audio = true;
                            io.metrics.tts_ttfb_seconds.observe(started.elapsed().as_secs_f64());
                        }
                        send_chunks(&io.playout, id, &pcm, false).await
                    }
                    Some(Err(e)) => {
                        tracing::warn!(utterance_id = id, error = %e, "speech synthesis failed");
                        if let Some(v) = &voice {
                            io.metrics.provider_error("tts", v.tts.name());
                        }
                        true // the stream ends next
                    }
                    None => {
                        let last = *last;
                        current = None;
                        send_chunks(&io.playout, id, &[], last).await
                    }
                };
                if !sent {
                    break;
                }
            }
        }
    }
    drop(io.playout);
}

/// Hands `pcm` to playout in chunks; the last one carries `last`. False when playout is gone.
async fn send_chunks(
    playout: &mpsc::Sender<PlayoutCommand>,
    id: UtteranceId,
    pcm: &[i16],
    last: bool,
) -> bool {
    let mut chunks = pcm.chunks(CHUNK_SAMPLES).peekable();
    if chunks.peek().is_none() {
        if !last {
            return true;
        }
        let chunk = SpeechChunk { utterance_id: id, pcm: Vec::new(), last };
        return playout.send(PlayoutCommand::Speak(chunk)).await.is_ok();
    }
    while let Some(c) = chunks.next() {
        let chunk = SpeechChunk { utterance_id: id, pcm: c.to_vec(), last: last && chunks.peek().is_none() };
        if playout.send(PlayoutCommand::Speak(chunk)).await.is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::tts::TtsEngine;
    use std::future::Future;
    use std::pin::Pin;
    use std::time::Duration;

    /// Speaks `n` samples per character, after `delay`.
    struct FakeTts {
        delay: Duration,
    }

    impl TtsEngine for FakeTts {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn synthesize(
            &self,
            req: TtsRequest,
        ) -> Pin<Box<dyn Future<Output = Result<Vec<i16>, TtsError>> + Send + '_>> {
            let delay = self.delay;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(vec![7; req.text.len() * 1000])
            })
        }
    }

    fn start(
        delay_ms: u64,
    ) -> (mpsc::Sender<SpeakerCommand>, mpsc::Receiver<PlayoutCommand>, CancellationToken) {
        let (cmd_tx, cmd_rx) = mpsc::channel(8);
        let (play_tx, play_rx) = mpsc::channel(64);
        let voice = Voice {
            tts: Arc::new(FakeTts { delay: Duration::from_millis(delay_ms) }),
            engine_voice: "x".into(),
            speed: 1.0,
        };
        let cancel = CancellationToken::new();
        tokio::spawn(run(
            Some(voice),
            SpeakerIo { commands: cmd_rx, playout: play_tx, metrics: Arc::new(Metrics::new()) },
            cancel.clone(),
        ));
        (cmd_tx, play_rx, cancel)
    }

    async fn chunk(rx: &mut mpsc::Receiver<PlayoutCommand>) -> SpeechChunk {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap() {
            PlayoutCommand::Speak(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn utterances_come_out_in_order_in_chunks_with_last_on_the_final_one() {
        let (tx, mut rx, _cancel) = start(0);
        // 7 chars → 7000 samples → 3 chunks of ≤ 3200.
        tx.send(SpeakerCommand::Say { utterance_id: 1, text: "abcdefg".into(), last: true }).await.unwrap();
        tx.send(SpeakerCommand::Say { utterance_id: 2, text: "ab".into(), last: true }).await.unwrap();
        let sizes: Vec<(u64, usize, bool)> = {
            let mut v = Vec::new();
            for _ in 0..4 {
                let c = chunk(&mut rx).await;
                v.push((c.utterance_id, c.pcm.len(), c.last));
            }
            v
        };
        assert_eq!(sizes, vec![(1, 3200, false), (1, 3200, false), (1, 600, false), (1, 0, true)]);
        let c = chunk(&mut rx).await;
        assert_eq!((c.utterance_id, c.pcm.len(), c.last), (2, 2000, false));
    }

    #[tokio::test]
    async fn cancel_drops_the_synthesis_in_flight_and_the_queue() {
        let (tx, mut rx, _cancel) = start(300);
        tx.send(SpeakerCommand::Say { utterance_id: 1, text: "slow".into(), last: true }).await.unwrap();
        tx.send(SpeakerCommand::Say { utterance_id: 2, text: "queued".into(), last: true }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(SpeakerCommand::Cancel).await.unwrap();
        tx.send(SpeakerCommand::Say { utterance_id: 3, text: "new".into(), last: true }).await.unwrap();
        let c = chunk(&mut rx).await;
        assert_eq!(c.utterance_id, 3, "nothing of 1 or 2 reached playout");
    }
}
