//! Turn-taking rules on a simulated clock: one test per rule and knob value, edges included.

use std::collections::BTreeMap;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A simulated call: timers fire in deadline order as the clock advances.
struct Sim {
    m: TurnMachine,
    now: Duration,
    timers: BTreeMap<u8, (Duration, TimerKind)>,
    /// Non-timer effects with the time they happened (ms).
    log: Vec<(u64, Effect)>,
}

impl Sim {
    fn new(cfg: TurnConfig) -> Self {
        let (m, fx) = TurnMachine::new(cfg, Duration::ZERO);
        let mut sim = Self { m, now: Duration::ZERO, timers: BTreeMap::new(), log: Vec::new() };
        sim.apply(fx);
        sim
    }

    fn apply(&mut self, fx: Vec<Effect>) {
        for e in fx {
            match e {
                Effect::Timer { kind, at } => {
                    let key = kind as u8;
                    match at {
                        Some(at) => {
                            self.timers.insert(key, (at, kind));
                        }
                        None => {
                            self.timers.remove(&key);
                        }
                    }
                }
                other => self.log.push((self.now.as_millis() as u64, other)),
            }
        }
    }

    /// Advances the clock to `t_ms`, firing due timers in order.
    fn at(&mut self, t_ms: u64) -> &mut Self {
        let target = ms(t_ms);
        loop {
            let next =
                self.timers.values().filter(|(at, _)| *at <= target).min_by_key(|(at, _)| *at).copied();
            let Some((at, kind)) = next else { break };
            self.timers.remove(&(kind as u8));
            self.now = at.max(self.now);
            let fx = self.m.handle(Event::Timeout(kind), self.now);
            self.apply(fx);
        }
        self.now = target.max(self.now);
        self
    }

    fn ev(&mut self, t_ms: u64, event: Event) -> &mut Self {
        self.at(t_ms);
        let fx = self.m.handle(event, self.now);
        self.apply(fx);
        self
    }

    /// Caller speech from `start` to `end` ms, its final transcript `stt_ms` after the end.
    fn say(&mut self, start: u64, end: u64, text: &str, stt_ms: u64) -> &mut Self {
        self.ev(start, Event::SpeechStarted { at: ms(start) });
        self.ev(end, Event::SpeechEnded { at: ms(end) });
        self.ev(
            end + stt_ms,
            Event::Final { text: text.into(), confidence: 0.9, start: ms(start), end: ms(end) },
        )
    }

    fn turns(&self) -> Vec<(u64, CallerTurn)> {
        self.log
            .iter()
            .filter_map(|(t, e)| match e {
                Effect::EndOfTurn(turn) => Some((*t, turn.clone())),
                _ => None,
            })
            .collect()
    }

    fn count(&self, want: &Effect) -> usize {
        self.log.iter().filter(|(_, e)| e == want).count()
    }

    fn when(&self, want: &Effect) -> Option<u64> {
        self.log.iter().find(|(_, e)| e == want).map(|(t, _)| *t)
    }
}

fn cfg() -> TurnConfig {
    TurnConfig { max_silence: Duration::from_secs(3600), ..TurnConfig::default() }
}

fn with_sensitivity(s: f64) -> TurnConfig {
    TurnConfig { interruption_sensitivity: s, ..cfg() }
}

// ---- text heuristics -------------------------------------------------------------------------

#[test]
fn completeness_reads_the_words() {
    assert_eq!(completeness("I'd like to book a table."), Completeness::Complete);
    assert_eq!(completeness("Is it open tomorrow?"), Completeness::Complete);
    assert_eq!(completeness("hello there"), Completeness::Neutral);
    assert_eq!(completeness(""), Completeness::Neutral);
    assert_eq!(completeness("I want a table and"), Completeness::Incomplete);
    assert_eq!(completeness("I want a table and."), Completeness::Incomplete);
    assert_eq!(completeness("So, um"), Completeness::Incomplete);
    assert_eq!(completeness("My number is"), Completeness::Incomplete);
    assert_eq!(completeness("My number is 555 12"), Completeness::Incomplete);
    assert_eq!(completeness("It's 4 1 5."), Completeness::Incomplete);
    assert_eq!(completeness("Can we make it 8 o'clock instead of 7?"), Completeness::Complete);
    assert_eq!(completeness("Is it open until 10?"), Completeness::Complete);
    assert_eq!(completeness("My number is 555?"), Completeness::Incomplete);
    assert_eq!(completeness("It's 5 5 5?"), Completeness::Incomplete);
    assert_eq!(completeness("Let me think..."), Completeness::Incomplete);
    assert_eq!(completeness("First,"), Completeness::Incomplete);
}

#[test]
fn backchannel_words_are_recognised() {
    for t in ["yeah", "Yeah.", "uh-huh", "Mm-hmm.", "okay", "OK, I see.", "right right", "Got it."] {
        assert!(is_backchannel(t), "{t}");
    }
    for t in ["", "yeah but no", "stop", "wait a second", "okay what about Tuesday"] {
        assert!(!is_backchannel(t), "{t}");
    }
}

#[test]
fn sensitivity_maps_to_speech_needed() {
    assert_eq!(barge_in_after(0.0), None);
    assert_eq!(barge_in_after(-1.0), None);
    assert_eq!(barge_in_after(1.0), Some(Duration::ZERO));
    assert_eq!(barge_in_after(0.8), Some(ms(300)));
    assert_eq!(barge_in_after(0.5), Some(ms(750)));
    assert!(barge_in_after(0.01).unwrap() > ms(1400));
}

#[test]
fn endpoint_delays_by_mode_and_text() {
    use Completeness::*;
    assert!(endpoint_delay(SttMode::Fast, Complete) < endpoint_delay(SttMode::Fast, Neutral));
    assert!(endpoint_delay(SttMode::Fast, Neutral) < endpoint_delay(SttMode::Fast, Incomplete));
    for c in [Complete, Neutral, Incomplete] {
        assert_eq!(endpoint_delay(SttMode::Accurate, c), endpoint_delay(SttMode::Fast, c) + ACCURATE_EXTRA);
    }
}

// ---- endpointing -----------------------------------------------------------------------------

#[test]
fn a_complete_sentence_ends_the_turn_after_the_short_silence() {
    let mut s = Sim::new(cfg());
    s.say(1000, 3000, "I'd like to book a table.", 150).at(10_000);
    let turns = s.turns();
    assert_eq!(turns.len(), 1);
    let (t, turn) = &turns[0];
    assert_eq!(*t, 3300);
    assert_eq!(turn.text, "I'd like to book a table.");
    assert_eq!(turn.source, InputSource::Speech);
    assert_eq!((turn.started, turn.ended, turn.decided), (ms(1000), ms(3000), ms(3300)));
}

#[test]
fn a_neutral_utterance_waits_longer() {
    let mut s = Sim::new(cfg());
    s.say(1000, 3000, "hello there", 150).at(10_000);
    assert_eq!(s.turns()[0].0, 3600);
}

#[test]
fn trailing_conjunctions_fillers_and_digits_wait_longest() {
    for text in ["I want a table and", "so um", "my number is", "my number is 5 5 5"] {
        let mut s = Sim::new(cfg());
        s.say(1000, 3000, text, 150).at(10_000);
        assert_eq!(s.turns()[0].0, 4400, "{text}");
    }
}

#[test]
fn partials_shape_the_endpoint_before_the_final_arrives() {
    let mut s = Sim::new(cfg());
    s.ev(1000, Event::SpeechStarted { at: ms(1000) });
    s.ev(2000, Event::Partial { text: "my number is".into() });
    s.ev(3000, Event::SpeechEnded { at: ms(3000) });
    assert_eq!(s.m.deadline(TimerKind::Endpoint), Some(ms(4400)));
}

#[test]
fn accurate_mode_waits_its_extra_pass() {
    let mut s = Sim::new(TurnConfig { stt_mode: SttMode::Accurate, ..cfg() });
    s.say(1000, 3000, "I'd like to book a table.", 150).at(10_000);
    assert_eq!(s.turns()[0].0, 3500);
}

#[test]
fn a_late_final_transcript_ends_the_turn_when_it_arrives() {
    let mut s = Sim::new(cfg());
    s.say(1000, 3000, "I'd like to book a table.", 900).at(10_000);
    assert_eq!(s.turns()[0].0, 3900);
}

#[test]
fn speaking_again_before_the_endpoint_continues_the_same_turn() {
    let mut s = Sim::new(cfg());
    s.say(1000, 2000, "I'd like a table", 100);
    s.say(2400, 3500, "for two people.", 100).at(10_000);
    let turns = s.turns();
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0].1.text, "I'd like a table for two people.");
    assert_eq!(turns[0].1.started, ms(1000));
    assert_eq!(turns[0].0, 3800);
}

#[test]
fn noise_without_words_is_not_a_turn() {
    let mut s = Sim::new(cfg());
    s.say(1000, 1400, "", 100).at(10_000);
    assert!(s.turns().is_empty());
    assert!(s.log.is_empty(), "{:?}", s.log);
}

#[test]
fn an_end_of_turn_model_hint_overrides_the_text() {
    let mut s = Sim::new(cfg());
    s.ev(1000, Event::SpeechStarted { at: ms(1000) });
    s.ev(3000, Event::SpeechEnded { at: ms(3000) });
    s.ev(3050, Event::TurnHint { complete: 0.05 });
    s.ev(
        3150,
        Event::Final { text: "Table for two.".into(), confidence: 0.9, start: ms(1000), end: ms(3000) },
    );
    s.at(10_000);
    assert_eq!(s.turns()[0].0, 4400, "model says unfinished: long wait despite the full stop");

    let mut s = Sim::new(cfg());
    s.ev(1000, Event::SpeechStarted { at: ms(1000) });
    s.ev(3000, Event::SpeechEnded { at: ms(3000) });
    s.ev(3050, Event::TurnHint { complete: 0.95 });
    s.ev(3150, Event::Final { text: "so".into(), confidence: 0.9, start: ms(1000), end: ms(3000) });
    s.at(10_000);
    assert_eq!(s.turns()[0].0, 3300, "model says finished: short wait despite the trailing 'so'");
}

#[test]
fn the_turn_waits_for_the_agent_to_stop_when_it_could_not_interrupt() {
    let mut s = Sim::new(with_sensitivity(0.0));
    s.ev(500, Event::AgentStarted);
    s.say(1000, 3000, "Can I book a table?", 100).at(5000);
    assert!(s.turns().is_empty());
    assert_eq!(s.count(&Effect::Interrupt), 0);
    s.ev(6000, Event::AgentStopped);
    assert_eq!(s.turns()[0].0, 6000);
}

// ---- barge-in --------------------------------------------------------------------------------

#[test]
fn default_sensitivity_interrupts_on_words_past_a_few_hundred_ms_of_speech() {
    let mut s = Sim::new(with_sensitivity(0.8));
    s.ev(0, Event::AgentStarted);
    s.ev(1000, Event::SpeechStarted { at: ms(1000) });
    s.ev(1200, Event::Partial { text: "Wait".into() });
    s.at(1299);
    assert_eq!(s.count(&Effect::Interrupt), 0, "under the threshold even with words");
    s.ev(2500, Event::SpeechEnded { at: ms(2500) });
    s.ev(
        2600,
        Event::Final {
            text: "Wait, I have a question.".into(),
            confidence: 0.9,
            start: ms(1000),
            end: ms(2500),
        },
    );
    s.at(10_000);
    assert_eq!(s.when(&Effect::Interrupt), Some(1300));
    assert_eq!(s.count(&Effect::Interruption(InterruptionKind::BargeIn)), 1);
    assert_eq!(s.turns().len(), 1, "the interrupting words are the next turn");
    assert_eq!(s.count(&Effect::Resume), 0);
}

#[test]
fn an_agent_starting_over_the_caller_is_interrupted_once_the_overlap_lasts() {
    let mut s = Sim::new(with_sensitivity(0.8));
    s.ev(1000, Event::SpeechStarted { at: ms(1000) });
    s.ev(1100, Event::Partial { text: "Goodbye".into() });
    s.ev(1200, Event::AgentStarted);
    s.at(1499);
    assert_eq!(s.count(&Effect::Interrupt), 0, "300 ms of overlap needed");
    s.ev(1640, Event::SpeechEnded { at: ms(1640) });
    s.ev(1700, Event::Final { text: "Goodbye.".into(), confidence: 0.9, start: ms(1000), end: ms(1640) });
    s.at(5000);
    assert_eq!(s.when(&Effect::Interrupt), Some(1500));
    assert_eq!(s.turns().len(), 1, "the caller's words are the next turn, not held until the agent ends");
    assert!(s.turns()[0].0 < 2500, "{:?}", s.turns());
}

#[test]
fn without_words_yet_a_barge_in_waits_the_grace_then_interrupts() {
    let mut s = Sim::new(with_sensitivity(0.8));
    s.ev(0, Event::AgentStarted);
    s.say(1000, 2500, "Wait, I have a question.", 100).at(10_000);
    assert_eq!(s.when(&Effect::Interrupt), Some(1300 + BACKCHANNEL_GRACE.as_millis() as u64));
    assert_eq!(s.turns().len(), 1);
}

#[test]
fn the_grace_also_covers_the_vads_late_speech_end() {
    // The VAD reports a speech end 300 ms late: a 346 ms "yeah" must have ended before the
    // grace runs out, or it would be judged as still speaking.
    let cfg = TurnConfig { speech_end_delay: ms(300), ..with_sensitivity(0.8) };
    let mut s = Sim::new(cfg);
    s.ev(0, Event::AgentStarted);
    s.ev(1000, Event::SpeechStarted { at: ms(1000) });
    s.at(1899);
    assert_eq!(s.count(&Effect::Interrupt), 0, "still within threshold + grace + VAD delay");
    s.ev(1646, Event::SpeechEnded { at: ms(1346) });
    s.ev(1900, Event::Final { text: "Yeah.".into(), confidence: 0.9, start: ms(1000), end: ms(1346) });
    s.at(5000);
    assert_eq!(s.count(&Effect::Interrupt), 0);
    assert_eq!(s.count(&Effect::Interruption(InterruptionKind::BackchannelIgnored)), 1);
}

#[test]
fn real_words_during_the_grace_interrupt_at_once() {
    let mut s = Sim::new(with_sensitivity(0.8));
    s.ev(0, Event::AgentStarted);
    s.ev(1000, Event::SpeechStarted { at: ms(1000) });
    s.ev(1450, Event::Partial { text: "hold on".into() });
    assert_eq!(s.when(&Effect::Interrupt), Some(1450));
}

#[test]
fn sensitivity_zero_never_interrupts() {
    let mut s = Sim::new(with_sensitivity(0.0));
    s.ev(0, Event::AgentStarted);
    s.say(1000, 9000, "Hello hello hello, can you hear me, please stop talking.", 100).at(20_000);
    assert_eq!(s.count(&Effect::Interrupt), 0);
}

#[test]
fn sensitivity_one_interrupts_at_the_first_speech_frame() {
    let mut s = Sim::new(with_sensitivity(1.0));
    s.ev(0, Event::AgentStarted);
    s.ev(1000, Event::SpeechStarted { at: ms(1000) });
    assert_eq!(s.when(&Effect::Interrupt), Some(1000));
}

#[test]
fn speech_exactly_at_the_threshold_interrupts() {
    let mut s = Sim::new(with_sensitivity(0.8));
    s.ev(0, Event::AgentStarted);
    s.ev(1000, Event::SpeechStarted { at: ms(1000) });
    // The end is reported (dated 1300) before the barge-in timer is delivered; no words known
    // yet, so the final transcript decides.
    let fx = s.m.handle(Event::SpeechEnded { at: ms(1300) }, ms(1300));
    s.apply(fx);
    assert_eq!(s.count(&Effect::Interrupt), 0);
    s.ev(1400, Event::Final { text: "Stop.".into(), confidence: 0.9, start: ms(1000), end: ms(1300) });
    assert_eq!(s.when(&Effect::Interrupt), Some(1400));
    assert_eq!(s.count(&Effect::Resume), 0);

    // At sensitivity 0.95 words do not matter: the threshold alone interrupts.
    let mut s = Sim::new(with_sensitivity(0.95));
    s.ev(0, Event::AgentStarted);
    s.ev(1000, Event::SpeechStarted { at: ms(1000) });
    let fx = s.m.handle(Event::SpeechEnded { at: ms(1075) }, ms(1075));
    s.apply(fx);
    assert_eq!(s.count(&Effect::Interrupt), 1);
}

#[test]
fn speech_just_under_the_threshold_does_not_interrupt() {
    let mut s = Sim::new(with_sensitivity(0.8));
    s.ev(0, Event::AgentStarted);
    s.say(1000, 1299, "", 100).at(5000);
    assert_eq!(s.count(&Effect::Interrupt), 0);
}

#[test]
fn a_backchannel_does_not_interrupt_at_moderate_sensitivity() {
    let mut s = Sim::new(with_sensitivity(0.8));
    s.ev(0, Event::AgentStarted);
    s.ev(1000, Event::SpeechStarted { at: ms(1000) });
    s.ev(1200, Event::Partial { text: "yeah".into() });
    s.ev(1400, Event::SpeechEnded { at: ms(1400) });
    s.ev(1500, Event::Final { text: "Yeah.".into(), confidence: 0.9, start: ms(1000), end: ms(1400) });
    s.at(8000);
    assert_eq!(s.count(&Effect::Interrupt), 0);
    assert_eq!(s.count(&Effect::Interruption(InterruptionKind::BackchannelIgnored)), 1);
    s.ev(9000, Event::AgentStopped).at(12_000);
    assert!(s.turns().is_empty(), "a backchannel is not a turn to answer");
}

#[test]
fn a_short_yeah_recognised_only_after_it_ended_does_not_interrupt() {
    // "yeah" lasting 346 ms (past the 300 ms threshold), no partial before it ended.
    let mut s = Sim::new(with_sensitivity(0.8));
    s.ev(0, Event::AgentStarted);
    s.say(1000, 1346, "Yeah.", 250).at(8000);
    assert_eq!(s.count(&Effect::Interrupt), 0);
    assert_eq!(s.count(&Effect::Interruption(InterruptionKind::BackchannelIgnored)), 1);
    assert_eq!(s.count(&Effect::Resume), 0);
}

#[test]
fn a_backchannel_interrupts_at_high_sensitivity() {
    let mut s = Sim::new(with_sensitivity(0.95));
    s.ev(0, Event::AgentStarted);
    s.ev(1000, Event::SpeechStarted { at: ms(1000) });
    s.ev(1050, Event::Partial { text: "yeah".into() });
    s.at(1500);
    assert_eq!(s.when(&Effect::Interrupt), Some(1075));
}

#[test]
fn a_noise_interruption_resumes_the_agent() {
    let mut s = Sim::new(with_sensitivity(0.8));
    s.ev(0, Event::AgentStarted);
    s.say(1000, 1700, "", 150).at(5000);
    assert_eq!(s.when(&Effect::Interrupt), Some(1600), "threshold + grace, still no words");
    assert_eq!(s.when(&Effect::Resume), Some(3100), "1.5 s after the barge-in");
    assert_eq!(s.count(&Effect::Interruption(InterruptionKind::False)), 1);
    assert!(s.turns().is_empty());
}

#[test]
fn words_within_the_window_make_the_interruption_real() {
    let mut s = Sim::new(with_sensitivity(0.8));
    s.ev(0, Event::AgentStarted);
    s.ev(1000, Event::SpeechStarted { at: ms(1000) });
    s.ev(1700, Event::Partial { text: "actually".into() });
    s.ev(3500, Event::SpeechEnded { at: ms(3500) });
    s.ev(
        3600,
        Event::Final {
            text: "Actually, make it three.".into(),
            confidence: 0.9,
            start: ms(1000),
            end: ms(3500),
        },
    );
    s.at(8000);
    assert_eq!(s.count(&Effect::Resume), 0);
    assert_eq!(s.turns().len(), 1);
}

#[test]
fn a_caller_still_talking_at_the_window_is_not_a_false_interruption() {
    let mut s = Sim::new(with_sensitivity(0.8));
    s.ev(0, Event::AgentStarted);
    s.ev(1000, Event::SpeechStarted { at: ms(1000) }).at(3000);
    assert_eq!(s.count(&Effect::Resume), 0);
}

#[test]
fn noise_that_outlasts_the_window_resumes_the_agent_once_it_ends_without_words() {
    let mut s = Sim::new(with_sensitivity(0.8));
    s.ev(0, Event::AgentStarted);
    // Barge-in at 1600 (threshold + grace, no words); the sound goes on to 4000, its final
    // transcript (empty) comes back at 4150.
    s.say(1000, 4000, "", 150).at(8000);
    assert_eq!(s.when(&Effect::Interrupt), Some(1600));
    // Looked again every 250 ms from 3100: 4100 still waited for the final, 4350 resumed.
    assert_eq!(s.when(&Effect::Resume), Some(4350));
    assert_eq!(s.count(&Effect::Interruption(InterruptionKind::False)), 1);
    assert!(s.turns().is_empty());
}

#[test]
fn speech_that_outlasts_the_window_and_has_words_is_a_turn_not_a_false_interruption() {
    let mut s = Sim::new(with_sensitivity(0.8));
    s.ev(0, Event::AgentStarted);
    s.say(1000, 4000, "I said the other one.", 150).at(8000);
    assert_eq!(s.when(&Effect::Interrupt), Some(1600));
    assert_eq!(s.count(&Effect::Resume), 0);
    assert_eq!(s.count(&Effect::Interruption(InterruptionKind::False)), 0);
    assert_eq!(s.turns().len(), 1);
}

// ---- backchannel cues ------------------------------------------------------------------------

fn backchannel_cfg(on: bool) -> TurnConfig {
    TurnConfig { enable_backchannel: on, ..cfg() }
}

#[test]
fn a_long_turn_earns_a_backchannel_at_a_pause() {
    let mut s = Sim::new(backchannel_cfg(true));
    s.say(0, 4500, "so I was telling my sister about the trip and", 100).at(4900);
    assert_eq!(s.when(&Effect::Backchannel), Some(4800));
    // The caller goes on; the turn is still theirs.
    s.say(5200, 7000, "she said we should go in May.", 100).at(12_000);
    assert_eq!(s.count(&Effect::Backchannel), 1);
    assert_eq!(s.turns().len(), 1);
}

#[test]
fn no_backchannel_when_disabled_short_or_complete() {
    let mut s = Sim::new(backchannel_cfg(false));
    s.say(0, 4500, "so I was telling my sister about the trip and", 100).at(6000);
    assert_eq!(s.count(&Effect::Backchannel), 0, "disabled");

    let mut s = Sim::new(backchannel_cfg(true));
    s.say(0, 2000, "so I was telling my sister and", 100).at(4000);
    assert_eq!(s.count(&Effect::Backchannel), 0, "turn too short");

    let mut s = Sim::new(backchannel_cfg(true));
    s.ev(0, Event::SpeechStarted { at: ms(0) });
    s.ev(4000, Event::Partial { text: "That is all I wanted to say.".into() });
    s.ev(4500, Event::SpeechEnded { at: ms(4500) }).at(6000);
    assert_eq!(s.count(&Effect::Backchannel), 0, "a complete sentence is answered, not acknowledged");
}

#[test]
fn a_backchannel_never_lands_on_words() {
    let mut s = Sim::new(backchannel_cfg(true));
    s.say(0, 4500, "and then and", 50);
    // Speech resumes 200 ms into the pause: before the 300 ms cue.
    s.ev(4700, Event::SpeechStarted { at: ms(4700) }).at(6000);
    assert_eq!(s.count(&Effect::Backchannel), 0);
}

#[test]
fn backchannels_are_spaced_out() {
    let mut s = Sim::new(backchannel_cfg(true));
    s.say(0, 4500, "and", 50);
    s.say(5000, 6000, "and", 50);
    s.say(6500, 8000, "and", 50);
    s.say(8500, 11_000, "and", 50).at(11_350);
    let cues: Vec<u64> = s.log.iter().filter(|(_, e)| *e == Effect::Backchannel).map(|(t, _)| *t).collect();
    assert_eq!(cues, vec![4800, 11_300]);
}

// ---- silence ---------------------------------------------------------------------------------

fn silence_cfg(max_ms: u64, reminder: bool) -> TurnConfig {
    TurnConfig { max_silence: ms(max_ms), silence_reminder: reminder, ..TurnConfig::default() }
}

#[test]
fn silence_reminds_once_then_hangs_up_at_max_silence_ms() {
    let mut s = Sim::new(silence_cfg(10_000, true));
    s.at(20_000);
    assert_eq!(s.when(&Effect::Remind), Some(6666));
    assert_eq!(s.when(&Effect::Hangup { reason: "silence-timeout" }), Some(10_000));
    assert_eq!(s.count(&Effect::Remind), 1);
}

#[test]
fn silence_without_reminder_just_hangs_up() {
    let mut s = Sim::new(silence_cfg(10_000, false));
    s.at(20_000);
    assert_eq!(s.count(&Effect::Remind), 0);
    assert_eq!(s.when(&Effect::Hangup { reason: "silence-timeout" }), Some(10_000));
}

#[test]
fn caller_speech_restarts_the_silence_clock() {
    let mut s = Sim::new(silence_cfg(10_000, false));
    s.say(8000, 9000, "hello?", 100).at(30_000);
    // The agent never answers in this simulation: 10 s after the caller's last speech.
    assert_eq!(s.when(&Effect::Hangup { reason: "silence-timeout" }), Some(19_000));
}

#[test]
fn the_agent_speaking_pauses_the_silence_clock() {
    let mut s = Sim::new(silence_cfg(10_000, false));
    s.ev(5000, Event::AgentStarted).at(40_000);
    assert_eq!(s.count(&Effect::Hangup { reason: "silence-timeout" }), 0);
    s.ev(41_000, Event::AgentStopped).at(60_000);
    assert_eq!(s.when(&Effect::Hangup { reason: "silence-timeout" }), Some(51_000));
}

#[test]
fn the_reminder_does_not_buy_more_time() {
    let mut s = Sim::new(silence_cfg(12_000, true));
    s.at(8000);
    assert_eq!(s.when(&Effect::Remind), Some(8000));
    s.ev(8100, Event::AgentStarted);
    s.ev(9500, Event::AgentStopped).at(20_000);
    assert_eq!(s.when(&Effect::Hangup { reason: "silence-timeout" }), Some(12_000));
    assert_eq!(s.count(&Effect::Remind), 1);
}

#[test]
fn after_hang_up_nothing_more_happens() {
    let mut s = Sim::new(silence_cfg(10_000, false));
    s.at(10_000);
    let before = s.log.len();
    s.say(11_000, 12_000, "hello", 50).at(30_000);
    assert_eq!(s.log.len(), before);
}

// ---- DTMF ------------------------------------------------------------------------------------

#[test]
fn dtmf_keys_become_a_turn_after_the_interdigit_pause() {
    let mut s = Sim::new(cfg());
    s.ev(1000, Event::Dtmf { digit: '1' });
    s.ev(1500, Event::Dtmf { digit: '2' });
    s.ev(2000, Event::Dtmf { digit: '3' }).at(10_000);
    let turns = s.turns();
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0].0, 4000);
    assert_eq!(turns[0].1.text, "123");
    assert_eq!(turns[0].1.source, InputSource::Dtmf);
}

#[test]
fn hash_ends_a_dtmf_entry_at_once() {
    let mut s = Sim::new(cfg());
    s.ev(1000, Event::Dtmf { digit: '4' });
    s.ev(1300, Event::Dtmf { digit: '#' });
    assert_eq!(s.turns()[0].0, 1300);
    assert_eq!(s.turns()[0].1.text, "4");
}

#[test]
fn a_key_interrupts_the_agent_and_is_never_false() {
    let mut s = Sim::new(with_sensitivity(0.5));
    s.ev(0, Event::AgentStarted);
    s.ev(1000, Event::Dtmf { digit: '9' }).at(10_000);
    assert_eq!(s.when(&Effect::Interrupt), Some(1000));
    assert_eq!(s.count(&Effect::Resume), 0);
    assert_eq!(s.turns()[0].1.text, "9");

    let mut s = Sim::new(with_sensitivity(0.0));
    s.ev(0, Event::AgentStarted);
    s.ev(1000, Event::Dtmf { digit: '9' });
    assert_eq!(s.count(&Effect::Interrupt), 0, "sensitivity 0: never interrupted");
}

// ---- timers ----------------------------------------------------------------------------------

#[test]
fn early_and_stale_timeouts_are_ignored() {
    let mut s = Sim::new(cfg());
    s.ev(1000, Event::SpeechStarted { at: ms(1000) });
    s.ev(2000, Event::SpeechEnded { at: ms(2000) });
    // Delivered early: ignored.
    let fx = s.m.handle(Event::Timeout(TimerKind::Endpoint), ms(2100));
    assert!(fx.is_empty());
    // A timer that was never armed: ignored.
    let fx = s.m.handle(Event::Timeout(TimerKind::BargeIn), ms(2100));
    assert!(fx.is_empty());
}

#[test]
fn config_follows_the_agent() {
    let agent = crate::agent::AgentConfig {
        name: "A".into(),
        description: None,
        voice_mode: crate::agent::VoiceMode::Hosted,
        enable_messaging: false,
        model_tier: crate::agent::ModelTier::Balanced,
        system_prompt: None,
        begin_message: None,
        voice: "joe".into(),
        transfer_number: None,
        voicemail_message: None,
        stt_mode: SttMode::Accurate,
        ambient_sound: crate::agent::AmbientSound::None,
        denoising_mode: crate::agent::DenoisingMode::NoiseCancellation,
        max_silence_ms: 10_000,
        voice_speed: 1.0,
        interruption_sensitivity: 0.3,
        enable_backchannel: true,
        language: "en-US".into(),
    };
    let c = TurnConfig::from_agent(&agent);
    assert_eq!(c.stt_mode, SttMode::Accurate);
    assert_eq!(c.interruption_sensitivity, 0.3);
    assert!(c.enable_backchannel);
    assert_eq!(c.max_silence, ms(10_000));
}
