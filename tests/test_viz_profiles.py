"""Profiles, plotting helpers and the widget fallback (no widget frontend in CI)."""
import matplotlib

matplotlib.use("Agg")
import torch

from minimovq import viz
from minimovq.profiles import get_profile
from minimovq.train import History


def test_profile_from_env(monkeypatch):
    monkeypatch.setenv("MINIMOVQ_PROFILE", "quick")
    P = get_profile()
    assert P.name == "quick" and P.is_quick and P.pick(quick=1, cpu=2, gpu=3) == 1
    assert P.device.type == "cpu" and not P.amp
    monkeypatch.setenv("MINIMOVQ_PROFILE", "CPU ")
    assert get_profile().name == "cpu"
    assert "profile=cpu" in get_profile().describe()


def test_default_profile_follows_hardware(monkeypatch):
    monkeypatch.delenv("MINIMOVQ_PROFILE", raising=False)
    assert get_profile().name == ("gpu" if torch.cuda.is_available() else "cpu")


def test_workers_are_zero_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert get_profile("quick").num_workers == 0


def test_grids_and_plots_render():
    x = torch.rand(10, 3, 8, 8) * 2 - 1
    g = viz.make_grid(x, nrow=4)
    assert g.shape == (3, 3 * 10 + 2, 4 * 10 + 2)
    viz.show_grid(x, nrow=5, title="t")
    viz.compare_grid({"a": x, "b": x}, n=4)
    viz.zoom_crops({"a": x, "b": x}, box=(0, 0, 4))
    h = History({"loss": [3.0, 2.0, 1.0]})
    h.plot(smooth=2)
    assert h.last("loss", 2) == 1.5


def test_interactive_degrades_without_a_frontend(capsys):
    calls = []
    out = viz.interactive(lambda a, b: calls.append((a, b)) or "shown", a=(0, 10, 1, 3), b=(-1.0, 1.0, 0.5, 0.5))
    assert calls == [(3, 0.5)] and out == "shown"
    assert "not available" in capsys.readouterr().out
