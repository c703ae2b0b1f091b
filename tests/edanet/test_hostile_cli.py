"""Hostile and absurd files given to the ``edanet`` command, as a user or an attacker would: each
is refused with exit status 2 and one line naming what was wrong, never a signal or a traceback,
in a process capped at 4 GiB of address space (so a runaway allocation fails loudly instead of
swapping the machine).

All cases run in one capped subprocess (``edanet.cli.main`` called once per case) to keep the
suite quick; the training lock, resume and checkpoint cases are in test_train_robustness.py."""
import shutil
import json
import resource
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from edanet import EDANet, EDANetConfig
from edanet.generation import check_network
from edanet.synth import SynthConfig, write_dataset

CAP_BYTES = 4 * 2**30
CFG = EDANetConfig.from_preset("tiny")

# Runs each case's argv through main() with stderr captured; prints one JSON list. An exception
# other than SystemExit escaping main() is recorded with its traceback (the test then fails).
DRIVER = textwrap.dedent("""
    import contextlib, io, json, sys, time, traceback
    from edanet.cli import main
    results = []
    for name, argv in json.loads(sys.argv[1]):
        err, t0 = io.StringIO(), time.perf_counter()
        try:
            with contextlib.redirect_stderr(err):
                rc = main(["-q", *argv])
        except SystemExit as e:
            rc = e.code
        except BaseException:
            rc, err = "exception", io.StringIO(traceback.format_exc())
        results.append({"name": name, "rc": rc, "stderr": err.getvalue(), "seconds": time.perf_counter() - t0})
    print(json.dumps(results))
""")


def _cap():
    resource.setrlimit(resource.RLIMIT_AS, (CAP_BYTES, CAP_BYTES))


def _model_with(root, name, **fields):
    """A model folder whose config.json has ``fields`` changed (weights: the tiny model's)."""
    d = root / name
    d.mkdir()
    cfg = json.loads((root / "tiny" / "config.json").read_text())
    cfg.update(fields)
    (d / "config.json").write_text(json.dumps(cfg))       # float('inf') is written as Infinity
    (d / "model.safetensors").write_bytes((root / "tiny" / "model.safetensors").read_bytes())
    return d


def _wav_header_rate(src, dst, rate):
    """A copy of WAV ``src`` whose header claims ``rate`` Hz (samples and byte rate fields)."""
    b = bytearray(src.read_bytes())
    b[24:28] = int(rate).to_bytes(4, "little")
    b[28:32] = int(rate * 2).to_bytes(4, "little")
    dst.write_bytes(bytes(b))


def _pair(root, name, wav, eda_text):
    """A data folder with one pair: ``wav`` copied, and an E4 CSV with ``eda_text``."""
    d = root / name
    d.mkdir()
    (d / "rec.wav").write_bytes(wav.read_bytes())
    (d / "rec.csv").write_text(eda_text)
    return d


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("hostile")
    write_dataset(root / "data", 1, SynthConfig(seconds=8.0, audio_sample_rate=CFG.audio_sample_rate), seed=3,
                  progress=False)
    wav = root / "data" / "synth_00000.wav"
    shutil.copytree(tiny_model_dir, root / "tiny")

    models = {
        "context 1e17 s": _model_with(root, "ctx17", context_size_in_seconds=1e17, max_layers_per_stack=60),
        "context 1e9 s": _model_with(root, "ctx9", context_size_in_seconds=1e9),
        "context 1e308 s": _model_with(root, "ctx308", context_size_in_seconds=1e308),
        "10**7 residual channels": _model_with(root, "res", residual_channels=10**7),
        "10**9 classes": _model_with(root, "bins", quantization_bins=10**9),
        "range to infinity": _model_with(root, "inf", default_eda_range_us=[0, float("inf")]),
        # within every field's range, but 2.5 GiB of parameters: more than the cap allows
        "parameters beyond the cap": _model_with(root, "big", quantization_bins=65536, out_channels=512,
                                                 num_mfccs=20),
    }
    nested = root / "nested"
    nested.mkdir()
    (nested / "config.json").write_text("[" * 200_000 + "]" * 200_000)
    (nested / "model.safetensors").write_bytes((root / "tiny" / "model.safetensors").read_bytes())
    models["nested config"] = nested
    ints = _model_with(root, "ints")
    state = load_file(str(ints / "model.safetensors"))
    state = {k: (v * 1000).to(torch.int32) for k, v in state.items()}
    save_file(state, str(ints / "model.safetensors"))
    models["int weights"] = ints
    cut = _model_with(root, "cut")
    w = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(w[: len(w) // 2])
    models["truncated weights"] = cut

    cases = {name: ["generate", str(wav), "-o", str(root / "out.csv"), "--model", str(m)] for name, m in models.items()}

    one_hz = root / "one_hz.wav"
    _wav_header_rate(wav, one_hz, 1)
    half = root / "half.wav"
    b = wav.read_bytes()
    half.write_bytes(b[: len(b) // 2])
    for name, audio in (("WAV header at 1 Hz", one_hz), ("WAV truncated at half", half)):
        cases[name] = ["generate", str(audio), "-o", str(root / "out.csv"), "--model", str(root / "tiny")]

    values = "\n".join(["4.0"] * 40)
    for i, (name, text) in enumerate((("E4 rate 0.000001", f"0\n0.000001\n{values}\n"),
                                      ("E4 rate 5e-324", f"0\n5e-324\n{values}\n"),
                                      ("EDA of 1.7e308 µS", f"0\n4\n{values}\n1.7e308\n{values}\n"))):
        d = _pair(root, f"eda{i}", wav, text)
        cases[name] = ["train", "--data", str(d), "--out", str(root / f"run_{d.name}"), "--preset", "tiny",
                       "--steps", "1"]

    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(list(cases.items()))], preexec_fn=_cap,
                          capture_output=True, text=True, timeout=600, cwd=root)
    assert proc.returncode == 0, f"the capped driver died (status {proc.returncode}):\n{proc.stderr[-3000:]}"
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    print("seconds per case:", {r["name"]: round(r["seconds"], 2) for r in results})    # pytest -s shows them
    return {r["name"]: r for r in results}


EXPECTED = {   # case -> what the one-line message must name
    "context 1e17 s": "max_layers_per_stack",       # the first field out of range is named
    "context 1e9 s": "context_size_in_seconds",
    "context 1e308 s": "context_size_in_seconds",
    "10**7 residual channels": "residual_channels",
    "10**9 classes": "quantization_bins",
    "range to infinity": "default_eda_range_us",
    "parameters beyond the cap": "GiB allowed here",
    "nested config": "nested too deeply",
    "int weights": "must be floating point",
    "truncated weights": "truncated or corrupt",
    "WAV header at 1 Hz": "1 Hz is outside 1000-384000 Hz",
    "WAV truncated at half": "is truncated",
    "E4 rate 0.000001": "Hz",
    "E4 rate 5e-324": "Hz",
    "EDA of 1.7e308 µS": "1.7e+308",
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_refused_with_one_line_and_status_2(outcomes, case):
    r = outcomes[case]
    assert r["rc"] == 2, f"{case}: status {r['rc']}\n{r['stderr'][-3000:]}"
    lines = r["stderr"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"edanet {'train' if 'EDA' in case or 'E4' in case else 'generate'}"
                                                   f": error: "), r["stderr"]
    assert EXPECTED[case] in lines[0], lines[0]


def test_the_cap_is_what_refuses_the_large_model(tmp_path, monkeypatch):
    # the same config loads where memory allows it: the refusal above is the cap's, not a range's
    monkeypatch.setenv("FASTGEN_MAX_BYTES", str(64 * 2**30))
    cfg = EDANetConfig.from_preset("tiny", quantization_bins=65536, out_channels=512, num_mfccs=20)
    assert 2 * 2**30 < 4 * sum(cfg.parameter_counts.values()) < 12 * 2**30
    monkeypatch.setenv("FASTGEN_MAX_BYTES", str(2 * 2**30))
    with pytest.raises(ValueError, match="GiB allowed here"):
        check_network(EDANetConfig.from_preset("tiny", quantization_bins=65536, out_channels=512, num_mfccs=20))


def test_memory_limit_follows_an_address_space_cap():
    probe = "from fastgen.engine import memory_limit; print(memory_limit('cpu'))"
    capped = subprocess.run([sys.executable, "-c", probe], preexec_fn=_cap, capture_output=True, text=True,
                            check=True, env={"PATH": "/usr/bin:/bin"})
    assert int(capped.stdout) <= CAP_BYTES // 2


@pytest.mark.parametrize("kw, error, match", [
    ({"device": "bogus"}, ValueError, "device must be"),
    ({"device": "meta"}, ValueError, "CPU or a CUDA GPU"),
    ({"dtype": torch.int32}, ValueError, "floating point"),
    ({"dtype": "float32"}, TypeError, "torch floating point dtype"),
])
def test_generate_refuses_bad_device_and_dtype_before_reading(kw, error, match):
    from edanet import generate
    # the audio is never read: the check comes first, so a missing file is not what is reported
    with pytest.raises(error, match=match):
        generate("/nonexistent.wav", model=EDANet(CFG), **kw)


def test_generate_accepts_a_plain_array_after_the_checks():
    from edanet import generate
    audio = np.random.default_rng(0).standard_normal(CFG.audio_sample_rate * 2).astype(np.float32) * 0.1
    eda = generate(audio, CFG.audio_sample_rate, model=EDANet(CFG), device="cpu", seed=0)
    assert np.isfinite(eda.values).all() and eda.values.shape == (1, 2 * CFG.eda_sample_rate)
