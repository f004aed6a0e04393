#!/usr/bin/env bash
# Regenerates the recorded calls in calls/: caller audio as a gateway would stream it (G.711 μ-law,
# 8 kHz, mono) and a JSON annotation per call (each caller turn's start/end in ms and its text,
# plus what the call is meant to exercise). espeak-ng + sox only; deterministic.
#   ./generate-calls.sh
set -euo pipefail
# -R: sox seeds its dither the same way every run, so the output is byte-identical.
sox() { command sox -R "$@"; }
cd "$(dirname "$0")"
mkdir -p calls
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# say FILE VOICE WPM TEXT → 8 kHz 16-bit WAV of the words, trimmed of espeak's own edge silence.
say() {
  espeak-ng -v "$2" -s "$3" -w "$tmp/raw.wav" "$4"
  sox "$tmp/raw.wav" -r 8000 -c 1 -b 16 "$1" silence 1 0.01 0.5% reverse silence 1 0.01 0.5% reverse
}
sil() { sox -n -r 8000 -c 1 -b 16 "$1" trim 0 "$2"; }
ms() { python3 -c "import sys; print(round(float(sys.argv[1]) * 1000))" "$(soxi -D "$1")"; }

# call NAME EXPECT_JSON VOICE WPM then pairs of (gap-seconds-before, text) …, then a trailing gap.
# Writes calls/NAME.mulaw-8k.wav and calls/NAME.json.
call() {
  local name=$1 expect=$2 voice=$3 wpm=$4; shift 4
  local parts=() turns="" t=0 i=0
  while [ $# -gt 1 ]; do
    local gap=$1 text=$2; shift 2
    sil "$tmp/gap$i.wav" "$gap"; parts+=("$tmp/gap$i.wav")
    t=$((t + $(ms "$tmp/gap$i.wav")))
    say "$tmp/say$i.wav" "$voice" "$wpm" "$text"; parts+=("$tmp/say$i.wav")
    local d; d=$(ms "$tmp/say$i.wav")
    [ -n "$turns" ] && turns="$turns,"
    turns="$turns{\"startMs\": $t, \"endMs\": $((t + d)), \"text\": \"$text\"}"
    t=$((t + d)); i=$((i + 1))
  done
  sil "$tmp/tail.wav" "$1"; parts+=("$tmp/tail.wav")
  sox "${parts[@]}" -e mu-law -b 8 "calls/$name.mulaw-8k.wav"
  local total; total=$(ms "calls/$name.mulaw-8k.wav")
  printf '{\n  "file": "%s.mulaw-8k.wav",\n  "format": "G.711 mu-law, 8 kHz, mono",\n  "durationMs": %s,\n  "voice": "%s",\n  "wpm": %s,\n  "callerTurns": [%s],\n  "expect": %s\n}\n' \
    "$name" "$total" "$voice" "$wpm" "$turns" "$expect" > "calls/$name.json"
}

# Two caller turns with a clear pause: two recorded turns, in order.
call two-turns '{"turns": 2}' en-us 160 \
  0.6 "Hi, I would like to book a table for two people tomorrow evening." \
  2.5 "Could we have a table by the window, please?" \
  2.5
# The caller talks over the agent's greeting 1 s in (a barge-in at default sensitivity).
call barge-in '{"bargeInAtMs": 1000, "turns": 1}' en-us 170 \
  1.0 "Sorry, can I ask you something about my booking first?" \
  3.0
# A lone "yeah" while the agent speaks: a backchannel, never an interruption at sensitivity < 0.9.
call backchannel-yeah '{"interrupts": false, "turns": 0}' en-us 170 \
  1.5 "yeah" \
  3.0
# A question, then a goodbye once the agent has answered: the call ends on the caller's goodbye.
call goodbye '{"turns": 2, "endsWith": "goodbye"}' en-us 160 \
  0.6 "What time do you open on Saturday?" \
  4.5 "Okay, thank you. Goodbye." \
  4.0
# The caller asks for a person: transferred when the agent has a transferNumber.
call transfer '{"turns": 1, "transfer": true}' en-us 160 \
  0.6 "Can I speak to a real person, please?" \
  5.0
# An answering machine: a greeting, then a 1 kHz beep (0.5 s, −10 dBFS), then silence while the
# message is recorded. The agent should leave its voicemailMessage after the beep and hang up.
sil "$tmp/vm0.wav" 0.5
say "$tmp/vm1.wav" en-us 165 "Hi, you have reached Sam. I can't take your call right now. Please leave a message after the tone."
sil "$tmp/vm2.wav" 0.4
sox -n -r 8000 -c 1 -b 16 "$tmp/beep.wav" synth 0.5 sine 1000 vol 0.316
sil "$tmp/vm3.wav" 8.0
sox "$tmp/vm0.wav" "$tmp/vm1.wav" "$tmp/vm2.wav" "$tmp/beep.wav" "$tmp/vm3.wav" -e mu-law -b 8 calls/voicemail.mulaw-8k.wav
g_end=$(( $(ms "$tmp/vm0.wav") + $(ms "$tmp/vm1.wav") ))
beep_start=$(( g_end + $(ms "$tmp/vm2.wav") ))
beep_end=$(( beep_start + $(ms "$tmp/beep.wav") ))
printf '{\n  "file": "voicemail.mulaw-8k.wav",\n  "format": "G.711 mu-law, 8 kHz, mono",\n  "durationMs": %s,\n  "voice": "en-us",\n  "wpm": 165,\n  "callerTurns": [{"startMs": %s, "endMs": %s, "text": "Hi, you have reached Sam. I can'"'"'t take your call right now. Please leave a message after the tone."}],\n  "expect": {"beepStartMs": %s, "beepEndMs": %s, "voicemail": true}\n}\n' \
  "$(ms calls/voicemail.mulaw-8k.wav)" "$(ms "$tmp/vm0.wav")" "$g_end" "$beep_start" "$beep_end" > calls/voicemail.json
ls -l calls/
