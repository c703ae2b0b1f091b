"""README.md's code blocks: every one is marked, the Python ones run, the recipe runs scaled down.

The quick start and the test command are run by .ci/run exactly as written, each in a fresh
virtual environment; here every other block is either run (on made-up files) or marked as a
synopsis or an example that needs the reader's data.
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edanet.io import write_eda_csv


ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("ci_readme", ROOT / ".ci" / "readme.py")
ci_readme = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ci_readme)
BLOCKS = ci_readme.blocks(ROOT / "README.md")


def test_every_block_is_marked_and_ci_finds_its_two_commands():
    kinds = [k for k, _, _ in BLOCKS]
    assert None not in kinds, [body[:60] for k, _, body in BLOCKS if k is None]
    assert set(kinds) <= set(ci_readme.KINDS)
    assert ci_readme.command(ROOT / "README.md", "quickstart").count("edanet generate") == 1
    assert ci_readme.command(ROOT / "README.md", "tests").endswith("python -m pytest -q")
    # the quick start's plot needs matplotlib: the install it runs must bring the [plot] extra
    quick = ci_readme.command(ROOT / "README.md", "quickstart")
    assert "--plot" not in quick or re.search(r"-e \"?\.\[(plot|all)[\],]", quick), quick


def test_command_refuses_a_missing_or_repeated_marker(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("<!-- readme: tests (x) -->\n```bash\nA\n```\n<!-- readme: tests -->\n```bash\nB\n```\n")
    with pytest.raises(SystemExit, match="2 blocks marked"):
        ci_readme.command(readme, "tests")
    with pytest.raises(SystemExit, match="0 blocks marked"):
        ci_readme.command(readme, "quickstart")


def _noise(seconds, rate, seed):
    rng = np.random.default_rng(seed)
    a = 0.01 * rng.standard_normal(int(seconds * rate))
    a[int(rate):int(1.3 * rate)] += 0.4 * rng.standard_normal(int(0.3 * rate))   # one loud burst
    return a.astype(np.float32)


def test_python_blocks_run_on_made_up_files(tmp_path, monkeypatch, tiny_model_dir):
    sf.write(tmp_path / "clip.wav", _noise(6.0, 22050, 0), 22050)
    sf.write(tmp_path / "clip16k.wav", _noise(3.0, 16000, 1), 16000)
    sf.write(tmp_path / "more.wav", _noise(2.0, 16000, 2), 16000)
    (tmp_path / "clips").mkdir()
    for i in range(2):
        sf.write(tmp_path / "clips" / f"c{i}.wav", _noise(2.5 + i, 16000, 3 + i), 16000)
    shutil.copytree(tiny_model_dir, tmp_path / "runs" / "mine")
    write_eda_csv(tmp_path / "first_minutes.csv", 3.0 + 0.01 * np.arange(12), 4.0)     # 3 s recorded
    monkeypatch.chdir(tmp_path)
    python = [body for k, _, body in BLOCKS if k == "python"]
    assert len(python) == 2
    ns: dict = {}
    for body in python:
        exec(compile(body, "README.md", "exec"), ns)            # noqa: S102 - README's own code
    # the last loop's last clip is more.wav (2 s: 8 steps at 4 Hz); the stream gave one sample
    assert ns["clip"].rel == "more.wav" and ns["res"].values.shape == (1, 8)
    assert ns["tail"].ndim == 2 and ns["tail"].shape[0] == 1


def _scaled_down(recipe: str) -> str:
    """The recipe with every size cut to seconds of work: 2 cohorts of 2 clips of 8 s, 2 steps, 2 samples."""
    s = re.sub(r"\$\(seq 0 \d+\)", "$(seq 0 1)", recipe)                   # two cohorts
    s = re.sub(r"--pairs \d+", "--pairs 2", s)
    s = re.sub(r"--seconds \d+", "--seconds 8", s)
    s = re.sub(r"--steps \d+", "--steps 2", s)
    s = re.sub(r"(edanet train (?:(?!--steps)[^\n])*?)(\s*(?:#[^\n]*)?)$", r"\1 --steps 2\2", s, flags=re.M)
    s = re.sub(r"--num-samples \d+", "--num-samples 2", s)
    return re.sub(r"--seeds \d+", "--seeds 1", s)


@pytest.mark.slow
def test_recipe_runs_scaled_down(tmp_path):
    recipe = [body for k, _, body in BLOCKS if k == "recipe"]
    assert len(recipe) == 1
    script = _scaled_down(recipe[0])
    assert script.count("--steps 2") == script.count("edanet train") == 1 and "seq 0 1" in script, script
    (tmp_path / "edanet" / "assets" / "default").mkdir(parents=True)   # where the recipe copies to
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(list((tmp_path / "data" / "train").glob("*.wav"))) == 4           # both cohorts linked
    assert len(list((tmp_path / "data" / "train").glob("*.csv"))) == 4 * 5       # 5 people each
    assert (tmp_path / "edanet" / "assets" / "default" / "model.safetensors").stat().st_size > 0
    assert "SCR F1" in (tmp_path / "report" / "single.md").read_text()
    assert "non-responder fraction" in (tmp_path / "report" / "heldout_population.md").read_text()
