"""Training: the PyTorch model (``model``), paired audio and EDA data (``data``), the recipe
(``recipe``), the loop (``train``), a run's folder (``run_folder``: lock, checkpoints, log) and
model files (``checkpoint``: safetensors + JSON, never pickle)."""
from .checkpoint import CONFIG_NAME, WEIGHTS_NAME, load_model, read_config, save_model
from .data import PairedData, find_pairs
from .model import EDANet
from .recipe import TRAIN_PRESETS, TrainConfig
from .run_folder import RunLock
from .train import train, validation_nll

__all__ = ["EDANet", "PairedData", "find_pairs", "TrainConfig", "TRAIN_PRESETS", "train", "validation_nll",
           "RunLock", "save_model", "load_model", "read_config", "CONFIG_NAME", "WEIGHTS_NAME"]
