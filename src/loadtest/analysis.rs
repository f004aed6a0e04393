//! What one simulated call measured, computed from its raw timeline — pure, no clocks or sockets.
//!
//! Time is in microseconds from the call's start (the moment the opening messages were sent).
//! The caller's send clock puts fixture millisecond `t` at `t / speed`; agent frames carry their
//! arrival time and the span the simulated gateway played them over (a gateway plays what it
//! receives in order, in real time; `clear` drops what was not yet played).
//!
//! * **Response latency** of a caller turn: end of the turn → arrival of the first audible agent
//!   frame after it. None before the next caller turn starts (or the call ends): unanswered.
//! * **Barge-in reaction**: for a caller turn that starts while the caller hears the agent (an
//!   audible frame played within [`HOLD_US`] before the onset), onset → the first of: a `clear`
//!   arriving, or the agent falling silent (no audible playback for [`HOLD_US`]).
//! * **Egress jitter**: |inter-arrival − the previous frame's duration| for consecutive agent
//!   frames; an inter-arrival over twice the frame is a **gap**; over [`PAUSE_US`] the server
//!   was not sending (a **pause**: counted, neither jitter nor gap).
//! * **Greeting**: the first audible agent frame, when it arrives before the first caller turn
//!   ends.

/// Silence that ends agent speech (also the look-back for "the agent is speaking"): words have
/// short gaps between them, a finished sentence a longer one.
pub const HOLD_US: u64 = 200_000;
/// An inter-arrival this long means the server stopped sending, not a late frame.
pub const PAUSE_US: u64 = 1_000_000;

/// One audio frame the server sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgentFrame {
    pub arrival_us: u64,
    /// When the simulated gateway started and stopped playing it (`end == start` if a `clear`
    /// dropped it before it played).
    pub play_start_us: u64,
    pub play_end_us: u64,
    /// Its duration as sent.
    pub duration_us: u64,
    /// RMS above the silence threshold.
    pub audible: bool,
}

/// A caller turn on the send clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TurnSpan {
    pub start_us: u64,
    pub end_us: u64,
}

/// The raw timeline of one call: everything the analysis needs.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub frames: Vec<AgentFrame>,
    /// Arrival times of `clear` messages.
    pub clears: Vec<u64>,
    /// Caller turns, in order.
    pub turns: Vec<TurnSpan>,
    /// How far the caller's audio got (send clock) before the call ended.
    pub sent_until_us: u64,
    /// When the call ended (last moment anything was observed).
    pub end_us: u64,
}

/// How a barge-in was met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoppedBy {
    Clear,
    Silence,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TurnMeasure {
    /// Index into the fixture's caller turns.
    pub index: usize,
    /// The turn's audio was sent completely.
    pub played: bool,
    /// End of the turn → first audible agent frame, µs.
    pub latency_us: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BargeIn {
    /// The caller turn that started over the agent.
    pub turn: usize,
    /// Onset → clear or silence, µs; None if the agent never stopped.
    pub reaction_us: Option<u64>,
    pub by: Option<StoppedBy>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measures {
    pub greeting_us: Option<u64>,
    pub turns: Vec<TurnMeasure>,
    pub barge_ins: Vec<BargeIn>,
    /// |inter-arrival − frame duration|, µs, one per consecutive frame pair (pauses excluded).
    pub jitter_us: Vec<u32>,
    pub gaps: u32,
    pub pauses: u32,
}

/// Measures one call.
pub fn analyze(t: &Timeline) -> Measures {
    let mut m = Measures::default();
    let first_audible = t.frames.iter().find(|f| f.audible);
    let first_end = t.turns.first().map_or(u64::MAX, |turn| turn.end_us);
    m.greeting_us = first_audible.map(|f| f.arrival_us).filter(|&a| a < first_end);

    for (i, turn) in t.turns.iter().enumerate() {
        let played = turn.end_us <= t.sent_until_us;
        if turn.start_us > t.sent_until_us {
            break; // the call ended before the caller got to it
        }
        let window_end = t.turns.get(i + 1).map_or(t.end_us, |next| next.start_us.min(t.end_us));
        let latency_us = if played {
            t.frames
                .iter()
                .find(|f| f.audible && f.arrival_us >= turn.end_us && f.arrival_us < window_end)
                .map(|f| f.arrival_us - turn.end_us)
        } else {
            None
        };
        m.turns.push(TurnMeasure { index: i, played, latency_us });
        if let Some(b) = barge_in(t, i, turn.start_us, window_end) {
            m.barge_ins.push(b);
        }
    }

    for pair in t.frames.windows(2) {
        let dt = pair[1].arrival_us.saturating_sub(pair[0].arrival_us);
        if dt > PAUSE_US {
            m.pauses += 1;
            continue;
        }
        let expected = pair[0].duration_us;
        m.jitter_us.push(dt.abs_diff(expected).min(u64::from(u32::MAX)) as u32);
        if dt > 2 * expected {
            m.gaps += 1;
        }
    }
    m
}

/// The barge-in measure for the turn starting at `onset`, if the agent was heard then.
fn barge_in(t: &Timeline, turn: usize, onset: u64, window_end: u64) -> Option<BargeIn> {
    let heard = t.frames.iter().any(|f| {
        f.audible
            && f.play_end_us > f.play_start_us
            && f.play_start_us <= onset
            && f.play_end_us + HOLD_US >= onset
    });
    if !heard {
        return None;
    }
    let clear = t.clears.iter().copied().find(|&c| c >= onset && c < window_end);
    // Walk audible playback from the onset until a silence of HOLD_US.
    let mut spans: Vec<(u64, u64)> = t
        .frames
        .iter()
        .filter(|f| f.audible && f.play_end_us > f.play_start_us && f.play_end_us > onset)
        .map(|f| (f.play_start_us.max(onset), f.play_end_us))
        .collect();
    spans.sort_unstable();
    let mut speaking_until = onset;
    for (start, end) in spans {
        if start > speaking_until + HOLD_US {
            break;
        }
        speaking_until = speaking_until.max(end);
    }
    // Silence is only known once HOLD_US of it was observed.
    let silence = (speaking_until + HOLD_US <= t.end_us).then_some(speaking_until);
    let (at, by) = match (clear, silence) {
        (Some(c), Some(s)) if s < c => (Some(s), Some(StoppedBy::Silence)),
        (Some(c), _) => (Some(c), Some(StoppedBy::Clear)),
        (None, Some(s)) => (Some(s), Some(StoppedBy::Silence)),
        (None, None) => (None, None),
    };
    Some(BargeIn { turn, reaction_us: at.map(|a| a - onset), by })
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: u64 = 20_000;

    /// `n` frames paced at 20 ms from `from_us`, audible or not, played as they arrive.
    fn run(from_us: u64, n: u64, audible: bool) -> Vec<AgentFrame> {
        (0..n)
            .map(|i| {
                let a = from_us + i * F;
                AgentFrame { arrival_us: a, play_start_us: a, play_end_us: a + F, duration_us: F, audible }
            })
            .collect()
    }

    fn timeline(frames: Vec<AgentFrame>, turns: &[(u64, u64)], end_ms: u64) -> Timeline {
        Timeline {
            frames,
            clears: vec![],
            turns: turns.iter().map(|&(s, e)| TurnSpan { start_us: s * 1000, end_us: e * 1000 }).collect(),
            sent_until_us: end_ms * 1000,
            end_us: end_ms * 1000,
        }
    }

    /// A continuous stream (as Switchboard sends: silence between utterances) for `total_ms`,
    /// audible over the given ms spans.
    fn stream(total_ms: u64, speech: &[(u64, u64)]) -> Vec<AgentFrame> {
        let mut frames = run(0, total_ms * 1000 / F, false);
        for f in &mut frames {
            f.audible = speech.iter().any(|&(s, e)| f.arrival_us >= s * 1000 && f.arrival_us < e * 1000);
        }
        frames
    }

    #[test]
    fn greeting_then_two_answered_turns() {
        // Greeting 200–1400 ms; turns 2000–4000 and 6000–8000; answers 4700–5500 and 8600–9000.
        let frames = stream(10_000, &[(200, 1400), (4700, 5500), (8600, 9000)]);
        let m = analyze(&timeline(frames, &[(2000, 4000), (6000, 8000)], 10_000));
        assert_eq!(m.greeting_us, Some(200_000));
        let lat: Vec<Option<u64>> = m.turns.iter().map(|t| t.latency_us).collect();
        assert_eq!(lat, [Some(700_000), Some(600_000)]);
        assert!(m.barge_ins.is_empty(), "{:?}", m.barge_ins);
        assert_eq!((m.gaps, m.pauses), (0, 0));
        assert_eq!(m.jitter_us.len(), 499);
        assert!(m.jitter_us.iter().all(|&j| j == 0));
    }

    #[test]
    fn a_turn_with_no_answer_before_the_next_one_is_unanswered() {
        // The only answer comes after the second turn.
        let frames = stream(9000, &[(7000, 8000)]);
        let m = analyze(&timeline(frames, &[(1000, 2000), (4000, 6000)], 9000));
        assert_eq!(m.turns[0].latency_us, None);
        assert_eq!(m.turns[1].latency_us, Some(1_000_000));
        assert_eq!(m.greeting_us, None);
    }

    #[test]
    fn turns_the_call_never_reached_are_left_out_and_a_cut_turn_is_not_played() {
        let frames = stream(3000, &[]);
        let mut t = timeline(frames, &[(500, 1500), (2500, 4000), (5000, 6000)], 3000);
        t.sent_until_us = 3_000_000;
        let m = analyze(&t);
        assert_eq!(m.turns.len(), 2);
        assert!(m.turns[0].played && !m.turns[1].played);
        assert_eq!(m.turns[1].latency_us, None);
    }

    #[test]
    fn barge_in_met_by_clear() {
        // Agent speaks 0–5000 ms; the caller starts at 2000; clear arrives at 2350 and the
        // playback is cut there.
        let mut frames = stream(6000, &[(0, 5000)]);
        for f in &mut frames {
            if f.play_start_us >= 2_350_000 {
                f.play_end_us = f.play_start_us;
            }
        }
        let mut t = timeline(frames, &[(2000, 3000)], 6000);
        t.clears = vec![2_350_000];
        let m = analyze(&t);
        assert_eq!(
            m.barge_ins,
            [BargeIn { turn: 0, reaction_us: Some(350_000), by: Some(StoppedBy::Clear) }]
        );
    }

    #[test]
    fn barge_in_met_by_silence_and_one_never_met() {
        // The agent just stops (no clear) 500 ms after the onset.
        let frames = stream(4000, &[(0, 1500)]);
        let m = analyze(&timeline(frames, &[(1000, 2000)], 4000));
        assert_eq!(
            m.barge_ins,
            [BargeIn { turn: 0, reaction_us: Some(500_000), by: Some(StoppedBy::Silence) }]
        );
        // Short pauses between words do not count as stopping; talking to the end is no reaction.
        let frames = stream(4000, &[(0, 1900), (2000, 4000)]);
        let m = analyze(&timeline(frames, &[(1000, 2000)], 4000));
        assert_eq!(m.barge_ins, [BargeIn { turn: 0, reaction_us: None, by: None }]);
    }

    #[test]
    fn buffered_audio_counts_by_when_it_plays_not_when_it_arrived() {
        // The server sends 3 s of speech in a burst at 0 ms; the gateway plays it 0–3000 ms.
        let frames: Vec<AgentFrame> = (0..150)
            .map(|i| AgentFrame {
                arrival_us: i * 10,
                play_start_us: i * F,
                play_end_us: (i + 1) * F,
                duration_us: F,
                audible: true,
            })
            .collect();
        let m = analyze(&timeline(frames, &[(2000, 2500)], 4000));
        assert_eq!(m.barge_ins.len(), 1, "heard at 2000 ms though it all arrived at once");
        assert_eq!(m.barge_ins[0].reaction_us, Some(1_000_000));
        // Burst pacing shows as ~20 ms of jitter per frame.
        assert!(m.jitter_us.iter().all(|&j| j == 19_990));
    }

    #[test]
    fn gaps_and_pauses() {
        let mut frames = run(0, 10, true);
        frames.extend(run(10 * F + 40_000, 5, true)); // a 60 ms inter-arrival: a gap
        frames.extend(run(15 * F + 40_000 + 3_000_000, 5, true)); // a 3 s pause
        let m = analyze(&timeline(frames, &[], 5000));
        assert_eq!((m.gaps, m.pauses), (1, 1));
        assert_eq!(m.jitter_us.len(), 18);
        assert_eq!(*m.jitter_us.iter().max().unwrap(), 40_000);
    }
}
