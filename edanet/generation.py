"""``edanet.generate``: audio in, synthetic EDA (µS) out, through a fastgen backend.

The uniform numbers used for sampling are drawn here, on the host, from the seed, and handed
to the backend: one seed gives the same samples on every backend and device (fp32). They are
drawn one stream per sample (``UniformStream``), so a stream (``edanet.EDAStream``) or a long file
generated block by block gets the samples of one call with the same seed."""
from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import fastgen

from .config import EDANetConfig
from .export import engine_frames, export_to_fastgen
from .model import EDANet

__all__ = ["GeneratedEDA", "Generator", "generate", "generator_for", "fresh_seed", "default_model", "resolve_model",
           "DEFAULT_MODEL_DIR",
           "check_device", "check_dtype", "check_sampling", "check_seed", "output_scale", "draw_uniforms", "UniformStream"]

DEFAULT_MODEL_DIR = Path(__file__).parent / "assets" / "default"


@dataclass
class GeneratedEDA:
    values: np.ndarray        # (num_samples, N) float64, µS
    classes: np.ndarray       # (num_samples, N) int64
    sample_rate: float        # EDA samples per second
    backend: str              # the backend that ran
    seed: int                 # the seed the uniforms were drawn from

    @property
    def median(self) -> np.ndarray:
        return np.median(self.values, axis=0)

    @property
    def times(self) -> np.ndarray:
        """Time (s) of each sample, E4 style: sample j at j / rate (it is predicted from the audio
        up to (j + 1) / rate)."""
        return np.arange(self.values.shape[1]) / self.sample_rate


_DEFAULT: EDANet | None = None


def default_model() -> EDANet:
    """The bundled default model (``edanet/assets/default``), loaded once."""
    global _DEFAULT
    if _DEFAULT is None:
        from .checkpoint import load_model
        if not (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"the bundled default model is missing from {DEFAULT_MODEL_DIR}; pass model=... "
                "(a model from edanet.load_model or a model folder path)")
        _DEFAULT = load_model(DEFAULT_MODEL_DIR)
    return _DEFAULT


def resolve_model(model) -> EDANet:
    """``model`` as an EDANet: None is the bundled default model, a path is loaded."""
    if model is None:
        return default_model()
    if isinstance(model, (str, os.PathLike)):
        from .checkpoint import load_model
        return load_model(model)
    if not isinstance(model, EDANet):
        raise TypeError(f"model must be an EDANet, a model folder path or None, got {type(model).__name__}")
    return model


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
        self.model = resolve_model(model)
        spec, weights = export_to_fastgen(self.model)
        self.engine = fastgen.create(fastgen.resolve(backend, device), spec, weights, device=device, dtype=dtype)

    @property
    def config(self) -> EDANetConfig:
        return self.model.config

    @property
    def backend(self) -> str:
        return self.engine.name

    def __repr__(self) -> str:
        return f"Generator(backend={self.backend!r}, device={str(self.engine.device)!r}, dtype={self.engine.dtype})"

    def generate(self, audio, sample_rate=None, *, temperature: float = 1.0, seed: int | None = None,
                 num_samples: int = 1, initial_eda_us=None, eda_range_us=None) -> GeneratedEDA:
        """``edanet.generate`` of ``audio`` with this model and engine (see there)."""
        if isinstance(audio, (str, os.PathLike)):
            from .stream import generate_file
            return generate_file(audio, generator=self, sample_rate=sample_rate, temperature=temperature, seed=seed,
                                 num_samples=num_samples, initial_eda_us=initial_eda_us, eda_range_us=eda_range_us)
        from .audio import features          # imports torch.fft and soxr: only when generating

        cfg = self.config
        check_sampling(num_samples, temperature)
        check_seed(seed)
        self.check_memory(num_samples)
        codec, scale = output_scale(cfg, int(num_samples), initial_eda_us, eda_range_us)
        frames, n_steps = features(audio, sample_rate, cfg)
        self.check_memory(num_samples, n_steps)
        if seed is None:
            seed = fresh_seed()
        uniforms = draw_uniforms(seed, num_samples, n_steps)
        batch = engine_frames(torch.from_numpy(frames)[None], cfg).expand(num_samples, -1, -1, -1)
        classes = self.engine.generate(batch, uniforms, float(temperature)).cpu().numpy().astype(np.int64)
        values = codec.decode(classes, scale)
        return GeneratedEDA(values=np.asarray(values, dtype=np.float64), classes=classes,
                            sample_rate=float(cfg.eda_sample_rate), backend=self.backend, seed=int(seed))

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

    def stream(self, sample_rate: float, **kwargs):
        """An ``edanet.EDAStream`` of this model and engine (keyword arguments as there)."""
        from .stream import EDAStream
        return EDAStream(self, sample_rate, **kwargs)


#: Host bytes of one sample's sampling stream (a numpy PCG64 Generator: about 1 kB measured).
SAMPLING_STREAM_BYTES = 1024
#: Host bytes per sample and step: the uniform (float64 drawn, float32 kept), the class (int64)
#: and the µS value (float64), and the decoder's running sum.
STEP_HOST_BYTES = 8 + 4 + 8 + 8 + 8

_DEFAULT_GENERATORS: dict = {}


def generator_for(model=None, backend: str = "auto", device=None, dtype=torch.float32) -> Generator:
    """A ``Generator`` for ``model``: ``model`` itself if it is one; the bundled model's are made
    once per (backend, device, dtype) and kept; any other model gets a new one."""
    if isinstance(model, Generator):
        return model
    device = check_device(device)
    check_dtype(dtype)
    if model is not None:
        return Generator(model, backend=backend, device=device, dtype=dtype)
    key = (fastgen.resolve(backend, device), str(device), dtype)
    if key not in _DEFAULT_GENERATORS:
        _DEFAULT_GENERATORS[key] = Generator(None, backend=key[0], device=device, dtype=dtype)
    return _DEFAULT_GENERATORS[key]


def fresh_seed() -> int:
    """A seed from the OS's entropy (when the caller gives none)."""
    return int(np.random.SeedSequence().generate_state(1)[0])


#: The dtypes an engine may compute in (each backend supports some of them).
ENGINE_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def check_device(device) -> torch.device:
    """``device`` as a torch.device (None: cuda when there is a GPU, else cpu): ValueError unless
    it names a CPU or a CUDA device (torch's own error for "bogus" is a RuntimeError)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    accepted = "'cpu', 'cuda', 'cuda:N' or a torch.device"
    if isinstance(device, bool) or not isinstance(device, (str, torch.device, int)):
        raise TypeError(f"device must be {accepted}, got {type(device).__name__}")
    try:
        d = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"device must be {accepted}, got {str(device)[:60]!r}") from None
    if d.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be {accepted}, got {str(device)[:60]!r} (edanet generates on a CPU or "
                         "a CUDA GPU)")
    return d


def check_dtype(dtype) -> None:
    """TypeError unless ``dtype`` is a torch.dtype, ValueError unless one of ``ENGINE_DTYPES``."""
    names = ", ".join(str(d) for d in ENGINE_DTYPES)
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch floating point dtype ({names}), got {type(dtype).__name__} "
                        f"{str(dtype)[:60]!r}")
    if dtype not in ENGINE_DTYPES:
        raise ValueError(f"dtype must be a floating point dtype ({names}), got {dtype}")


def check_sampling(num_samples, temperature) -> None:
    """ValueError unless ``num_samples`` is a positive integer and ``temperature`` a finite
    number >= 0 (numpy scalars are numbers.Integral / numbers.Real too; bool is not a count)."""
    if not isinstance(num_samples, numbers.Integral) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    if not (isinstance(temperature, numbers.Real) and 0 <= temperature < float("inf")):
        raise ValueError(f"temperature must be a finite number >= 0 (0 = most likely class, 1 = the model's "
                         f"distribution), got {temperature!r}")


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
    from .representation import FALLBACK_INITIAL_EDA_US
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


def check_seed(seed) -> None:
    """ValueError unless ``seed`` is None or an integer in [0, 2**63)."""
    if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool)
                             or not 0 <= seed < 2 ** 63):
        raise ValueError(f"seed must be an integer in [0, 2**63) or None (a fresh one), got {seed!r}")


def output_scale(cfg: EDANetConfig, num_samples: int, initial_eda_us=None, eda_range_us=None):
    """``(codec, scale)``: the model's codec and what its ``decode`` takes, the start levels (µS,
    one per sample) of a delta model or the µS range of a legacy normalized one; checked."""
    from .representation import codec_for
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


class UniformStream:
    """The sampling uniforms of a seed, drawn step by step: sample i's numbers are the doubles
    of its own PCG64 stream (``PCG64(seed)`` jumped i times, i.e. 2**127 i draws on), rounded
    to float32. So a generation in chunks of any sizes (a live stream, a long file read in
    blocks) gets exactly the numbers of one call, sample 0 is the same whatever
    ``num_samples`` is, and the numbers are the same on every machine (numpy's PCG64 is
    specified bit for bit)."""

    def __init__(self, seed: int, num_samples: int):
        first = np.random.PCG64(int(seed))
        self._rngs = [np.random.Generator(first.jumped(i) if i else first) for i in range(int(num_samples))]
        self.num_samples = int(num_samples)

    def next(self, n_steps: int) -> torch.Tensor:
        """The uniforms ``(num_samples, n_steps)`` float32 of the next ``n_steps`` steps."""
        u = np.empty((self.num_samples, int(n_steps)), dtype=np.float64)
        for row, rng in zip(u, self._rngs):
            rng.random(out=row)
        return torch.from_numpy(u.astype(np.float32))


def draw_uniforms(seed: int, num_samples: int, n_steps: int) -> torch.Tensor:
    """The sampling uniforms ``(num_samples, n_steps)`` float32 of ``seed``: the first
    ``n_steps`` of ``UniformStream(seed, num_samples)``."""
    return UniformStream(seed, num_samples).next(n_steps)


def generate(audio, sample_rate=None, *, model=None, backend: str = "auto", temperature: float = 1.0,
             seed: int | None = None, num_samples: int = 1, initial_eda_us=None,
             eda_range_us: tuple[float, float] | None = None, device=None, dtype=torch.float32) -> GeneratedEDA:
    """Generate EDA for ``audio`` (a path soundfile reads, or an array with its ``sample_rate``).

    Returns ``GeneratedEDA`` with ``values`` in µS ``(num_samples, N)``, N the number of
    complete EDA steps in the audio. ``model=None`` uses the bundled default model.
    ``initial_eda_us``: the level (µS) the EDA starts from, one number or one per sample
    (default: the model's, the median first value of its training recordings); the changes
    from it are the model's, on the µS scale of its training data. ``eda_range_us=(lo, hi)``
    applies only to legacy "normalized" models, whose output is a [-1, 1] level mapped to that
    range (default: their ``default_eda_range_us``). ``backend``: ``auto`` (fused if built,
    else torch), ``fused``, ``cpu``, ``torch``, ``reference``, ``triton``, ``cuda``.

    A file is read and generated block by block (``edanet.stream.generate_file``): memory does
    not grow with its length, and the result is the same as for its samples passed as an array.
    ``model`` may also be an ``edanet.Generator`` (then backend, device and dtype are its own):
    hold one to generate many times with a model of your own without packing it each call."""
    check_device(device)                 # before the model is loaded and the audio read
    check_dtype(dtype)
    gen = generator_for(model, backend, device, dtype)
    return gen.generate(audio, sample_rate, temperature=temperature, seed=seed, num_samples=num_samples,
                        initial_eda_us=initial_eda_us, eda_range_us=eda_range_us)
