"""Model files: round trip, never unpickled, clear errors for missing, truncated or mismatched files."""
import json

import pytest
import torch

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
