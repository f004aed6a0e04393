#!/usr/bin/env bash
# Regenerates the media-plane fixtures from text with espeak-ng and sox (both Debian packages,
# installed by scripts/setup-system.sh). Deterministic: same tools, same bytes.
#   ./generate.sh            (writes into this folder)
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

say() { # name, voice, words-per-minute, text
  espeak-ng -v "$2" -s "$3" -w "$tmp/$1.wav" "$4"
}

say caller-hello en-us 160 "Hello, I would like to book a table for two people tomorrow evening at seven."
say caller-question en-gb 175 "What is the weather going to be like in London this weekend?"

for name in caller-hello caller-question; do
  # The three wire shapes the media tests stream: μ-law 8 kHz (Twilio, Telnyx, Plivo),
  # L16 16 kHz (Vonage, native), with 200 ms of silence before and after.
  sox "$tmp/$name.wav" -r 8000 -c 1 -e mu-law -b 8 "$name.mulaw-8k.wav" pad 0.2 0.2
  sox "$tmp/$name.wav" -r 16000 -c 1 -e signed-integer -b 16 "$name.l16-16k.wav" pad 0.2 0.2
done
# A steady 440 Hz tone, 2 s, −12 dBFS, for level/frequency checks through the loopback path.
sox -n -r 8000 -c 1 -e mu-law -b 8 tone-440.mulaw-8k.wav synth 2 sine 440 gain -12
sox -n -r 16000 -c 1 -e signed-integer -b 16 tone-440.l16-16k.wav synth 2 sine 440 gain -12

# --- Listening-path fixtures (denoiser tests): noise beds, a second talker, annotations. ---
# All 16 kHz mono. sox runs with -R (repeatable: fixed seeds for its noise generators) and -D (no
# dither), so these bytes are deterministic too. The beds are stored as 16 kHz μ-law to keep the repo
# small (96 KB per 6 s bed); tests decode them and mix them under the clean sentences at an exact SNR.
sx() { sox -R -D "$@"; }
rate=(-r 16000 -c 1)
bed=6.0 # seconds
fit() { # in, out: 16 kHz mono float, looped/trimmed to exactly $bed seconds
  sx "$1" "${rate[@]}" -e floating-point -b 32 "$tmp/fit.wav" repeat 3
  sx "$tmp/fit.wav" -e floating-point -b 32 "$2" trim 0 "$bed"
}
late() { # in, out, delay-seconds: delays then fits to the bed length
  sx "$1" "${rate[@]}" -e floating-point -b 32 "$tmp/late.wav" pad "$3"
  fit "$tmp/late.wav" "$2"
}
mulaw16() { # in, out name: peak-normalised to -3 dBFS, 16 kHz μ-law
  sx "$1" "${rate[@]}" -e mu-law -b 8 "$2" gain -n -3
}

# Babble: five talkers (different voices, pitches and sentences) overlapping, each looped to 6 s.
say b1 en-us+m3 165 "The quarterly numbers came in lower than we expected, so the meeting moved to Friday."
say b2 en-gb+f2 175 "Could you pass me the sugar? I think mine has gone completely cold already."
say b3 en-gb-scotland+m5 150 "We drove up the coast last summer and the weather was lovely the whole week."
say b4 en-029+f4 170 "She said the new manager would start next month, but nobody has met him yet."
say b5 en-us+f5 185 "Honestly the train was so late that I nearly missed the start of the film."
i=0
for b in b1 b2 b3 b4 b5; do
  late "$tmp/$b.wav" "$tmp/$b.fit.wav" "0.$((i * 3))"
  i=$((i + 1))
done
sx -m "$tmp"/b?.fit.wav "$tmp/babble.wav"
mulaw16 "$tmp/babble.wav" noise-babble.mulaw-16k.wav

# Cafe: babble, cup/cutlery clinks (short exponentially decaying high tones) and a little pink noise.
clinks=()
for c in "0.7 2900 4100" "1.9 3500 5200" "2.6 2400 3700" "3.8 4200 6100" "4.4 3100 4600" "5.3 2700 3900"; do
  read -r at f1 f2 <<<"$c"
  sx -n "${rate[@]}" -e floating-point -b 32 "$tmp/clink$at.wav" synth 0.35 sine "$f1" sine "$f2" \
    channels 1 fade l 0 0.35 0.34 gain -6 pad "$at"
  clinks+=("$tmp/clink$at.wav") # sox -m pads the shorter inputs with silence
done
sx -n "${rate[@]}" -e floating-point -b 32 "$tmp/pink.wav" synth "$bed" pinknoise gain -30
sx -m -v 0.7 "$tmp/babble.wav" "${clinks[@]}" "$tmp/pink.wav" "$tmp/cafe.wav"
mulaw16 "$tmp/cafe.wav" noise-cafe.mulaw-16k.wav

# Street: brown + pink noise, a low engine rumble (amplitude-modulated 38/52 Hz), and a car passing
# (low-passed brown noise swelling up over 2 s and away over 1.5 s, from 1.5 s).
sx -n "${rate[@]}" -e floating-point -b 32 "$tmp/st-bed.wav" synth "$bed" brownnoise synth "$bed" pinknoise mix \
  lowpass 3000 gain -12
sx -n "${rate[@]}" -e floating-point -b 32 "$tmp/st-rumble.wav" synth "$bed" sine 38 synth "$bed" sine amod 52 \
  tremolo 0.7 40 gain -8
sx -n "${rate[@]}" -e floating-point -b 32 "$tmp/st-car.wav" synth 3.5 brownnoise lowpass 900 \
  fade q 2 3.5 1.5 gain -2 pad 1.5 0.5
sx -m "$tmp/st-bed.wav" "$tmp/st-rumble.wav" "$tmp/st-car.wav" "$tmp/street.wav"
mulaw16 "$tmp/street.wav" noise-street.mulaw-16k.wav

# TV: one talker (a different voice and sentence) over music-like tones (a slow arpeggio of
# sine/triangle notes), band-limited to 200–4000 Hz like a small loudspeaker.
say tv en-gb-x-rp+m2 160 "Tonight on the news, heavy rain is expected across the north, with flooding in some coastal towns."
fit "$tmp/tv.wav" "$tmp/tv.fit.wav"
notes=()
n=0
for f in 262 330 392 523 392 330 294 349 440 587 440 349; do
  sx -n "${rate[@]}" -e floating-point -b 32 "$tmp/note$n.wav" synth 0.5 triangle "$f" synth 0.5 sine mix "$((f * 2))" \
    fade l 0.01 0.5 0.3 gain -14
  notes+=("$tmp/note$n.wav")
  n=$((n + 1))
done
sx "${notes[@]}" "$tmp/music.wav"
sx -m "$tmp/tv.fit.wav" "$tmp/music.wav" "$tmp/tv-mix.wav" sinc 200-4000
mulaw16 "$tmp/tv-mix.wav" noise-tv.mulaw-16k.wav

# Second talker: a different voice and sentence, full level; tests mix it 12 dB under caller-hello,
# starting 2.0 s into it (so it overlaps the caller and runs on alone after the caller stops).
say talker2 en-gb-scotland+f3 165 "My sister keeps telling me to get a new phone, but this one still works fine."
sx "$tmp/talker2.wav" "${rate[@]}" -e signed-integer -b 16 talker2.l16-16k.wav gain -n -3 pad 0.2 0.2

ls -l *.wav
