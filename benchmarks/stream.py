"""Stateful generation as a user meets it: a live stream's per-push latency, and the memory of
``edanet generate`` on long files.

``python -m benchmarks.stream [--hours 3] [--out benchmarks/results/stream-DATE]``

1. ``edanet.EDAStream`` on the bundled model (backend ``auto``) pushed 0.25 s chunks of 16 kHz
   audio, torch on one thread (one core): the time of each push (features + engine + µS
   decoding of the step it completes), median / p99 / max over a few minutes of audio; and the
   same stream's share of time in the features against the engine.
2. ``edanet generate FILE -o OUT.csv`` in a fresh process on 16 kHz WAVs of 10 min, 1 h and
   ``--hours``: wall time and peak resident memory (``ru_maxrss`` of the child) -- a file is
   read and generated block by block, so memory should not grow with its length.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 16000


def _noise_bursts(n: int, seed: int) -> np.ndarray:
    """Quiet noise with a loud burst every few seconds, int16 (what the model responds to)."""
    rng = np.random.default_rng(seed)
    x = 0.01 * rng.standard_normal(n)
    for start in range(SR, n - SR // 4, 4 * SR):
        x[start:start + SR // 4] += 0.4 * rng.standard_normal(SR // 4)
    return np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)


def _write_wav(path: Path, seconds: float) -> None:
    """A 16 kHz mono WAV written a minute at a time (a 3 h file is never in memory)."""
    import soundfile as sf
    n = int(seconds * SR)
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16") as f:
        for i, j0 in enumerate(range(0, n, 60 * SR)):
            f.write(_noise_bursts(min(60 * SR, n - j0), seed=i))


def push_latency(minutes: float) -> dict:
    import torch
    import edanet
    torch.set_num_threads(1)
    audio = _noise_bursts(int(minutes * 60 * SR), seed=1).astype(np.float32) / 32768.0
    chunk = SR // 4
    stream = edanet.EDAStream(sample_rate=SR, seed=0)
    stream.push(audio[:chunk])                                   # first push: engine packing, warm-up
    feats = stream.features
    times, t_feat = [], 0.0
    push_features = feats.push

    def timed_features(x):                                       # the features' share of each push
        nonlocal t_feat
        t0 = time.perf_counter()
        out = push_features(x)
        t_feat += time.perf_counter() - t0
        return out

    feats.push = timed_features
    for j in range(chunk, len(audio) - chunk + 1, chunk):
        t0 = time.perf_counter()
        stream.push(audio[j:j + chunk])
        times.append(time.perf_counter() - t0)
    t = np.array(times) * 1e3
    return {"backend": stream.backend, "torch_threads": torch.get_num_threads(), "pushes": len(t),
            "chunk_s": chunk / SR, "audio_min": minutes, "median_ms": float(np.median(t)),
            "p99_ms": float(np.percentile(t, 99)), "max_ms": float(t.max()),
            "features_share": t_feat / (t.sum() / 1e3)}


def file_memory(seconds: float, tmp: Path) -> dict:
    wav, out = tmp / f"clip_{int(seconds)}.wav", tmp / f"clip_{int(seconds)}.csv"
    _write_wav(wav, seconds)
    t0 = time.perf_counter()
    # a child of its own, so ru_maxrss is this generation's alone
    code = ("import resource, sys; from edanet.cli import main; rc = main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, "-q", "generate", str(wav), "-o", str(out), "--seed", "0"],
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise RuntimeError(r.stderr)
    peak_kib = int(r.stderr.strip().splitlines()[-1])
    rows = sum(1 for _ in open(out)) - 2
    wav.unlink()
    return {"audio_s": seconds, "wav_mb": seconds * SR * 2 / 1e6, "wall_s": wall, "peak_rss_mb": peak_kib / 1024,
            "eda_rows": rows, "realtime_x": seconds / wall}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hours", type=float, default=3.0)
    p.add_argument("--push-minutes", type=float, default=3.0)
    p.add_argument("--out", help="write OUT.json and OUT.md")
    a = p.parse_args(argv)
    res = {"push": push_latency(a.push_minutes), "files": []}
    pu = res["push"]
    print(f"EDAStream, 0.25 s pushes, backend {pu['backend']}, {pu['torch_threads']} thread: median "
          f"{pu['median_ms']:.2f} ms, p99 {pu['p99_ms']:.2f} ms, max {pu['max_ms']:.2f} ms over {pu['pushes']} "
          f"pushes; features {100 * pu['features_share']:.0f}% of the time", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in (600.0, 3600.0, a.hours * 3600.0):
            f = file_memory(seconds, Path(tmp))
            res["files"].append(f)
            print(f"edanet generate {seconds / 60:.0f} min WAV ({f['wav_mb']:.0f} MB): {f['wall_s']:.1f} s wall "
                  f"({f['realtime_x']:.0f}x real time), peak RSS {f['peak_rss_mb']:.0f} MB, {f['eda_rows']} rows",
                  flush=True)
    if a.out:
        import platform
        res["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "python": platform.python_version()}
        from edanet.io import atomic_write
        atomic_write(a.out + ".json", json.dumps(res, indent=1))
        md = ["| what | figure |", "|---|---|",
              f"| 0.25 s push, median ({pu['backend']}, 1 thread) | {pu['median_ms']:.2f} ms |",
              f"| 0.25 s push, p99 / max | {pu['p99_ms']:.2f} / {pu['max_ms']:.2f} ms |",
              f"| features' share of a push | {100 * pu['features_share']:.0f}% |"]
        md += [f"| `edanet generate` {f['audio_s'] / 60:.0f} min WAV | {f['wall_s']:.1f} s wall, peak RSS "
               f"{f['peak_rss_mb']:.0f} MB |" for f in res["files"]]
        atomic_write(a.out + ".md", "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
