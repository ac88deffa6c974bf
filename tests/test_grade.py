"""``python -m minimovq.grade`` on Lesson 1: a student notebook, a solution notebook, and a solution notebook with one
exercise redefined wrongly and one check cell deleted. The notebooks are cut after the last exercise (plus the
scoreboard cell) so that three fresh kernels stay fast."""
import json
import subprocess
import sys

import nbformat

from minimovq import authoring

def _cut(path, tmp_path, name, edit=None):
    nb = nbformat.read(str(path), as_version=4)
    last = max(i for i, c in enumerate(nb.cells) if "checks.elbo_loss(" in c.source)
    nb.cells = nb.cells[: last + 1] + nb.cells[-2:]  # the exercises, then "Where you stand"
    if edit:
        edit(nb)
    out = tmp_path / name
    nbformat.write(nb, str(out))
    return out


def _grade(path):
    proc = subprocess.run([sys.executable, "-m", "minimovq.grade", str(path), "--json", "--timeout", "300"],
                          capture_output=True, text=True, timeout=400)
    assert proc.stdout.strip(), proc.stderr[-2000:]
    return proc.returncode, json.loads(proc.stdout)


def _notebooks():
    (src, student, _), (_, solution, _) = [t for t in authoring.targets() if t[0].name.startswith("01_")]
    return student, solution


def test_student_notebook_reports_not_implemented(tmp_path):
    rc, report = _grade(_cut(_notebooks()[0], tmp_path, "01_vae.ipynb"))
    assert rc == 1 and report["completed"] is True and set(report) == {"notebook", "completed", "exercises"}
    assert [(r["exercise"], r["name"], r["status"]) for r in report["exercises"]] == [
        ("1.1", "reparameterize", "not implemented"), ("1.2", "kl_divergence", "not implemented"),
        ("1.3", "elbo_loss", "not implemented")]


def test_solution_notebook_passes(tmp_path):
    rc, report = _grade(_cut(_notebooks()[1], tmp_path, "01_vae_solution.ipynb"))
    assert rc == 0 and report["completed"] is True
    assert {r["status"] for r in report["exercises"]} == {"passed"} and len(report["exercises"]) == 3


def test_a_wrong_redefinition_a_deleted_check_and_a_crash_are_reported(tmp_path):
    def edit(nb):
        for c in nb.cells:  # delete Exercise 1.3's check line
            c.source = c.source.replace("elbo_loss = checks.elbo_loss(elbo_loss)", "")
        wrong = "def kl_divergence(mu, logvar):\n    return 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).mean(1)\n"
        nb.cells.insert(len(nb.cells) - 2, nbformat.v4.new_code_cell(wrong))  # redefined after its check passed
        nb.cells.insert(len(nb.cells) - 2, nbformat.v4.new_code_cell("raise RuntimeError('learner bug')"))

    rc, report = _grade(_cut(_notebooks()[1], tmp_path, "01_vae_edited.ipynb", edit))
    status = {r["name"]: r for r in report["exercises"]}
    assert rc == 1 and report["completed"] is False  # stopped at the learner's RuntimeError
    assert status["reparameterize"]["status"] == "passed"
    assert status["kl_divergence"]["status"] == "failed" and "KL" in status["kl_divergence"]["message"]
    assert status["elbo_loss"]["status"] == "not checked"
