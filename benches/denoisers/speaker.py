#!/usr/bin/env python3
"""Knowing who the caller is: a target-speaker model and an oracle-pitch bound on the denoiser
test's babble, cafe and TV mixtures. compare.py showed that speaker-independent enhancers gain
only +0.6..+2 dB there (those beds are speech); can knowledge of the caller's voice reach the
issue's 6 dB?

    python3 benches/denoisers/speaker.py    # venv under ~/.cache/switchboard/denoisers/venv-voicefilter

1. VoiceFilter-Lite, the only target-speaker enhancer we found with weights in a PyPI wheel:
   `open-voicefilter-lite==0.2.0` (Apache-2.0) bundles `voicefilter_lite.int8.onnx` (mel mask
   predictor conditioned on a d-vector, plus a noise-type head f_adapt) and `embedder.int8.onnx`
   (the d-vector encoder); `StreamingVoiceFilter.set_enrollment(pcm)` then `step(160 samples)`.
   It needs librosa, hence its own venv. Three columns: enrolled on the clean caller sentence
   itself (the most favourable enrolment there is), enrolled on the noisy mixture (what a call
   would have), and clean enrolment with the adaptive blend weight w forced to 1 (a = 0, b = 1:
   the mask applied in full). The mask predictor runs in onnxruntime on one thread; its outputs
   (mask, f_adapt) are recorded through a wrapper around the session's `run`.
2. An upper bound for harmonic (pitch-based) separation of the caller: a comb on a 1024-point
   STFT (periodic Hann, 160-sample hop) that keeps bins within 15.6 Hz of a multiple of f0
   (gain 1, else 0.1; above 4 kHz at least 0.3; unvoiced frames 0.1), overlap-add with
   window-squared normalisation. f0 per frame by autocorrelation of 640 samples centred on the
   window (70-400 Hz, voiced when the normalised peak > 0.4 and the mean square > 1000), taken
   from the CLEAN sentence (oracle pitch) or, for comparison, from the mixture. numpy only.

Mixing and scoring as compare.py and tests/denoise.rs: the clean sentence plus a noise bed scaled
so the speech span is at 0/5/10 dB, rounded to i16; SDR with a 64-tap distortion filter (least
squares) over the whole file, before and after. VoiceFilter-Lite's output is aligned by its delay
measured once on clean caller-hello (as compare.py's `aligned`); the comb has no delay.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path(os.environ.get("DENOISERS_DIR", Path.home() / ".cache/switchboard/denoisers"))
VENV = CACHE / "venv-voicefilter"
PACKAGES = ["open-voicefilter-lite==0.2.0", "numpy==2.4.6", "onnxruntime==1.32.0"]
NOISES = ["babble", "cafe", "tv"]  # mixtures.py has the callers and SNRs
HOP = 160  # VoiceFilter-Lite's step, 10 ms at 16 kHz


def setup():
    """A venv with open-voicefilter-lite (and librosa, which it requires); idempotent."""
    if not (VENV / "bin/python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin/python"), "-m", "pip", "install", "--quiet", *PACKAGES],
                       check=True)


def main():
    if os.environ.get("SPEAKER_IN_VENV") != "1":
        setup()
        env = dict(os.environ, SPEAKER_IN_VENV="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        sys.exit(subprocess.run([str(VENV / "bin/python"), __file__], env=env).returncode)
    run()


def run():
    import numpy as np
    import onnxruntime as ort
    import voicefilter_lite
    from voicefilter_lite import StreamingVoiceFilter

    from mixtures import CALLERS, read_wav, sdr
    from mixtures import mixtures as all_mixtures

    def mixtures():
        return all_mixtures(NOISES)

    def summary(rows, names):
        """Mean gain per bed, min..max over both callers at 0/5/10 dB."""
        print("\nmean gain per bed in dB (min..max over both callers at 0/5/10 dB)\n")
        print("| bed |" + "".join(f" {n} |" for n in names))
        print("|---|" + "---|" * len(names))
        for noise in NOISES:
            g = np.array([gains for n, gains in rows if n == noise])
            print(f"| {noise} |" + "".join(f" {c.mean():+.2f} ({c.min():+.2f}..{c.max():+.2f}) |" for c in g.T))

    one_thread = ort.SessionOptions()
    one_thread.intra_op_num_threads = 1
    one_thread.inter_op_num_threads = 1
    mask_onnx = Path(voicefilter_lite.__file__).parent / "models/voicefilter_lite.int8.onnx"
    mask_log = []  # (mask, f_adapt) of every step while recording
    recording = [False]

    def voicefilter(force_w=False):
        vf = StreamingVoiceFilter()  # hyperparameters from the bundled ONNX's metadata
        if force_w:
            vf.hp.adaptive_w_a, vf.hp.adaptive_w_b = 0.0, 1.0
        # The same model on one thread, as compare.py's onnxruntime engines.
        sess = ort.InferenceSession(str(mask_onnx), one_thread, providers=["CPUExecutionProvider"])
        run_model = sess.run

        def spy(names, feed):
            out = run_model(names, feed)
            if recording[0]:
                mask_log.append((np.asarray(out[0]).ravel(), float(np.asarray(out[1]).ravel()[0])))
            return out
        sess.run = spy  # step() calls self._mask_sess.run(None, feed)
        vf._mask_sess = sess
        return vf

    vf_default, vf_w1 = voicefilter(), voicefilter(force_w=True)
    hp = vf_default.hp
    print(f"VoiceFilter-Lite hyperparameters (from the ONNX): n_fft {hp.n_fft}, win {hp.win_length}, "
          f"hop {hp.hop_length}, n_mels {hp.n_mels}, frame_stack {hp.frame_stack}, adaptive "
          f"beta/a/b {hp.adaptive_w_beta}/{hp.adaptive_w_a}/{hp.adaptive_w_b}")
    step_s = []

    def vf_raw(vf, x, enrol):
        vf.set_enrollment((enrol / 32768.0).astype(np.float32))  # also resets the stream state
        n = -(-(len(x) + 2000) // HOP) * HOP  # room for the delay search, whole steps
        xx = np.zeros(n, np.float32)
        xx[:len(x)] = x / 32768.0
        out = np.zeros(n)
        t0 = time.perf_counter()
        for i in range(0, n, HOP):
            out[i:i + HOP] = vf.step(xx[i:i + HOP])
        step_s.append((time.perf_counter() - t0) / (n // HOP))
        return out * 32768.0

    probe = read_wav("caller-hello.l16-16k.wav")
    y = vf_raw(vf_default, probe, probe)
    delay = max(range(2000), key=lambda k: float(np.dot(y[k:k + len(probe)], probe)))
    print(f"delay measured on clean caller-hello (samples at 16 kHz): {delay}")

    def vf_out(vf, x, enrol):
        return vf_raw(vf, x, enrol)[delay:delay + len(x)]

    for caller in CALLERS:
        clean = read_wav(f"{caller}.l16-16k.wav")
        print(f"clean {caller} through VoiceFilter-Lite (enrolled on itself): "
              f"{sdr(clean, vf_out(vf_default, clean, clean)):.2f} dB SDR")

    print("\nVoiceFilter-Lite: SDR gain in dB (64-tap SDR, whole file, as tests/denoise.rs)\n")
    cols = ["enrolled on clean", "enrolled on mixture", "clean, w = 1"]
    print("| caller | noise | SNR | SDR in |" + "".join(f" {c} out | gain |" for c in cols))
    print("|---|---|---|---|" + "---|---|" * len(cols))
    rows, mask_rows = [], []
    for caller, noise, snr, clean, mix in mixtures():
        before = sdr(clean, mix)
        mask_log.clear()
        recording[0] = True
        a = vf_out(vf_default, mix, clean)
        recording[0] = False
        m = np.array([mk for mk, _ in mask_log])
        mask_rows.append((caller, noise, snr, m, np.array([fa for _, fa in mask_log])))
        outs = [sdr(clean, a), sdr(clean, vf_out(vf_default, mix, mix)),
                sdr(clean, vf_out(vf_w1, mix, clean))]
        rows.append((noise, [o - before for o in outs]))
        print(f"| {caller} | {noise} | {snr} | {before:.2f} |"
              + "".join(f" {o:.2f} | {o - before:+.2f} |" for o in outs), flush=True)
    summary(rows, cols)

    print("\nmask predictor outputs, enrolled on clean (every 10 ms step of the mixture)\n")
    print("| caller | noise | SNR | mask mean | mask min | mask max | share < 0.5 | f_adapt mean |")
    print("|---|---|---|---|---|---|---|---|")
    for caller, noise, snr, m, fa in mask_rows:
        if noise == "babble":
            print(f"| {caller} | {noise} | {snr} | {m.mean():.3f} | {m.min():.3f} | {m.max():.3f} "
                  f"| {(m < 0.5).mean():.3f} | {fa.mean():.3f} |")
    m_all = np.concatenate([m.ravel() for *_, m, _ in mask_rows])
    fa_all = np.concatenate([fa for *_, fa in mask_rows])
    print(f"all {len(mask_rows)} mixtures: mask mean {m_all.mean():.3f}, min {m_all.min():.3f}, "
          f"max {m_all.max():.3f}, share < 0.5 {(m_all < 0.5).mean():.3f}; f_adapt mean "
          f"{fa_all.mean():.3f}, min {fa_all.min():.3f}")
    ms = 1000 * np.median(step_s)
    print(f"VoiceFilter-Lite per 10 ms step (onnxruntime one thread; Python, numpy FFTs and OLA "
          f"included; median over {len(step_s)} runs): {ms:.2f} ms, real-time factor {ms / 10:.3f}")

    # Part 2: the harmonic comb with oracle pitch.
    N, H = 1024, 160
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N) / N)  # periodic Hann
    freqs = np.arange(N // 2 + 1) * 16000 / N

    def stft(x):
        x = np.concatenate([np.zeros(N), x, np.zeros(N)])
        n = (len(x) - N) // H
        return np.stack([np.fft.rfft(x[i * H:i * H + N] * win) for i in range(n)])

    def istft(spec, length):
        out = np.zeros((len(spec) - 1) * H + N)
        wss = np.zeros_like(out)
        for i, s in enumerate(spec):
            out[i * H:i * H + N] += np.fft.irfft(s) * win
            wss[i * H:i * H + N] += win ** 2
        return (out / np.maximum(wss, 1e-8))[N:N + length]

    def f0_track(x):
        """Per STFT frame: autocorrelation pitch of 640 samples centred on the window, or 0."""
        xp = np.concatenate([np.zeros(N), x, np.zeros(N)])
        lo, hi = 16000 // 400, 16000 // 70
        f0 = []
        for i in range((len(xp) - N) // H):
            c = xp[i * H + N // 2 - 320:i * H + N // 2 + 320]
            c = c - c.mean()
            if np.dot(c, c) < 1e3 * len(c):
                f0.append(0.0)
                continue
            ac = np.correlate(c, c, "full")[len(c) - 1:]
            lag = lo + int(np.argmax(ac[lo:hi]))
            f0.append(16000 / lag if ac[lag] / ac[0] > 0.4 else 0.0)
        return np.array(f0)

    def comb(mix, f0, floor=0.1, bw=0.5):
        spec = stft(mix)
        for i in range(min(len(spec), len(f0))):
            if f0[i] <= 0:
                spec[i] *= floor
                continue
            h = freqs / f0[i]
            dist = np.abs(h - np.round(h)) * f0[i]  # Hz to the nearest harmonic
            g = np.where(dist < bw * 16000 / N * 2, 1.0, floor)
            g[freqs > 4000] = np.maximum(g[freqs > 4000], 0.3)
            spec[i] *= g
        return istft(spec, len(mix))

    print("\nharmonic comb, 1024-point STFT, 160 hop, ±15.6 Hz around each harmonic of f0\n")
    oracle = {}
    for caller in CALLERS:
        clean = read_wav(f"{caller}.l16-16k.wav")
        oracle[caller] = f0_track(clean)
        print(f"clean {caller} through the comb with its own pitch: "
              f"{sdr(clean, comb(clean, oracle[caller])):.2f} dB SDR "
              f"(voiced frames {np.mean(oracle[caller] > 0):.2f})")
    print("\n| caller | noise | SNR | SDR in | oracle f0 out | gain | f0 from mixture out | gain |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for caller, noise, snr, clean, mix in mixtures():
        before = sdr(clean, mix)
        outs = [sdr(clean, comb(mix, oracle[caller])), sdr(clean, comb(mix, f0_track(mix)))]
        rows.append((noise, [o - before for o in outs]))
        print(f"| {caller} | {noise} | {snr} | {before:.2f} |"
              + "".join(f" {o:.2f} | {o - before:+.2f} |" for o in outs), flush=True)
    summary(rows, ["oracle f0", "f0 from mixture"])


if __name__ == "__main__":
    main()
