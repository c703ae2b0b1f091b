"""edanet: synthetic electrodermal activity (EDA) from audio with an autoregressive,
multimodal WaveNet. ``edanet.generate(audio)`` runs the bundled default model."""
from .checkpoint import load_model, save_model
from .config import PRESETS, EDANetConfig
from .export import export_to_fastgen
from .generate import GeneratedEDA, default_model, generate
from .model import EDANet

__all__ = ["EDANetConfig", "PRESETS", "EDANet", "export_to_fastgen", "generate", "GeneratedEDA",
           "default_model", "load_model", "save_model"]
__version__ = "0.1.0"
