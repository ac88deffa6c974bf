"""The exercise-check framework.

A check runs the learner's code on small seeded CPU inputs, compares it with the reference, and tests
properties (shapes, gradients, invariances). Writing one::

    @exercise("1.1", "reparameterize", reference=vae.reparameterize)
    def reparameterize(fn, ref_fn):
        z = fn(mu, logvar)
        expect_shape(z, mu.shape, what="z")
        expect_close(z, ref_fn(mu, logvar), what="z", hint="z = mu + exp(0.5 * logvar) * eps")

The decorator turns it into ``reparameterize(fn, strict=False)``, which prints ✓ or ✗ (what differs, the
measured error against the tolerance, and a hint) and returns the learner's ``fn`` when it passes, else the
reference so the notebook keeps running. ``strict=True`` raises ``AssertionError`` instead of falling back.
"""
from __future__ import annotations

import functools
import traceback
from typing import Any, Callable

import torch


class CheckFailure(Exception):
    """Raised inside a check body when the learner's output differs from what is expected."""


class NotImplementedYet(Exception):
    """The learner's function still raises ``NotImplementedError``."""


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


def _call(fn: Callable, *args, **kwargs):
    """Call the learner's function, turning a stub's NotImplementedError into NotImplementedYet."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as e:
        raise NotImplementedYet(str(e)) from None


class _Learner:
    """Wraps the learner's callable so that every call inside a check body detects unfinished stubs."""

    def __init__(self, fn: Callable):
        self.fn = fn
        functools.update_wrapper(self, fn, updated=())

    def __call__(self, *args, **kwargs):
        return _call(self.fn, *args, **kwargs)


def exercise(number: str, name: str, reference: Any) -> Callable:
    """Decorator that turns a check body ``body(fn, ref_fn)`` into the public check ``name(fn, strict=False)``."""

    def decorate(body: Callable) -> Callable:
        label = f"Exercise {number} ({name})"

        @functools.wraps(body)
        def check(fn: Any, strict: bool = False, quiet: bool = False) -> Any:
            def report(ok: bool, msg: str) -> None:
                if not quiet:
                    print(("✓ " if ok else "✗ ") + msg)

            learner = _Learner(fn) if callable(fn) and not isinstance(fn, type) else fn
            try:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)
                    body(learner, reference)
            except (NotImplementedYet, NotImplementedError) as e:
                msg = f"{label}: not implemented yet ({e or 'NotImplementedError'})."
                if strict:
                    raise AssertionError(msg) from None
                report(False, msg + " Using the reference solution so the rest of the notebook runs.")
                return reference
            except CheckFailure as e:
                msg = f"{label}: {e}"
                if strict:
                    raise AssertionError(msg) from None
                report(False, msg + "\n  Using the reference solution for now; fix yours and re-run the check.")
                return reference
            except AssertionError:
                raise
            except Exception as e:  # the learner's code crashed
                where = traceback.extract_tb(e.__traceback__)[-1]
                msg = (f"{label}: your code raised {type(e).__name__}: {e} "
                       f"(at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})")
                if strict:
                    raise AssertionError(msg) from e
                report(False, msg + "\n  Using the reference solution for now.")
                return reference
            report(True, f"{label}: all tests passed.")
            return fn

        check.exercise_number = number
        check.reference = reference
        return check

    return decorate
