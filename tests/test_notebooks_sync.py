"""The generated notebooks match their sources, and the authoring tool does what it says."""
import json
import textwrap

from minimovq import authoring


def test_generated_notebooks_are_up_to_date():
    bad = authoring.stale()
    assert not bad, f"out of date (run `make notebooks`): {[str(p) for p in bad]}"


def test_every_lesson_has_student_and_solution():
    targets = authoring.targets()
    assert len(targets) >= 2 and len(targets) % 2 == 0
    for _src, dst, _sol in targets:
        assert dst.exists(), dst


def test_student_notebook_has_stubs_and_solution_has_code(tmp_path):
    src = tmp_path / "09_demo.py"
    src.write_text(textwrap.dedent('''\
        # %% [markdown]
        # # Demo{{VARIANT}}
        # {{COLAB_BADGE}}

        # %%
        def f(x):
            """doc"""
            # BEGIN SOLUTION Exercise 9.1: double x
            return 2 * x
            # END SOLUTION
        '''))
    stu = authoring.build(src, solution=False)
    sol = authoring.build(src, solution=True)
    stu_code = "".join(stu["cells"][1]["source"])
    sol_code = "".join(sol["cells"][1]["source"])
    assert "raise NotImplementedError('Exercise 9.1: double x')" in stu_code
    assert "return 2 * x" not in stu_code
    assert "return 2 * x" in sol_code and "BEGIN SOLUTION" not in sol_code
    assert "colab.research.google.com/github/" in "".join(stu["cells"][0]["source"])
    assert "/solutions/09_demo_solution.ipynb" in "".join(sol["cells"][0]["source"])
    assert "(solutions)" in "".join(sol["cells"][0]["source"])
    json.dumps(stu)  # serialisable


def test_repo_url_lives_in_one_place():
    cfg = authoring.read_config()
    assert cfg["repo"].startswith("https://")
    for _src, dst, _sol in authoring.targets():
        text = dst.read_text()
        assert cfg["repo"].split("github.com/")[-1] in text  # badge and setup cell carry the configured URL


def test_unclosed_solution_region_is_an_error():
    import pytest

    with pytest.raises(ValueError, match="never closed"):
        authoring.strip_solutions(["    # BEGIN SOLUTION x", "    return 1"])


def test_solution_only_cells_and_metadata_do_not_count(tmp_path, monkeypatch):
    src = tmp_path / "src" / "09_demo.py"
    src.parent.mkdir()
    src.write_text("# %%\nx = 1\n\n# %% [markdown] solution-only\n# the answer is 42\n")
    stu, sol = authoring.build(src, solution=False), authoring.build(src, solution=True)
    assert "42" not in json.dumps(stu) and "the answer is 42" in "".join(sol["cells"][-1]["source"])
    monkeypatch.setattr(authoring, "SRC", src.parent)
    monkeypatch.setattr(authoring, "STUDENT", tmp_path)
    monkeypatch.setattr(authoring, "SOLUTION", tmp_path / "solutions")
    assert len(authoring.write_all()) == 2 and authoring.stale() == []
    student = tmp_path / "09_demo.ipynb"
    nb = json.loads(student.read_text())
    nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)"}  # JupyterLab's rewrite
    student.write_text(json.dumps(nb, indent=2, sort_keys=True))
    assert authoring.stale() == [] and not authoring.edited(student)
    nb["cells"][0]["source"] = ["x = 2  # my work"]                                         # a learner's edit
    student.write_text(json.dumps(nb))
    src.write_text(src.read_text() + "\n# %%\ny = 3\n")
    import pytest

    with pytest.raises(authoring.EditedNotebook, match="09_demo.ipynb"):
        authoring.write_all()
    assert "my work" in student.read_text()
    assert student in authoring.write_all(force=True) and "my work" not in student.read_text()
    work = tmp_path / "work"
    assert [p.name for p in authoring.workspace(work)] == ["09_demo.ipynb"] and authoring.workspace(work) == []
