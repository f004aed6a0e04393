#!/usr/bin/env bash
# Regenerates the recorded calls in calls/: caller audio as a gateway would stream it (G.711 μ-law,
# 8 kHz, mono) and a JSON annotation per call (each caller turn's start/end in ms and its text,
# plus what the call is meant to exercise). espeak-ng + sox only; deterministic.
#   ./generate-calls.sh
# The same calls in a neural voice (Piper `joe`, spoken by `switchboard say`) go to calls-piper/:
#   SAY=piper SWITCHBOARD_BIN=path/to/switchboard ./generate-calls.sh
# Every espeak voice and rate then becomes joe at speed wpm/190 (joe's own rate is about 190 wpm);
# the Spanish call is left out (no Spanish Piper voice is installed). Piper samples its prosody
# with onnxruntime's unseeded random generator, so a rerun gives other (equally valid) bytes.
set -euo pipefail
engine=${SAY:-espeak}
case $engine in
  espeak) out=calls ;;
  piper) out=calls-piper ;;
  *) echo "SAY must be espeak or piper, not $engine" >&2; exit 2 ;;
esac
# -R: sox seeds its dither the same way every run, so the output is byte-identical. The newer calls
# (second half) also set nodither=1: -D, no dither at all, so their silences are digital zero.
nodither=""
sox() { command sox -R ${nodither:+-D} "$@"; }
cd "$(dirname "$0")"
mkdir -p "$out"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# say FILE VOICE WPM TEXT → 8 kHz 16-bit WAV of the words, trimmed of espeak's own edge silence
# (lowered by $headroom dB first, if set, so the resampler never clips).
headroom=""
say() {
  if [ "$engine" = piper ]; then
    "${SWITCHBOARD_BIN:-switchboard}" say --voice joe --speed "$(python3 -c "import sys; print(min(2.0, max(0.5, int(sys.argv[1]) / 190)))" "$3")" --out "$tmp/raw.wav" "$4" 2>"$tmp/say.err" \
      || { cat "$tmp/say.err" >&2; echo "switchboard say failed on: $4" >&2; exit 1; }
  else
    espeak-ng -v "$2" -s "$3" -w "$tmp/raw.wav" "$4"
  fi
  sox "$tmp/raw.wav" -r 8000 -c 1 -b 16 "$1" ${headroom:+gain -$headroom} silence 1 0.01 0.5% reverse silence 1 0.01 0.5% reverse
}
sil() { sox -n -r 8000 -c 1 -b 16 "$1" trim 0 "$2"; }
ms() { python3 -c "import sys; print(round(float(sys.argv[1]) * 1000))" "$(soxi -D "$1")"; }

# call NAME EXPECT_JSON VOICE WPM then pairs of (gap-seconds-before, text) …, then a trailing gap.
# Writes $out/NAME.mulaw-8k.wav and $out/NAME.json.
call() {
  local name=$1 expect=$2 voice=$3 wpm=$4; shift 4
  if [ "$engine" = piper ]; then voice=joe; fi
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
  sox "${parts[@]}" -e mu-law -b 8 "$out/$name.mulaw-8k.wav"
  local total; total=$(ms "$out/$name.mulaw-8k.wav")
  printf '{\n  "file": "%s.mulaw-8k.wav",\n  "format": "G.711 mu-law, 8 kHz, mono",\n  "durationMs": %s,\n  "voice": "%s",\n  "wpm": %s,\n  "callerTurns": [%s],\n  "expect": %s\n}\n' \
    "$name" "$total" "$voice" "$wpm" "$turns" "$expect" > "$out/$name.json"
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
sox "$tmp/vm0.wav" "$tmp/vm1.wav" "$tmp/vm2.wav" "$tmp/beep.wav" "$tmp/vm3.wav" -e mu-law -b 8 "$out"/voicemail.mulaw-8k.wav
g_end=$(( $(ms "$tmp/vm0.wav") + $(ms "$tmp/vm1.wav") ))
beep_start=$(( g_end + $(ms "$tmp/vm2.wav") ))
beep_end=$(( beep_start + $(ms "$tmp/beep.wav") ))
printf '{\n  "file": "voicemail.mulaw-8k.wav",\n  "format": "G.711 mu-law, 8 kHz, mono",\n  "durationMs": %s,\n  "voice": "%s",\n  "wpm": 165,\n  "callerTurns": [{"startMs": %s, "endMs": %s, "text": "Hi, you have reached Sam. I can'"'"'t take your call right now. Please leave a message after the tone."}],\n  "expect": {"beepStartMs": %s, "beepEndMs": %s, "voicemail": true}\n}\n' \
  "$(ms "$out"/voicemail.mulaw-8k.wav)" "$([ "$engine" = piper ] && echo joe || echo en-us)" "$(ms "$tmp/vm0.wav")" "$g_end" "$beep_start" "$beep_end" > "$out"/voicemail.json

# --- More calls (issue 6): other voices and rates, noise beds, DTMF, a monologue, a silent caller and
# a Spanish call. Built as a timeline of 16-bit parts (begin, then gap/turn/monologue/dtmf in order,
# then finish): each time in the JSON is the length of the parts spliced before it, counted in
# samples and rounded to the ms once (so the times do not drift by a rounding per part).
nodither=1 headroom=3
begin() { # NAME VOICE WPM
  name=$1 voice=$2 wpm=$3 parts=() samples=0 t=0 n=0 turns="" spans=() dtmfs="" pauses="" language=en bed="" snr=""
  if [ "$engine" = piper ]; then voice=joe; fi
}
add() { parts+=("$1"); samples=$((samples + $(soxi -s "$1"))); t=$(((samples + 4) / 8)); }
gap() { n=$((n + 1)); sil "$tmp/p$n.wav" "$1"; add "$tmp/p$n.wav"; }
piece() { n=$((n + 1)); say "$tmp/p$n.wav" "$voice" "$wpm" "$1"; add "$tmp/p$n.wav"; }
turn_json() { # START END TEXT
  turns="${turns:+$turns,}{\"startMs\": $1, \"endMs\": $2, \"text\": \"$3\"}"
  spans+=("$1:$2")
}
turn() { local s=$t; piece "$1"; turn_json "$s" "$t" "$1"; } # TEXT: one caller turn
# TEXT [PAUSE-SECONDS TEXT]…: one caller turn spoken in pieces, with a pause between them; the
# pause starts go to $pauses.
monologue() {
  local s=$t text=$1; piece "$1"; shift
  while [ $# -gt 1 ]; do
    pauses="${pauses:+$pauses, }$t"; gap "$1"; piece "$2"; text="$text $2"; shift 2
  done
  turn_json "$s" "$t" "$text"
}
# DIGIT: its DTMF dual tone, 120 ms, −10 dBFS peak (the two sines at equal level).
dtmf() {
  local keys="123A456B789C*0#D" rows=(697 770 852 941) cols=(1209 1336 1477 1633) i
  i=${keys%%"$1"*}; i=${#i}
  n=$((n + 1))
  sox -n -r 8000 -c 1 -b 16 "$tmp/p$n.wav" synth 0.12 sine "${rows[i / 4]}" synth 0.12 sine mix "${cols[i % 4]}" gain -n -10
  dtmfs="${dtmfs:+$dtmfs, }{\"atMs\": $t, \"digit\": \"$1\", \"durationMs\": 120}"
  add "$tmp/p$n.wav"
}
# OUT SPEECH BED SNR-DB SPANS…: OUT = SPEECH + BED scaled so that over the caller turns (START:END ms)
# the speech's power is SNR-DB above the bed's; the sum is scaled down as a whole if it would clip.
mixbed() {
  python3 - "$@" <<'PY'
import array, math, os, sys, wave
out, speech, bed, snr_db, *spans = sys.argv[1:]
def read(path):
    with wave.open(path) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000), path
        a = array.array("h")
        a.frombytes(w.readframes(w.getnframes()))
    if sys.byteorder == "big":
        a.byteswap()
    return a
s, b = read(speech), read(bed)
assert len(b) == len(s), (len(b), len(s))
idx = [i for span in spans for i in range(int(span.split(":")[0]) * 8, int(span.split(":")[1]) * 8)]
power = lambda a: sum(a[i] * a[i] for i in idx) / len(idx)
g = math.sqrt(power(s) / power(b) / 10 ** (float(snr_db) / 10))
mix = [x + g * y for x, y in zip(s, b)]
k = min(1.0, 32000 / max(abs(x) for x in mix))
pcm = array.array("h", (round(k * x) for x in mix))
if sys.byteorder == "big":
    pcm.byteswap()
with wave.open(out, "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(8000)
    w.writeframes(pcm.tobytes())
print(f"{os.path.basename(speech)}: bed gain {20 * math.log10(g):.2f} dB, overall {20 * math.log10(k):.2f} dB", file=sys.stderr)
PY
}
# EXPECT_JSON: splices the parts (mixing in the noise bed if `noise` was called) and writes
# $out/$name.mulaw-8k.wav and $out/$name.json.
finish() {
  sox "${parts[@]}" "$tmp/$name.wav"
  if [ -n "$bed" ]; then
    # The bed (16 kHz μ-law, 6 s) at 8 kHz, looped to the length of the call.
    local len reps
    len=$(soxi -s "$tmp/$name.wav"); reps=$((len / 48000))
    sox "noise-$bed.mulaw-16k.wav" -r 8000 -c 1 -e signed-integer -b 16 "$tmp/loop.wav" repeat "$reps"
    sox "$tmp/loop.wav" "$tmp/bed.wav" trim 0 "${len}s"
    mixbed "$tmp/mix.wav" "$tmp/$name.wav" "$tmp/bed.wav" "$snr" "${spans[@]}"
    mv "$tmp/mix.wav" "$tmp/$name.wav"
  fi
  sox "$tmp/$name.wav" -e mu-law -b 8 "$out/$name.mulaw-8k.wav"
  local opt=""
  [ "$language" != en ] && opt="$opt  \"language\": \"$language\",\n"
  opt="$opt  \"callerTurns\": [$turns],\n"
  [ -n "$dtmfs" ] && opt="$opt  \"dtmf\": [$dtmfs],\n"
  [ -n "$bed" ] && opt="$opt  \"noise\": {\"bed\": \"$bed\", \"snrDb\": $snr},\n"
  printf '{\n  "file": "%s.mulaw-8k.wav",\n  "format": "G.711 mu-law, 8 kHz, mono",\n  "durationMs": %s,\n  "voice": "%s",\n  "wpm": %s,\n%b  "expect": %s\n}\n' \
    "$name" "$(ms "$out/$name.mulaw-8k.wav")" "$voice" "$wpm" "$opt" "$1" > "$out/$name.json"
}
noise() { bed=$1 snr=$2; } # BED SNR-DB: mix noise-BED.mulaw-16k.wav under the whole call

# A long turn (backchannel): six pieces, each ending where the sentence is not finished ("and",
# "but", "so", "because"), 0.40–0.60 s apart — pauses that invite an "mm-hmm" but do not end the turn.
begin monologue en-gb-x-rp 170
gap 0.6
monologue "So I ordered the blue armchair from your website three weeks ago, and" \
  0.45 "the delivery was supposed to come last Tuesday, but" \
  0.55 "nobody turned up and nobody called me either, so" \
  0.40 "I took another day off work on Thursday because" \
  0.60 "the email said they would come in the morning, but" \
  0.50 "again nothing happened, and now I would like to know where my chair is."
gap 3.0
finish "{\"turns\": 1, \"backchannelPausesMs\": [$pauses]}"

# One "Hello?" and then silence: the silence timeout (reminder, then hang-up).
begin silent en-us+f3 160
gap 0.6
turn "Hello?"
silent_from=$t
gap 25.0
finish "{\"turns\": 1, \"silentFromMs\": $silent_from, \"endReason\": \"silence-timeout\"}"

# A question, then the key 4 (in the audio as its tone, and in the JSON for gateways that send
# DTMF as events): a spoken turn, then a DTMF turn once the inter-digit wait has passed.
begin dtmf en-029 165
gap 0.6
turn "I'd like to check my order status."
gap 2.5
dtmf 4
gap 3.0
finish '{"turns": 2, "dtmfDigits": "4"}'

# Non-English: two turns in Spanish (espeak only: no Spanish Piper voice).
if [ "$engine" = espeak ]; then
  begin spanish es 150
  language=es
  gap 0.6
  turn "Hola, quisiera reservar una mesa para dos personas."
  gap 2.5
  turn "¿Tienen mesa junto a la ventana?"
  gap 2.5
  finish '{"turns": 2}'
fi

# Two turns over the café bed (babble, clinks) at 10 dB SNR.
begin noisy-cafe-10db en-us+f2 165
noise cafe 10
gap 0.6
turn "Hi, I'm calling to change my reservation for tonight."
gap 2.5
turn "Can we make it eight o'clock instead of seven?"
gap 2.5
finish '{"turns": 2}'

# Two turns over the street bed (rumble, a passing car) at 5 dB SNR.
begin noisy-street-5db en-gb+f3 160
noise street 5
gap 0.6
turn "Hello, I'm outside the station and I can't find your shop."
gap 2.5
turn "Is it on the left or the right of the bridge?"
gap 2.5
finish '{"turns": 2}'

# Speaking rates: a fast talker (220 wpm) and a slow one (120 wpm, Scottish English).
begin fast-talker en-us 220
gap 0.6
turn "Hi, I need to move my appointment from Monday morning to Wednesday afternoon if that's possible."
gap 2.5
turn "Great, and can you send me a text to confirm it?"
gap 2.5
finish '{"turns": 2}'

begin slow-talker en-gb-scotland 120
gap 0.6
turn "Good morning, what time does the pharmacy close today?"
gap 2.5
turn "And on Sunday?"
gap 2.5
finish '{"turns": 2}'
ls -l "$out"/
