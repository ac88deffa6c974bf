"""The exercise-check framework, and the scoreboard of a learner's results.

A check runs the learner's code on small seeded CPU inputs, compares it with the reference, and tests
properties (shapes, gradients, invariances). Writing one::

    @exercise("1.1", "reparameterize", reference=vae.reparameterize)
    def reparameterize(fn, ref_fn):
        mu, logvar = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
        z = call(fn, mu, logvar)          # fails if fn writes into mu/logvar or leaves a .grad on them
        expect_shape(z, mu.shape, what="z")
        expect_grad(z, "z")                # the output must carry a gradient
        expect_close(z, ref_fn(mu, logvar), what="z", hint="z = mu + exp(0.5 * logvar) * eps")

The decorator turns it into ``reparameterize(fn, strict=False)``, which prints ✓ or ✗ under the exercise's label
(what differs, the measured error against the tolerance, and a hint) and returns the learner's ``fn`` when it
passes. Otherwise it returns the reference, wrapped so that the scoreboard can say which later cells ran on it.
Nothing the learner's code does stops the notebook: any exception (``AssertionError`` included), returning
``None``, printing, or running longer than the time limit is reported and falls back to the reference.
``strict=True`` raises ``AssertionError`` with the same message instead.

Every check's outcome goes into a registry (:mod:`minimovq.checks._scoreboard`): ``scoreboard(lesson)`` prints it
(the last cell of each lesson) and ``grade_report(lesson, namespace)`` returns it for ``python -m minimovq.grade``.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import io
import os
import signal
import threading
import traceback
from typing import Any, Callable

import torch

from . import _scoreboard
from ._scoreboard import Result, _fallback, grade_report, lesson_exercises, scoreboard  # noqa: F401 (re-exported)

TIME_LIMIT = float(os.environ.get("MINIMOVQ_CHECK_TIME_LIMIT", 60))  # seconds per check


class CheckFailure(Exception):
    """Raised inside a check body when the learner's output differs from what is expected."""


class NotImplementedYet(Exception):
    """The learner's function still raises ``NotImplementedError``."""


class LearnerError(Exception):
    """The learner's function raised (anything, ``AssertionError`` included)."""


class _TimeUp(BaseException):
    """Raised by the alarm when a check runs past its time limit (a BaseException: ``except Exception`` in the
    learner's code cannot swallow it)."""


# ---- expectations ---------------------------------------------------------------------------------------------
def expect(condition: bool, message: str, hint: str | None = None) -> None:
    """Fail with ``message`` (and ``hint``) unless ``condition`` holds."""
    if not condition:
        raise CheckFailure(message + (f"\n  hint: {hint}" if hint else ""))


def expect_tensor(x: Any, what: str = "output") -> torch.Tensor:
    expect(isinstance(x, torch.Tensor), f"{what} should be a torch.Tensor, got {type(x).__name__}")
    return x


def expect_shape(x: Any, shape: tuple[int, ...] | torch.Size, what: str = "output", hint: str | None = None) -> None:
    """Fail unless ``x`` is a tensor of exactly ``shape``."""
    expect_tensor(x, what)
    expect(tuple(x.shape) == tuple(shape), f"{what} has shape {tuple(x.shape)}, expected {tuple(shape)}", hint)


def expect_close(actual: Any, expected: torch.Tensor, what: str = "output", atol: float = 1e-5,
                 rtol: float = 1e-4, hint: str | None = None) -> None:
    """Fail unless ``actual`` matches ``expected`` in shape and value (max error reported against the tolerance)."""
    actual = expect_tensor(actual, what)
    expect_shape(actual, expected.shape, what, hint)
    if actual.dtype == torch.bool or expected.dtype == torch.bool:
        bad = (actual != expected).sum().item()
        expect(bad == 0, f"{what}: {bad} of {expected.numel()} entries differ from the reference", hint)
        return
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    if not torch.isfinite(a).all():
        raise CheckFailure(f"{what} contains NaN or inf" + (f"\n  hint: {hint}" if hint else ""))
    err = (a - e).abs()
    tol = atol + rtol * e.abs()
    if (err > tol).any():
        i = int(torch.argmax(err - tol))
        idx = tuple(int(j) for j in torch.unravel_index(torch.tensor(i), e.shape)) if e.ndim else ()
        raise CheckFailure(
            f"{what} differs from the reference: max |error| = {err.max().item():.3g} "
            f"(tolerance {atol:g} + {rtol:g}·|ref|); at index {idx} you gave {a.flatten()[i].item():.6g}, "
            f"expected {e.flatten()[i].item():.6g}" + (f"\n  hint: {hint}" if hint else ""))


_NO_GRAD_HINT = ("build it from torch operations on the inputs: no .item(), no torch.tensor([...]) of values, "
                 "no .detach() and no torch.no_grad()")


def expect_grad(x: Any, what: str = "output", hint: str | None = None) -> torch.Tensor:
    """Fail unless ``x`` is a tensor that carries a gradient back to the inputs."""
    x = expect_tensor(x, what)
    expect(x.requires_grad, f"{what} carries no gradient: training would not update anything through it",
           hint or _NO_GRAD_HINT)
    return x


def grad_of(out: torch.Tensor, inputs: list[torch.Tensor], upstream: torch.Tensor | None = None) -> list:
    """d(out)/d(inputs) (``None`` where no gradient reaches), without touching any ``.grad``."""
    expect_tensor(out, "output")
    if not out.requires_grad:
        return [None] * len(inputs)
    return list(torch.autograd.grad(out, inputs, upstream, allow_unused=True, retain_graph=True))


def _tensors(objs) -> list[tuple[str, torch.Tensor]]:
    """Every tensor in ``objs`` (nested in lists, tuples, dicts) and every parameter/buffer of a module in it."""
    found = []

    def walk(name, o):
        if isinstance(o, torch.Tensor):
            found.append((name, o))
        elif isinstance(o, torch.nn.Module):
            found.extend((f"{name}.{n}", p) for n, p in o.named_parameters())
        elif isinstance(o, (list, tuple)):
            for i, v in enumerate(o):
                walk(f"{name}[{i}]", v)
        elif isinstance(o, dict):
            for k, v in o.items():
                walk(f"{name}[{k!r}]", v)

    for name, o in objs:
        walk(name, o)
    return found


@contextlib.contextmanager
def untouched(*named: tuple[str, Any], reach: tuple[torch.Tensor, ...] = ()):
    """Fail unless the tensors in ``named`` (``("z", z)`` pairs; modules contribute their parameters) keep their
    values and no ``.grad`` appears on them or on the extra leaves in ``reach`` (tensors the function can reach
    through the autograd graph of its inputs)."""
    tensors = _tensors(named) + [(f"a leaf of the graph {tuple(t.shape)}", t) for t in reach]
    saved = [(n, t, t.detach().clone(), t.grad if t.is_leaf else None) for n, t in tensors]
    yield
    for name, t, before, grad in saved:
        same = t.shape == before.shape and torch.equal(t.detach(), before)
        expect(same, f"your function modified its input `{name}` in place",
               hint="build new tensors instead: no index assignment (x[m] = ...), no add_/mul_/div_/clamp_/"
                    "masked_fill_, no +=, /= on an input")
        if t.is_leaf and t.grad is not grad:
            t.grad = grad  # leave the check's tensors as they were
            raise CheckFailure(
                f"your function left a .grad on `{name}`: .backward() accumulates gradients into every leaf of "
                "the graph, so the next optimizer step would use them\n  hint: use torch.autograd.grad(loss, "
                "tensor, retain_graph=True), which returns the gradient without storing it anywhere")


def call(fn: Callable, *args, reach: tuple[torch.Tensor, ...] = (), **kwargs):
    """``fn(*args, **kwargs)``, failing if it changed a tensor argument in place or left a ``.grad`` on one."""
    try:
        sig = inspect.signature(fn.forward if isinstance(fn, torch.nn.Module) else fn)
        params = [p.name for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    named = [(params[i] if i < len(params) else f"argument {i + 1}", a) for i, a in enumerate(args)]
    named += list(kwargs.items())
    with untouched(*named, reach=reach):
        return fn(*args, **kwargs)


# ---- running the learner's code -------------------------------------------------------------------------------
def _where(tb) -> str:
    """file:line of the innermost frame outside torch and minimovq/checks (the learner's line, usually)."""
    frames = traceback.extract_tb(tb)
    mine = [f for f in frames if "/torch/" not in f.filename and "/minimovq/checks/" not in f.filename]
    f = (mine or frames or [None])[-1]
    return "" if f is None else f" (at {f.filename.rsplit('/', 1)[-1]}:{f.lineno}: {f.line})"


class _Learner:
    """Wraps the learner's callable: a stub's NotImplementedError, any other exception and a ``None`` result
    become clear failures."""

    def __init__(self, fn: Callable):
        self.fn = fn
        functools.update_wrapper(self, fn, updated=())

    def __call__(self, *args, **kwargs):
        try:
            out = self.fn(*args, **kwargs)
        except NotImplementedError as e:
            raise NotImplementedYet(str(e)) from None
        except (Exception, SystemExit) as e:  # AssertionError too: the learner's own asserts must not escape
            raise LearnerError(f"your code raised {type(e).__name__}: {e}{_where(e.__traceback__)}") from e
        if out is None:
            raise CheckFailure(
                f"{getattr(self.fn, '__name__', 'your function')} returned None\n  hint: did you forget `return`?")
        return out


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise _TimeUp after ``seconds`` (main thread on Unix; elsewhere no limit)."""
    if not seconds or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum, frame):
        raise _TimeUp()

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _evaluate(body: Callable, fn: Any, reference: Any, time_limit: float) -> tuple[str, str, str]:
    """Run a check body on ``fn``: (status, message, what the learner printed)."""
    out = io.StringIO()
    try:
        if fn is None:
            raise CheckFailure("you passed None instead of your function\n  hint: run the cell that defines it")
        learner = _Learner(fn) if callable(fn) and not isinstance(fn, type) else fn
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), _time_limit(time_limit):
            with torch.random.fork_rng(devices=[]), torch.enable_grad():
                torch.manual_seed(0)
                body(learner, reference)
    except (NotImplementedYet, NotImplementedError) as e:
        return "not implemented", f"not implemented yet ({e or 'NotImplementedError'})", out.getvalue()
    except CheckFailure as e:
        return "failed", str(e), out.getvalue()
    except LearnerError as e:
        return "failed", str(e), out.getvalue()
    except _TimeUp:
        return "failed", (f"the check did not finish within {time_limit:g} s\n  hint: look for a Python loop over "
                          "elements or an endless loop; use tensor operations"), out.getvalue()
    except (Exception, SystemExit) as e:  # the learner's result broke the check itself (wrong type, ...)
        return "failed", (f"your function's result could not be used: {type(e).__name__}: {e}{_where(e.__traceback__)}"
                          "\n  hint: compare what you return with the docstring (types, shapes, a tuple?)"), out.getvalue()
    return "passed", "all tests passed", out.getvalue()


def exercise(number: str, name: str, reference: Any, time_limit: float | None = None) -> Callable:
    """Decorator that turns a check body ``body(fn, ref_fn)`` into the public check ``name(fn, strict=False)``."""

    def decorate(body: Callable) -> Callable:
        label = f"Exercise {number} ({name})"

        @functools.wraps(body)
        def check(fn: Any, strict: bool = False, quiet: bool = False, time_limit: float | None = time_limit) -> Any:
            status, msg, printed = _evaluate(body, fn, reference, TIME_LIMIT if time_limit is None else time_limit)
            if printed.strip() and not quiet and not strict:
                lines = printed.rstrip().splitlines()
                shown = "\n".join("    " + ln[:200] for ln in lines[:5])
                more = f"\n    ... ({len(lines) - 5} more lines)" if len(lines) > 5 else ""
                print(f"(your function printed {len(lines)} line(s) during the check:)\n{shown}{more}")
            _scoreboard.record(Result(number, name, status, msg))
            if status == "passed":
                if not quiet:
                    print(f"✓ {label}: all tests passed.")
                return fn
            text = f"{label}: {msg}"
            if strict:
                raise AssertionError(text)
            if not quiet:
                print(f"✗ {text}\n  Using the reference solution so the rest of the notebook runs; "
                      "fix yours and re-run this cell.")
            return _fallback(reference, number)

        def evaluate(fn: Any) -> tuple[str, str, str]:
            """(status, message, printed) of the check on ``fn``, recording nothing (the scoreboard's re-check)."""
            return _evaluate(body, fn, reference, TIME_LIMIT if time_limit is None else time_limit)

        check.exercise_number = number
        check.exercise_name = name
        check.reference = reference
        check.evaluate = evaluate
        _scoreboard.EXERCISES[number] = check
        return check

    return decorate
