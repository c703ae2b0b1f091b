"""The one generation core: audio in, synthetic EDA (µS) out, through a fastgen engine.

A ``Generator`` holds a model made ready to generate (its engine, packed once). Every
generation runs through an ``EDAStream``, whatever the audio comes as: an array is pushed
whole, a file a block at a time (``generate_file``), live audio as it arrives. Each stage of a
stream is causal and carries its own state between pushes: the features (the resampler, the
MFCC window's overlap, the partial step: ``edanet.features.FeatureStream``), the engine (its
history ring buffers, the step count and the class that conditions the next step:
``fastgen.GenerationState``), the sampling uniforms (one stream per sample: ``UniformStream``)
and the µS decoder (``DeltaDecoder``). So the pushes of any chunk sizes give exactly what one
call gives for the whole audio with the same seed, and a 3-hour file needs no more memory than
a minute. Inputs are checked once, where a generation starts."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import fastgen

from ..config import EDANetConfig
from ..features import FeatureStream, audio_array, check_file_rate, file_info, is_pcm16, read_blocks, too_short
from ..features import stream as feature_stream
from ..signals import FALLBACK_INITIAL_EDA_US, codec_for
from .export import engine_frames, export_to_fastgen
from .models import check_device, check_dtype, resolve_backend, resolve_model
from .people import draw_people, people_for_prime, start_levels
from .priming import load_prime
from .provenance import model_identity, provenance
from .sampling import UniformStream, check_sampling, check_seed, fresh_seed

__all__ = ["GeneratedEDA", "Generator", "EDAStream", "generate", "generate_file", "generator_for", "output_scale",
           "check_eda_range", "initial_levels", "SAMPLING_STREAM_BYTES", "STEP_HOST_BYTES"]

#: Host bytes of one sample's sampling stream (a numpy PCG64 Generator: about 1 kB measured).
SAMPLING_STREAM_BYTES = 1024
#: Host bytes per sample and step: the uniform (float64 drawn, float32 kept), the class (int64)
#: and the µS value (float64), and the decoder's running sum.
STEP_HOST_BYTES = 8 + 4 + 8 + 8 + 8


@dataclass
class GeneratedEDA:
    values: np.ndarray        # (num_samples, N) float64, µS: each row one person's plausible recording
    classes: np.ndarray       # (num_samples, N) int64
    sample_rate: float        # EDA samples per second
    backend: str              # the backend that ran
    seed: int                 # the seed the uniforms were drawn from
    provenance: dict = field(default_factory=dict)    # how it was made (edanet.generation.provenance)

    @property
    def median(self) -> np.ndarray:
        """The per-step median across the samples: a summary, not a recording (the samples' SCRs
        fall at different times, so their median flattens them); plot or analyse ``values``."""
        return np.median(self.values, axis=0)

    @property
    def times(self) -> np.ndarray:
        """Time (s) of each sample, E4 style: sample j at j / rate (it is predicted from the audio
        up to (j + 1) / rate)."""
        return np.arange(self.values.shape[1]) / self.sample_rate

    def to_dataframe(self):
        """A pandas DataFrame: index ``time_s``, one column per sample in µS (``eda_uS`` for one,
        ``sample_0_uS ...`` for several), the provenance in ``attrs``. Needs pandas
        (``pip install 'edanet[pandas]'``)."""
        from ..extras import require
        from ..io import eda_columns
        pd = require("pandas", "pandas", "GeneratedEDA.to_dataframe")
        cols = [f"{c}_uS" for c in eda_columns(self.values.shape[0])]
        df = pd.DataFrame(self.values.T, index=pd.Index(self.times, name="time_s"), columns=cols)
        df.attrs.update({"sample_rate_hz": float(self.sample_rate), "provenance": dict(self.provenance)})
        return df


# -- the start level and the codec ----------------------------------------------------------------

def check_eda_range(r) -> tuple[float, float]:
    """(lo, hi) in µS, checked before any work is done."""
    try:
        lo, hi = (float(x) for x in r)
    except (TypeError, ValueError):
        raise ValueError(f"eda_range_us must be a pair (lo, hi) of numbers in µS, got {r!r}") from None
    if not (0 <= lo < hi < float("inf")):
        raise ValueError(f"eda_range_us must be (lo, hi) in µS with 0 <= lo < hi, got {(lo, hi)}")
    return lo, hi


def initial_levels(initial_eda_us, num_samples: int, cfg: EDANetConfig) -> np.ndarray:
    """The start level (µS) of each sample: ``initial_eda_us`` (a number or one per sample), else
    the model's ``initial_eda_us`` (the median first value of its training recordings)."""
    if initial_eda_us is None:
        initial_eda_us = cfg.initial_eda_us if cfg.initial_eda_us is not None else FALLBACK_INITIAL_EDA_US
    try:
        v = np.asarray(initial_eda_us, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"initial_eda_us must be a number of µS or one per sample, got {initial_eda_us!r}") from None
    if v.ndim > 1 or (v.ndim == 1 and v.size != num_samples):
        raise ValueError(f"initial_eda_us must be one number or {num_samples} (one per sample), got shape {v.shape}")
    if not (np.isfinite(v).all() and (v >= 0).all() and (v < 1e4).all()):
        raise ValueError(f"initial_eda_us must be skin conductance levels in µS, >= 0 and < 10000, got {v}")
    return np.broadcast_to(v, (num_samples,)).copy()


def output_scale(cfg: EDANetConfig, num_samples: int, initial_eda_us=None, eda_range_us=None):
    """``(codec, scale)``: the model's codec and what its ``decode`` takes, the start levels (µS,
    one per sample) of a delta model or the µS range of a legacy normalized one; checked."""
    codec = codec_for(cfg)
    if cfg.eda_representation == "delta":
        if eda_range_us is not None:
            raise ValueError("eda_range_us applies only to legacy 'normalized' models: this model generates µS "
                             "on the scale of its training data; set the start level with initial_eda_us")
        return codec, initial_levels(initial_eda_us, num_samples, cfg)
    if initial_eda_us is not None:
        raise ValueError("initial_eda_us applies to 'delta' models; this legacy 'normalized' model maps its "
                         "output to eda_range_us")
    return codec, check_eda_range(eda_range_us if eda_range_us is not None else cfg.default_eda_range_us)


# -- a model made ready to generate ---------------------------------------------------------------

class Generator:
    """A model made ready to generate: its fastgen engine for one backend, device and dtype,
    the weights exported and packed once, here. Hold one to generate many times (each
    ``edanet.generate(model=...)`` call makes one; the bundled model's are kept). Later changes
    to the model's weights (training) are not seen: make a new Generator.

    ``generate(audio, ...)`` is ``edanet.generate`` on this model and backend; ``stream(
    sample_rate, ...)`` an ``edanet.EDAStream``."""

    def __init__(self, model=None, *, backend: str = "auto", device=None, dtype=torch.float32):
        device = check_device(device)        # before the model is loaded
        check_dtype(dtype)
        self._build(model, backend, device, dtype)

    @classmethod
    def _checked(cls, model, backend: str, device: torch.device, dtype: torch.dtype) -> "Generator":
        """A Generator of arguments the caller has checked (``generator_for``)."""
        gen = cls.__new__(cls)
        gen._build(model, backend, device, dtype)
        return gen

    def _build(self, model, backend: str, device: torch.device, dtype: torch.dtype) -> None:
        self.model = resolve_model(model)
        spec, weights = export_to_fastgen(self.model)
        self.engine = fastgen.create(resolve_backend(backend, device), spec, weights, device=device, dtype=dtype)
        self._identity = None

    @property
    def identity(self) -> dict:
        """The model's name and weights' sha256 (``provenance.model_identity``), computed once."""
        if self._identity is None:
            self._identity = model_identity(self.model)
        return self._identity

    @property
    def config(self) -> EDANetConfig:
        return self.model.config

    @property
    def backend(self) -> str:
        return self.engine.name

    def __repr__(self) -> str:
        return f"Generator(backend={self.backend!r}, device={str(self.engine.device)!r}, dtype={self.engine.dtype})"

    def generate(self, audio, sample_rate=None, *, temperature: float = 1.0, seed: int | None = None,
                 num_samples: int = 1, initial_eda_us=None, eda_range_us=None, prime=None) -> GeneratedEDA:
        """``edanet.generate`` of ``audio`` with this model and engine (see there)."""
        kwargs = dict(temperature=temperature, seed=seed, num_samples=num_samples, initial_eda_us=initial_eda_us,
                      eda_range_us=eda_range_us, prime=prime)
        if isinstance(audio, (str, os.PathLike)):
            return generate_file(audio, generator=self, sample_rate=sample_rate, **kwargs)
        data, rate = audio_array(audio, sample_rate)         # (channels, n)
        if data.size == 0:
            raise ValueError(f"audio array is empty (shape {tuple(data.shape)}): no samples to process")
        stream = EDAStream(self, rate, channels=data.shape[0], **kwargs)
        stream.features.name = "audio array"
        values, classes = [stream.push(data.T)], [stream.classes]
        values.append(stream.close())
        classes.append(stream.classes)
        if stream.steps == 0:
            raise too_short(data.shape[1], rate, self.config)
        return stream.result(values, classes)

    def check_memory(self, num_samples: int, steps: int = 0) -> None:
        """ValueError, before anything is allocated, when ``num_samples`` sequences (of ``steps``
        steps held at once) would need more memory than fastgen allows: the engine's history
        on its device, and on the host the sampling streams, uniforms, classes and values."""
        n = int(num_samples)
        what = f"a generation of {n} sample(s)" + (f" x {steps} steps" if steps else "")
        fastgen.check_memory(what, {"engine history": self.engine.spec.history_bytes(n, self.engine.dtype)},
                             self.engine.device)
        fastgen.check_memory(what, {"sampling streams": n * SAMPLING_STREAM_BYTES,
                                    "uniforms, classes and values": n * int(steps) * STEP_HOST_BYTES}, "cpu")

    def stream(self, sample_rate: float, **kwargs) -> "EDAStream":
        """An ``edanet.EDAStream`` of this model and engine (keyword arguments as there)."""
        return EDAStream(self, sample_rate, **kwargs)


_DEFAULT_GENERATORS: dict = {}


def generator_for(model=None, backend: str = "auto", device=None, dtype=torch.float32) -> Generator:
    """A ``Generator`` for ``model``: ``model`` itself if it is one; the bundled model's are made
    once per (backend, device, dtype) and kept; any other model gets a new one."""
    if isinstance(model, Generator):
        return model
    device = check_device(device)
    check_dtype(dtype)
    if model is not None:
        return Generator._checked(model, backend, device, dtype)
    key = (resolve_backend(backend, device), str(device), dtype)
    if key not in _DEFAULT_GENERATORS:
        _DEFAULT_GENERATORS[key] = Generator._checked(None, key[0], device, dtype)
    return _DEFAULT_GENERATORS[key]


# -- the stream every generation runs through -----------------------------------------------------

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
    ``edanet.generate`` drops it. Leaving a ``with`` block closes the stream without them.

    ``prime``: a recording of the person from the start of the audio (``edanet.generation.
    priming``): its steps are returned as they are, and the samples continue it once its audio
    has been pushed. ``people``: for a model with a subject table, who each sample is
    (``edanet.generation.people``; drawn from the seed, or from the prime)."""

    def __init__(self, model=None, sample_rate: float | None = None, *, channels: int = 1, seed: int | None = None,
                 num_samples: int = 1, backend: str = "auto", temperature: float = 1.0, initial_eda_us=None,
                 eda_range_us: tuple[float, float] | None = None, device=None, dtype=torch.float32, prime=None):
        if sample_rate is None:
            raise ValueError("sample_rate is required: the rate (Hz) of the audio you will push")
        self.generator = generator_for(model, backend, device, dtype)
        cfg = self.config
        check_sampling(num_samples, temperature)
        check_seed(seed)
        self.generator.check_memory(num_samples)        # before the sampling streams are made
        self.num_samples = int(num_samples)
        self.seed = fresh_seed() if seed is None else int(seed)
        self._prime = load_prime(prime, cfg) if prime is not None else None
        self.people = draw_people(self.generator.model, self.num_samples, self.seed) if self._prime is None else None
        self.codec, self._scale = output_scale(cfg, self.num_samples, start_levels(self.people, initial_eda_us),
                                               eda_range_us)
        self.features = FeatureStream(cfg, sample_rate, channels=channels)
        self.temperature = float(temperature)
        self._uniforms = UniformStream(self.seed, self.num_samples)
        self._state = self.engine.start(self.num_samples)
        self._decoder = None
        if cfg.eda_representation == "delta" and self._prime is None:
            self._decoder = self.codec.decoder(self._scale)
        self._prime_classes = None if self._prime is None else self.codec.encode(self._prime, self._prime[0])
        self._prime_frames: list[np.ndarray] = []       # the prime's frames, until its audio is complete
        self._steps = 0
        self.eda_sample_rate = float(cfg.eda_sample_rate)
        self.times = np.zeros(0)
        self.classes = np.zeros((self.num_samples, 0), dtype=np.int64)
        self._closed = False

    @property
    def config(self) -> EDANetConfig:
        return self.generator.config

    @property
    def engine(self):
        return self.generator.engine

    @property
    def backend(self) -> str:
        return self.generator.backend

    @property
    def steps(self) -> int:
        """EDA steps returned so far."""
        return self._steps

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

    def result(self, values: list[np.ndarray], classes: list[np.ndarray]) -> GeneratedEDA:
        """The ``GeneratedEDA`` of this stream's pushes (their values and classes, in order)."""
        return GeneratedEDA(values=np.concatenate(values, axis=1), classes=np.concatenate(classes, axis=1),
                            sample_rate=self.eda_sample_rate, backend=self.backend, seed=self.seed,
                            provenance=self.provenance())

    def provenance(self) -> dict:
        """How this stream generates (``edanet.generation.provenance``)."""
        start = self._prime[-1:] if self._prime is not None else (
            self._scale if self.config.eda_representation == "delta" else None)
        return provenance(self.generator.model, backend=self.backend, seed=self.seed, temperature=self.temperature,
                          num_samples=self.num_samples, start_us=start, sample_rate=self.eda_sample_rate,
                          prime_steps=0 if self._prime is None else len(self._prime),
                          identity=self.generator.identity)

    def _rows(self, frames: np.ndarray) -> torch.Tensor:
        """The engine's input for ``frames`` ``(C, k*K, F)``: one row per sample, with its subject."""
        one = torch.from_numpy(frames)[None].expand(self.num_samples, -1, -1, -1)
        z = self.people.z if self.people is not None else None
        return engine_frames(self.generator.model.with_subject(one, z), self.config)

    def _generate(self, frames: np.ndarray) -> np.ndarray:
        K = self.config.spectral_frames_per_eda_step
        k = frames.shape[1] // K
        j0 = self._steps
        self._steps += k
        self.times = (j0 + np.arange(k)) / self.eda_sample_rate
        self.classes = np.zeros((self.num_samples, 0), dtype=np.int64)
        if k == 0:
            return np.zeros((self.num_samples, 0))
        self.generator.check_memory(self.num_samples, k)     # before this push's uniforms are drawn
        uniforms = self._uniforms.next(k)        # step j takes uniform j, primed or not
        values, classes = [], []
        n_p = 0 if self._prime is None else min(len(self._prime), j0 + k) - j0
        if n_p > 0:                              # the prime's steps: given, not generated
            self._prime_frames.append(frames[:, : n_p * K])
            values.append(np.broadcast_to(self._prime[j0:j0 + n_p], (self.num_samples, n_p)).copy())
            classes.append(np.broadcast_to(self._prime_classes[j0:j0 + n_p], (self.num_samples, n_p)).copy())
            if j0 + n_p == len(self._prime):
                self._force_prime()
        if k > max(n_p, 0):
            j = max(n_p, 0)
            out = self.engine.generate(self._rows(frames[:, j * K:]), uniforms[:, j:], self.temperature,
                                       state=self._state).cpu().numpy().astype(np.int64)
            classes.append(out)
            values.append(self._decoder.push(out) if self._decoder is not None
                          else np.asarray(self.codec.decode(out, self._scale), dtype=np.float64))
        self.classes = np.concatenate(classes, axis=1)
        return np.concatenate(values, axis=1)

    def _force_prime(self) -> None:
        """The prime's audio is complete: choose the people it is of, feed its classes through the
        engine, and start the decoder from its last value."""
        frames = np.concatenate(self._prime_frames, axis=1)
        self._prime_frames = []
        classes = torch.from_numpy(self._prime_classes)
        self.people = people_for_prime(self.generator.model, self.engine, torch.from_numpy(frames)[None], classes,
                                       self.num_samples, self.seed)
        self.engine.force(self._rows(frames), classes[None].expand(self.num_samples, -1), self._state)
        self._decoder = self.codec.decoder(np.full(self.num_samples, self._prime[-1]))

    def __enter__(self) -> "EDAStream":
        return self

    def __exit__(self, *exc) -> None:
        self._closed = True


def generate_file(path, *, generator=None, sample_rate=None, on_block=None, **kwargs) -> GeneratedEDA:
    """``edanet.generate`` of an audio file with ``generator`` (an ``edanet.Generator``; None:
    the bundled model's), read and generated block by block (bounded memory:
    the audio, its features and the engine's inputs of one block at a time). ``on_block(values,
    times, seconds_read)`` is called after each block with the values ``(num_samples, k)`` and
    times ``(k,)`` it completed and the audio seconds read so far; the returned ``GeneratedEDA``
    holds them all (4 values a second: small). ``sample_rate``, if given, must be the file's."""
    path = Path(path).expanduser()
    info, sr = file_info(path)                   # the header, read and checked once
    check_file_rate(sample_rate, sr, f"audio file {str(path)!r}")
    stream = EDAStream(generator, sr, channels=int(info.channels), **kwargs)
    stream.features.name = f"audio file {str(path)!r}"
    block = max(1, int(feature_stream.BLOCK_SECONDS * sr))     # read at call time: tests shorten it
    parts, classes, read = [], [], 0
    for chunk in read_blocks(path, block, is_pcm16(info)):
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
    return stream.result(parts, classes)


def generate(audio, sample_rate=None, *, model=None, backend: str = "auto", temperature: float = 1.0,
             seed: int | None = None, num_samples: int = 1, initial_eda_us=None,
             eda_range_us: tuple[float, float] | None = None, device=None, dtype=torch.float32,
             prime=None) -> GeneratedEDA:
    """Generate EDA for ``audio`` (a path soundfile reads, or an array with its ``sample_rate``).

    Returns ``GeneratedEDA`` with ``values`` in µS ``(num_samples, N)``, N the number of
    complete EDA steps in the audio. ``model=None`` uses the bundled default model.
    ``initial_eda_us``: the level (µS) the EDA starts from, one number or one per sample
    (default: the model's, the median first value of its training recordings); the changes
    from it are the model's, on the µS scale of its training data. ``eda_range_us=(lo, hi)``
    applies only to legacy "normalized" models, whose output is a [-1, 1] level mapped to that
    range (default: their ``default_eda_range_us``). ``backend``: ``auto`` (fused if built,
    else torch), ``fused``, ``cpu``, ``torch``, ``reference``, ``triton``, ``cuda``.

    A file is read and generated block by block (``generate_file``): memory does not grow with
    its length, and the result is the same as for its samples passed as an array.
    ``model`` may also be an ``edanet.Generator`` (then backend, device and dtype are its own):
    hold one to generate many times with a model of your own without packing it each call.

    ``prime``: a recording of the person from the start of the audio (a path to any EDA file the
    library reads, or a 1-D array of µS at the model's EDA rate): the values of its steps are
    the prime's, and the samples continue it from its last value, as the person it shows (a
    model with a subject table: the training subjects that explain it best). Its steps run
    through the engine as given classes (``Engine.force``), then the rest are sampled.

    A model with a subject table (``config.subject_dim``) gives each sample a person: a training
    subject drawn from the seed, held for the whole audio, and a start level drawn around that
    person's (``initial_eda_us`` overrides it)."""
    gen = generator_for(model, backend, device, dtype)       # device and dtype checked before any reading
    return gen.generate(audio, sample_rate, temperature=temperature, seed=seed, num_samples=num_samples,
                        initial_eda_us=initial_eda_us, eda_range_us=eda_range_us, prime=prime)
