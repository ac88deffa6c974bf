"""Exercise checks, one module per lesson: ``minimovq.checks.vae``, ``.vqvae``, ``.vqgan``, ``.movq``, ``.maskgit``,
``.beyond`` (Lesson 6).

Each check is called like ``fn = minimovq.checks.vae.reparameterize(fn)``: it prints ✓ or ✗ (with what differs),
returns your function when it passes and the reference otherwise, so the rest of the notebook still runs.
Pass ``strict=True`` to raise ``AssertionError`` instead (tests, graders).

``scoreboard(lesson)`` (the last cell of every lesson) prints each exercise of the lesson as passed, failed, not
implemented or not checked, and which cells ran on the reference instead; ``grade_report(lesson, globals())`` returns
the same as dicts (used by ``python -m minimovq.grade``).
"""
from ._scoreboard import grade_report, scoreboard

__all__ = ["scoreboard", "grade_report"]
