"""``edanet.EDAStream``: EDA generated as audio arrives, step by step, in bounded memory.

Every stage is causal and carries its own state between pushes: the features (the resampler,
the MFCC window's overlap, the partial step: ``edanet.feature_stream``), the engine (its
history ring buffers, the step count and the class that conditions the next step:
``fastgen.GenerationState``), the sampling uniforms (one stream per sample: ``UniformStream``) and
the µS decoder (``DeltaDecoder``). So the pushes of any chunk sizes give exactly what
``edanet.generate`` gives for the whole audio with the same seed. ``edanet.generate`` reads
files through one of these, block by block: a 3-hour file needs no more memory than a minute.
"""
from __future__ import annotations

import numpy as np
import torch

from .export import engine_frames
from .generation import UniformStream, check_sampling, check_seed, fresh_seed, generator_for, output_scale

__all__ = ["EDAStream"]


class EDAStream:
    """Generate EDA (µS) live from audio pushed in chunks of any size.

    ``model``: an ``edanet.Generator`` (then backend, device and dtype are its own), a model, a
    model folder or None (the bundled model). ``sample_rate``: the pushed audio's rate (Hz);
    ``channels``: its channel count (chunks are 1-D for mono, else ``(n, channels)`` as soundfile
    and interleaved PCM lay them out; integer chunks are PCM at the dtype's full scale). The
    other arguments are ``edanet.generate``'s. ``push(chunk)`` returns the values
    ``(num_samples, k)`` of the ``k`` EDA steps the chunk completes (often 0: a step is
    ``1 / eda_sample_rate`` s of audio), and sets ``times`` (their times in seconds) and
    ``classes``. ``close()`` ends the stream and returns the steps only the end of the audio
    completes (the resampler's tail; usually none); a partial step at the end is dropped, as
    ``edanet.generate`` drops it. Leaving a ``with`` block closes the stream without them."""

    def __init__(self, model=None, sample_rate: float | None = None, *, channels: int = 1, seed: int | None = None,
                 num_samples: int = 1, backend: str = "auto", temperature: float = 1.0, initial_eda_us=None,
                 eda_range_us: tuple[float, float] | None = None, device=None, dtype=torch.float32):
        from .feature_stream import FeatureStream

        if sample_rate is None:
            raise ValueError("sample_rate is required: the rate (Hz) of the audio you will push")
        self.generator = generator_for(model, backend, device, dtype)
        cfg = self.config
        check_sampling(num_samples, temperature)
        check_seed(seed)
        self.generator.check_memory(num_samples)        # before the sampling streams are made
        self.codec, self._scale = output_scale(cfg, int(num_samples), initial_eda_us, eda_range_us)
        self.features = FeatureStream(cfg, sample_rate, channels=channels)
        self.num_samples = int(num_samples)
        self.temperature = float(temperature)
        self.seed = fresh_seed() if seed is None else int(seed)
        self._uniforms = UniformStream(self.seed, self.num_samples)
        self._state = self.engine.start(self.num_samples)
        self._decoder = self.codec.decoder(self._scale) if cfg.eda_representation == "delta" else None
        self.eda_sample_rate = float(cfg.eda_sample_rate)
        self.times = np.zeros(0)
        self.classes = np.zeros((self.num_samples, 0), dtype=np.int64)
        self._closed = False

    @property
    def config(self):
        return self.generator.config

    @property
    def engine(self):
        return self.generator.engine

    @property
    def backend(self) -> str:
        return self.generator.backend

    @property
    def steps(self) -> int:
        """EDA steps generated so far."""
        return self._state.steps

    def push(self, chunk) -> np.ndarray:
        """µS ``(num_samples, k)`` of the steps ``chunk`` completes; their times in ``times``."""
        if self._closed:
            raise ValueError("this EDAStream is closed; start a new one")
        return self._generate(self.features.push(chunk))

    def close(self) -> np.ndarray:
        """End the stream: the values of the steps still pending (usually none)."""
        if self._closed:
            return np.zeros((self.num_samples, 0))
        frames = self.features.close()
        self._closed = True
        return self._generate(frames)

    def _generate(self, frames: np.ndarray) -> np.ndarray:
        cfg, K = self.config, self.config.spectral_frames_per_eda_step
        k = frames.shape[1] // K
        j0 = self._state.steps
        self.times = (j0 + np.arange(k)) / self.eda_sample_rate
        self.classes = np.zeros((self.num_samples, 0), dtype=np.int64)
        if k == 0:
            return np.zeros((self.num_samples, 0))
        batch = engine_frames(torch.from_numpy(frames)[None], cfg).expand(self.num_samples, -1, -1, -1)
        classes = self.engine.generate(batch, self._uniforms.next(k), self.temperature, state=self._state)
        classes = self.classes = classes.cpu().numpy().astype(np.int64)
        if self._decoder is not None:
            return self._decoder.push(classes)
        return np.asarray(self.codec.decode(classes, self._scale), dtype=np.float64)

    def __enter__(self) -> "EDAStream":
        return self

    def __exit__(self, *exc) -> None:
        self._closed = True


def generate_file(path, *, generator=None, sample_rate=None, on_block=None, **kwargs):
    """``edanet.generate`` of an audio file with ``generator`` (an ``edanet.Generator``; None:
    the bundled model's), read and generated block by block (bounded memory:
    the audio, its features and the engine's inputs of one block at a time). ``on_block(values,
    times, seconds_read)`` is called after each block with the values ``(num_samples, k)`` and
    times ``(k,)`` it completed and the audio seconds read so far; the returned ``GeneratedEDA``
    holds them all (4 values a second: small). ``sample_rate``, if given, must be the file's."""
    from pathlib import Path

    from .audio import check_file_rate, file_info, is_pcm16, too_short
    from . import feature_stream
    from .generation import GeneratedEDA

    path = Path(path).expanduser()
    info, sr = file_info(path)                   # the header, read and checked once
    check_file_rate(sample_rate, sr, f"audio file {str(path)!r}")
    stream = EDAStream(generator, sr, channels=int(info.channels), **kwargs)
    stream.features.name = f"audio file {str(path)!r}"
    block = max(1, int(feature_stream.BLOCK_SECONDS * sr))
    parts, classes, read = [], [], 0
    for chunk in feature_stream.read_blocks(path, block, is_pcm16(info)):
        read += chunk.shape[0]
        parts.append(stream.push(chunk))
        classes.append(stream.classes)
        if on_block is not None:
            on_block(parts[-1], stream.times, read / sr)
    parts.append(stream.close())
    classes.append(stream.classes)
    if on_block is not None and parts[-1].shape[1]:
        on_block(parts[-1], stream.times, read / sr)
    if stream.steps == 0:
        raise too_short(read, sr, stream.config)
    return GeneratedEDA(values=np.concatenate(parts, axis=1), classes=np.concatenate(classes, axis=1),
                        sample_rate=stream.eda_sample_rate, backend=stream.backend, seed=stream.seed)
