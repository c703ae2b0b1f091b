"""The edanet command line end to end on tiny data: synth, generate (CSV + plot), evaluate, errors."""
import shutil
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from edanet.signals import read_eda_csv

CLI = [sys.executable, "-m", "edanet.cli", "-q"]


def _cli(*args):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("cli")
    r = _cli("synth", "--out", root / "data", "--pairs", 2, "--seconds", 24, "--seed", 5, "--audio-rate", 8000)
    assert r.returncode == 0, r.stderr
    shutil.copytree(tiny_model_dir, root / "model")
    return root


def test_synth_writes_pairs(workspace):
    names = sorted(p.name for p in (workspace / "data").iterdir())
    for stem in ("synth_00000", "synth_00001"):
        assert {f"{stem}.wav", f"{stem}.csv", f"{stem}.json"} <= set(names)
    assert "dataset.json" in names
    rec = read_eda_csv(workspace / "data" / "synth_00000.csv")
    assert rec.sample_rate == 4 and len(rec.values) == 96


def test_generate_csv_and_plot(workspace, tmp_path):
    wav = workspace / "data" / "synth_00000.wav"
    r = _cli("generate", wav, "-o", tmp_path / "out.csv", "--plot", tmp_path / "out.png", "--model",
             workspace / "model", "--seed", 3, "--backend", "torch")
    assert r.returncode == 0, r.stderr
    rec = read_eda_csv(tmp_path / "out.csv")
    assert rec.sample_rate == 4 and len(rec.values) == 96 and (rec.values >= 0).all() and rec.values.std() > 0
    png = (tmp_path / "out.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # several samples, time format: one column per sample, each a recording (no median unless asked)
    r = _cli("generate", wav, "-o", tmp_path / "multi.csv", "--model", workspace / "model", "--num-samples", 3,
             "--format", "time", "--seed", 3, "--backend", "torch")
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "multi.csv").read_text().splitlines()
    assert lines[0] == "time,sample_0,sample_1,sample_2" and len(lines) == 97
    # the same seed reproduces the single-sample run's first column
    single = read_eda_csv(tmp_path / "out.csv").values
    again = np.array([float(l.split(",")[1]) for l in lines[1:]])
    assert np.allclose(single, again, atol=1e-5)


def test_plot_format_follows_the_suffix(workspace, tmp_path):
    wav = workspace / "data" / "synth_00000.wav"
    r = _cli("generate", wav, "-o", tmp_path / "o.csv", "--plot", tmp_path / "o.pdf", "--model", workspace / "model",
             "--backend", "torch")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o.pdf").read_bytes()[:5] == b"%PDF-"


def test_output_through_a_symlink_keeps_the_link(workspace, tmp_path):
    wav = workspace / "data" / "synth_00000.wav"
    (tmp_path / "real.csv").write_text("old")
    (tmp_path / "link.csv").symlink_to(tmp_path / "real.csv")
    r = _cli("generate", wav, "-o", tmp_path / "link.csv", "--model", workspace / "model", "--backend", "torch")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "link.csv").is_symlink() and len(read_eda_csv(tmp_path / "real.csv").values) == 96


def test_evaluate_writes_report(workspace, tmp_path):
    r = _cli("evaluate", "--data", workspace / "data", "--model", workspace / "model", "--out", tmp_path / "rep",
             "--num-samples", 2, "--backend", "torch")
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["recordings"] == 2 and rep["scored_recordings"] == 2
    assert 0 < rep["nll_nats_per_step"] < 10
    assert rep["nll_bits_per_step"] == pytest.approx(rep["nll_nats_per_step"] / np.log(2))
    for k in ("f1_model", "f1_audio_agnostic_baseline", "f1_ceiling"):
        assert 0.0 <= rep[k] <= 1.0
    assert "| NLL (nats / step) |" in (tmp_path / "rep.md").read_text()


@pytest.mark.parametrize("args,match", [
    (["generate", "missing.wav", "-o", "x.csv"], "missing.wav"),
    (["generate", "{data}/synth_00000.csv", "-o", "x.csv", "--model", "{model}"], "audio"),
    (["generate", "{data}/synth_00000.wav", "-o", "x.csv", "--model", "{model}", "--backend", "nope"], "unknown backend"),
    (["train", "--data", "{data}/nothing", "--out", "r"], "does not exist"),
    (["train", "--data", "{data}", "--out", "r", "--val-fraction", "1"], "val_fraction must lie in [0, 1)"),
    pytest.param(["generate", "{data}/synth_00000.wav", "-o", "x.csv", "--backend", "cuda"], "no CUDA GPU",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")),
    # where the results go, checked before generating
    (["generate", "{data}/synth_00000.wav", "-o", "{data}/synth_00000.wav"], "is the input audio"),
    (["generate", "{data}/synth_00000.wav", "-o", "x.csv", "--plot", "x.csv"], "its own file name"),
    (["generate", "{data}/synth_00000.wav", "-o", "x.csv", "--plot", "x.plot"], "suffixes"),
    (["generate", "{data}/synth_00000.wav", "-o", "x.csv", "--eda-range", "3", "1"], "lo < hi"),
    (["generate", "{data}/synth_00000.wav", "-o", "x.csv", "--eda-range", "1", "3"], "only to legacy"),
    (["generate", "{data}/synth_00000.wav", "-o", "x.csv", "--initial-eda", "-1"], "initial_eda_us"),
    (["generate", "{data}", "-o", "{data}/synth_00000.csv", "--model", "{model}"], "need an output folder"),
    (["generate", "{data}/synth_00000.wav", "-o", "{data}/synth_00000.csv/x.csv", "--model", "{model}"],
     "cannot write"),                                                # a file where a folder should be
])
def test_user_errors_are_one_line(workspace, tmp_path, monkeypatch, capsys, args, match):
    # in-process (a process per case would spend most of its time importing); an exception
    # that is not a user error escapes main() and fails the test
    from edanet.cli import main
    args = [a.format(data=workspace / "data", model=workspace / "model") for a in args]
    monkeypatch.chdir(tmp_path)
    assert main(["-q", *args]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.csv").exists() and not list(tmp_path.glob(".*tmp*"))
    assert (workspace / "data" / "synth_00000.wav").read_bytes()[:4] == b"RIFF"


def test_the_command_exits_2_on_a_user_error(tmp_path):
    r = subprocess.run(CLI + ["generate", "missing.wav", "-o", "x.csv"], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 2 and "missing.wav" in r.stderr and "Traceback" not in r.stderr


def test_generate_and_stream_with_a_prime(workspace, tmp_path):
    from edanet.io import write_eda_csv
    wav = workspace / "data" / "synth_00000.wav"
    prime = 2.5 + 0.01 * np.arange(40)                     # 10 s recorded at 4 Hz
    write_eda_csv(tmp_path / "prime.csv", prime, 4.0)
    r = _cli("generate", wav, "-o", tmp_path / "p.csv", "--model", workspace / "model", "--seed", 1,
             "--prime", tmp_path / "prime.csv", "--format", "time")
    assert r.returncode == 0, r.stderr
    rows = np.array([[float(x) for x in line.split(",")] for line in (tmp_path / "p.csv").read_text().splitlines()[1:]])
    np.testing.assert_allclose(rows[:40, 1], prime, atol=1e-6)
    assert len(rows) == 96
    assert abs(rows[40, 1] - prime[-1]) <= 1.0 + 1e-6          # continued from the prime's last value
    r = _cli("generate", workspace / "data", "-o", tmp_path / "corpus", "--prime", tmp_path / "prime.csv")
    assert r.returncode == 2 and "one audio file" in r.stderr


def test_version_prints_the_installed_version(capsys):
    from edanet.cli import main
    from importlib.metadata import version
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"edanet {version('edanet')}"
