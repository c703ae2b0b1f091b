import dataclasses
import math

import pytest

from edanet import PRESETS, EDANetConfig
from edanet.generation import check_network


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_derive_consistent_sizes(name):
    c = EDANetConfig.from_preset(name)
    K = c.spectral_frames_per_eda_step
    assert K * c.eda_sample_rate * c.mfcc_hop_size == c.audio_sample_rate
    assert c.frame_rate == c.audio_sample_rate / c.mfcc_hop_size
    assert len(c.dilations) == c.num_stacks * c.layers_per_stack
    assert c.dilations[: c.layers_per_stack] == tuple(2 ** i for i in range(c.layers_per_stack))
    assert c.receptive_field_frames == sum(c.dilations) + 1 + K - 1
    assert c.receptive_field_seconds == pytest.approx(c.receptive_field_frames / c.frame_rate)


@pytest.mark.parametrize("ctx", [0.1, 0.5, 1.0, 3.3, 16.0, 40.0, 100.0, 400.0])
@pytest.mark.parametrize("cap", [3, 6, 9])
def test_reached_field_covers_context_and_is_minimal(ctx, cap):
    if ctx == 400.0 and cap == 3:       # 914 stacks of 3: more layers than fastgen runs
        with pytest.raises(ValueError, match=r"2742 layers, more than fastgen's 1024"):
            check_network(EDANetConfig(context_size_in_seconds=ctx, max_layers_per_stack=cap))
        return
    c = EDANetConfig(context_size_in_seconds=ctx, max_layers_per_stack=cap)
    target = math.ceil(ctx * c.frame_rate - 1e-9)
    assert c.receptive_field_frames >= target
    assert c.layers_per_stack <= cap
    # One stack fewer would not reach the target (or one layer fewer, for a single stack).
    K, L, S = c.spectral_frames_per_eda_step, c.layers_per_stack, c.num_stacks
    if S > 1:
        assert (S - 1) * (2 ** L - 1) + K < target
        assert L == cap
    elif L > 1:
        assert (2 ** (L - 1) - 1) + K < target


def test_stacks_add_fields_not_multiply():
    c = EDANetConfig(context_size_in_seconds=100.0, max_layers_per_stack=9)  # 1600 frames at 16 Hz
    assert c.layers_per_stack == 9 and c.num_stacks == 4
    assert c.receptive_field_frames == 4 * 511 + 1 + c.spectral_frames_per_eda_step - 1


def test_non_integer_ratio_names_numbers_and_suggests_hops():
    with pytest.raises(ValueError) as e:
        EDANetConfig(audio_sample_rate=16000, eda_sample_rate=4, mfcc_hop_size=1024)
    msg = str(e.value)
    assert "16000" in msg and "1024" in msg and "1000" in msg


@pytest.mark.parametrize("field,value", [
    ("num_mfccs", 0), ("residual_channels", -1), ("hidden_channels", 1.5), ("quantization_bins", 1),
    ("context_size_in_seconds", 0.0), ("context_size_in_seconds", float("nan")), ("companding", "alaw"),
    ("max_layers_per_stack", 0), ("in_channels", True), ("default_eda_range_us", (3.0, 1.0)),
    ("c0_ref_db", float("inf")), ("c0_ref_db", "loud"),
    ("default_eda_range_us", 5), ("default_eda_range_us", (1.0,)),        # e.g. from --set
    ("eda_representation", "level"), ("delta_range_us", 0.0), ("delta_range_us", float("inf")),
    ("initial_eda_us", -1.0), ("initial_eda_us", "4"), ("audio_input", 1), ("frame_features", "loudness"), ("frame_features", ["pitch"]),
    ("per_coefficient_input", None),
])
def test_bad_values_raise_clear_errors(field, value):
    with pytest.raises(ValueError) as e:
        dataclasses.replace(EDANetConfig(), **{field: value})
    assert field in str(e.value) or str(value) in str(e.value)


def test_json_round_trip_and_overrides():
    c = EDANetConfig.from_preset("small", residual_channels=24, companding="linear")
    assert c.residual_channels == 24 and c.companding == "linear"
    back = EDANetConfig.from_json(c.to_json())
    assert back == c and back.dilations == c.dilations


def test_configs_saved_before_the_c0_reference_keep_their_features():
    c = EDANetConfig.from_preset("small")
    assert c.c0_ref_db == -40.0 and EDANetConfig.from_json(c.to_json()).c0_ref_db == -40.0
    old = c.to_dict()
    del old["c0_ref_db"]                      # a config.json written before the field existed
    assert EDANetConfig.from_dict(old).c0_ref_db == 0.0


def test_configs_saved_before_the_delta_representation_load_as_normalized():
    old = EDANetConfig.from_preset("small").to_dict()
    for name in ("eda_representation", "delta_range_us", "initial_eda_us", "audio_input", "frame_features",
                 "per_coefficient_input"):
        del old[name]
    c = EDANetConfig.from_dict(old)
    assert c.eda_representation == "normalized" and c.audio_input and c.frame_features == ()
    assert not c.per_coefficient_input and c.initial_eda_us is None
    # and a new config keeps what it says
    new = EDANetConfig.from_preset("tiny", initial_eda_us=3, frame_features=["onset_strength"])
    back = EDANetConfig.from_json(new.to_json())
    assert back == new and back.initial_eda_us == 3.0 and back.feature_channels == new.in_channels + 1


def test_unknown_preset_and_fields():
    with pytest.raises(ValueError, match="tiny"):
        EDANetConfig.from_preset("huge")
    with pytest.raises(ValueError, match="bogus"):
        EDANetConfig.from_dict({**EDANetConfig().to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="JSON"):
        EDANetConfig.from_json("{not json")


def test_unknown_override_is_a_value_error_naming_it():
    # `edanet train --set foo=1`: a one-line CLI error, not replace()'s TypeError
    with pytest.raises(ValueError, match=r"unknown EDANetConfig fields \['foo'\]; known fields: .*companding"):
        EDANetConfig.from_preset("tiny", foo=1)


def test_saved_config_must_give_every_field():
    full = EDANetConfig.from_preset("tiny").to_dict()
    # a missing field is not filled with the dataclass default (mu_law here, a different model)
    for gone in (["companding"], ["companding", "num_mels"]):
        d = {k: v for k, v in full.items() if k not in gone}
        with pytest.raises(ValueError) as e:
            EDANetConfig.from_dict(d)
        assert all(name in str(e.value) for name in gone) and "lacks" in str(e.value)
    # every config the code writes is complete
    for name in PRESETS:
        assert set(EDANetConfig.from_preset(name).to_dict()) == {f.name for f in dataclasses.fields(EDANetConfig)}


@pytest.mark.parametrize("name", sorted(__import__("edanet.config", fromlist=["_INT_RANGES"])._INT_RANGES))
def test_every_integer_field_refuses_values_outside_its_range(name):
    from edanet.config import _INT_RANGES
    lo, hi, _ = _INT_RANGES[name]
    for bad in (lo - 1, hi + 1, 10**400, 2.0, True, "8"):
        with pytest.raises(ValueError, match=rf"{name} .*in \[{lo}, {hi}\]"):
            EDANetConfig.from_dict({**EDANetConfig().to_dict(), name: bad})


@pytest.mark.parametrize("name", sorted(__import__("edanet.config", fromlist=["_FLOAT_RANGES"])._FLOAT_RANGES))
def test_every_float_field_refuses_values_outside_its_range(name):
    from edanet.config import _FLOAT_RANGES
    _, lo, hi, _, _ = _FLOAT_RANGES[name]
    for bad in (lo - 1, hi * 2 + 1, float("inf"), float("nan"), 10**400, "1"):
        with pytest.raises(ValueError, match=name):
            EDANetConfig.from_dict({**EDANetConfig().to_dict(), name: bad})


def test_default_eda_range_must_be_finite_and_plausible():
    for bad in ([0, float("inf")], [0, 1e308], [3, 2], [-1, 2], [1], "2,8"):
        with pytest.raises(ValueError, match="default_eda_range_us"):
            EDANetConfig.from_dict({**EDANetConfig().to_dict(), "default_eda_range_us": bad})
