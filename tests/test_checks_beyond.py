"""Lesson 6's checks pass the references and reject known-wrong implementations (strict=True)."""
import pytest
import torch
import torch.nn.functional as F

from minimovq import fsq as fsq_ref
from minimovq import rotation as rotation_ref
from minimovq.checks import beyond as checks


# ---- fsq_quantize -------------------------------------------------------------------------------------------
def _parts(z, levels, eps=1e-3):
    L = torch.tensor(levels, dtype=z.dtype)
    half_l = (L - 1) * (1 - eps) / 2
    offset = torch.where(L % 2 == 0, 0.5, 0.0)
    return L, half_l, offset, torch.tan(offset / half_l)


def _ste(x):
    return x + (torch.round(x) - x).detach()


def fsq_no_straight_through(z, levels):
    L, half_l, offset, shift = _parts(z, levels)
    return torch.round(torch.tanh(z + shift) * half_l - offset) / (L // 2)


def fsq_no_offset(z, levels):  # the odd-L formula for every L
    L, half_l, _, _ = _parts(z, levels)
    return _ste(torch.tanh(z) * half_l) / (L // 2)


def fsq_no_shift(z, levels):
    L, half_l, offset, _ = _parts(z, levels)
    return _ste(torch.tanh(z) * half_l - offset) / (L // 2)


def fsq_divide_by_half_l(z, levels):
    L, half_l, offset, shift = _parts(z, levels)
    return _ste(torch.tanh(z + shift) * half_l - offset) / half_l


def fsq_no_eps(z, levels):
    L, half_l, offset, shift = _parts(z, levels, eps=0.0)
    return _ste(torch.tanh(z + shift) * half_l - offset) / (L // 2)


def fsq_clamp(z, levels):  # a hard clip instead of tanh
    L, half_l, offset, _ = _parts(z, levels)
    return _ste(z.clamp(-half_l - offset, half_l - offset)) / (L // 2)


def fsq_in_place(z, levels):
    out = fsq_ref.fsq_quantize(z.detach(), levels)
    z.data.copy_(out)
    return fsq_ref.fsq_quantize(z, levels)


def fsq_atanh_variant(z, levels):  # a correct alternative: the centred shift
    return fsq_ref.fsq_quantize(z, levels, shift="atanh")


@pytest.mark.parametrize("wrong", [fsq_no_straight_through, fsq_no_offset, fsq_no_shift, fsq_divide_by_half_l,
                                   fsq_no_eps, fsq_clamp, fsq_in_place])
def test_fsq_quantize_rejects(wrong):
    with pytest.raises(AssertionError):
        checks.fsq_quantize(wrong, strict=True, quiet=True)


def test_fsq_quantize_accepts_reference_and_atanh_variant():
    assert checks.fsq_quantize(fsq_ref.fsq_quantize, strict=True, quiet=True) is fsq_ref.fsq_quantize
    assert checks.fsq_quantize(fsq_atanh_variant, strict=True, quiet=True) is fsq_atanh_variant


# ---- rotate_to ----------------------------------------------------------------------------------------------
def _frame(e, q):
    e_hat, q_hat = F.normalize(e, dim=1), F.normalize(q, dim=1)
    r = F.normalize(e_hat + q_hat, dim=1)
    R = torch.eye(e.shape[1]) - 2 * r[:, :, None] * r[:, None, :] + 2 * q_hat[:, :, None] * e_hat[:, None, :]
    return R, (q.norm(dim=1) / e.norm(dim=1))[:, None]


def rot_straight_through(e, q):
    return e + (q - e).detach()


def rot_no_lambda(e, q):
    R, _ = _frame(e.detach(), q.detach())
    out = torch.einsum("nij,nj->ni", R, e)
    return out + (q.detach() - out).detach()


def rot_not_transposed(e, q):  # applies Rᵀ to e, so the gradient is λ R g
    R, lam = _frame(e.detach(), q.detach())
    return lam * torch.einsum("nji,nj->ni", R, e) + (q.detach() - lam * torch.einsum("nji,nj->ni", R, e)).detach()


def rot_not_detached(e, q):  # R and λ computed from e with gradients
    R, lam = _frame(e, q.detach())
    return lam * torch.einsum("nij,nj->ni", R, e)


def rot_grad_to_q(e, q):
    R, lam = _frame(e.detach(), q.detach())
    out = lam * torch.einsum("nij,nj->ni", R, e)
    return out + (q - out.detach())


def rot_no_gradient(e, q):
    return q.detach().clone()


def rot_explicit_matrix(e, q):  # a correct alternative: the D×D matrix, no value trick
    R, lam = _frame(e.detach(), q.detach())
    return lam * torch.einsum("nij,nj->ni", R, e)


@pytest.mark.parametrize("wrong", [rot_straight_through, rot_no_lambda, rot_not_transposed, rot_not_detached,
                                   rot_grad_to_q, rot_no_gradient])
def test_rotate_to_rejects(wrong):
    with pytest.raises(AssertionError):
        checks.rotate_to(wrong, strict=True, quiet=True)


def test_rotate_to_accepts_reference_and_explicit_matrix():
    assert checks.rotate_to(rotation_ref.rotate_to, strict=True, quiet=True) is rotation_ref.rotate_to
    assert checks.rotate_to(rot_explicit_matrix, strict=True, quiet=True) is rot_explicit_matrix


def test_transpose_mistake_is_named(capsys):
    checks.rotate_to(rot_not_transposed)
    assert "λ·R·g" in capsys.readouterr().out


@pytest.mark.parametrize("check", [checks.fsq_quantize, checks.rotate_to])
def test_stub_falls_back_to_reference(check, capsys):
    def stub(*args, **kwargs):
        raise NotImplementedError(f"Exercise {check.exercise_number}: todo")

    fallback = check(stub)
    assert getattr(fallback, "__wrapped__", fallback) is check.reference  # the reference (maybe wrapped to be counted)
    assert "not implemented" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="not implemented"):
        check(stub, strict=True)
    assert check.exercise_number in ("6.1", "6.2")


def test_checks_leave_the_global_rng_alone():
    torch.manual_seed(123)
    a = torch.rand(3)
    torch.manual_seed(123)
    checks.fsq_quantize(fsq_ref.fsq_quantize, quiet=True)
    checks.rotate_to(rotation_ref.rotate_to, quiet=True)
    assert torch.equal(torch.rand(3), a)
