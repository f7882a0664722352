"""The house rule: imports point one way (docs/development.md, "Layers").

Every import in `cryptolab/` (module level or inside a function) is read from the source.
A package may import itself and the layers below it, never a layer above or a neighbour
in its own layer; inside a package, modules form no import cycle. `make lint` runs this.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "cryptolab"

LAYERS: list[set[str]] = [
    {
        "errors",
        "config",
        "durations",
        "model",
        "aio",
        "book",
        "markets",
    },  # the kernel: no I/O of the product's own (book: the pure order book)
    {"binance", "storage"},  # the edges: Binance's wire and REST; PostgreSQL, journal, Parquet files
    {"exchange", "history"},  # the local exchange; the past from dumps + REST into storage
    {"capture"},  # live capture (joins history)
    {"analysis"},  # answers from storage
    {"archive"},  # the archive job: verified drops, keeps the quality report (analysis)
    {"notebook"},  # what notebooks import
    {"report"},  # papermill reports of the notebooks
    {"cli"},  # one module per command; nothing imports it
]
ENTRY = {"__init__", "__main__"}  # the package's lazy re-exports and `python -m cryptolab`


def _module(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of the cryptolab modules (or packages) `path` imports."""
    mod = _module(path)
    base = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                root = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                root = node.module or ""
            if root == "cryptolab" or root.startswith("cryptolab."):
                names = [f"{root}.{a.name}" for a in node.names]
                out.update(
                    n
                    if (PKG.parent / n.replace(".", "/")).with_suffix(".py").exists()
                    or (PKG.parent / n.replace(".", "/")).is_dir()
                    else root
                    for n in names
                )
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("cryptolab."))
    return out


def _graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p) for p in PKG.rglob("*.py")}


def _top(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(top: str) -> int:
    return next(i for i, group in enumerate(LAYERS) if top in group)


def test_every_package_has_a_layer() -> None:
    tops = {_top(m) for m in _graph()} - ENTRY
    assert tops <= set().union(*LAYERS), f"add {sorted(tops - set().union(*LAYERS))} to LAYERS (and the docs)"


def test_imports_point_down_never_up_or_sideways() -> None:
    wrong = []
    for mod, targets in _graph().items():
        top = _top(mod)
        if top in ENTRY:
            continue
        for t in targets:
            other = _top(t)
            if other == top or other == "__init__" and t == "cryptolab":
                continue
            if other in ENTRY or _layer(other) >= _layer(top) and not (_layer(top) == 0 == _layer(other)):
                wrong.append(f"{mod} imports {t}")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle_between_modules() -> None:
    graph = _graph()
    edges: dict[str, set[str]] = defaultdict(set)
    for mod, targets in graph.items():
        edges[mod] |= {t for t in targets if t in graph and t != mod}
    cycles, state = [], dict.fromkeys(graph, 0)

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(edges[m]):
            if state[n] == 1:
                cycles.append(" -> ".join([*path[path.index(n) :], n]))
            elif state[n] == 0:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(graph):
        if state[m] == 0:
            visit(m, [m])
    # a package importing its own submodules (re-exports) is not a cycle worth naming
    real = [
        c
        for c in cycles
        if not any(
            c.split(" -> ")[i + 1].startswith(c.split(" -> ")[i] + ".")
            for i in range(len(c.split(" -> ")) - 1)
        )
    ]
    assert not real, "import cycles:\n" + "\n".join(real)
