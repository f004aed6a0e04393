#!/usr/bin/env bash
# Regenerates the three ambient beds of `ambientSound` (office, coffee-shop, outdoor) from
# synthesis alone: sox noise/sine generators and filters, plus espeak-ng for the distant voices
# (both Debian packages, installed by scripts/setup-system.sh). src/audio/ambient.rs embeds the
# output with include_bytes!.
#   ./generate.sh            (writes into this folder)
#   ./generate.sh OUT_DIR    (writes into OUT_DIR; tests/ambient.rs checks the bytes match)
#
# Deterministic: sox runs with -R (fixed noise seeds) and -D (no dither), event times come from
# a fixed-seed LCG in shell arithmetic, so a rerun reproduces the files byte for byte.
#
# Each bed: BED_S seconds, 16 kHz mono G.711 μ-law, peak-normalised to −1 dBFS (the mixer sets
# the level from the bed's RMS, so the stored level only has to sit well above μ-law's floor).
# Seamless loop: BED_S + XFADE_S seconds are synthesised and the last XFADE_S seconds are
# crossfaded (equal power, quarter-sine) into the first, so sample BED_S−1 runs on into sample 0.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
mkdir -p "$out"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

BED_S=10
XFADE_S=1
SRC_S=$((BED_S + XFADE_S))
RATE_HZ=16000
f32=(-r "$RATE_HZ" -c 1 -e floating-point -b 32)
sx() { sox -R -D "$@"; }

# With -R every sox run starts its noise generator from the same seed, so two layers made by two
# runs would be the same noise. noise OUT KIND SKIP_S: SRC_S seconds of KIND noise taken SKIP_S
# seconds into a longer run, so layers with different SKIP_S are uncorrelated.
noise() {
  sx -n "${f32[@]}" "$1" synth $((SRC_S + $3)) "$2" trim "$3"
}

# Fixed-seed LCG (glibc constants): rnd N sets r to 0..N-1. Same numbers on every bash.
seed=20240611
rnd() {
  seed=$(((seed * 1103515245 + 12345) % 2147483648))
  r=$(((seed / 65536) % $1))
}
secs() { # milliseconds → "s.mmm"
  printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000))
}

# Event track: events holds "at_ms file" pairs; track OUT mixes every file in at its time over
# SRC_S seconds of silence (events running past the end are cut; they fall in the faded tail).
events=()
track() {
  local args=(-m -v 1 "$tmp/silence.wav") n=0 at file
  for ev in "${events[@]}"; do
    read -r at file <<<"$ev"
    sx "$file" "${f32[@]}" "ev$n.wav" pad "$(secs "$at")"
    args+=(-v 1 "ev$n.wav")
    n=$((n + 1))
  done
  sx "${args[@]}" "$1" trim 0 "$SRC_S"
  rm -f ev*.wav
  events=()
}
sx -n "${f32[@]}" silence.wav trim 0 "$SRC_S"

# Voices: say NAME VOICE WPM TEXT, then fit IN OUT SKIP_S loops a sentence to SRC_S seconds
# starting SKIP_S seconds in, so talkers overlap without starting together.
say() {
  espeak-ng -v "$2" -s "$3" -w "$1.raw.wav" "$4"
  sx "$1.raw.wav" "${f32[@]}" "$1.wav" pad 0 0.6
}
fit() {
  sx "$1" "${f32[@]}" fit.wav repeat 6
  sx fit.wav "$2" trim "$3" "$SRC_S"
}

# Loop: BED = SRC[X, BED) ++ (SRC[BED, BED+X) fading out + SRC[0, X) fading in), X = XFADE_S.
# The last sample of BED is ≈ SRC[X−1] and the first is SRC[X]: consecutive source samples.
bed() { # IN NAME
  local x=$((XFADE_S * RATE_HZ)) n=$((BED_S * RATE_HZ))
  sx "$1" body.wav trim "${x}s" "$((n - x))s"
  sx "$1" tail.wav trim "${n}s" "${x}s" fade q 0 "${x}s" "${x}s"
  sx "$1" head.wav trim 0 "${x}s" fade q "${x}s"
  sx -m -v 1 tail.wav -v 1 head.wav seam.wav
  sx body.wav seam.wav looped.wav
  sx looped.wav -r "$RATE_HZ" -c 1 -e mu-law -b 8 "$out/$2.mulaw-16k.wav" gain -n -1
}

# ---------------------------------------------------------------------------------------------
# Office: room tone (ventilation: pink noise low-passed at 1.5 kHz over a faint brown rumble),
# four bursts of typing (key clicks: 12 ms band-passed noise at 1.8–3.6 kHz plus a 25 ms 300 Hz
# "thock", 80–230 ms apart) and a distant murmur (three talkers, low-passed at 1 kHz, reverberant,
# as if through an open-plan office).
noise pink.wav pinknoise 0
noise brown.wav brownnoise 13
sx -m -v 1 pink.wav -v 0.2 brown.wav office-room.wav lowpass 1500 gain -12

sx -n "${f32[@]}" thock.wav synth 0.025 sine 300 fade p 0.002 0.025 0.022 gain -20
for k in 0 1 2 3; do
  f=$((1800 + k * 600))
  sx -n "${f32[@]}" key$k.raw.wav synth 0.012 whitenoise bandpass "$f" 1.5q fade p 0.001 0.012 0.010 gain -8
  sx -m -v 1 key$k.raw.wav -v 1 thock.wav key$k.wav
done
for burst_ms in 300 2900 5600 8300; do
  rnd 900
  at=$((burst_ms + r))
  rnd 12
  keys=$((14 + r))
  for ((i = 0; i < keys; i++)); do
    rnd 4
    events+=("$at key$r.wav")
    rnd 150
    at=$((at + 80 + r))
  done
done
track office-keys.wav

say o1 en-us+m3 150 "I'll send the updated figures over after lunch, if that works for everyone."
say o2 en-gb+f2 160 "Has anyone seen the charger for the projector in the small meeting room?"
say o3 en-us+m1 145 "We should probably push the review to Thursday and give the team more time."
fit o1.wav o1.fit.wav 0.0
fit o2.wav o2.fit.wav 1.7
fit o3.wav o3.fit.wav 3.1
sx -m o1.fit.wav o2.fit.wav o3.fit.wav office-murmur.wav lowpass 1000 reverb 70 50 100 gain -n -12

sx -m -v 1 office-room.wav -v 0.8 office-keys.wav -v 1 office-murmur.wav office.wav
bed office.wav office

# ---------------------------------------------------------------------------------------------
# Coffee shop: café babble (six talkers at 150–185 wpm, reverberant, 150–5000 Hz), cup and spoon
# clinks (two or three decaying sines at 2.4–7.2 kHz; a spoon stirring is four quick ones), an
# espresso steam wand (2.4 s of noise high-passed at 2.5 kHz with a gurgle, from 4.6 s) and a
# little pink room noise.
say c1 en-us+m3 165 "The quarterly numbers came in lower than we expected, so the meeting moved."
say c2 en-gb+f2 175 "Could you pass me the sugar? I think mine has gone completely cold already."
say c3 en-gb-scotland+m5 150 "We drove up the coast last summer and the weather was lovely all week."
say c4 en-029+f4 170 "She said the new manager would start next month, but nobody has met him."
say c5 en-us+f5 185 "Honestly the train was so late that I nearly missed the start of the film."
say c6 en-gb-x-rp+m2 160 "Two flat whites and a croissant, please, and could I have it to take away?"
i=0
for c in c1 c2 c3 c4 c5 c6; do
  fit $c.wav $c.fit.wav "$(secs $((i * 700)))"
  i=$((i + 1))
done
sx -m c?.fit.wav cafe-babble.wav sinc 150-5000 reverb 50 50 80 gain -n -10

n=0
for c in "600 2900 4100 0" "1900 3500 5200 6900" "2700 2400 3700 0" "3600 4200 6100 7200" \
  "5900 3100 4600 0" "7400 2700 3900 5800" "8800 3800 5600 0" "10200 3300 4900 6400"; do
  read -r at f1 f2 f3 <<<"$c"
  if [ "$f3" = 0 ]; then
    sx -n "${f32[@]}" clink$n.wav synth 0.3 sine "$f1" sine "$f2" channels 1 fade l 0 0.3 0.29 gain -10
  else
    sx -n "${f32[@]}" clink$n.wav synth 0.4 sine "$f1" sine "$f2" sine "$f3" channels 1 fade l 0 0.4 0.39 gain -12
  fi
  events+=("$at clink$n.wav")
  n=$((n + 1))
done
sx -n "${f32[@]}" spoon.wav synth 0.12 sine 5300 sine 6600 channels 1 fade l 0 0.12 0.11 gain -16
for at in 1200 1330 1450 1580 6500 6620 6750 6870; do
  events+=("$at spoon.wav")
done
track cafe-clinks.wav

noise steam.raw.wav whitenoise 29
sx steam.raw.wav steam.wav trim 0 2.4 highpass 2500 highpass 2500 tremolo 23 30 fade q 0.25 2.4 0.7 gain -6
events+=("4600 steam.wav")
track cafe-steam.wav
noise cafe-pink.wav pinknoise 41

sx -m -v 1 cafe-babble.wav -v 0.6 cafe-clinks.wav -v 0.35 cafe-steam.wav -v 0.1 cafe-pink.wav coffee-shop.wav
bed coffee-shop.wav coffee-shop

# ---------------------------------------------------------------------------------------------
# Outdoor: wind (brown noise low-passed at 400 Hz with slow gusts, plus a softer 300–1200 Hz
# whoosh), birds (a trill of rising 3.2–4.8 kHz chirps and a two-note 2.6/2.1 kHz whistle) and
# distant traffic (brown noise low-passed at 250 Hz and a vehicle passing from 2 s to 8 s).
noise wind-lo.raw.wav brownnoise 53
noise wind-hi.raw.wav pinknoise 67
sx wind-lo.raw.wav wind-lo.wav lowpass 400 lowpass 400 tremolo 0.17 60 gain -6
sx wind-hi.raw.wav wind-hi.wav sinc 300-1200 tremolo 0.29 80 gain -12
sx -m -v 1 wind-lo.wav -v 1 wind-hi.wav outdoor-wind.wav

sx -n "${f32[@]}" chirp.wav synth 0.05 sine 3200-4800 fade q 0.008 0.05 0.03 gain -14
sx -n "${f32[@]}" whistle1.wav synth 0.22 sine 2600 fade q 0.03 0.22 0.08 gain -16
sx -n "${f32[@]}" whistle2.wav synth 0.30 sine 2150-2050 fade q 0.03 0.30 0.12 gain -16
for at in 900 4700 7900; do # trills of six chirps
  for ((i = 0; i < 6; i++)); do
    events+=("$((at + i * 85)) chirp.wav")
  done
done
for at in 2300 6100 9400; do # two-note whistles
  events+=("$at whistle1.wav" "$((at + 260)) whistle2.wav")
done
track outdoor-birds.wav

noise traffic.raw.wav brownnoise 79
noise car.raw.wav brownnoise 97
sx traffic.raw.wav traffic.wav lowpass 250 lowpass 250 gain -8
sx car.raw.wav car.wav trim 0 6 lowpass 600 fade q 3 6 3 gain -10
events+=("2000 car.wav")
track outdoor-car.wav

sx -m -v 1 outdoor-wind.wav -v 2 outdoor-birds.wav -v 0.7 traffic.wav -v 1 outdoor-car.wav outdoor.wav
bed outdoor.wav outdoor

ls -l "$out"/*.wav
