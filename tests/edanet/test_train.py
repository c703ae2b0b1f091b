"""Training end to end on tiny synthetic data: learning, exact resume after a real kill, DDP."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from edanet import EDANetConfig, load_model
from edanet.training.data import find_pairs
from edanet.signals import load_eda
from edanet.cli import main as cli_main
from edanet.synth import SynthConfig, write_dataset

TRAIN = [sys.executable, "-m", "edanet.cli", "-q", "train", "--preset", "tiny", "--batch-size", "8",
         "--crop-steps", "8", "--val-every", "5", "--seed", "3", "--device", "cpu"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("pairs")
    write_dataset(d, 6, SynthConfig(seconds=40.0, audio_sample_rate=8000), seed=11, progress=False)
    return d


def _run(args, **kw):
    return subprocess.run(TRAIN + args, env=ENV, capture_output=True, text=True, timeout=600, **kw)


def test_training_learns_and_writes_a_loadable_run(data, tmp_path):
    r = _run(["--data", str(data), "--out", str(tmp_path / "run"), "--steps", "30", "--ckpt-every", "10"])
    assert r.returncode == 0, r.stderr
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    q = EDANetConfig.from_preset("tiny").quantization_bins
    assert summary["steps"] == 30
    assert summary["val_nll"] < 0.8 * math.log(q)        # well below a uniform guess
    log = (run / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,lr,loss") and len(log) == 31
    assert json.loads((run / "latest.json").read_text())["step"] == 30
    assert json.loads((run / "train.json").read_text())["onset_focus"] == 0.0   # the tiny preset's
    model = load_model(run)
    # the config it was given, with the start level taken from the training recordings
    starts = [load_eda(c, 4).values[0] for _, _, c in find_pairs(data)]
    assert model.config == EDANetConfig.from_preset("tiny", initial_eda_us=model.config.initial_eda_us)
    assert min(starts) <= model.config.initial_eda_us <= max(starts)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [f"step_{s:08d}" for s in (10, 20, 30)]
    # a second run into the same folder without --resume is refused, not overwritten
    again = _run(["--data", str(data), "--out", str(run), "--steps", "30"])
    assert again.returncode == 2 and "--resume" in again.stderr


def test_resume_after_kill_matches_uninterrupted(data, tmp_path):
    steps, every = 60, 5
    # onset-focused crops draw more from the sampler's generator: resume must restore it exactly
    args = ["--data", str(data), "--steps", str(steps), "--ckpt-every", str(every), "--onset-focus", "0.5"]
    full = _run(args + ["--out", str(tmp_path / "full")])
    assert full.returncode == 0, full.stderr

    cut = tmp_path / "cut"
    p = subprocess.Popen(TRAIN + args + ["--out", str(cut)], env=ENV, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (cut / "latest.json").exists():
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed_at = json.loads((cut / "latest.json").read_text())["step"]
    assert killed_at < steps and not (cut / "summary.json").exists(), "the run ended before it was killed"

    resumed = _run(args + ["--out", str(cut), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(cut / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_onset_focus_is_recorded_and_checked(data, tmp_path):
    r = _run(["--data", str(data), "--out", str(tmp_path / "f"), "--steps", "3", "--onset-focus", "0.75"])
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "f" / "train.json").read_text())["onset_focus"] == 0.75
    bad = _run(["--data", str(data), "--out", str(tmp_path / "g"), "--steps", "3", "--onset-focus", "1.5"])
    assert bad.returncode == 2 and "onset_focus" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "g" / "latest.json").exists()


def test_resume_refuses_a_changed_recipe(data, tmp_path):
    run = tmp_path / "r"
    assert _run(["--data", str(data), "--out", str(run), "--steps", "2", "--ckpt-every", "1"]).returncode == 0
    before = (run / "train.json").read_text()
    r = _run(["--data", str(data), "--out", str(run), "--steps", "4", "--resume", "--lr", "0.01"])
    assert r.returncode == 2 and "lr=" in r.stderr and "Traceback" not in r.stderr
    assert (run / "train.json").read_text() == before and json.loads((run / "latest.json").read_text())["step"] == 2
    # more steps (and other logging intervals) are fine
    ok = _run(["--data", str(data), "--out", str(run), "--steps", "4", "--resume", "--val-every", "2"])
    assert ok.returncode == 0, ok.stderr
    assert json.loads((run / "latest.json").read_text())["step"] == 4


def test_resume_without_checkpoint_is_explained(data, tmp_path):
    r = _run(["--data", str(data), "--out", str(tmp_path / "none"), "--steps", "2", "--resume"])
    assert r.returncode == 2 and "no checkpoint" in r.stderr


def test_ddp_two_cpu_processes_keep_replicas_identical(data, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "edanet.cli"] + TRAIN[3:] + ["--data", str(data), "--out", str(tmp_path / "ddp"),
                                               "--steps", "6", "--ckpt-every", "3"]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["replica_max_abs_diff"] == 0.0
    assert json.loads((tmp_path / "ddp" / "latest.json").read_text())["step"] == 6


def test_divergence_stops_without_saving_nan_weights(data, tmp_path):
    run = tmp_path / "nan"
    r = _run(["--data", str(data), "--out", str(run), "--steps", "4", "--ckpt-every", "1", "--lr", "1e30"])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "diverged at step 2" in r.stderr and "--lr" in r.stderr
    assert not (run / "summary.json").exists()
    # the step-1 checkpoint stays the latest and loads (finite); none holds the NaN weights
    assert json.loads((run / "latest.json").read_text())["step"] == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000001"]
    load_model(run)


def _cli_train(capsys, args):
    rc = cli_main(TRAIN[3:] + [str(a) for a in args])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("args,match", [
    (["--set", "foo=1"], "unknown EDANetConfig fields ['foo']; known fields"),
    (["--device", "banana"], "unknown device 'banana'"),
    pytest.param(["--device", "cuda"], "no CUDA device here; use --device cpu",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
    (["--data", "{tmp}/no_such_folder"], "does not exist"),
])
def test_refused_runs_are_one_line_and_leave_no_folder(data, tmp_path, capsys, args, match):
    args = [a.format(tmp=tmp_path) for a in args]
    out = tmp_path / "out"
    rc, err = _cli_train(capsys, ["--data", data, "--out", out, "--steps", "2"] + args)
    assert rc == 2 and match in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("pointer,match", [("{broken", "is not valid JSON"),
                                           ('{"step": 2}', 'no "path" entry')])
def test_resume_with_a_damaged_latest_json_names_it(data, tmp_path, capsys, pointer, match):
    run = tmp_path / "r"
    run.mkdir()
    (run / "latest.json").write_text(pointer)
    rc, err = _cli_train(capsys, ["--data", data, "--out", run, "--steps", "2", "--resume"])
    assert rc == 2 and match in err and str(run / "latest.json") in err
    assert sorted(p.name for p in run.iterdir()) == ["latest.json"]     # nothing else written
