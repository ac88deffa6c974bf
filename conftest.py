"""Repository-level pytest hooks: print how long each notebook took (nbval runs one item per cell)."""
from collections import defaultdict

_notebook_seconds: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        _notebook_seconds[path] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _notebook_seconds:
        return
    tr = terminalreporter
    tr.section("notebook times (quick profile)")
    for path, secs in sorted(_notebook_seconds.items()):
        tr.write_line(f"{secs:8.1f} s  {path}")
    tr.write_line(f"{sum(_notebook_seconds.values()):8.1f} s  total (summed over workers)")
