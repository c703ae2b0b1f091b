"""Check the install from a wheel (.ci/run's wheel step): the EDA CSV that `edanet generate` wrote
from outside the repository, and that the fastgen it used is the wheel's, portable.

python .ci/check_wheel.py AUDIO CSV, run with the wheel's environment, from outside the repository.
The CSV is Empatica E4's form (start time, sample rate, then one µS value a row), one value per
whole EDA step of AUDIO (as .ci/check_quickstart.py checks the quick start's).
"""
import math
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

import fastgen


def main(audio: str, csv_path: str) -> None:
    with open(csv_path, encoding="utf-8") as f:
        rows = [line.strip() for line in f if line.strip()]
    start, rate = float(rows[0]), float(rows[1])
    values = np.array([float(r) for r in rows[2:]])
    expected = math.floor(sf.info(audio).duration * rate)
    assert rate == 4.0 and math.isfinite(start), f"{csv_path}: start {start}, rate {rate}"
    assert values.size == expected, f"{csv_path}: {values.size} values, expected {expected}"
    assert np.all(np.isfinite(values)) and np.all((values > 0) & (values < 100)), \
        f"{csv_path}: values outside 0-100 µS: {values.min()}..{values.max()}"
    pkg = Path(fastgen.__file__).resolve().parent
    assert "site-packages" in pkg.parts, f"fastgen imported from {pkg}, not from the installed wheel"
    cpu = fastgen.build_info()["cpu"]
    assert isinstance(cpu, dict), f"fastgen._C is not in the wheel: {cpu}"
    assert cpu["cpu_arch"] == "portable" and "native" not in cpu["cxx_flags"], cpu
    assert cpu["isa"] in cpu["isa_paths"], cpu
    print(f"wheel install: {values.size} values at {rate:g} Hz ({values.min():.2f}-{values.max():.2f} µS); "
          f"fastgen from {pkg}, kernels {cpu['isa']} of {','.join(cpu['isa_paths'])}, flags {cpu['cxx_flags']}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python .ci/check_wheel.py AUDIO CSV")
    main(*sys.argv[1:])
