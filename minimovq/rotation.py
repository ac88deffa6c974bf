"""The rotation trick (Fifty et al. 2024, "Restructuring Vector Quantization with the Rotation Trick").

The straight-through estimator copies the decoder's gradient g from the code q to the encoder output e unchanged,
whatever the angle and the distance between them. The rotation trick instead writes the quantizer as a linear map
of e that happens to land on q,

    q̃ = λ R e,   R = I − 2 r rᵀ + 2 q̂ êᵀ,   r = (ê + q̂) / ‖ê + q̂‖,   λ = ‖q‖ / ‖e‖,

with R (the rotation of ê onto q̂ in the plane they span) and λ treated as constants. The forward value is q
(R ê = q̂, so λ R e = ‖q‖ q̂ = q), and the gradient reaching e is λ Rᵀ g: g rotated by the angle between e and
q, and rescaled by their norms. Points in the same Voronoi cell then get *different* gradients, depending on
where they sit in it. The code q gets no gradient through this path; it learns from its own codebook loss (or
the EMA), as with straight-through.

R is never built as a D×D matrix: R e = e − 2 r (r·e) + 2 q̂ (ê·e), two dot products per row.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["rotate_to", "rotation_matrix"]

EPS = 1e-6  # guards ‖e‖ = 0 and ‖ê + q̂‖ = 0 (e exactly opposite to q)


def rotate_to(e: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The rotation trick for rows: e (N, D) encoder outputs, q (N, D) their codes -> (N, D) in e's dtype.

    Value: q. Gradient to e: λ Rᵀ g with R = I − 2rrᵀ + 2q̂êᵀ and λ = ‖q‖/‖e‖ held constant; nothing reaches q.
    Computed in fp32 (also under autocast), without any D×D matrix.
    """
    if e.ndim != 2 or e.shape != q.shape:
        raise ValueError(f"rotate_to expects e and q of the same shape (N, D), got e {tuple(e.shape)} and "
                         f"q {tuple(q.shape)}; flatten your latents with rearrange(z, 'b d h w -> (b h w) d') first")
    e32 = e.float()
    with torch.no_grad():
        q32 = q.detach().float()
        e_norm = e32.norm(dim=1, keepdim=True).clamp_min(EPS)                  # (N, 1)
        e_hat, q_hat = e32 / e_norm, F.normalize(q32, dim=1, eps=EPS)         # (N, D) each
        r = F.normalize(e_hat + q_hat, dim=1, eps=EPS)                         # (N, D)
        lam = q32.norm(dim=1, keepdim=True) / e_norm                           # λ = ‖q‖ / ‖e‖, (N, 1)
    # λ R e = λ (e − 2 r (r·e) + 2 q̂ (ê·e)), with r, q̂, ê and λ constants: a linear map of e
    rotated = lam * (e32 - 2 * r * (r * e32).sum(1, keepdim=True) + 2 * q_hat * (e_hat * e32).sum(1, keepdim=True))
    # the value is exactly q (not q up to rounding); the gradient is the linear map's
    return (rotated + (q32 - rotated).detach()).to(e.dtype)


def rotation_matrix(e: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The explicit R (N, D, D) that maps ê onto q̂ for each row of e, q (N, D): for tests and pictures only."""
    e_hat, q_hat = F.normalize(e.detach().float(), dim=1, eps=EPS), F.normalize(q.detach().float(), dim=1, eps=EPS)
    r = F.normalize(e_hat + q_hat, dim=1, eps=EPS)
    eye = torch.eye(e.shape[1], device=e.device).expand(e.shape[0], -1, -1)
    # R = I − 2 r rᵀ + 2 q̂ êᵀ
    return eye - 2 * r.unsqueeze(2) * r.unsqueeze(1) + 2 * q_hat.unsqueeze(2) * e_hat.unsqueeze(1)
