//! A final-pass-only engine (the remote recogniser: one request per turn) paired with an engine
//! cheap enough for partials (the embedded Whisper), which re-decodes the utterance while the
//! caller speaks.
//!
//! The listener needs partials for what only words can tell while the sound goes on: a
//! backchannel ("yeah") heard at a barge-in, the turn ended by words that stopped changing over
//! noise the VAD calls speech, babble with no words undone. With a remote engine alone none of
//! that happens and a turn waits for the VAD. So `--stt openai` takes its partials from the
//! embedded Whisper when its weights are installed (`--stt-partials false` turns that off), and
//! every `Final` or `Accurate` pass, the transcript the agent answers, still goes to the remote
//! engine. A language the partial engine does not cover gets no partials (each request fails at
//! once with [`SttError::Unsupported`], which the listener skips), as with the remote alone.

use std::future::Future;
use std::pin::Pin;

use super::{Result, SharedStt, SttEngine, SttError, SttQuality, SttRequest, Transcription};

/// [`SttEngine`] whose partials come from one engine and final passes from another.
pub struct SplitStt {
    finals: SharedStt,
    partials: SharedStt,
}

impl SplitStt {
    /// `finals` answers `Final`/`Accurate` and says what is covered; `partials` answers `Partial`.
    pub fn new(finals: SharedStt, partials: SharedStt) -> Self {
        Self { finals, partials }
    }
}

impl SttEngine for SplitStt {
    fn name(&self) -> &'static str {
        self.finals.name()
    }

    fn covers(&self, language: &str) -> bool {
        self.finals.covers(language)
    }

    fn engine_for(&self, language: &str) -> Option<&'static str> {
        self.finals.engine_for(language)
    }

    fn partials(&self) -> bool {
        true
    }

    fn transcribe(
        &self,
        req: SttRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Transcription>> + Send + '_>> {
        match req.quality {
            SttQuality::Partial if self.partials.covers(&req.language) => self.partials.transcribe(req),
            SttQuality::Partial => {
                Box::pin(async move { Err(SttError::Unsupported { language: req.language }) })
            }
            SttQuality::Final | SttQuality::Accurate => self.finals.transcribe(req),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    /// Answers its own name and the quality asked for; covers the languages it is given.
    struct Named {
        name: &'static str,
        languages: &'static [&'static str],
        asked: Mutex<Vec<SttQuality>>,
    }

    impl Named {
        fn new(name: &'static str, languages: &'static [&'static str]) -> Arc<Self> {
            Arc::new(Self { name, languages, asked: Mutex::default() })
        }
    }

    impl SttEngine for Named {
        fn name(&self) -> &'static str {
            self.name
        }
        fn covers(&self, language: &str) -> bool {
            self.languages.contains(&language)
        }
        fn partials(&self) -> bool {
            false
        }
        fn transcribe(
            &self,
            req: SttRequest,
        ) -> Pin<Box<dyn Future<Output = Result<Transcription>> + Send + '_>> {
            self.asked.lock().unwrap().push(req.quality);
            Box::pin(async move {
                Ok(Transcription {
                    text: format!("{} {:?}", self.name, req.quality),
                    confidence: 1.0,
                    engine: self.name,
                    audio_ms: 0,
                    compute: Duration::ZERO,
                })
            })
        }
    }

    fn req(language: &str, quality: SttQuality) -> SttRequest {
        SttRequest { pcm_16k: vec![0.0f32; 160].into(), language: language.into(), quality }
    }

    #[tokio::test]
    async fn partials_go_to_the_partial_engine_and_finals_to_the_final_one() {
        let (remote, local) = (Named::new("remote", &["en-US", "de-DE"]), Named::new("local", &["en-US"]));
        let split = SplitStt::new(remote.clone(), local.clone());
        assert!(split.partials() && !remote.partials());
        assert_eq!(split.name(), "remote");
        // What is covered, and by which model, is the final engine's answer.
        assert!(split.covers("de-DE") && !split.covers("fr-FR"));
        assert_eq!(split.engine_for("de-DE"), Some("remote"));

        for (quality, want) in [
            (SttQuality::Partial, "local Partial"),
            (SttQuality::Final, "remote Final"),
            (SttQuality::Accurate, "remote Accurate"),
        ] {
            assert_eq!(split.transcribe(req("en-US", quality)).await.unwrap().text, want);
        }
        // German: the remote engine hears the turn; the local one is never asked for a partial.
        let err = split.transcribe(req("de-DE", SttQuality::Partial)).await.unwrap_err();
        assert!(matches!(err, SttError::Unsupported { ref language } if language == "de-DE"), "{err:?}");
        assert_eq!(split.transcribe(req("de-DE", SttQuality::Final)).await.unwrap().text, "remote Final");
        assert_eq!(*local.asked.lock().unwrap(), [SttQuality::Partial]);
        assert_eq!(
            *remote.asked.lock().unwrap(),
            [SttQuality::Final, SttQuality::Accurate, SttQuality::Final]
        );
    }
}
