"""Check the files README's quick start wrote: the EDA CSV parses and the PNG opens.

python .ci/check_quickstart.py AUDIO CSV PNG, run with the quick start's own environment (it has
soundfile, numpy and, through matplotlib, Pillow). The CSV is Empatica E4's form (start time,
sample rate, then one µS value a row) and must hold one value per whole EDA step of AUDIO.
"""
import math
import sys

import numpy as np
import soundfile as sf
from PIL import Image


def main(audio: str, csv_path: str, png_path: str) -> None:
    with open(csv_path, encoding="utf-8") as f:
        rows = [line.strip() for line in f if line.strip()]
    start, rate = float(rows[0]), float(rows[1])
    values = np.array([float(r) for r in rows[2:]])
    expected = math.floor(sf.info(audio).duration * rate)
    assert rate == 4.0, f"{csv_path}: sample rate {rate}, expected 4 Hz"
    assert math.isfinite(start), f"{csv_path}: start time {start}"
    assert values.size == expected, f"{csv_path}: {values.size} values, expected {expected}"
    assert np.all(np.isfinite(values)) and np.all((values > 0) & (values < 100)), \
        f"{csv_path}: values outside 0-100 µS: {values.min()}..{values.max()}"
    with Image.open(png_path) as im:
        im.verify()                               # a truncated or corrupt PNG raises here
    with Image.open(png_path) as im:
        assert im.format == "PNG" and min(im.size) >= 100, f"{png_path}: {im.format} {im.size}"
        im.load()
    print(f"quick start outputs: {values.size} values at {rate:g} Hz "
          f"({values.min():.2f}-{values.max():.2f} µS), a {im.size[0]}x{im.size[1]} PNG")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit("usage: python .ci/check_quickstart.py AUDIO CSV PNG")
    main(*sys.argv[1:])
