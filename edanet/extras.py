"""Optional dependencies: what needs them and the extra that installs them.

``pip install edanet`` is what generating needs (torch, numpy, scipy, soxr, soundfile,
safetensors, tqdm; librosa is the tests' reference for the features, in ``[test]``). The rest comes with extras: ``[plot]`` (matplotlib: ``--plot``),
``[eval]`` (matplotlib: the evaluation report's plots), ``[gpu]`` (triton: the ``triton``
backends), ``[avro]`` (fastavro: EmbracePlus files), ``[all]``."""
from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtra", "require"]


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def require(module: str, extra: str, what: str) -> ModuleType:
    """``import module``, or MissingExtra saying that ``what`` needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        top = module.split(".")[0]
        if e.name is not None and e.name.split(".")[0] != top:
            raise                       # the package is there but broken: not a missing extra
        raise MissingExtra(f"{what} needs {top}, which is not installed: pip install {top} "
                           f"(or pip install 'edanet[{extra}]')") from None
