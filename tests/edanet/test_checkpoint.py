"""Model files: round trip, never unpickled, clear errors for missing, truncated or mismatched files."""
import json
import pickle
import re

import pytest
import torch
from safetensors.torch import save as safetensors_bytes

from edanet import EDANet, EDANetConfig, load_model, save_model


def _model(**over):
    torch.manual_seed(0)
    return EDANet(EDANetConfig.from_preset("tiny", **over))


def test_round_trip(tmp_path):
    m = _model()
    save_model(m, tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert back.config == m.config
    for (k, a), (_, b) in zip(m.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
    # the weights file or the config file may be named instead of the folder
    assert load_model(tmp_path / "m" / "model.safetensors").config == m.config
    assert load_model(tmp_path / "m" / "config.json").config == m.config
    assert not list((tmp_path / "m").glob("*.tmp*")), "temporary files left behind"


def test_missing_and_truncated_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model"):
        load_model(tmp_path / "nothing")
    save_model(_model(), tmp_path / "m")
    (tmp_path / "m" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(tmp_path / "m")
    save_model(_model(), tmp_path / "t")
    w = tmp_path / "t" / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_model(tmp_path / "t")


def test_config_that_does_not_match_weights(tmp_path):
    save_model(_model(), tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["residual_channels"] = 12
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not match the config"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{broken")
    with pytest.raises(ValueError, match="not a valid EDANet config"):
        load_model(tmp_path / "m")


def test_pickle_files_are_not_read(tmp_path):
    # A torch.save (pickle) file under the weights name is rejected, not unpickled.
    save_model(_model(), tmp_path / "m")
    torch.save(_model().state_dict(), tmp_path / "m" / "model.safetensors")
    with pytest.raises(ValueError, match="safetensors"):
        load_model(tmp_path / "m")


def test_config_missing_a_field_names_it_and_the_file(tmp_path):
    save_model(_model(companding="linear"), tmp_path / "m")
    cfg_path = tmp_path / "m" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    del cfg["companding"]          # would otherwise load as mu_law and generate differently
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=re.escape(str(cfg_path)) + ".*companding"):
        load_model(tmp_path / "m")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, value):
    m = _model()
    name = "head2.weight"
    with torch.no_grad():
        m.state_dict()[name].view(-1)[0] = value
    save_model(m, tmp_path / "m")
    with pytest.raises(ValueError, match=re.escape(repr(name)) + ".*NaN or inf"):
        load_model(tmp_path / "m")


class _Planted:
    """Unpickling this creates ``path``: the test can tell whether anything was unpickled."""
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.mark.parametrize("name,kind", [("some.pt", "zip"), ("some.pth", "zip"), ("some.bin", "raw"),
                                       ("some.ckpt", "raw"), ("weights", "raw"), ("weights.safetensors", "zip"),
                                       ("model.safetensors", "raw")])
def test_pickle_checkpoints_are_refused_unread(tmp_path, name, kind):
    marker = tmp_path / "unpickled"
    folder = tmp_path / "m"
    save_model(_model(), folder)                      # a config.json beside it changes nothing
    path = folder / name
    if kind == "zip":
        torch.save({"planted": _Planted(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(_Planted(marker), protocol=2))
    for target in {path, folder} if name == "model.safetensors" else {path}:
        with pytest.raises(ValueError, match="PyTorch pickle checkpoints are not loaded .*model.safetensors"):
            load_model(target)
    assert not marker.exists()


def test_a_non_model_file_is_named_as_such(tmp_path):
    wav = tmp_path / "clip.wav"
    wav.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    with pytest.raises(ValueError, match=re.escape(str(wav)) + " is not a model"):
        load_model(wav)


def test_safetensors_starting_with_the_pickle_byte_still_loads(tmp_path):
    # the header length leads the file: its low byte may be 0x80, the pickle protocol marker
    m = _model()
    state = {k: v.contiguous() for k, v in m.state_dict().items()}
    blob = next(b for pad in range(256)
                if (b := safetensors_bytes(state, metadata={"format": "edanet-model-v1", "pad": "x" * pad}))[0] == 0x80)
    save_model(m, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(blob)
    assert load_model(tmp_path / "m").config == m.config
