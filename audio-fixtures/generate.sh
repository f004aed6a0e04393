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
ls -l *.wav
