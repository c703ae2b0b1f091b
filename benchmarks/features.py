"""The features' cost against the engine's on one long clip.

``python -m benchmarks.features [--minutes 10]`` synthesizes a clip (``edanet.synth``, 16 kHz
WAV), then times, best of 5 in this process: ``edanet.features.features`` (read, MFCCs in torch,
loudness, onset strength), the same MFCCs through librosa
(``edanet.features.mfcc_frames_reference``), and the bundled model's engine at batch 1 (the
fastest backend here) generating every step of the clip."""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path


def _best(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    a = p.parse_args(argv)

    import soundfile as sf
    import torch

    from edanet.features import features, load_audio, mfcc_frames, mfcc_frames_reference
    from edanet.generation.export import engine_frames
    from edanet.generation import default_model, generator_for
    from edanet.synth import SynthConfig, synthesize_pair

    pair = synthesize_pair(5, dataclasses.replace(SynthConfig(), seconds=60.0 * a.minutes))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.wav"
        sf.write(path, pair.audio, pair.audio_sample_rate)
        model = default_model()
        cfg = model.config
        t_features = _best(lambda: features(path, None, cfg))
        audio = load_audio(path, None, target_rate=cfg.audio_sample_rate)
        t_mfcc = _best(lambda: mfcc_frames(audio, cfg))
        t_librosa = _best(lambda: mfcc_frames_reference(audio, cfg))
        frames, n = features(path, None, cfg)
    engine = generator_for(model).engine
    batch = engine_frames(torch.from_numpy(frames)[None], cfg)
    uniforms = torch.rand(1, n)
    t_engine = _best(lambda: engine.generate(batch, uniforms))
    print(f"{a.minutes:g} min of 16 kHz audio, {n} EDA steps, torch threads {torch.get_num_threads()}:")
    print(f"  features (read + MFCCs + loudness + onset): {t_features * 1e3:8.1f} ms")
    print(f"  of which MFCCs (edanet.features.spectral):           {t_mfcc * 1e3:8.1f} ms")
    print(f"  MFCCs through librosa (reference):          {t_librosa * 1e3:8.1f} ms")
    print(f"  engine ({engine.name}, batch 1, every step):{t_engine * 1e3:11.1f} ms")
    print(f"  features / engine: {t_features / t_engine:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
