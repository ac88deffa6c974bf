"""Every exercise check of every lesson: the reference passes, and an unfinished stub falls back to it.

The checks are discovered from ``minimovq.checks.<lesson>`` (anything ``@exercise`` made), so a new exercise is
covered here without another copy of these tests; each ``test_checks_<lesson>.py`` keeps only what is specific to
its exercises (the wrong versions each check must reject).
"""
import importlib

import pytest
import torch.nn as nn

LESSONS = ("vae", "vqvae", "vqgan", "movq", "maskgit")
CHECKS = [obj for lesson in LESSONS for obj in vars(importlib.import_module(f"minimovq.checks.{lesson}")).values()
          if callable(obj) and hasattr(obj, "exercise_number")]


def test_every_lesson_has_checks():
    numbers = {c.exercise_number.split(".")[0] for c in CHECKS}
    assert numbers == {"1", "2", "3", "4", "5"} and len(CHECKS) >= 15


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: f"{c.exercise_number}-{c.__name__}")
def test_reference_passes(check, capsys):
    assert check(check.reference, strict=True) is check.reference
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: f"{c.exercise_number}-{c.__name__}")
def test_stub_is_reported_not_implemented_and_falls_back(check, capsys):
    def stub(*args, **kwargs):
        raise NotImplementedError(f"Exercise {check.exercise_number}: todo")

    if isinstance(check.reference, type):  # a class exercise: the student notebook's stub is an unfinished Module
        stub = type("Stub", (nn.Module,), {"__init__": stub})

    assert check(stub) is check.reference
    assert "not implemented" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="not implemented"):
        check(stub, strict=True)
