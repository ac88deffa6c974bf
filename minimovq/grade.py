"""Grade a learner's notebook: run it in a fresh kernel and report every exercise of its lesson.

    python -m minimovq.grade NOTEBOOK.ipynb [--json] [--profile quick|cpu|gpu] [--timeout S]

The notebook runs top to bottom in a fresh Python kernel (``quick`` profile unless told otherwise), stopping at
the first cell that raises, as it would for the learner. Then one more cell, added by the grader, asks the check
registry (:mod:`minimovq.checks._scoreboard`) for each exercise of the lesson:

- ``passed`` / ``failed`` (with the check's message) / ``not implemented``: the latest result of its check; when
  the exercise's name is bound to the learner's own function at the end (passed, or redefined later), that final
  definition is checked again, so a redefinition counts;
- ``not checked``: its check never ran (the check cell was deleted, or the notebook stopped before it).

The lesson is the number the file name starts with (``02_vqvae.ipynb`` -> 2), else the lessons whose checks ran.
Exit code 0 only when every exercise passed and the notebook ran to the end. ``--json`` prints exactly one object::

    {"notebook": ..., "completed": true|false,
     "exercises": [{"exercise": "2.2", "name": "quantize", "status": "passed", "message": "..."}]}
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

_MARK = "__MINIMOVQ_GRADE__"
_COLLECT = """\
import json as _json
from minimovq.checks import _scoreboard as _grade_core
_lessons = [{lesson!r}] if {lesson!r} else sorted({{k.split(".")[0] for k in _grade_core.RESULTS}})
print({mark!r} + _json.dumps([r for _l in _lessons for r in _grade_core.grade_report(_l, globals())]))
"""


def lesson_of(path: Path) -> str:
    """"2" for ``02_vqvae.ipynb`` (or ``02_vqvae_solution.ipynb``); "" when the name has no lesson number."""
    m = re.match(r"(\d+)_", path.name)
    return str(int(m.group(1))) if m else ""


def _expected(lesson: str) -> list[dict]:
    """Every exercise of ``lesson`` as "not checked": the report when the grader's own cell could not run."""
    if not lesson:
        return []
    from minimovq.checks import _scoreboard

    return [dict(exercise=c.exercise_number, name=c.exercise_name, status="not checked",
                 message="no result: the notebook stopped before its check ran or before the grader could ask")
            for c in _scoreboard.lesson_exercises(lesson)]


def run_notebook(path: Path, profile: str = "quick", timeout: float = 1800.0) -> dict:
    """Execute ``path`` in a fresh kernel; returns {"notebook", "completed", "error", "exercises"}."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(str(path), as_version=4)
    lesson = lesson_of(path)
    nb.cells.append(nbformat.v4.new_code_cell(_COLLECT.format(lesson=lesson, mark=_MARK)))
    old = os.environ.get("MINIMOVQ_PROFILE")
    os.environ["MINIMOVQ_PROFILE"] = profile  # the kernel inherits the grader's environment
    client = NotebookClient(nb, timeout=max(1, int(timeout)), kernel_name="python3", interrupt_on_timeout=True,
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    completed, error = True, ""
    deadline = time.monotonic() + timeout
    collect = len(nb.cells) - 1

    def ask_registry():
        client.timeout = 300
        try:
            client.execute_cell(nb.cells[collect], collect)
        except CellExecutionError:
            pass

    try:
        with client.setup_kernel():
            for i, cell in enumerate(nb.cells[:collect]):
                if cell.cell_type != "code":
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    completed, error = False, f"stopped before cell {i}: the time limit of {timeout:g} s ran out"
                    break
                client.timeout = max(1, int(left))
                try:
                    client.execute_cell(cell, i)
                except CellExecutionError as e:  # the notebook stops here, as it would for the learner
                    late = time.monotonic() >= deadline
                    completed = False
                    error = (f"cell {i} ran past the time limit of {timeout:g} s" if late
                             else f"cell {i} raised: {_last_line(str(e))}")
                    break
            ask_registry()
    except (CellTimeoutError, DeadKernelError, RuntimeError, TimeoutError) as e:
        completed, error = False, f"{type(e).__name__}: {_last_line(str(e))}"
    finally:
        if old is None:
            os.environ.pop("MINIMOVQ_PROFILE", None)
        else:
            os.environ["MINIMOVQ_PROFILE"] = old
    rows = None
    for out in nb.cells[-1].get("outputs", []):
        text = out.get("text", "") if out.get("output_type") == "stream" else ""
        for line in text.splitlines():
            if line.startswith(_MARK):
                rows = json.loads(line[len(_MARK):])
    if rows is None:
        rows = _expected(lesson)
    exercises = [{k: r[k] for k in ("exercise", "name", "status", "message")} for r in rows]
    return {"notebook": str(path), "completed": completed, "error": error, "exercises": exercises}


def _last_line(text: str) -> str:
    lines = [ln for ln in re.sub(r"\x1b\[[0-9;]*m", "", text).strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def report_text(result: dict) -> str:
    marks = {"passed": "✓", "failed": "✗", "not implemented": "…", "not checked": "·"}
    out = [f"{result['notebook']}: " + ("ran to the end" if result["completed"] else
                                        f"did NOT run to the end ({result['error']})")]
    for r in result["exercises"]:
        line = f"  {marks.get(r['status'], '?')} {r['exercise']} {r['name']}: {r['status']}"
        if r["status"] in ("failed", "not checked"):
            line += "\n      " + r["message"].replace("\n", "\n      ")
        out.append(line)
    passed = sum(r["status"] == "passed" for r in result["exercises"])
    out.append(f"{passed} of {len(result['exercises'])} exercises passed.")
    return "\n".join(out)


def passed(result: dict) -> bool:
    return result["completed"] and bool(result["exercises"]) and all(
        r["status"] == "passed" for r in result["exercises"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m minimovq.grade", description=__doc__.split("\n\n")[0])
    ap.add_argument("notebook", type=Path)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ap.add_argument("--profile", choices=("quick", "cpu", "gpu"), default="quick",
                    help="the profile the notebook runs in (default: quick, a smoke run)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds for the whole notebook (default 1800)")
    args = ap.parse_args(argv)
    if not args.notebook.exists():
        ap.error(f"no such notebook: {args.notebook}")
    result = run_notebook(args.notebook, profile=args.profile, timeout=args.timeout)
    if args.json:
        print(json.dumps({k: result[k] for k in ("notebook", "completed", "exercises")}, ensure_ascii=False))
    else:
        print(report_text(result))
    return 0 if passed(result) else 1


if __name__ == "__main__":
    sys.exit(main())
