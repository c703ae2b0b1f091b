"""The packages' layout, read from their source: imports form no cycle (imports inside functions
counted), no module takes another's underscore name, only ``edanet.generation`` imports
fastgen (and fastgen nothing of edanet), and ``edanet`` keeps few top-level modules beside its
subpackages (one per pipeline stage)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edanet", "fastgen")
#: Extension modules: their names start with an underscore by convention, and importing them is
#: how their package loads its native code.
EXTENSIONS = {"fastgen._C", "fastgen._cuda"}
MAX_TOP_LEVEL_MODULES = 8


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """``(module, names taken from it, line)`` of every import in the file, wherever it stands."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.append((target, [a.name for a in node.names], node.lineno))
    return found


def _edges() -> dict[str, set[str]]:
    """Module -> the modules of the packages it imports (``from pkg import mod`` counts as mod).
    A module's own enclosing packages are left out: Python has initialised them before the
    module runs, so importing from them (``from . import sibling``) closes no cycle."""
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        for target, names, _ in _imports(name, path):
            if target in MODULES and not name.startswith(target + "."):
                edges[name].add(target)
            for n in names:
                if f"{target}.{n}" in MODULES:
                    edges[name].add(f"{target}.{n}")
    return edges


def test_the_layout_is_read_whole():
    assert len(MODULES) > 40 and "edanet.generation.core" in MODULES and "fastgen.engine" in MODULES


def test_no_import_cycle():
    edges, state, cycles = _edges(), {}, []

    def visit(m, stack):
        state[m] = "open"
        for n in sorted(edges[m]):
            if state.get(n) == "open":
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = "done"

    for m in sorted(MODULES):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_underscore_name_is_imported_from_another_module():
    taken = [f"{name}:{line} takes {target}.{n}"
             for name, path in MODULES.items() for target, names, line in _imports(name, path)
             for n in names if n.startswith("_") and f"{target}.{n}" not in EXTENSIONS and not n.startswith("__")]
    assert not taken, "\n".join(taken)


def test_only_edanet_generation_imports_fastgen():
    outside = [f"{name}:{line} imports {target}" for name, path in MODULES.items() if name.startswith("edanet")
               and not name.startswith("edanet.generation")
               for target, _, line in _imports(name, path) if target.split(".")[0] == "fastgen"]
    assert not outside, "\n".join(outside)
    into = [f"{name}:{line} imports {target}" for name, path in MODULES.items() if name.startswith("fastgen")
            for target, _, line in _imports(name, path) if target.split(".")[0] == "edanet"]
    assert not into, "\n".join(into)


def test_edanet_keeps_few_top_level_modules():
    top = sorted(p.name for p in (ROOT / "edanet").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


@pytest.mark.parametrize("planted", ["cycle", "underscore", "fastgen"])
def test_the_checks_can_fail(planted, monkeypatch, tmp_path):
    """Each check, run on a copy of the layout with one violation planted, fails."""
    victim = "edanet.signals.quantize"
    source = MODULES[victim].read_text()
    line = {"cycle": "from ..generation import core\n", "underscore": "from ..features.audio import _CHUNK\n",
            "fastgen": "import fastgen\n"}[planted]
    planted_file = tmp_path / "quantize.py"
    planted_file.write_text(line + source)
    monkeypatch.setitem(MODULES, victim, planted_file)
    check = {"cycle": test_no_import_cycle, "underscore": test_no_underscore_name_is_imported_from_another_module,
             "fastgen": test_only_edanet_generation_imports_fastgen}[planted]
    with pytest.raises(AssertionError):
        check()
