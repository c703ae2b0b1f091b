"""``fastgen.NetworkSpec`` refuses implausible sizes, and the memory estimate refuses runaway
allocations, before any backend packs a weight or allocates a buffer.

A spec comes from a file a user may have downloaded (an exported model's config): a dilation of
2**59 once reached the native code and overflowed its ring-buffer sizes. Now every field has a
plausible range, checked with a message that names the field, the range and the value; and
``fastgen.create`` / ``Engine.generate`` / ``Engine.teacher_forced`` compare an estimate of the
memory they would need (weights, history ring buffers, outputs) with ``memory_limit`` first.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import fastgen
from fastgen import engine as fengine
from fastgen.backends import cuda as cb
from conftest import PARITY_SPECS, make_case

BASE = PARITY_SPECS["round"].to_dict()


def spec_with(**changes):
    return fastgen.NetworkSpec(**{**BASE, **changes})


# -- ranges ------------------------------------------------------------------------------------
@pytest.mark.parametrize("field,value,message", [
    ("dilations", (1, 2 ** 59), r"dilations must lie in \[1, 1048576\] \(2\*\*20 frames back\), got 576460752303423488"),
    ("dilations", (1, 0), r"dilations must lie in \[1, 1048576\].*got 0"),
    ("dilations", (), r"a network has 1 to 1024 layers .* got 0"),
    ("dilations", (1,) * 1025, r"a network has 1 to 1024 layers .* got 1025"),
    ("in_channels", 0, r"in_channels \(input channels per frame and position\) must lie in \[1, 4096\], got 0"),
    ("residual_channels", 4097, r"residual_channels \(residual channels\) must lie in \[1, 4096\], got 4097"),
    ("hidden_channels", 2 ** 40, r"hidden_channels .* must lie in \[1, 4096\], got 1099511627776"),
    ("skip_channels", -1, r"skip_channels .* got -1"),
    ("out_channels", 10 ** 6, r"out_channels .* got 1000000"),
    ("cond_channels", 5000, r"cond_channels .* \[1, 4096\]"),
    ("num_features", 4097, r"num_features \(positions per frame\) must lie in \[1, 4096\]"),
    ("frames_per_step", 2 ** 31, r"frames_per_step \(frames per step\) must lie in \[1, 4096\]"),
    ("num_classes", 1, r"num_classes \(output classes\) must lie in \[2, 65536\], got 1"),
    ("num_classes", 65537, r"num_classes .* got 65537"),
    ("cond_classes", 65538, r"cond_classes .* must lie in \[2, 65537\], got 65538"),
])
def test_out_of_range_fields_are_named_with_their_range(field, value, message):
    with pytest.raises(ValueError, match=message):
        spec_with(**{field: value})


def test_the_reported_segfault_spec_is_refused_before_any_backend():
    # the tester's spec: one layer of dilation 2**59 (the ring size overflowed int64 natively)
    with pytest.raises(ValueError, match="dilations must lie in") as e:
        spec_with(dilations=(2 ** 59,))
    assert "damaged or not meant for fastgen" in str(e.value)      # what to do about it


def test_cond_classes_must_cover_the_sampled_classes():
    # a sampled class conditions the next step: its embedding row must exist (every backend
    # relied on this; Triton did not check it)
    with pytest.raises(ValueError, match=r"cond_classes \(10\) must be >= num_classes \(64\)"):
        spec_with(cond_classes=10, start_class=0)


@pytest.mark.parametrize("start", [-1, 65, 2 ** 63])
def test_start_class_must_be_a_conditioning_class(start):
    with pytest.raises(ValueError, match=rf"start_class must lie in \[0, cond_classes=65\), got {start}"):
        spec_with(start_class=start)


@pytest.mark.parametrize("field,value", [("in_channels", True), ("num_classes", 64.0), ("start_class", False),
                                         ("dilations", (1, True)), ("dilations", (1, 2.0)), ("dilations", "124"),
                                         ("dilations", 8), ("frames_per_step", "4")])
def test_sizes_are_ints_not_bools_floats_or_strings(field, value):
    with pytest.raises(ValueError, match="must be an int|must be a sequence of ints"):
        spec_with(**{field: value})


def test_numpy_and_torch_integers_are_accepted_as_ints():
    s = spec_with(num_classes=np.int64(64), dilations=[np.int32(1), torch.tensor(2), 4])
    assert type(s.num_classes) is int and s.dilations == (1, 2, 4)
    assert all(type(d) is int for d in s.dilations)
    assert s == fastgen.NetworkSpec.from_dict(s.to_dict())


def test_the_history_of_one_sequence_is_bounded():
    # every field in range, their product not: 1024 layers looking 2**20 frames back
    with pytest.raises(ValueError, match=r"the history of one sequence .* more than 2147483647"):
        spec_with(dilations=(2 ** 20,) * 1024)
    # the largest dilation alone is fine
    assert spec_with(dilations=(2 ** 20,), num_features=1).dilations == (2 ** 20,)


def test_the_largest_plausible_sizes_are_accepted():
    s = fastgen.NetworkSpec(in_channels=4096, num_features=4096, frames_per_step=4096, residual_channels=1,
                            hidden_channels=4096, skip_channels=4096, out_channels=4096, num_classes=65536,
                            cond_classes=65537, cond_channels=4096, dilations=(1,), start_class=65536)
    assert s.num_classes == 65536 and s.weight_bytes() > 2 ** 50     # accepted, if never buildable


def test_from_dict_names_missing_and_unknown_fields():
    d = dict(BASE)
    del d["num_classes"], d["dilations"]
    with pytest.raises(ValueError, match=r"fields missing: \['dilations', 'num_classes'\]"):
        fastgen.NetworkSpec.from_dict(d)
    with pytest.raises(ValueError, match="unknown NetworkSpec fields"):
        fastgen.NetworkSpec.from_dict({**BASE, "extra": 1})
    with pytest.raises(ValueError, match="JSON object"):
        fastgen.NetworkSpec.from_dict([1, 2])


# -- the memory estimate --------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PARITY_SPECS))
def test_the_estimate_bounds_what_the_backends_allocate(name):
    s = PARITY_SPECS[name]
    w = fastgen.random_weights(s)
    plain = sum(t.numel() for t in w.values()) * 4
    assert s.weight_bytes(torch.float32) >= plain
    assert s.weight_bytes(torch.bfloat16) * 2 == s.weight_bytes(torch.float32)
    # the cuda backend's packed blob and its history rings
    packed = cb.pack_weights(s, w, torch.float32)
    blob = packed.core.numel() + packed.down.numel() * 4 + packed.cond_table.numel() * 4
    assert blob <= s.weight_bytes(torch.float32)
    plan = cb.plan_launch(s, 3, 200_000, 4)
    assert plan.ring_elems_per_seq <= s.history_elements()
    # the torch backend's history buffers
    eng = fastgen.create("torch", s, w)
    rings = sum(b.numel() for b in eng._init_buffers(3)) * 4
    assert rings <= s.history_bytes(3) and s.history_bytes(3) == 3 * s.history_bytes(1)


def test_the_cpu_backend_packs_within_the_estimate():
    from fastgen.backends import cpu as cpu_backend
    if cpu_backend.unavailable_reason():
        pytest.skip(cpu_backend.unavailable_reason())
    for s in PARITY_SPECS.values():
        eng = fastgen.create("cpu", s, fastgen.random_weights(s))
        assert eng.packed_nbytes <= s.weight_bytes(torch.float32)


def test_memory_limit_comes_from_the_environment_or_the_machine(monkeypatch):
    monkeypatch.delenv(fengine.MAX_BYTES_ENV, raising=False)
    physical = fengine._physical_memory()
    if physical is not None:
        assert fengine.memory_limit("cpu") == int(physical * fengine.HOST_FRACTION)
    monkeypatch.setenv(fengine.MAX_BYTES_ENV, "2.5e9")
    assert fengine.memory_limit("cpu") == 2_500_000_000
    for bad in ("lots", "-1", "0", "inf", "nan"):
        monkeypatch.setenv(fengine.MAX_BYTES_ENV, bad)
        with pytest.raises(ValueError, match=f"FASTGEN_MAX_BYTES='{bad}' is not a number of bytes"):
            fengine.memory_limit("cpu")


def test_create_refuses_a_network_beyond_the_limit_before_packing():
    # valid sizes whose packed weights would need ~2**52 bytes: refused by the estimate, before
    # the backend even looks at the (here missing) weights
    huge = spec_with(num_classes=65536, cond_classes=65537, start_class=0, out_channels=4096,
                     frames_per_step=4096, num_features=4096, residual_channels=1, dilations=(1,))
    for backend in ("torch", "reference"):
        with pytest.raises(ValueError, match=r"an engine for this network would need about .* GiB \(weights "
                                             r".* GiB, history of one sequence .* GiB\), more than the .* GiB "
                                             r"fastgen allows on cpu.*FASTGEN_MAX_BYTES"):
            fastgen.create(backend, huge, {})


def test_create_and_calls_respect_FASTGEN_MAX_BYTES(monkeypatch):
    s = PARITY_SPECS["odd"]
    w, frames, classes, uniforms = make_case(s, 2, 3)
    need = s.weight_bytes() + s.history_bytes(1)
    monkeypatch.setenv(fengine.MAX_BYTES_ENV, str(need - 1))
    with pytest.raises(ValueError, match="an engine for this network would need"):
        fastgen.create("torch", s, w)
    monkeypatch.setenv(fengine.MAX_BYTES_ENV, str(need + 10_000))
    eng = fastgen.create("torch", s, w)
    assert eng.generate(frames[:1, :, :s.frames_per_step], uniforms[:1, :1]).shape == (1, 1)
    # a long input of many sequences: refused with the sizes, before anything is converted
    long_frames = frames[:1, :, :s.frames_per_step].expand(1000, -1, -1, -1).repeat(1, 1, 50, 1)
    with pytest.raises(ValueError, match=r"torch generate of 1000 sequence\(s\) x 50 steps would need about"):
        eng.generate(long_frames, torch.rand(1000, 50))
    with pytest.raises(ValueError, match=r"torch teacher_forced of 1000 sequence\(s\) x 50 steps would need"):
        eng.teacher_forced(long_frames, torch.zeros(1000, 50, dtype=torch.long))


def test_a_huge_batch_view_is_refused_without_being_materialized():
    s = PARITY_SPECS["round"]
    w, frames, classes, uniforms = make_case(s, 1, 2)
    eng = fastgen.create("torch", s, w)
    B = 2 ** 36                                       # a view: 64 Gi sequences of the same frames
    with pytest.raises(ValueError, match=r"68719476736 sequence\(s\) x 2 steps would need about"):
        eng.generate(frames.expand(B, -1, -1, -1), uniforms.expand(B, -1))


def test_estimates_take_a_dtype():
    s = PARITY_SPECS["odd"]
    with pytest.raises(TypeError, match="torch.dtype"):
        s.weight_bytes("float32")
    with pytest.raises(TypeError, match="dtype must be a torch.dtype"):
        fastgen.create("torch", s, fastgen.random_weights(s), dtype="float32")
    assert s.history_bytes(0) == 0
    assert dataclasses.replace(s, dilations=(1, 2)).history_elements() < s.history_elements()
