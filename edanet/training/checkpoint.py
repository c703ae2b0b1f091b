"""Model files: ``config.json`` + ``model.safetensors`` in one folder. Never unpickled.

``save_model(model, folder)`` writes both atomically; ``load_model(path)`` accepts the folder,
its ``model.safetensors`` or its ``config.json``, and checks that every tensor the config
implies is present with the right shape, floating point and finite before loading it into the
model. A PyTorch pickle (``.pt``, ``.pth``, ``.bin``, ``.ckpt``, or zip/pickle bytes) is refused
unread; a bad file of any kind is a ``ValueError`` (a missing one a ``FileNotFoundError``)."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..config import EDANetConfig
from ..io import atomic_write, check_regular_file
from .model import EDANet

__all__ = ["save_model", "load_model", "read_config", "nonfinite_tensors", "CONFIG_NAME", "WEIGHTS_NAME"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "edanet-model-v1"
#: A config.json is about 1 kB; a larger file than this is refused unread.
MAX_CONFIG_BYTES = 2**20
#: Weights are stored in one of these (training writes float32).
WEIGHT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def save_model(model: EDANet, folder: str | Path, extra_metadata: dict | None = None) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, **{k: str(v) for k, v in (extra_metadata or {}).items()}}
    atomic_write(folder / WEIGHTS_NAME, lambda tmp: save_file(state, str(tmp), metadata=meta))
    atomic_write(folder / CONFIG_NAME, model.config.to_json() + "\n")
    return folder


PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
PICKLE_REFUSED = ("PyTorch pickle checkpoints are not loaded (they can run code); give the model folder "
                  f"with {CONFIG_NAME} + {WEIGHTS_NAME} (edanet train writes one)")


def _is_pickle(path: Path) -> bool:
    """Whether ``path`` looks like ``torch.save`` output: a zip archive or a raw pickle. Reads 9 bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    # a safetensors file starts with its header's length (u64, little-endian; its first byte
    # may be 0x80) followed by the JSON header's "{"
    if head[8:9] == b"{":
        return False
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def _model_file(path: Path) -> Path:
    """``path``, a model file that exists and is a regular file (never a FIFO that would hang the read)."""
    try:
        return check_regular_file(path, "model file")
    except FileNotFoundError:
        raise FileNotFoundError(f"model file missing: {path} (a model folder holds {CONFIG_NAME} and "
                                f"{WEIGHTS_NAME})") from None


def _paths(path: Path) -> tuple[Path, Path]:
    """(config, weights) for a model folder, its config.json or its model.safetensors, each
    checked to be a regular file before anything reads it."""
    if path.is_dir():
        cfg, weights = path / CONFIG_NAME, path / WEIGHTS_NAME
    elif _model_file(path).name == CONFIG_NAME or path.suffix == ".json":
        cfg, weights = path, path.parent / WEIGHTS_NAME
    elif path.suffix.lower() in PICKLE_SUFFIXES or _is_pickle(path):
        raise ValueError(f"{path}: {PICKLE_REFUSED}")
    elif path.suffix.lower() != ".safetensors":
        # else its folder would be searched and "config.json missing" would mislead
        raise ValueError(f"{path} is not a model: give the model folder with {CONFIG_NAME} + {WEIGHTS_NAME} "
                         "(or one of those two files)")
    else:
        cfg, weights = path.parent / CONFIG_NAME, path
    cfg, weights = _model_file(cfg), _model_file(weights)
    if _is_pickle(weights):     # e.g. torch.save(...) under the weights' name
        raise ValueError(f"{weights}: {PICKLE_REFUSED}")
    return cfg, weights


def nonfinite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """The names of the floating point tensors of ``state`` holding NaN or inf, in order."""
    return [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def _read_config(path: Path) -> EDANetConfig:
    """The config in ``path``: ValueError for a file over ``MAX_CONFIG_BYTES`` (refused unread),
    one that is not UTF-8 JSON or not a valid config (its values are checked before any model
    is built, its parameter memory included)."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ValueError(f"{path}: {size:,} bytes is not an EDANet config (those are about 1 kB; at most "
                             f"{MAX_CONFIG_BYTES:,} bytes are read)")
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)      # the file may have grown since stat()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise ValueError(f"{path}: cannot be read ({e.strerror or e})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ValueError(f"{path}: more than {MAX_CONFIG_BYTES:,} bytes is not an EDANet config")
    try:
        return EDANetConfig.from_json(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a valid EDANet config: not UTF-8 text (a binary file?)") from None
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: not a valid EDANet config: {e}") from None


def _read_weights(path: Path, device: torch.device) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file: ValueError for one that is not readable (the parser of
    an untrusted file may fail in many ways; all but running out of memory mean a bad file) or
    holds a tensor that is not floating point."""
    try:
        state = load_file(str(path), device=str(device))
    except MemoryError:
        raise
    except FileNotFoundError:
        raise
    except OSError as e:
        raise ValueError(f"{path}: cannot be read ({e.strerror or e})") from None
    except Exception as e:      # SafetensorError, and whatever else damaged bytes provoke
        raise ValueError(f"{path}: not a readable safetensors file (truncated or corrupt?): {e}") from None
    for name, v in state.items():
        if v.dtype not in WEIGHT_DTYPES:
            raise ValueError(f"{path}: tensor {name!r} is {v.dtype}: weights must be floating point "
                             f"({', '.join(str(d).replace('torch.', '') for d in WEIGHT_DTYPES)})")
    return state


def read_config(path: str | Path) -> EDANetConfig:
    """The config of the model at ``path`` (its folder, config.json or model.safetensors), read
    and checked without reading the weights: what a caller asks before a model is built."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}: expected a folder with {CONFIG_NAME} and {WEIGHTS_NAME}")
    return _read_config(_paths(path)[0])


def _device(map_location) -> torch.device:
    try:
        return torch.device(map_location)
    except (RuntimeError, TypeError):
        raise ValueError(f"map_location must be a device such as 'cpu' or 'cuda', got {map_location!r}") from None


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> EDANet:
    """Load a model saved by ``save_model`` (safetensors + JSON; no pickle is ever read).
    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a bad one."""
    device = _device(map_location)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}: expected a folder with {CONFIG_NAME} and {WEIGHTS_NAME}")
    cfg_path, w_path = _paths(path)
    config = _read_config(cfg_path)
    state = _read_weights(w_path, device)
    model = EDANet(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs config {tuple(v.shape)}"
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{w_path} does not match the config in {cfg_path}: "
                         f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                         f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, "
                         f"wrong shapes {wrong[:5]}")
    # weights of a diverged training run would load and silently generate garbage
    bad = nonfinite_tensors(state)
    if bad:
        raise ValueError(f"{w_path}: tensor {bad[0]!r}{f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''} "
                         "holds NaN or inf values, as a diverged training run leaves; use an earlier "
                         "checkpoint or retrain with a lower learning rate")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    model.source = w_path.parent          # where it came from: what generated files record
    return model.to(device).eval()
