"""`cryptolab.notebook.plots`: the one name notebooks and docs draw with, over theme, axes and panels."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cryptolab.notebook import axes, panels, plots, theme

ROOT = Path(__file__).resolve().parents[2]


def _names_used() -> set[str]:
    """Every `plots.<name>` written in a notebook's code or in the docs."""
    texts = [p.read_text() for p in (ROOT / "docs").glob("*.md")] + [(ROOT / "README.md").read_text()]
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        texts += ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    return {m for t in texts for m in re.findall(r"\bplots\.([A-Za-z_]\w*)", t)} - {"py"}


def test_every_name_notebooks_and_docs_draw_with_is_in_plots() -> None:
    used = _names_used()
    assert {"price_overview", "traffic_overview", "tps_series"} <= used  # the scan finds them
    assert sorted(n for n in used if not hasattr(plots, n)) == []


def test_plots_gathers_each_concept_from_its_own_module() -> None:
    homes = {"UP": theme, "dark_theme": theme, "candles": axes, "to_float": axes, "price_overview": panels}
    for name, module in homes.items():
        assert getattr(plots, name) is getattr(module, name)
    assert set(plots.__all__) == set(theme.__all__) | set(axes.__all__) | set(panels.__all__)
