"""README.md's marked code blocks: the commands CI runs exactly as README gives them.

Every fenced block in README.md is preceded by a marker line ``<!-- readme: KIND (why) -->``;
``python3 .ci/readme.py KIND`` prints the block of that kind (which must be unique), so a change
to README is what CI runs. tests/edanet/test_readme.py uses ``blocks`` to check that every block is
marked and to run the Python and recipe blocks.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

KINDS = ("quickstart", "tests", "python", "synopsis", "example", "recipe")
_BLOCK = re.compile(r"(?:^<!-- readme: (\w+)[^\n]*-->\n)?^```(\w*)\n(.*?)^```$", re.M | re.S)


def blocks(readme: str | Path) -> list[tuple[str | None, str, str]]:
    """(marker kind or None, fence language, body) of every fenced block, in order."""
    text = Path(readme).read_text(encoding="utf-8")
    return [(m.group(1), m.group(2), m.group(3)) for m in _BLOCK.finditer(text)]


def command(readme: str | Path, kind: str) -> str:
    """The one block marked ``kind``, as text; SystemExit naming the problem otherwise."""
    found = [body for k, _, body in blocks(readme) if k == kind]
    if len(found) != 1:
        raise SystemExit(f"README.md has {len(found)} blocks marked '<!-- readme: {kind} -->'; "
                         "CI needs exactly one")
    return found[0].strip()


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in KINDS:
        raise SystemExit(f"usage: python3 .ci/readme.py {{{'|'.join(KINDS)}}}")
    print(command(Path(__file__).resolve().parent.parent / "README.md", sys.argv[1]))
