"""The charts' theme follows JupyterLab's (its settings file) unless CRYPTOLAB_THEME says otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryptolab.notebook.charts import LiveChart


def test_charts_follow_jupyterlabs_dark_theme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptolab.notebook import plots

    monkeypatch.delenv("CRYPTOLAB_THEME", raising=False)
    monkeypatch.setenv("JUPYTERLAB_SETTINGS_DIR", str(tmp_path))
    assert not plots.dark_theme()  # no settings: light
    f = tmp_path / "@jupyterlab" / "apputils-extension" / "themes.jupyterlab-settings"
    f.parent.mkdir(parents=True)
    f.write_text('{\n  // the Lab writes comments too\n  "theme": "JupyterLab Dark"\n}')
    assert plots.dark_theme()
    chart = LiveChart(
        lambda fig: fig.add_subplot().plot([0, 1], [0, 1]), width=3, height=2, interactive=False
    )
    assert chart.dark
    chart.render()
    assert chart.figure.get_facecolor()[:3] < (0.2, 0.2, 0.2)  # a dark page gets a dark chart
    monkeypatch.setenv("CRYPTOLAB_THEME", "light")
    assert not plots.dark_theme()
