"""minimovq.quantize: faithful to the VQ-VAE paper and to taming/SBER, lean, and healthy on request."""
import pytest
import torch
import torch.nn.functional as F

from minimovq.quantize import (CodebookUsage, EMAVectorQuantizer, VectorQuantizer, codebook_usage, ema_update,
                               kmeans, nearest_codes, perplexity, quantize)


def brute_force_indices(flat, codebook):
    return torch.cdist(flat.double(), codebook.double()).argmin(1)


@pytest.fixture
def z():
    torch.manual_seed(0)
    return torch.randn(2, 8, 3, 5)


def test_default_state_dicts_match_taming_and_sber():
    q = VectorQuantizer(16, 8)
    sd = q.state_dict()
    assert list(sd) == ["embedding.weight"] and sd["embedding.weight"].shape == (16, 8)
    w = q.embedding.weight
    assert w.abs().max() <= 1 / 16 and w.std() > 0
    # a taming/SBER quantizer checkpoint loads strictly
    VectorQuantizer(16, 8).load_state_dict({"embedding.weight": torch.randn(16, 8)}, strict=True)
    e = EMAVectorQuantizer(16, 8)
    assert set(e.state_dict()) == {"embedding.weight", "cluster_size", "embed_sum"}
    assert not e.embedding.weight.requires_grad


def test_option_buffers_only_exist_when_on():
    q = VectorQuantizer(16, 8, dead_code_threshold=5, kmeans_init=True, l2_norm=True)
    assert set(q.state_dict()) == {"embedding.weight", "steps_unused", "initted"}
    assert VectorQuantizer(16, 8, groups=2).state_dict()["embedding.weight"].shape == (16, 4)


@pytest.mark.parametrize("cls", [VectorQuantizer, EMAVectorQuantizer])
def test_forward_shapes_nearest_codes_and_lookup(cls, z):
    q = cls(16, 8)
    q.embedding.weight.data.normal_()
    z_q, loss, idx = q.eval()(z)
    assert z_q.shape == z.shape and loss.shape == () and idx.shape == (2, 3, 5) and idx.dtype == torch.long
    flat = z.permute(0, 2, 3, 1).reshape(-1, 8)  # ordered by b, h, w as in taming
    assert torch.equal(idx.flatten(), brute_force_indices(flat, q.embedding.weight))
    assert torch.allclose(z_q, q.get_codebook_entry(idx), atol=1e-6)
    # taming's call form: flat indices plus (B, H, W, C)
    assert torch.allclose(q.get_codebook_entry(idx.flatten(), shape=(2, 3, 5, 8)), z_q, atol=1e-6)
    # any batch size and grid
    assert q.get_codebook_entry(torch.randint(16, (7, 4, 9))).shape == (7, 8, 4, 9)


def test_nearest_codes_chunked_and_fp32_under_autocast():
    torch.manual_seed(1)
    flat, codebook = torch.randn(300, 6), torch.randn(50, 6)
    ref = brute_force_indices(flat, codebook)
    assert torch.equal(nearest_codes(flat, codebook), ref)
    assert torch.equal(nearest_codes(flat, codebook, chunk_size=7), ref)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(nearest_codes(flat, codebook), ref)
    # ties go to the first code, as torch.argmin (and taming) do
    assert nearest_codes(torch.zeros(1, 2), torch.tensor([[1.0, 0], [0, 1.0], [-1.0, 0]])).item() == 0


def test_straight_through_passes_the_gradient_unchanged(z):
    q = VectorQuantizer(16, 8)
    z = z.clone().requires_grad_()
    z_q, _, _ = q(z)
    g = torch.randn_like(z)
    z_q.backward(g)
    assert torch.equal(z.grad, g)


def test_paper_loss_and_legacy_beta_placement(z):
    beta = 0.25
    q = VectorQuantizer(16, 8, beta=beta)
    legacy = VectorQuantizer(16, 8, beta=beta, legacy=True)
    legacy.load_state_dict(q.state_dict())
    grads = {}
    for name, m in (("paper", q), ("legacy", legacy)):
        zz = z.clone().requires_grad_()
        z_q, loss, idx = m(zz)
        e = m.get_codebook_entry(idx).detach()
        # forward value is (1 + β)·MSE either way
        assert torch.allclose(loss, (1 + beta) * F.mse_loss(zz, e))
        loss.backward()
        grads[name] = (zz.grad.clone(), m.embedding.weight.grad.clone())
    # number for number against taming's formula: mean((sg[z_q] − z)²) + β·mean((z_q − sg[z])²)
    w = legacy.embedding.weight.detach().clone().requires_grad_()
    zz = z.clone().requires_grad_()
    e = F.embedding(nearest_codes(zz.permute(0, 2, 3, 1).reshape(-1, 8), w), w).view(2, 3, 5, 8).permute(0, 3, 1, 2)
    taming = torch.mean((e.detach() - zz) ** 2) + beta * torch.mean((e - zz.detach()) ** 2)
    taming.backward()
    assert torch.allclose(grads["legacy"][0], zz.grad) and torch.allclose(grads["legacy"][1], w.grad)
    # the paper puts β on the commitment term: encoder gradient β×, codebook gradient 1/β× of legacy's
    assert torch.allclose(grads["paper"][0], beta * grads["legacy"][0], atol=1e-7)
    assert torch.allclose(grads["paper"][1], grads["legacy"][1] / beta, atol=1e-7)


def test_quantize_function_matches_the_module(z):
    q = VectorQuantizer(16, 8)
    q.embedding.weight.data.normal_()
    a, b = q(z), quantize(z, q.embedding.weight)
    assert torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1]) and torch.equal(a[2], b[2])


@pytest.mark.parametrize("cls", [VectorQuantizer, EMAVectorQuantizer])
def test_groups_share_one_codebook_over_contiguous_channels(cls, z):
    torch.manual_seed(0)
    q = cls(16, 8, groups=2).eval()
    q.embedding.weight.data.normal_()
    z_q, loss, idx = q(z)
    assert idx.shape == (2, 3, 5, 2) and z_q.shape == z.shape
    for g in range(2):  # group g holds channels [4g, 4g + 4)
        zg_q, _, idx_g = quantize(z[:, 4 * g:4 * g + 4], q.embedding.weight)
        assert torch.equal(idx[..., g], idx_g) and torch.allclose(z_q[:, 4 * g:4 * g + 4], zg_q, atol=1e-6)
    assert torch.allclose(q.get_codebook_entry(idx), z_q, atol=1e-6)
    assert torch.allclose(q.get_codebook_entry(idx.flatten(), shape=(2, 3, 5, 8)), z_q, atol=1e-6)
    # one group is exactly the plain quantizer
    one = cls(16, 8, groups=1).eval()
    plain = cls(16, 8).eval()
    plain.load_state_dict(one.state_dict())
    for a, b in zip(one(z), plain(z), strict=True):
        assert torch.equal(a, b)


def test_bad_input_names_both_numbers(z):
    with pytest.raises(ValueError, match=r"8.*6|6.*8"):
        VectorQuantizer(16, 8)(torch.randn(2, 6, 3, 3))
    with pytest.raises(ValueError, match=r"embed_dim=8.*groups=3"):
        EMAVectorQuantizer(16, 8, groups=3)
    with pytest.raises(ValueError, match="indices"):
        VectorQuantizer(16, 8, groups=2).get_codebook_entry(torch.zeros(2, 3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        VectorQuantizer(16, 8).get_codebook_entry(torch.full((1, 2, 2), 16))


@pytest.mark.parametrize("cls", [VectorQuantizer, EMAVectorQuantizer])
def test_fp16_autocast_gives_finite_values(cls, z):
    q = cls(16, 8, groups=2)
    x = (z * 100).half().requires_grad_()  # large values that would overflow fp16 distances
    with torch.autocast("cpu", dtype=torch.float16):
        z_q, loss, idx = q(x)
    assert z_q.dtype == torch.float16 and torch.isfinite(z_q).all() and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(x.grad).all()


def test_ema_update_is_pure_and_matches_the_appendix():
    torch.manual_seed(0)
    K, D, decay, eps = 5, 3, 0.9, 1e-5
    N, m, z, idx = torch.rand(K) + 0.5, torch.randn(K, D), torch.randn(40, D), torch.randint(0, 4, (40,))
    N0, m0 = N.clone(), m.clone()
    N1, m1, e = ema_update(N, m, z, idx, decay, eps)
    assert torch.equal(N, N0) and torch.equal(m, m0)
    onehot = F.one_hot(idx, K).float()
    N_ref = decay * N0 + (1 - decay) * onehot.sum(0)
    m_ref = decay * m0 + (1 - decay) * onehot.t() @ z
    Ns = (N_ref + eps) / (N_ref.sum() + K * eps) * N_ref.sum()
    assert torch.allclose(N1, N_ref) and torch.allclose(m1, m_ref, atol=1e-6)
    assert torch.allclose(e, m_ref / Ns[:, None], atol=1e-6)


def test_ema_quantizer_updates_after_lookup_and_only_in_training(z):
    q = EMAVectorQuantizer(16, 8, beta=0.25, decay=0.9)
    old = q.embedding.weight.clone()
    z_q, loss, idx = q.train()(z)
    assert torch.allclose(z_q, F.embedding(idx, old).permute(0, 3, 1, 2), atol=1e-6)  # looked up before update
    assert torch.allclose(loss, 0.25 * F.mse_loss(z, z_q))  # commitment only
    flat = z.permute(0, 2, 3, 1).reshape(-1, 8)
    N, m, e = ema_update(torch.ones(16), old, flat, idx.flatten(), 0.9, 1e-5)
    assert torch.allclose(q.cluster_size, N) and torch.allclose(q.embed_sum, m) and torch.allclose(
        q.embedding.weight, e)
    frozen = q.state_dict()
    q.eval()(z)
    assert all(torch.equal(v, q.state_dict()[k]) for k, v in frozen.items())


def test_ema_learns_the_data_clusters():
    torch.manual_seed(0)
    centers = torch.randn(4, 2) * 3
    q = EMAVectorQuantizer(4, 2, decay=0.8)
    start = centers + 0.5 * torch.randn(4, 2)  # each code starts near its own cluster
    q.embedding.weight.data.copy_(start)
    q.embed_sum.copy_(start)
    for _ in range(30):
        pts = centers[torch.randint(4, (256,))] + 0.05 * torch.randn(256, 2)
        q(pts.view(16, 16, 2).permute(2, 0, 1).unsqueeze(0))
    dist = torch.cdist(centers, q.embedding.weight).min(1).values
    assert dist.max() < 0.1


def test_perplexity_natural_log():
    assert torch.isclose(perplexity(torch.arange(8), 8), torch.tensor(8.0))
    assert torch.isclose(perplexity(torch.zeros(10, dtype=torch.long), 8), torch.tensor(1.0))
    p = torch.tensor([0.5, 0.25, 0.25])
    ref = torch.exp(-(p * p.log()).sum())  # exp of the entropy in nats = 2**1.5 ≈ 2.83 effective codes
    assert torch.isclose(perplexity(torch.tensor([0, 0, 1, 2]), 3), ref.float())


def test_codebook_usage_over_a_split():
    batches = [torch.tensor([[0, 1], [1, 1]]), torch.tensor([[2, 2], [2, 2]])]
    usage = CodebookUsage(8)
    for b in batches:
        usage.update(b)
    assert usage.total == 8 and usage.usage() == 3 / 8
    assert usage.perplexity() == pytest.approx(float(perplexity(torch.cat([b.flatten() for b in batches]), 8)))
    assert usage.dead_codes().tolist() == [3, 4, 5, 6, 7]
    with pytest.raises(ValueError, match="0, 8"):
        usage.update(torch.tensor([9]))


def test_codebook_usage_helper_runs_a_model_over_a_loader():
    from minimovq.vqvae import VQVAE
    torch.manual_seed(0)
    model = VQVAE(hidden=16, res_hidden=8, num_res_layers=1, embed_dim=4, n_embed=32).train()
    loader = [(torch.rand(3, 3, 8, 8) * 2 - 1, torch.zeros(3)) for _ in range(3)]
    usage = codebook_usage(model, loader, max_batches=2)
    assert usage.total == 2 * 3 * 2 * 2 and model.training and 1 <= usage.perplexity() <= 32


def test_dead_code_restarts_revive_unused_codes():
    torch.manual_seed(0)
    for cls in (VectorQuantizer, EMAVectorQuantizer):
        q = cls(64, 4, dead_code_threshold=2)
        q.embedding.weight.data[1:] += 100.0  # all but one code far from the data: collapse
        for _ in range(4):
            _, _, idx = q(torch.randn(1, 4, 16, 16))
        assert idx.unique().numel() > 20, cls
        assert (q.steps_unused <= 2).all()  # dead codes restart at the next training batch
        collapsed = cls(64, 4)
        collapsed.embedding.weight.data[1:] += 100.0
        assert collapsed(torch.randn(1, 4, 16, 16))[2].unique().numel() == 1


def test_l2_norm_codes_are_unit_vectors(z):
    q = VectorQuantizer(16, 8, l2_norm=True)
    z_q, _, _ = q(z)
    assert torch.allclose(z_q.norm(dim=1), torch.ones(2, 3, 5), atol=1e-5)


def test_kmeans_init_runs_once_on_the_first_training_batch(z):
    q = VectorQuantizer(4, 8, kmeans_init=True)
    q(z)
    assert bool(q.initted)
    w = q.embedding.weight.clone()
    q(z)
    assert torch.equal(w, q.embedding.weight)
    c = kmeans(torch.cat([torch.zeros(10, 2), torch.ones(10, 2)]), 2, generator=torch.Generator().manual_seed(0))
    assert sorted(c.sum(1).tolist()) == [0.0, 2.0]


@pytest.mark.parametrize("cls", [VectorQuantizer, EMAVectorQuantizer])
def test_no_op_allocates_an_n_by_k_matrix(cls):
    from torch.profiler import ProfilerActivity, profile
    q = cls(1024, 16, chunk_size=1024)
    z = torch.randn(8, 16, 32, 32, requires_grad=True)  # N = 8192 vectors, K = 1024 codes
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        z_q, loss, _ = q(z)
        (loss + z_q.mean()).backward()
    biggest = max(e.cpu_memory_usage for e in prof.events())
    assert biggest <= 1024 * 1024 * 4, biggest  # one (chunk, K) block of fp32 distances at most; N×K would be 32 MiB


@pytest.mark.parametrize("cls", [VectorQuantizer, EMAVectorQuantizer])
def test_codebook_init_options(cls):
    torch.manual_seed(0)
    taming = cls(512, 64).embedding.weight
    assert taming.abs().max() <= 1 / 512 and taming.abs().max() > 0.9 / 512          # U(±1/K)
    sonnet = cls(512, 64, groups=4, init="variance_scaling")
    w, bound = sonnet.embedding.weight, (3 / 16) ** 0.5                           # d = D/G = 16
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
    assert abs(w.var().item() - bound ** 2 / 3) < 0.01                            # unit fan-in variance 1/d
    assert "init='variance_scaling'" in repr(sonnet) and "init" not in repr(cls(8, 4))
    assert set(sonnet.state_dict()) == set(cls(512, 64, groups=4).state_dict())   # no new keys
    if cls is EMAVectorQuantizer:
        torch.testing.assert_close(sonnet.embed_sum, w)                           # EMA stats start at the codes
    with pytest.raises(ValueError, match="init must be one of"):
        cls(8, 4, init="normal")
