"""Light installs: generating needs neither triton, matplotlib, fastavro nor neurokit2; what does
need one says which extra installs it (through the CLI: one line, exit 2)."""
import shutil
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edanet.synth import SynthConfig, write_dataset

ROOT = Path(__file__).resolve().parents[2]
OPTIONAL = ("triton", "matplotlib", "fastavro", "neurokit2")

# Runs in a fresh process where the optional packages cannot be imported (as on a machine that
# installed only `pip install edanet`), then prints one JSON object of outcomes.
SCRIPT = """
import contextlib, io, json, sys
for name in {optional!r}:
    sys.modules[name] = None          # "import name" raises ModuleNotFoundError
import fastgen
from edanet.cli import main
data, model, out = sys.argv[1:4]
res = {{"available": fastgen.available("cpu")}}
try:
    spec = fastgen.NetworkSpec(in_channels=1, num_features=2, frames_per_step=1, residual_channels=4,
                               hidden_channels=4, skip_channels=4, out_channels=4, num_classes=4, cond_classes=5,
                               cond_channels=2, dilations=(1,), start_class=4)
    fastgen.create("triton", spec, fastgen.random_weights(spec))
except fastgen.BackendUnavailable as e:
    res["triton"] = str(e)
for key, argv in {{
    "generate": ["generate", data + "/synth_00000.wav", "-o", out + "/a.csv", "--model", model],
    "plot": ["generate", data + "/synth_00000.wav", "-o", out + "/b.csv", "--plot", out + "/b.png", "--model", model],
    "evaluate": ["evaluate", "--data", data, "--model", model, "--out", out + "/rep", "--num-samples", "1",
                 "--seeds", "1", "--redraws", "1"],
}}.items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["-q", *argv])
    res[key] = [rc, err.getvalue()]
print(json.dumps(res))
""".format(optional=OPTIONAL)


def test_core_dependencies_leave_out_the_optional_ones():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(meta["dependencies"])
    for name in OPTIONAL:
        assert name not in core, f"{name} is a core dependency"
    extras = meta["optional-dependencies"]
    assert any("matplotlib" in r for r in extras["plot"]) and any("matplotlib" in r for r in extras["eval"])
    assert any("triton" in r for r in extras["gpu"]) and any("fastavro" in r for r in extras["avro"])
    assert {r for k in ("plot", "eval", "gpu", "avro") for r in extras[k]} <= set(extras["all"])
    for name in OPTIONAL:          # the tests use them all
        assert any(name in r for r in extras["test"]), name


@pytest.fixture(scope="module")
def without_extras(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("light")
    write_dataset(root / "data", 1, SynthConfig(seconds=12.0, audio_sample_rate=8000), seed=1, progress=False)
    shutil.copytree(tiny_model_dir, root / "model")
    (root / "out").mkdir()
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(root / "data"), str(root / "model"), str(root / "out")],
                       capture_output=True, text=True, timeout=600, cwd=root)
    assert r.returncode == 0, r.stderr[-4000:]
    return root, json.loads(r.stdout.strip().splitlines()[-1])


def test_generating_works_without_the_extras(without_extras):
    root, res = without_extras
    assert res["generate"][0] == 0, res["generate"][1]
    assert (root / "out" / "a.csv").read_text().count("\n") > 40       # 12 s at 4 Hz, after the E4 header
    assert "triton" not in res["available"] and "triton_persistent" not in res["available"]
    assert "cpu" in res["available"] and "torch" in res["available"]
    assert "pip install 'edanet[gpu]'" in res["triton"]


@pytest.mark.parametrize("case, extra", [("plot", "plot"), ("evaluate", "eval")])
def test_what_needs_an_extra_names_it_in_one_line(without_extras, case, extra):
    root, res = without_extras
    rc, err = res[case]
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "matplotlib" in err and f"pip install 'edanet[{extra}]'" in err, err
    assert not (root / "out" / "b.csv").exists()        # refused before generating
    assert not list((root / "out").glob("rep*"))


def test_help_imports_neither_torch_nor_librosa():
    # `edanet --help` (and a mistyped command) must answer at once: nothing heavy is imported
    probe = ("import sys\nfrom edanet.cli import main\nfor argv in (['--help'], ['generate', '--help'], ['nope']):\n"
             "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
             "print(sorted(m for m in ('torch', 'librosa', 'numpy', 'fastgen', 'matplotlib', 'triton') "
             "if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout
    assert "usage: edanet" in r.stdout + r.stderr


def test_public_names_survive_importing_their_modules():
    import edanet
    import edanet.generation   # noqa: F401  (a submodule import must not shadow edanet.generate)
    assert callable(edanet.generate) and edanet.generate.__module__ == "edanet.generation.core"
    assert set(edanet.__all__) <= set(dir(edanet))
    with pytest.raises(AttributeError):
        edanet.no_such_name
