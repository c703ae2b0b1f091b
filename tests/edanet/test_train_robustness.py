"""Training runs survive what users and machines do to them: a second run into the same folder,
kills (stale lock, stale temporary files, log rows after the last checkpoint), resuming with
fewer steps, damaged checkpoints, pruning, and a full disk.

Tiny runs (the tiny preset, a few steps) on three short synthetic pairs, in this process where
possible; the full-disk test runs the CLI in a child process with a file-size limit.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import resource
import signal
import subprocess
import sys
import warnings

import pytest
import torch
from safetensors import SafetensorError

from edanet.cli import main as cli_main
from edanet.config import EDANetConfig
from edanet.io import atomic_write, remove_temp_files_of
from edanet.synth import SynthConfig, write_dataset
from edanet.training import TRAIN_PRESETS, RunLock, TrainConfig, train

TINY = EDANetConfig.from_preset("tiny")
CLI = ["-q", "train", "--preset", "tiny", "--batch-size", "2", "--crop-steps", "8", "--device", "cpu"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("pairs")
    write_dataset(d, 3, SynthConfig(seconds=20, audio_sample_rate=8000), seed=0, progress=False)
    return d


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tcfg(**kw) -> TrainConfig:
    return dataclasses.replace(TRAIN_PRESETS["tiny"], **{"batch_size": 2, "val_every": 2, "ckpt_every": 2, **kw})


def run_train(data, out, resume=False, **kw) -> dict:
    return train(data, out, TINY, tcfg(**kw), resume=resume, device="cpu", progress=False)


def ckpt_names(run):
    return sorted(p.name for p in (run / "checkpoints").iterdir())


def log_steps(run):
    return [int(line.split(",")[0]) for line in (run / "log.csv").read_text().splitlines()[1:]]


# -- one run per folder ---------------------------------------------------------------------------
def test_a_second_run_into_a_held_folder_is_refused_at_once(data, tmp_path, capsys):
    out = tmp_path / "run"
    with RunLock(out):
        held = (out / ".lock").read_text()
        assert json.loads(held)["pid"] == os.getpid()
        # refused before anything is read: the data folder does not even exist
        with pytest.raises(FileExistsError, match=rf"{out} is in use by another training run \(pid {os.getpid()} "
                                                  r"on host .*, started .*\); wait for it to finish"):
            train(tmp_path / "no_such_data", out, TINY, tcfg(steps=2), device="cpu", progress=False)
        rc = cli_main(CLI + ["--data", str(data), "--out", str(out), "--steps", "2"])
        err = capsys.readouterr().err
        assert rc == 2 and "is in use by another training run" in err and len(err.strip().splitlines()) == 1
        assert (out / ".lock").read_text() == held              # the holder's lock is untouched
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
    assert not out.exists()     # the lock created the folder; released, it leaves nothing behind


def test_the_lock_is_held_during_the_run_and_released_after(data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    seen = set()
    real = os.replace

    def spy(src, dst, *a, **k):     # at every file the run writes: is the folder locked?
        try:
            RunLock(out).acquire().release()
            seen.add("free")
        except FileExistsError:
            seen.add("held")
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", spy)
    run_train(data, out, steps=2)
    monkeypatch.undo()
    assert seen == {"held"}
    assert not (out / ".lock").exists()
    run_train(data, out, resume=True, steps=4)                  # the next run gets it
    assert json.loads((out / "latest.json").read_text())["step"] == 4


def test_a_killed_runs_lock_and_temporary_files_are_taken_over(data, tmp_path):
    out = tmp_path / "run"
    run_train(data, out, steps=2)
    # what kill -9 leaves: a lock file naming a dead process (the OS dropped its flock) and
    # temporary files of interrupted atomic writes, in the run folder and a checkpoint
    (out / ".lock").write_text(json.dumps({"pid": 999999, "host": "gone-host", "started": "2020-01-01"}))
    stale = [out / ".model.safetensors.k1ll3d_x.tmp.safetensors", out / ".log.csv.abcd_123.tmp.csv",
             out / "checkpoints" / "step_00000002" / ".state.json.zz9zz9zz.tmp.json"]
    for p in stale:
        p.write_text("half")
    keep = [out / "notes.tmp", out / ".hidden", out / ".x.short.tmp"]   # not names atomic writes use
    for p in keep:
        p.write_text("mine")
    with pytest.warns(RuntimeWarning, match=r"no longer runs left its lock \(pid 999999 on host gone-host"):
        run_train(data, out, resume=True, steps=4)
    assert not any(p.exists() for p in stale)
    assert all(p.read_text() == "mine" for p in keep)
    assert not (out / ".lock").exists()


def test_remove_temp_files_of_only_removes_those_destinations_leftovers(tmp_path):
    (tmp_path / "a").mkdir()
    leftovers = [tmp_path / ".x.json.abcdefgh.tmp.json", tmp_path / "a" / ".m.safetensors.a_b_c_d_.tmp.safetensors"]
    others = [tmp_path / "x.json", tmp_path / ".lock", tmp_path / "a" / ".m.safetensors.ABCDEFGH.tmp.safetensors",
              tmp_path / ".y.json.abcdefgh.tmp.json",                  # another destination's: not ours to remove
              tmp_path / "a" / ".x.json.abcdefgh.tmp.json",            # x.json's name, but in another folder
              tmp_path / ".x.json.abcdefgh.tmp.csv"]                   # not the suffix atomic_path gives x.json
    for p in leftovers + others:
        p.write_text("")
    assert sorted(remove_temp_files_of([tmp_path / "x.json", tmp_path / "a" / "m.safetensors"])) == sorted(leftovers)
    assert all(p.exists() for p in others)


# -- resuming -------------------------------------------------------------------------------------
def test_resume_logs_each_step_once(data, tmp_path):
    out = tmp_path / "run"
    run_train(data, out, steps=3)                   # checkpoints at 2 and 3, log rows 1..3
    # as if killed after logging step 3, before its checkpoint
    (out / "latest.json").write_text(json.dumps({"step": 2, "path": "checkpoints/step_00000002"}))
    for p in (out / "checkpoints" / "step_00000003").iterdir():
        p.unlink()
    (out / "checkpoints" / "step_00000003").rmdir()
    (out / "summary.json").unlink()
    run_train(data, out, resume=True, steps=5)
    assert log_steps(out) == [1, 2, 3, 4, 5]
    assert (out / "log.csv").read_text().startswith("step,lr,loss,grad_norm,val_nll,seconds\n")


@pytest.mark.parametrize("steps", [2, 4])
def test_resume_with_no_steps_left_is_refused_and_keeps_the_summary(data, tmp_path, steps):
    out = tmp_path / "run"
    run_train(data, out, steps=4)
    before = {name: (out / name).read_bytes() for name in ("summary.json", "train.json", "log.csv", "latest.json")}
    with pytest.raises(ValueError, match=rf"already trained 4 steps, and --steps {steps} asks for no more; "
                                         r"pass --steps above 4"):
        run_train(data, out, resume=True, steps=steps)
    assert {name: (out / name).read_bytes() for name in before} == before
    assert json.loads(before["summary.json"])["val_nll"] == json.loads(before["summary.json"])["val_nll"]  # not NaN


def _damaged_run(data, tmp_path):
    out = tmp_path / "run"
    run_train(data, out, steps=4, ckpt_every=1)
    return out, out / "checkpoints" / "step_00000004"


@pytest.mark.parametrize("victim", ["model.safetensors", "state.safetensors"])
def test_a_truncated_checkpoint_names_the_earlier_ones(data, tmp_path, victim):
    out, ck = _damaged_run(data, tmp_path)
    blob = (ck / victim).read_bytes()
    (ck / victim).write_bytes(blob[:len(blob) // 2])
    with pytest.raises(ValueError) as e:
        run_train(data, out, resume=True, steps=6)
    msg = str(e.value)
    assert str(ck / victim) in msg
    assert "earlier checkpoints: step_00000001, step_00000002, step_00000003" in msg
    assert '{"step": 3, "path": "checkpoints/step_00000003"}' in msg
    # following the advice resumes from the earlier checkpoint
    (out / "latest.json").write_text('{"step": 3, "path": "checkpoints/step_00000003"}')
    assert run_train(data, out, resume=True, steps=6)["steps"] == 6


@pytest.mark.parametrize("text,why", [("{broken", "Expecting property name"), ("[1, 2]", "not a JSON object"),
                                      ('{"step": 4}', "no 'param_groups' entry")])
def test_a_corrupt_state_json_is_named(data, tmp_path, text, why):
    out, ck = _damaged_run(data, tmp_path)
    (ck / "state.json").write_text(text)
    with pytest.raises(ValueError, match=r"earlier checkpoints: step_00000001") as e:
        run_train(data, out, resume=True, steps=6)
    assert f"{ck / 'state.json'} is damaged or missing" in str(e.value) and why in str(e.value)


def test_no_earlier_checkpoint_is_said(data, tmp_path):
    out = tmp_path / "run"
    run_train(data, out, steps=2)
    (out / "checkpoints" / "step_00000002" / "state.json").write_text("")
    with pytest.raises(ValueError, match="no earlier complete checkpoint exists in this run"):
        run_train(data, out, resume=True, steps=4)


# -- pruning --------------------------------------------------------------------------------------
@pytest.mark.parametrize("keep,left", [(1, [5]), (2, [4, 5]), (None, [1, 2, 3, 4, 5])])
def test_keep_checkpoints_prunes_the_older_ones(data, tmp_path, keep, left):
    out = tmp_path / "run"
    run_train(data, out, steps=5, ckpt_every=1, keep_checkpoints=keep)
    assert ckpt_names(out) == [f"step_{s:08d}" for s in left]
    assert json.loads((out / "latest.json").read_text())["step"] == 5


def test_keep_checkpoints_from_the_cli_and_on_resume(data, tmp_path, capsys):
    out = tmp_path / "run"
    args = CLI + ["--data", str(data), "--out", str(out), "--ckpt-every", "1"]
    assert cli_main(args + ["--steps", "3", "--keep-checkpoints", "2"]) == 0, capsys.readouterr().err
    assert json.loads((out / "train.json").read_text())["keep_checkpoints"] == 2
    assert ckpt_names(out) == ["step_00000002", "step_00000003"]
    # a resumed run may keep fewer (the weights do not depend on it)
    assert cli_main(args + ["--steps", "5", "--resume", "--keep-checkpoints", "1"]) == 0, capsys.readouterr().err
    assert ckpt_names(out) == ["step_00000005"]
    capsys.readouterr()
    assert cli_main(args + ["--steps", "3", "--keep-checkpoints", "0"]) == 2
    assert "keep_checkpoints must be a positive int" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_keep_checkpoints_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match="keep_checkpoints must be a positive int"):
        TrainConfig(keep_checkpoints=bad)


# -- a full disk ----------------------------------------------------------------------------------
def test_a_failed_safetensors_write_is_an_oserror_naming_the_file(tmp_path):
    target = tmp_path / "model.safetensors"

    def full_disk(tmp):
        tmp.write_bytes(b"partial")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    with pytest.raises(OSError, match=rf"cannot write {target}: No space left on device") as e:
        atomic_write(target, full_disk)
    assert e.value.errno == 28
    assert list(tmp_path.iterdir()) == []            # neither the file nor its temporary copy
    with pytest.raises(SafetensorError, match="header"):          # other errors stay as they are
        atomic_write(target, lambda tmp: (_ for _ in ()).throw(SafetensorError("bad header")))


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000))


def test_a_run_that_cannot_write_its_checkpoint_stops_with_one_line(data, tmp_path):
    # no file may exceed 30 kB: the checkpoint's tensors (weights and optimizer state) cannot all
    # be saved, as on a full disk
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "edanet.cli"] + CLI + ["--data", str(data), "--out", str(out), "--steps", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, preexec_fn=_limit_file_size,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "SafetensorError" not in r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("edanet train: error")]
    assert len(lines) == 1, r.stderr[-3000:]
    assert re.search(rf"cannot write {out}/checkpoints/step_00000002/\w+\.safetensors: File too large", lines[0])
    leftovers = [p.name for p in out.rglob(".*")]
    assert leftovers == [], leftovers               # no temporary files, and the lock released
    assert not (out / "latest.json").exists()        # no checkpoint claims to be complete
    with warnings.catch_warnings():
        warnings.simplefilter("error")               # a clean release: no stale lock to take over
        RunLock(out).acquire().release()
