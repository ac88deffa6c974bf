"""minimovq.rotation and the rotation_trick option of VectorQuantizer / EMAVectorQuantizer."""
import pytest
import torch
import torch.nn.functional as F

from minimovq.quantize import EMAVectorQuantizer, VectorQuantizer
from minimovq.rotation import rotate_to, rotation_matrix


@pytest.fixture
def eq():
    torch.manual_seed(0)
    return torch.randn(16, 6), torch.randn(16, 6) * 3


def test_value_is_q_and_matrix_rotates_e_hat_onto_q_hat(eq):
    e, q = eq
    assert torch.allclose(rotate_to(e, q), q, atol=1e-6)
    R = rotation_matrix(e, q)
    assert torch.allclose(torch.einsum("nij,nj->ni", R, F.normalize(e, dim=1)), F.normalize(q, dim=1), atol=1e-5)
    # a rotation: orthogonal with determinant +1
    eye = torch.eye(6).expand(16, -1, -1)
    assert torch.allclose(R @ R.transpose(1, 2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(R), torch.ones(16), atol=1e-4)


def test_gradient_is_lambda_R_transpose_g_and_none_reaches_q(eq):
    e0, q0 = eq
    e, q = e0.clone().requires_grad_(), q0.clone().requires_grad_()
    g = torch.randn_like(e0)
    ge, gq = torch.autograd.grad(rotate_to(e, q), [e, q], g, allow_unused=True)
    R, lam = rotation_matrix(e0, q0), (q0.norm(dim=1) / e0.norm(dim=1))[:, None]
    assert torch.allclose(ge, lam * torch.einsum("nji,nj->ni", R, g), atol=1e-5)
    assert gq is None or not gq.abs().any()
    # the rotation keeps the gradient's norm, λ rescales it
    assert torch.allclose(ge.norm(dim=1), lam.squeeze(1) * g.norm(dim=1), rtol=1e-4)


def test_degenerate_rows_stay_finite():
    e = torch.tensor([[1.0, 0.0], [0.0, 0.0], [2.0, 1.0]], requires_grad=True)
    q = torch.tensor([[-1.0, 0.0], [1.0, 1.0], [4.0, 2.0]])  # opposite, zero e, parallel
    out = rotate_to(e, q)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(e.grad).all()
    assert torch.allclose(out, q)
    assert torch.allclose(e.grad[2], torch.full((2,), 2.0), atol=1e-5)  # parallel: R = I, λ = 2


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="same shape"):
        rotate_to(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="rearrange"):
        rotate_to(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4))


@pytest.mark.parametrize("cls", [VectorQuantizer, EMAVectorQuantizer])
def test_option_changes_gradients_not_values_or_state(cls):
    torch.manual_seed(0)
    st, rot = cls(16, 4), cls(16, 4, rotation_trick=True)
    rot.load_state_dict(st.state_dict())
    assert list(rot.state_dict()) == list(st.state_dict()) and "rotation_trick=True" in repr(rot)
    z0 = torch.randn(2, 4, 3, 3)
    outs, grads = [], []
    for q in (st, rot):
        q.embedding.weight.data.normal_(generator=torch.Generator().manual_seed(1))
        z = z0.clone().requires_grad_()
        z_q, loss, idx = q.eval()(z)
        g = torch.randn(z_q.shape, generator=torch.Generator().manual_seed(2))
        (gz,) = torch.autograd.grad(z_q, z, g)
        outs.append((z_q.detach(), loss.detach(), idx))
        grads.append(gz)
    assert torch.allclose(outs[0][0], outs[1][0], atol=1e-6) and torch.equal(outs[0][2], outs[1][2])
    assert torch.allclose(outs[0][1], outs[1][1])
    assert not torch.allclose(grads[0], grads[1], atol=1e-3)


def test_codebook_gets_gradient_only_from_its_loss():
    torch.manual_seed(0)
    q = VectorQuantizer(8, 4, rotation_trick=True)
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    z_q, loss, _ = q(z)
    (gw,) = torch.autograd.grad(z_q.sum(), q.embedding.weight, allow_unused=True)
    assert gw is None or not gw.abs().any()
    (gw,) = torch.autograd.grad(loss, q.embedding.weight)
    assert gw.abs().sum() > 0


def test_groups_and_autocast_dtype():
    q = VectorQuantizer(8, 8, groups=2, rotation_trick=True)
    z = torch.randn(2, 8, 3, 3, requires_grad=True)
    z_q, _, idx = q(z)
    assert idx.shape == (2, 3, 3, 2) and torch.allclose(z_q, q.get_codebook_entry(idx), atol=1e-6)
    zb = torch.randn(4, 3, dtype=torch.bfloat16)
    assert rotate_to(zb, torch.randn(4, 3)).dtype == torch.bfloat16
