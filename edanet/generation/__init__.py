"""Generation: the one bridge to fastgen (``export``: a model as a ``NetworkSpec`` + weights, and
whether the engines can run it), models, devices and backends (``models``), the sampling inputs
(``sampling``), the one generation core for arrays, files and live audio (``core``:
``Generator``, ``EDAStream``, ``generate``) and corpora batched across clips (``corpus``). The
only part of edanet that imports fastgen."""
from fastgen import BackendUnavailable

from .core import EDAStream, GeneratedEDA, Generator, generate, generate_file, generator_for, output_scale
from .corpus import AUDIO_SUFFIXES, Clip, clip_seed, default_batch_size, find_clips, generate_many, shard_of
from .export import check_network, engine_frames, export_to_fastgen, network_spec
from .models import DEFAULT_MODEL_DIR, check_device, check_dtype, default_model, load_model, resolve_model
from .sampling import UniformStream, check_sampling, check_seed, draw_uniforms, fresh_seed

__all__ = ["Generator", "EDAStream", "GeneratedEDA", "generate", "generate_file", "generator_for", "output_scale",
           "generate_many", "find_clips", "clip_seed", "shard_of", "Clip", "default_batch_size", "AUDIO_SUFFIXES",
           "export_to_fastgen", "engine_frames", "network_spec", "check_network", "load_model", "default_model",
           "resolve_model", "DEFAULT_MODEL_DIR", "check_device", "check_dtype", "UniformStream", "draw_uniforms",
           "fresh_seed", "check_seed", "check_sampling", "BackendUnavailable"]
