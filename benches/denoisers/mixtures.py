"""The denoiser test's mixtures and score, shared by compare.py and speaker.py (each runs it in
its own venv; numpy is imported where it is used, so the scripts can start outside the venv).

Mixing and scoring follow tests/denoise.rs: the clean sentence plus a noise bed scaled so the
speech span is at the given SNR, rounded to i16; SDR with a 64-tap distortion filter (least
squares) over the whole file.
"""

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "audio-fixtures"
NOISES = ["babble", "cafe", "street", "tv"]
SNRS = [0, 5, 10]
CALLERS = ["caller-hello", "caller-question"]


def read_wav(name):
    """A fixture's samples as float64 in i16 units (16-bit PCM or G.711 mu-law)."""
    import numpy as np
    data = (FIXTURES / name).read_bytes()
    i, fmt = 12, None
    while i < len(data):
        cid, size = data[i:i + 4], int.from_bytes(data[i + 4:i + 8], "little")
        if cid == b"fmt ":
            fmt = int.from_bytes(data[i + 8:i + 10], "little")
        if cid == b"data":
            body = data[i + 8:i + 8 + size]
            break
        i += 8 + size + (size & 1)
    if fmt == 7:  # mu-law
        u = ~np.frombuffer(body, dtype=np.uint8).astype(np.int32) & 0xFF
        t = (((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 7)
        return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.float64)
    return np.frombuffer(body, dtype="<i2").astype(np.float64)


def sdr(clean, y, taps=64):
    """SDR of y against clean after the best `taps`-tap linear filter of clean, in dB."""
    import numpy as np
    y, half = y[:len(clean)], taps // 2
    a = np.zeros((len(clean), taps))
    for j in range(taps):
        s = j - half
        if s >= 0:
            a[s:, j] = clean[:len(clean) - s]
        else:
            a[:s, j] = clean[-s:]
    h, *_ = np.linalg.lstsq(a, y, rcond=None)
    target = a @ h
    return 10 * np.log10(np.sum(target ** 2) / np.sum((y - target) ** 2))


def mixtures(noises=NOISES):
    """(caller, noise, snr, clean, mix) for both callers, each bed, at 0/5/10 dB."""
    import numpy as np
    for caller in CALLERS:
        clean = read_wav(f"{caller}.l16-16k.wav")
        turn = json.loads((FIXTURES / f"{caller}.json").read_text())["turns"][0]
        span = slice(turn["start_ms"] * 16, turn["end_ms"] * 16)
        for noise in noises:
            bed = read_wav(f"noise-{noise}.mulaw-16k.wav")
            for snr in SNRS:
                k = np.sqrt(np.mean(clean[span] ** 2) / np.mean(bed[span] ** 2) / 10 ** (snr / 10))
                mix = np.round(clean + k * bed[:len(clean)]).clip(-32768, 32767)
                yield caller, noise, snr, clean, mix
