"""The registry of check results, and the scoreboard a lesson prints at its end.

Every ``@exercise`` check registers itself in ``EXERCISES`` and records its latest outcome in ``RESULTS``. A check
that fails returns the reference wrapped by ``_fallback``, which notes the cells that then run on it.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import io
import pkgutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


# ---- the registry -----------------------------------------------------------------------------------------
@dataclass
class Result:
    exercise: str
    name: str
    status: str  # "passed" | "failed" | "not implemented"
    message: str
    fallback_cells: list = field(default_factory=list)  # execution counts of cells that ran on the reference


EXERCISES: dict[str, Callable] = {}  # "2.2" -> the check, for every @exercise defined (imported)
RESULTS: dict[str, Result] = {}       # "2.2" -> the latest result of that check in this process


def _cell() -> int | None:
    ip = sys.modules.get("IPython")
    shell = ip.get_ipython() if ip is not None else None
    return getattr(shell, "execution_count", None)


def _note_fallback(number: str) -> None:
    res = RESULTS.get(number)
    if res is not None:
        cell = _cell()
        if cell not in res.fallback_cells:
            res.fallback_cells.append(cell)


def _fallback(reference: Any, number: str) -> Any:
    """The reference, wrapped so that every use is recorded (``__wrapped__`` is the reference itself)."""
    if isinstance(reference, type):
        def __init__(self, *args, **kwargs):
            _note_fallback(number)
            reference.__init__(self, *args, **kwargs)

        wrapped = type(reference.__name__, (reference,), {
            "__init__": __init__, "__module__": reference.__module__, "__qualname__": reference.__qualname__,
            "__doc__": reference.__doc__, "__wrapped__": reference, "_minimovq_fallback": number})
        return wrapped

    @functools.wraps(reference)
    def wrapped(*args, **kwargs):
        _note_fallback(number)
        return reference(*args, **kwargs)

    wrapped._minimovq_fallback = number
    return wrapped


def record(result: Result) -> None:
    RESULTS[result.exercise] = result


# ---- the scoreboard -------------------------------------------------------------------------------------------
def _import_all_checks() -> None:
    for m in pkgutil.iter_modules([str(Path(__file__).parent)]):  # the lessons' check modules, beside this one
        if not m.name.startswith("_"):
            importlib.import_module(f"minimovq.checks.{m.name}")


def lesson_exercises(lesson: int | str) -> list[Callable]:
    """The checks of one lesson (``2``, ``"2"`` or a checks module name like ``"vqvae"``), in number order."""
    prefix = str(lesson)
    if not prefix.isdigit():
        module = importlib.import_module(f"minimovq.checks.{lesson}")
        numbers = {c.exercise_number.split(".")[0] for c in vars(module).values() if hasattr(c, "exercise_number")}
        prefix = min(numbers) if numbers else prefix
    else:
        _import_all_checks()
    prefix = str(int(prefix))
    found = [c for n, c in EXERCISES.items() if n.split(".")[0] == prefix]
    return sorted(found, key=lambda c: tuple(int(p) for p in c.exercise_number.split(".")))


def grade_report(lesson: int | str, namespace: dict | None = None) -> list[dict]:
    """One dict per exercise of ``lesson``: exercise, name, status, message, fallback_cells.

    ``status`` is "passed", "failed", "not implemented" or "not checked" (its check never ran). With the
    notebook's ``namespace``, an exercise whose name is bound to the learner's own function (passed, or redefined
    after its check) is checked again, quietly, so the final definition is what counts.
    """
    rows = []
    for check in lesson_exercises(lesson):
        num, name = check.exercise_number, check.exercise_name
        res = RESULTS.get(num)
        if res is None:
            rows.append(dict(exercise=num, name=name, status="not checked",
                             message="its check never ran (the check cell was not run or was deleted)",
                             fallback_cells=[]))
            continue
        status, message, cells = res.status, res.message, list(res.fallback_cells)
        obj = (namespace or {}).get(name)
        if namespace is not None and obj is not None and not hasattr(obj, "_minimovq_fallback") \
                and obj is not check.reference:
            with contextlib.redirect_stdout(io.StringIO()):
                status, message, _ = check.evaluate(obj)
        rows.append(dict(exercise=num, name=name, status=status, message=message, fallback_cells=cells))
    return rows


_MARK = {"passed": "✓", "failed": "✗", "not implemented": "…", "not checked": "·"}


def scoreboard(lesson: int | str, namespace: dict | None = None) -> list[dict]:
    """Print where the learner stands in ``lesson``: each exercise passed / failed / not implemented / not checked,
    and the cells that ran on the reference instead. Returns the rows (see ``grade_report``)."""
    rows = grade_report(lesson, namespace)
    width = max((len(r["name"]) for r in rows), default=0)
    print(f"Lesson {str(lesson)} — your exercises")
    for r in rows:
        line = f"  {_MARK[r['status']]} {r['exercise']} {r['name']:<{width}}  {r['status']}"
        if r["status"] == "failed":
            line += ": " + r["message"].splitlines()[0][:100]
        print(line)
        cells = [c for c in r["fallback_cells"] if c is not None]
        if r["fallback_cells"]:
            where = f"cells {', '.join(f'[{c}]' for c in cells)}" if cells else "later cells"
            print(f"      {where} ran on the reference solution instead of yours")
    done = sum(r["status"] == "passed" for r in rows)
    print(f"{done} of {len(rows)} passed." + ("" if done == len(rows) else
          " Fix an exercise, re-run its check cell, then the cells after it."))
    return rows
