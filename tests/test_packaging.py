"""pyproject.toml, environment.yml and the repository conventions agree."""
import re
import sys
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _conda_pins():
    pins = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        m = re.match(r"^\s+-\s+([A-Za-z0-9_.\-]+)==([^\s#]+)", line)
        if m:
            pins[m.group(1).lower()] = Version(m.group(2))
    return pins


def test_environment_yml_pins_every_dependency_within_pyproject_bounds():
    proj = _pyproject()["project"]
    reqs = [Requirement(r) for r in proj["dependencies"]]
    for extra in ("lab", "dev"):
        reqs += [Requirement(r) for r in proj["optional-dependencies"][extra]]
    pins = _conda_pins()
    for req in reqs:
        name = req.name.lower()
        assert name in pins, f"{name} is in pyproject.toml but not pinned in environment.yml"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"environment.yml pins {name}=={pins[name]}, outside pyproject's {req.specifier}"


def test_environment_yml_has_nothing_pyproject_lacks():
    proj = _pyproject()["project"]
    names = {Requirement(r).name.lower() for r in proj["dependencies"]}
    for extra in proj["optional-dependencies"].values():
        names |= {Requirement(r).name.lower() for r in extra}
    extra_pins = set(_conda_pins()) - names
    assert not extra_pins, f"environment.yml pins packages pyproject.toml does not declare: {extra_pins}"


def test_core_bounds_stay_loose_for_colab():
    """Colab must never reinstall or downgrade torch, torchvision or numpy: only lower bounds, old enough."""
    for r in map(Requirement, _pyproject()["project"]["dependencies"]):
        if r.name in ("torch", "torchvision", "numpy"):
            assert all(s.operator == ">=" for s in r.specifier), f"{r} must only have a lower bound"


def test_torch_load_always_uses_weights_only():
    offenders = []
    for path in list((ROOT / "minimovq").rglob("*.py")) + list((ROOT / "notebooks" / "src").glob("*.py")):
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            call = text[m.start(): text.find(")", m.start()) + 200]
            depth, end = 0, m.end() - 1
            for i, ch in enumerate(text[m.end() - 1:], start=m.end() - 1):
                depth += ch == "("
                depth -= ch == ")"
                if depth == 0:
                    end = i
                    break
            call = text[m.start(): end + 1]
            if "weights_only=True" not in call:
                offenders.append(f"{path.relative_to(ROOT)}: {call[:80]}")
    assert not offenders, "torch.load without weights_only=True:\n" + "\n".join(offenders)


def test_no_side_effects_at_import(capsys):
    import importlib

    for path in sorted((ROOT / "minimovq").rglob("*.py")):
        mod = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        importlib.import_module(mod)
    out = capsys.readouterr()
    assert out.out == "", f"importing minimovq printed: {out.out[:200]}"


def test_readme_instructor_example_runs():
    """The README's "use the modules in your own assignment" block is executed, so it cannot go stale."""
    readme = (ROOT / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "from minimovq" in b]
    assert blocks, "README lost its instructor example"
    scope = {}
    exec(blocks[0], scope)
    assert scope["grids"].shape == (10, 8, 8, 4) and torch.isfinite(scope["loss"])
    assert sum(p.numel() for p in scope["model"].parameters()) == 67_832_495
