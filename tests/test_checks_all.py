"""Every exercise check of every lesson: the reference passes, an unfinished stub falls back to it, and nothing a
learner's function does stops the notebook (strict=False) — plus the scoreboard built from the results.

The checks are discovered from ``minimovq.checks.<lesson>`` (anything ``@exercise`` made), so a new exercise is
covered here without another copy of these tests; each ``test_checks_<lesson>.py`` keeps only what is specific to
its exercises (the wrong versions each check must reject).
"""
import importlib
import time

import pytest
import torch.nn as nn

from minimovq.checks import _scoreboard, grade_report, scoreboard

LESSONS = ("vae", "vqvae", "vqgan", "movq", "maskgit", "beyond")
CHECKS = [obj for lesson in LESSONS for obj in vars(importlib.import_module(f"minimovq.checks.{lesson}")).values()
          if callable(obj) and hasattr(obj, "exercise_number")]
FUNCTION_CHECKS = [c for c in CHECKS if not isinstance(c.reference, type)]
ids = lambda c: f"{c.exercise_number}-{c.__name__}"  # noqa: E731


def test_every_lesson_has_checks():
    numbers = {c.exercise_number.split(".")[0] for c in CHECKS}
    assert numbers == {"1", "2", "3", "4", "5", "6"} and len(CHECKS) >= 17


@pytest.mark.parametrize("check", CHECKS, ids=ids)
def test_reference_passes(check, capsys):
    assert check(check.reference, strict=True) is check.reference
    assert "✓" in capsys.readouterr().out


def _stub(check):
    def stub(*args, **kwargs):
        raise NotImplementedError(f"Exercise {check.exercise_number}: todo")

    if isinstance(check.reference, type):  # a class exercise: the student notebook's stub is an unfinished Module
        return type("Stub", (nn.Module,), {"__init__": stub})
    return stub


@pytest.mark.parametrize("check", CHECKS, ids=ids)
def test_stub_is_reported_not_implemented_and_falls_back(check, capsys):
    stub = _stub(check)
    assert check(stub).__wrapped__ is check.reference
    assert "not implemented" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="not implemented"):
        check(stub, strict=True)


def _raises_assertion(*args, **kwargs):
    raise AssertionError("my own assert")


def _returns_none(*args, **kwargs):
    pass


def _prints_then_raises(*args, **kwargs):
    for i in range(1000):
        print("debug", i)
    raise ValueError("oops")


def _exits(*args, **kwargs):
    raise SystemExit(3)


@pytest.mark.parametrize("bad, words", [(_raises_assertion, "AssertionError: my own assert"),
                                        (_returns_none, "returned None"),
                                        (_prints_then_raises, "ValueError: oops"),
                                        (_exits, "SystemExit")], ids=lambda x: getattr(x, "__name__", ""))
@pytest.mark.parametrize("check", FUNCTION_CHECKS, ids=ids)
def test_nothing_the_learner_does_stops_the_notebook(check, bad, words, capsys):
    label = f"Exercise {check.exercise_number} ({check.exercise_name}):"
    assert check(bad).__wrapped__ is check.reference
    out = capsys.readouterr().out
    assert label in out and words in out and "reference" in out
    assert out.count("debug") <= 5  # printing is shown briefly, not flooded
    with pytest.raises(AssertionError, match=words.split(":")[0]) as e:
        check(bad, strict=True)
    assert str(e.value).startswith(label)


def test_a_slow_function_hits_the_time_limit(capsys):
    check = FUNCTION_CHECKS[0]

    def slow(*args, **kwargs):
        while True:
            time.sleep(0.01)

    t = time.perf_counter()
    assert check(slow, time_limit=0.5).__wrapped__ is check.reference
    assert time.perf_counter() - t < 5
    assert "did not finish within 0.5 s" in capsys.readouterr().out


def test_scoreboard_and_grade_report(capsys, monkeypatch):
    from minimovq.checks import vae

    monkeypatch.setattr(_scoreboard, "RESULTS", {})
    vae.reparameterize(vae.reparameterize.reference)          # passed
    fallback = vae.kl_divergence(_stub(vae.kl_divergence))     # not implemented
    fallback(*[__import__("torch").zeros(2, 3)] * 2)           # a later cell runs on the reference
    capsys.readouterr()
    rows = scoreboard(1)
    out = capsys.readouterr().out
    status = {r["name"]: r["status"] for r in rows}
    assert status == {"reparameterize": "passed", "kl_divergence": "not implemented", "elbo_loss": "not checked"}
    assert "ran on the reference" in out and "1 of 3 passed" in out
    # grading with the notebook's names: a function redefined after its check is checked again
    ns = {"reparameterize": _returns_none, "kl_divergence": fallback}
    rows = {r["name"]: r for r in grade_report("vae", ns)}
    assert rows["reparameterize"]["status"] == "failed" and "None" in rows["reparameterize"]["message"]
    assert rows["kl_divergence"]["status"] == "not implemented"
