"""Reference results (make reference): the executed copies match the lessons, and results.json is complete."""
from __future__ import annotations

import json

import nbformat
import pytest

from minimovq import reference
from minimovq.reference import REFERENCE, _solutions, record

LESSONS = _solutions()
KEYS = {"profile", "torch", "date", "seconds", "results"}


def _code(path):
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


@pytest.mark.parametrize("lesson", sorted(LESSONS))
def test_reference_copy_runs_the_current_lesson(lesson):
    """A changed lesson must be re-run: `make reference LESSONS=<lesson>`."""
    copy = REFERENCE / f"{lesson}.ipynb"
    if not copy.exists():
        pytest.skip(f"no reference run of {lesson} yet: `make reference LESSONS={lesson}` and commit it")
    assert _code(copy) == _code(LESSONS[lesson]), (
        f"{copy}'s code differs from {LESSONS[lesson]}: re-run `make reference LESSONS={lesson}` and commit it")
    text = [c.source for c in nbformat.read(copy, as_version=4).cells if c.cell_type != "code"]
    assert text == [c.source for c in nbformat.read(LESSONS[lesson], as_version=4).cells if c.cell_type != "code"], (
        f"{copy}'s text differs from the lesson: `python -m minimovq.reference --sync-text {lesson}` and commit it")
    assert copy.stat().st_size <= 2.5e6, f"{copy} is {copy.stat().st_size / 1e6:.1f} MB: show smaller images"


def _index():
    path = REFERENCE / "results.json"
    if not path.exists():
        pytest.skip("no reference run yet: `make reference`")
    return json.loads(path.read_text())


def test_results_json_has_one_entry_per_executed_copy():
    data = _index()
    assert set(data) == {p.stem for p in REFERENCE.glob("*.ipynb")}, "results.json and the executed copies disagree"
    assert set(data) <= set(LESSONS)
    for lesson, entry in data.items():
        assert set(entry) >= KEYS, (lesson, set(entry))
        assert entry["profile"] == "cpu" and entry["seconds"] > 0 and entry["results"], lesson


def test_record_writes_only_under_make_reference(tmp_path, monkeypatch):
    import torch

    monkeypatch.delenv(reference.ENV, raising=False)
    table = {"vqgan": {"psnr": torch.tensor(17.5)}}
    assert record("ablation", table) is table  # nothing written anywhere
    out = tmp_path / "r.json"
    monkeypatch.setenv(reference.ENV, str(out))
    record("ablation", table)
    record("demo", {"vqgan": 324, "movq": float("nan")})
    assert json.loads(out.read_text()) == {"ablation": {"vqgan": {"psnr": 17.5}}, "demo": {"vqgan": 324, "movq": None}}


def test_readme_shows_the_reference_results():
    data = _index()
    readme = reference.README.read_text()
    assert reference.readme_block(data) in readme, "run `python -m minimovq.reference --readme`"
    for lesson in data:
        assert f"docs/reference/{lesson}.ipynb" in readme


def test_every_lesson_has_a_headline_from_its_own_results():
    from minimovq.headlines import RULES, headline

    data = _index()
    for lesson, entry in data.items():
        assert headline(lesson, entry["results"]), f"{lesson} has no headline"
        if lesson in RULES:
            RULES[lesson](entry["results"])   # the rule reads this run's tables (no silent fallback)


def test_sync_text_copies_markdown_and_refuses_changed_code(tmp_path, monkeypatch):
    lesson = "01_vae"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("new text"), nbformat.v4.new_code_cell("x = 1")])
    src, out = tmp_path / "src.ipynb", tmp_path / "ref"
    nbformat.write(nb, src)
    out.mkdir()
    ran = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("old text"), nbformat.v4.new_code_cell("x = 1")])
    ran.cells[1].outputs = [nbformat.v4.new_output("stream", text="a real output")]
    nbformat.write(ran, out / f"{lesson}.ipynb")
    monkeypatch.setattr(reference, "_solutions", lambda: {lesson: src})
    monkeypatch.setattr(reference, "reference_dir", lambda profile="cpu": out)
    assert reference.sync_text(lesson) and not reference.sync_text(lesson)
    synced = nbformat.read(out / f"{lesson}.ipynb", as_version=4)
    assert synced.cells[0].source == "new text" and synced.cells[1].outputs[0].text == "a real output"
    nb.cells[1].source = "x = 2"
    nbformat.write(nb, src)
    with pytest.raises(ValueError, match="re-run"):
        reference.sync_text(lesson)
