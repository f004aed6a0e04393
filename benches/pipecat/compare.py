#!/usr/bin/env python3
"""Pipecat side by side: the same loopback-with-listening audio path on both servers, driven by
`switchboard loadtest` with the same fixtures, calls and concurrency; one markdown table out.

    benches/pipecat/compare.py                          # concurrency 5 and 20, twice each
    CONCURRENCY=5,20,50 REPEAT=2 CALLS_PER_SLOT=3 benches/pipecat/compare.py
    SIDES=switchboard benches/pipecat/compare.py        # one side only

Per run (each side and concurrency C, sides alternated back to back, repeated REPEAT times):
1. start a fresh server — Switchboard: the release `switchboard serve` (fresh SQLite file, an API
   key, `--log-format json`, RUST_LOG=warn); Pipecat: benches/pipecat/server.py in the venv made
   by setup.sh (warn level);
2. warm it up with one call (models loaded, arenas grown), then read its idle RSS and CPU rate
   over 5 s;
3. run `switchboard loadtest --protocol twilio --param mode=loopback --param listen=true` with
   C × CALLS_PER_SLOT calls, C at a time (a new call starts as one ends), sampling the server's
   CPU time (utime + stime of the process and its children, from /proc) and RSS every 250 ms;
4. from the load test's JSON report: the window where C calls are live (from 2 s after the C-th
   call starts to the start of the last call), the call-seconds in it (exact, from each call's
   start and duration), jitter percentiles, gaps, failed calls, and the echo delay of each call
   (its first audible frame back, `greetingMs`, minus when the first audible caller frame was
   sent — the same -45 dBFS test on the fixture);
5. a run where some call heard no echo, or fewer messages came back than a tenth of the frames
   sent, is marked void (the server did not keep up: its CPU figure is a cap) and left out of the
   ratios.

Figures: CPU-ms per call-second = server CPU over the window ÷ call-seconds in it;
memory per call = (median RSS over the window − idle RSS) ÷ C. Results also go to
$OUT_DIR/results.json (default target/pipecat-compare or $CARGO_TARGET_DIR/pipecat-compare).

Environment: CARGO_TARGET_DIR (where the release binary is), SWITCHBOARD_MODELS_DIR (Silero's
weights for Switchboard), PIPECAT_VENV, FIXTURES (annotation files, comma-separated; default
audio-fixtures/calls/two-turns.json), RAMP (seconds, default C / 5), NO_BUILD=1 to skip
`cargo build --release`.
"""

import json
import math
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
KEY = "sb_bench_pipecat_compare"
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SILENCE_DBFS = -45.0


def env_list(name, default):
    return [v.strip() for v in os.environ.get(name, default).split(",") if v.strip()]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(pid):
    """pid and its live descendants."""
    children = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(") ", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def usage(pid):
    """(CPU seconds: utime + stime + cutime + cstime, RSS bytes) of pid's process tree."""
    cpu, rss = 0.0, 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        cpu += sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICKS
        rss += int(fields[21]) * PAGE
    return cpu, rss


class Sampler(threading.Thread):
    """(monotonic time, CPU s, RSS bytes) of a process tree every `period` seconds."""

    def __init__(self, pid, period=0.25):
        super().__init__(daemon=True)
        self.pid, self.period, self.samples = pid, period, []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            cpu, rss = usage(self.pid)
            self.samples.append((time.monotonic(), cpu, rss))
            self.stop.wait(self.period)

    def cpu_at(self, t):
        """CPU seconds at time t, interpolated between samples."""
        s = self.samples
        for (t0, c0, _), (t1, c1, _) in zip(s, s[1:]):
            if t0 <= t <= t1:
                return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c0
        return s[0][1] if t < s[0][0] else s[-1][1]

    def rss_between(self, a, b):
        return [r for t, _, r in self.samples if a <= t <= b]


def mulaw_decode(b):
    b = ~b & 0xFF
    sign, exponent, mantissa = b & 0x80, (b >> 4) & 7, b & 0x0F
    sample = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -sample if sign else sample


MULAW = [mulaw_decode(b) for b in range(256)]


def first_audible_frame_ms(annotation):
    """When the first 20 ms frame of the fixture louder than -45 dBFS starts (fixture ms)."""
    meta = json.loads(Path(annotation).read_text())
    wav = (Path(annotation).parent / meta["file"]).read_bytes()
    i = wav.find(b"data")
    n = int.from_bytes(wav[i + 4 : i + 8], "little")
    data = wav[i + 8 : i + 8 + n]
    threshold = (32768.0 * 10 ** (SILENCE_DBFS / 20)) ** 2
    for k in range(0, len(data) - 159, 160):
        power = sum(MULAW[b] ** 2 for b in data[k : k + 160]) / 160
        if power > threshold:
            return k // 8
    raise SystemExit(f"{annotation}: no audible frame")


def get(url, timeout=1.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


class Server:
    def __init__(self, side, binary, venv):
        self.side, self.port = side, free_port()
        self.dir = tempfile.TemporaryDirectory(prefix=f"pipecat-compare-{side}-")
        log = open(Path(self.dir.name) / "server.log", "wb")
        if side == "switchboard":
            cmd = [str(binary), "serve", "--listen", f"127.0.0.1:{self.port}", "--log-format", "json",
                   "--database-url", f"sqlite://{self.dir.name}/bench.db", "--vad", "silero"]
            env = dict(os.environ, SWITCHBOARD_API_KEY=KEY, RUST_LOG="warn")
            self.health = f"http://127.0.0.1:{self.port}/healthz"
        else:
            cmd = [str(Path(venv) / "bin" / "python"), str(HERE / "server.py"), "--port", str(self.port)]
            env = dict(os.environ)
            self.health = f"http://127.0.0.1:{self.port}/stats"
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.url = f"ws://127.0.0.1:{self.port}/twilio/media"
        deadline = time.monotonic() + 60
        while True:
            try:
                get(self.health)
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{side} server did not start; see {self.dir.name}/server.log")
                time.sleep(0.2)
        if side == "switchboard" and "Silero unavailable" in (Path(self.dir.name) / "server.log").read_text():
            self.close()
            raise SystemExit("Switchboard runs without Silero: set SWITCHBOARD_MODELS_DIR (`make models`)")

    def check_listening(self):
        """After a call: the denoiser and VAD ran on its audio (else the figures would be of
        another path: a stale binary, missing weights)."""
        if self.side == "switchboard":
            metrics = get(f"http://127.0.0.1:{self.port}/metrics").decode()
            value = {l.split()[0]: float(l.split()[1]) for l in metrics.splitlines()
                     if l.startswith("switchboard_frame_processing_seconds_")}
            per_payload_us = value["switchboard_frame_processing_seconds_sum"] * 1e6 / max(
                1.0, value["switchboard_frame_processing_seconds_count"])
            if per_payload_us < 20:
                self.close()
                raise SystemExit(f"Switchboard spent {per_payload_us:.1f} µs per payload: loopback "
                                 "without listening (is the binary built from this tree?)")
        else:
            stats = json.loads(get(f"http://127.0.0.1:{self.port}/stats"))
            if stats["speech_started"] == 0:
                self.close()
                raise SystemExit(f"Pipecat's VAD reported no speech: {stats}")

    def close(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.dir.cleanup()


def loadtest(binary, url, fixtures, calls, concurrency, ramp, out):
    cmd = [str(binary), "loadtest", "--url", url, "--protocol", "twilio", "--fixtures", *fixtures,
           "--calls", str(calls), "--concurrency", str(concurrency), "--ramp", str(ramp),
           "--key", KEY, "--param", "mode=loopback", "--param", "listen=true",
           "--out", str(out), "--quiet"]
    started = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not Path(out).exists():
        raise SystemExit(f"loadtest wrote no report (exit {done.returncode}):\n{done.stdout}")
    generator_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    elapsed = time.monotonic() - started
    return started, json.loads(Path(out).read_text()), done.stdout, generator_cpu / elapsed


def live_window(calls, concurrency):
    """(start, end) seconds from the run's start while `concurrency` calls are live."""
    starts = sorted(c["startS"] for c in calls)
    if len(starts) < concurrency:
        return None
    a, b = starts[concurrency - 1] + 2.0, starts[-1]
    return (a, b) if b - a >= 5.0 else None


def call_seconds(calls, a, b):
    return sum(max(0.0, min(b, c["startS"] + c["durationS"]) - max(a, c["startS"])) for c in calls)


def one_run(side, concurrency, args):
    server = Server(side, args["binary"], args["venv"])
    try:
        out_dir = args["out_dir"]
        # Warm-up: one call, then the idle figures.
        loadtest(args["binary"], server.url, args["fixtures"], 1, 1, 0, out_dir / "warmup.json")
        server.check_listening()
        time.sleep(1.0)
        c0, _ = usage(server.proc.pid)
        time.sleep(5.0)
        c1, idle_rss = usage(server.proc.pid)
        idle_cpu_rate = (c1 - c0) / 5.0
        load = os.getloadavg()
        sampler = Sampler(server.proc.pid)
        sampler.start()
        name = f"{side}-c{concurrency}-{int(time.time())}.json"
        ramp = args["ramp"] if args["ramp"] is not None else concurrency / 5
        started, report, stdout, generator = loadtest(
            args["binary"], server.url, args["fixtures"], concurrency * args["calls_per_slot"],
            concurrency, ramp, out_dir / name)
        sampler.stop.set()
        sampler.join()
        calls = report["calls"]
        window = live_window(calls, concurrency)
        row = {"side": side, "concurrency": concurrency, "load": load, "report": name,
               "ok": report["totals"]["ok"], "calls": report["totals"]["calls"],
               "gaps": report["totals"]["gaps"], "pauses": report["totals"]["pauses"],
               "late_sends": report["totals"].get("lateSends"),
               "jitter": report["metrics"]["jitterMs"], "idle_rss": idle_rss, "generator_cores": generator,
               "idle_cpu_ms_per_s": idle_cpu_rate * 1000}
        if window:
            a, b = window
            secs = call_seconds(calls, a, b)
            # Idle is ~0 on both (a tick or two in 5 s), so it is reported, not subtracted.
            cpu = sampler.cpu_at(started + b) - sampler.cpu_at(started + a)
            rss = statistics.median(sampler.rss_between(started + a, started + b))
            row.update(window_s=b - a, call_seconds=secs, cpu_ms_per_call_s=cpu * 1000 / secs,
                       cpu_cores=cpu / (b - a), rss=rss, mem_per_call=(rss - idle_rss) / concurrency)
        delays = [c["greetingMs"] - args["first_audible_ms"][c["fixture"]]
                  for c in calls if c.get("greetingMs") is not None and c["fixture"] in args["first_audible_ms"]]
        row["echo_ms"] = delays
        row["echo_answered"] = f"{len(delays)}/{len(calls)}"
        # A server that cannot keep up (its event loop saturated) sends (almost) nothing back, and
        # its CPU per call-second is then capped by the stall, not what the path costs: such a run
        # is void and stays out of the ratios. Pipecat's replies are ≈ 100 ms messages (five of
        # our 20 ms frames), so a full echo is ≥ 1/5 of the frames sent; 1/10 leaves room.
        faults = []
        if len(delays) < len(calls):
            faults.append(f"{len(calls) - len(delays)} of {len(calls)} calls heard no echo")
        sent, received = report["totals"]["framesSent"], report["totals"]["framesReceived"]
        if received < sent / 10:
            faults.append(f"{received} messages back for {sent} frames sent")
        row["void"] = "; ".join(faults) or None
        print(f"  {side:11} C={concurrency:<3} ok {row['ok']}/{row['calls']}  "
              f"cpu {row.get('cpu_ms_per_call_s', float('nan')):.2f} ms/call-s  "
              f"mem {row.get('mem_per_call', 0) / 2**20:.2f} MiB/call  "
              f"jitter p50/p99 {row['jitter']['p50']}/{row['jitter']['p99']} ms  "
              f"echo p50 {statistics.median(delays) if delays else float('nan'):.0f} ms  load {load[0]:.2f}",
              flush=True)
        if row["void"]:
            print(f"  VOID ({side} did not keep up: {row['void']}): left out of the ratios", flush=True)
        if row["ok"] < row["calls"]:
            print(stdout[-2000:])
        return row
    finally:
        server.close()


def fmt(v, spec=".1f"):
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p * len(s)) - 1))]


def table(rows):
    lines = [
        "| side | calls live | ok | CPU-ms per call-second | memory per call | RSS idle → loaded | "
        "egress jitter p50 / p99 | gaps | added latency (echo) p50 / p95 | load avg (1 min) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mib = 2**20
        lines.append(
            f"| {r['side']}{' (void: ' + r['void'] + ')' if r.get('void') else ''} | {r['concurrency']} | "
            f"{r['ok']}/{r['calls']} | "
            f"{fmt(r.get('cpu_ms_per_call_s'), '.2f')} | "
            f"{fmt(r['mem_per_call'] / mib if 'mem_per_call' in r else None, '.2f')} MiB | "
            f"{r['idle_rss'] / mib:.0f} → {fmt(r['rss'] / mib if 'rss' in r else None, '.0f')} MiB | "
            f"{fmt(r['jitter']['p50'], '.2f')} / {fmt(r['jitter']['p99'], '.2f')} ms | {r['gaps']} | "
            f"{fmt(pct(r['echo_ms'], 0.5), '.0f')} / {fmt(pct(r['echo_ms'], 0.95), '.0f')} ms | "
            f"{r['load'][0]:.2f} |")
    return "\n".join(lines)


def ratios(rows):
    out = ["| calls live | Switchboard ÷ Pipecat CPU per call-second (target ≤ 0.1) | "
           "memory per call (target ≤ 0.05) |", "|---|---|---|"]
    for c in sorted({r["concurrency"] for r in rows}):
        med = {}
        for side in ("switchboard", "pipecat"):
            rs = [r for r in rows if r["side"] == side and r["concurrency"] == c
                  and "cpu_ms_per_call_s" in r and not r.get("void")]
            if rs:
                med[side] = (statistics.median(r["cpu_ms_per_call_s"] for r in rs),
                             statistics.median(r["mem_per_call"] for r in rs))
        if len(med) == 2:
            (sc, sm), (pc, pm) = med["switchboard"], med["pipecat"]
            out.append(f"| {c} | {sc:.2f} ÷ {pc:.2f} = **{sc / pc:.3f}** (1/{pc / sc:.0f}) | "
                       f"{sm / 2**20:.2f} ÷ {pm / 2**20:.2f} MiB = **{sm / pm:.3f}** (1/{pm / sm:.0f}) |")
    return "\n".join(out)


def main():
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    os.environ.setdefault("SWITCHBOARD_MODELS_DIR", str(ROOT / "models"))
    binary = target / "release" / "switchboard"
    if not os.environ.get("NO_BUILD"):
        # The path cargo reports is the shared target folder's: link it at once (below), before
        # another worktree's build replaces it.
        built = subprocess.run(["cargo", "build", "--release", "--bin", "switchboard",
                                "--message-format=json-render-diagnostics"],
                               cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True).stdout
        for line in built.splitlines():
            m = json.loads(line)
            if m.get("reason") == "compiler-artifact" and m.get("executable"):
                binary = Path(m["executable"])
    out_dir = Path(os.environ.get("OUT_DIR", target / "pipecat-compare"))
    out_dir.mkdir(parents=True, exist_ok=True)
    # Other builds sharing the target folder may replace the binary during the runs: keep this
    # one (a hard link holds the file without copying it).
    kept = out_dir / "switchboard"
    kept.unlink(missing_ok=True)
    try:
        os.link(binary, kept)
    except OSError:
        shutil.copy2(binary, kept)
    binary = kept
    venv = Path(os.environ.get("PIPECAT_VENV", Path.home() / ".cache/switchboard/pipecat-venv"))
    sides = env_list("SIDES", "switchboard,pipecat")
    if "pipecat" in sides:
        subprocess.run([str(HERE / "setup.sh")], check=True, env=dict(os.environ, PIPECAT_VENV=str(venv)))
    fixtures = [str(ROOT / f) for f in env_list("FIXTURES", "audio-fixtures/calls/two-turns.json")]
    args = {
        "binary": binary, "venv": venv, "fixtures": fixtures, "out_dir": out_dir,
        "calls_per_slot": int(os.environ.get("CALLS_PER_SLOT", "3")),
        "ramp": float(os.environ["RAMP"]) if "RAMP" in os.environ else None,
        # Keyed as the report names fixtures: the annotation's file stem.
        "first_audible_ms": {Path(f).stem: first_audible_frame_ms(f) for f in fixtures},
    }
    rows = []
    for rep in range(int(os.environ.get("REPEAT", "2"))):
        for c in [int(v) for v in env_list("CONCURRENCY", "5,20")]:
            for side in sides if rep % 2 == 0 else list(reversed(sides)):
                print(f"run {rep + 1}: {side}, {c} calls live", flush=True)
                rows.append(one_run(side, c, args))
    rows.sort(key=lambda r: (r["concurrency"], r["side"] != "switchboard"))
    (out_dir / "results.json").write_text(json.dumps(rows, indent=1))
    print()
    print(table(rows))
    print()
    print(ratios(rows))


if __name__ == "__main__":
    sys.exit(main())
