"""Tests for minimovq.maskgit and minimovq.sampling (Lesson 5): tiny configs, CPU, a few seconds."""
import math

import pytest
import torch
import torch.nn.functional as F

from minimovq.maskgit import MaskGIT, cosine_schedule, drop_labels, make_optimizer, mask_tokens, prior_loss
from minimovq.sampling import sample, sample_autoregressive, select_to_remask
from minimovq.tokens import tokenize_dataset

K, GRID = 16, (4, 5)
N = GRID[0] * GRID[1]


def tiny(groups=1, causal=False, num_classes=None, seed=0):
    torch.manual_seed(seed)
    return MaskGIT(K, GRID, dim=32, depth=2, heads=4, groups=groups, num_classes=num_classes, causal=causal)


def rand_tokens(b, groups=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (b, *GRID) if groups == 1 else (b, *GRID, groups)
    return torch.randint(0, K, shape, generator=g)


# --- the network -----------------------------------------------------------------------------------

@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("causal", [False, True])
def test_logit_shapes_and_flat_grid_inputs_agree(groups, causal):
    m = tiny(groups, causal).eval()
    tok = rand_tokens(2, groups)
    logits = m(tok)
    assert logits.shape == (2, N, groups, K)
    flat = tok.reshape(2, N, groups) if groups > 1 else tok.reshape(2, N)
    torch.testing.assert_close(m(flat), logits)


def test_bad_inputs_raise_clear_errors():
    m = tiny()
    with pytest.raises(ValueError, match="grid_size"):
        m(torch.zeros(2, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 16\]"):
        m(torch.full((2, *GRID), K + 1))
    with pytest.raises(ValueError, match="integer"):
        m(torch.zeros(2, *GRID))
    with pytest.raises(ValueError, match="unconditional"):
        m(rand_tokens(2), labels=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        MaskGIT(K, GRID, dim=30, depth=1, heads=4)
    with pytest.raises(ValueError, match=r"\[0, 15\]"):  # [MASK] is not an input of a causal model
        tiny(causal=True)(torch.full((2, *GRID), K))


def test_bidirectional_sees_everything_causal_sees_only_the_past():
    tok = rand_tokens(1)
    j = 7  # change the token at position j
    changed = tok.clone().reshape(1, N)
    changed[0, j] = (changed[0, j] + 1) % K
    changed = changed.reshape(tok.shape)
    bi, ar = tiny().eval(), tiny(causal=True).eval()
    diff_bi = (bi(tok) - bi(changed)).abs().amax(dim=(0, 2, 3))
    diff_ar = (ar(tok) - ar(changed)).abs().amax(dim=(0, 2, 3))
    assert (diff_bi > 0).all()  # every output depends on position j
    assert (diff_ar[: j + 1] == 0).all() and (diff_ar[j + 1:] > 0).all()  # x_i sees x_<i only


def test_class_conditioning_changes_the_prediction():
    m = tiny(num_classes=3).eval()
    masked = torch.full((2, *GRID), K)
    a, b = m(masked, labels=torch.tensor([0, 0])), m(masked, labels=torch.tensor([0, 2]))
    torch.testing.assert_close(a[0], b[0])
    assert (a[1] - b[1]).abs().max() > 1e-4
    m(masked)  # labels=None is the "no class" token


@pytest.mark.parametrize("groups,num_classes", [(1, None), (2, 4)])
def test_kv_cache_matches_uncached_logits(groups, num_classes):
    m = tiny(groups, causal=True, num_classes=num_classes).eval()
    tok = m.flatten_tokens(rand_tokens(3, groups))  # (B, N, G)
    labels = torch.tensor([0, 1, 3]) if num_classes else None
    full = m(tok, labels)  # (B, N, G, K)
    cache = m.new_cache(3)
    steps = [m.decode_step(tok[:, i - 1] if i else None, cache, labels) for i in range(N)]
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="full"):
        m.decode_step(tok[:, -1], cache, labels)


def test_state_dict_keys():
    keys = list(tiny(num_classes=3).state_dict())
    assert {"pos_emb", "tok_emb.weight", "prefix_emb.weight", "ln_f.weight"} <= set(keys)
    assert "blocks.1.attn.qkv.weight" in keys and keys[-2:] == ["head.weight", "head.bias"]


# --- training pieces -------------------------------------------------------------------------------

def test_cosine_schedule_values():
    r = torch.tensor([0.0, 1 / 3, 0.5, 1.0])
    torch.testing.assert_close(cosine_schedule(r), torch.cos(math.pi * r / 2))
    assert float(cosine_schedule(0.0)) == 1.0 and abs(float(cosine_schedule(1.0))) < 1e-6


def test_mask_tokens_counts_ids_and_generator():
    tok = torch.randint(0, K, (4000, 4))
    masked, mask = mask_tokens(tok, K, generator=torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and mask.shape == tok.shape
    assert torch.equal(masked, torch.where(mask, K, tok))
    counts = mask.sum(1)
    assert counts.min() >= 1
    # P(count <= k) = P(cos(πr/2)·N <= k) = 1 − (2/π)·acos(k/N)
    for k in range(1, 4):
        expected = 1 - 2 / math.pi * math.acos(k / 4)
        assert abs((counts <= k).float().mean().item() - expected) < 0.03
    again = mask_tokens(tok, K, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[1], mask)


def test_mask_tokens_masks_all_groups_of_a_position():
    tok = torch.randint(0, K, (8, N, 3))
    masked, mask = mask_tokens(tok, K, generator=torch.Generator().manual_seed(1))
    assert mask.shape == (8, N)
    assert torch.equal((masked == K).all(-1), mask) and torch.equal((masked == K).any(-1), mask)


def test_select_to_remask_per_row_counts():
    conf = torch.tensor([[0.3, 0.1, 0.9, float("inf")], [5.0, 4.0, 3.0, 2.0]])
    out = select_to_remask(conf, torch.tensor([2, 1]))
    assert out.tolist() == [[True, True, False, False], [False, False, False, True]]
    assert select_to_remask(conf, 0).sum() == 0
    assert select_to_remask(conf, 3).sum(1).tolist() == [3, 3]


def test_prior_loss_is_cross_entropy_on_masked_positions_only():
    m = tiny(groups=2).eval()
    tok = m.flatten_tokens(rand_tokens(5, 2))
    out = prior_loss(m, tok, label_smoothing=0.1, generator=torch.Generator().manual_seed(3))
    masked, mask = mask_tokens(tok, K, generator=torch.Generator().manual_seed(3))
    logits = m(masked)[mask]  # (M, G, K)
    ref = F.cross_entropy(logits.reshape(-1, K), tok[mask].reshape(-1), label_smoothing=0.1)
    torch.testing.assert_close(out["loss"], ref)
    assert set(out) == {"loss", "acc"}


def test_make_optimizer_warmup_and_decay_groups():
    m = tiny()
    opt, sched = make_optimizer(m, lr=1e-3, warmup=4, total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3]) and lrs[-1] < 1e-4
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    assert id(m.head.weight) in decayed and id(m.tok_emb.weight) not in decayed
    assert opt.param_groups[1]["weight_decay"] == 0.0


@pytest.mark.parametrize("causal", [False, True])
def test_overfit_one_batch(causal, overfit):
    m = tiny(causal=causal)
    tok = rand_tokens(1).expand(8, *GRID)  # one grid: the prior must learn it by heart
    opt, sched = make_optimizer(m, lr=3e-3, warmup=5)
    gen = torch.Generator().manual_seed(0)
    losses = overfit(lambda: prior_loss(m, tok, label_smoothing=0.0, generator=gen)["loss"], steps=60,
                     optimizer=opt, scheduler=sched)
    assert losses[-1] < losses[0] / 10


# --- decoding --------------------------------------------------------------------------------------

@pytest.mark.parametrize("groups", [1, 2])
def test_sample_follows_the_cosine_schedule(groups):
    m = tiny(groups)
    steps = 5
    out, hist = sample(m, 3, steps=steps, return_history=True, generator=torch.Generator().manual_seed(0))
    assert out.shape == ((3, *GRID) if groups == 1 else (3, *GRID, groups))
    assert hist["tokens"].shape == (steps, *out.shape) and hist["prediction"].shape == (steps, *out.shape)
    assert (out < K).all() and torch.equal(hist["tokens"][-1], out)
    still_masked = [(h == K).reshape(3, N, groups).all(-1).sum(-1) for h in hist["tokens"]]
    expected, masked = [], N
    for t in range(steps - 1):
        n = math.floor(math.cos(math.pi / 2 * (t + 1) / steps) * N)
        masked = max(1, min(masked - 1, n))
        expected.append(masked)
    assert [int(c[0]) for c in still_masked] == expected + [0]
    for prev, nxt in zip(hist["tokens"][:-1], hist["tokens"][1:], strict=True):  # fixed tokens stay fixed
        fixed = prev != K
        assert torch.equal(nxt[fixed], prev[fixed])


def test_sample_is_reproducible_keeps_given_tokens_and_handles_more_steps_than_tokens():
    m = tiny(num_classes=2)
    a = sample(m, 2, steps=4, labels=torch.tensor([0, 1]), generator=torch.Generator().manual_seed(5))
    b = sample(m, 2, steps=4, labels=torch.tensor([0, 1]), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    start = rand_tokens(2)
    start[:, 2:] = K  # keep the two top rows, fill the rest
    filled = sample(m, 2, steps=3, tokens=start, labels=1)
    assert torch.equal(filled[:, :2], start[:, :2]) and (filled < K).all()
    assert (sample(m, 1, steps=N + 5) < K).all() and (sample(m, 1, steps=1) < K).all()
    with pytest.raises(ValueError, match="sample_autoregressive"):
        sample(tiny(causal=True), 1)


def test_sample_autoregressive_cache_agrees_with_no_cache():
    m = tiny(groups=2, causal=True, num_classes=3)
    kw = dict(labels=torch.tensor([2, 0]), top_k=5)
    a = sample_autoregressive(m, 2, generator=torch.Generator().manual_seed(0), **kw)
    b = sample_autoregressive(m, 2, generator=torch.Generator().manual_seed(0), use_cache=False, **kw)
    assert a.shape == (2, *GRID, 2) and torch.equal(a, b)
    greedy = sample_autoregressive(m, 2, temperature=0, **kw)
    assert torch.equal(greedy[0], sample_autoregressive(m, 2, temperature=0, **kw)[0])
    with pytest.raises(ValueError, match="causal=True"):
        sample_autoregressive(tiny(), 1)


def test_classifier_free_guidance_is_the_guided_draw():
    """One step, T = 1: the sample is argmax(log_softmax(ℓ_c + w(ℓ_c − ℓ_u)) + Gumbel) with the same noise."""
    from minimovq.sampling import gumbel_noise

    m = tiny(groups=2, num_classes=3).eval()
    labels, w = torch.tensor([2, 0]), 1.5
    out = sample(m, 2, steps=1, labels=labels, guidance=w, generator=torch.Generator().manual_seed(0))
    grid = torch.full((2, N, 2), m.mask_id)
    with torch.no_grad():
        cond, uncond = m(grid, labels), m(grid, torch.full((2,), 3))
    guided = (cond + w * (cond - uncond)).log_softmax(-1)
    noise = gumbel_noise(guided.shape, torch.Generator().manual_seed(0))
    assert torch.equal(out.reshape(2, N, 2), (guided + noise).argmax(-1))
    plain = sample(m, 2, steps=3, labels=labels, generator=torch.Generator().manual_seed(1))
    assert torch.equal(plain, sample(m, 2, steps=3, labels=labels, guidance=0.0,
                                     generator=torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="guidance needs"):
        sample(tiny(), 1, guidance=2.0)
    with pytest.raises(ValueError, match="guidance needs"):
        sample(m, 1, guidance=2.0)                                      # no labels


def test_guided_autoregressive_cache_agrees_with_no_cache_and_differs_from_unguided():
    m = tiny(causal=True, num_classes=3)
    kw = dict(labels=torch.tensor([1, 2, 0]), guidance=3.0)
    a = sample_autoregressive(m, 3, generator=torch.Generator().manual_seed(0), **kw)
    b = sample_autoregressive(m, 3, generator=torch.Generator().manual_seed(0), use_cache=False, **kw)
    assert torch.equal(a, b)
    greedy = lambda **k: sample_autoregressive(m, 3, temperature=0, labels=kw["labels"], **k)  # noqa: E731
    before, plain = greedy(guidance=3.0), greedy()
    with torch.no_grad():                                  # guidance reads the "no class" row; plain sampling does not
        m.prefix_emb.weight[3] = 3.0 * torch.randn(m.dim, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(greedy(guidance=3.0), before) and torch.equal(greedy(), plain)


@pytest.mark.parametrize("causal", [False, True])
def test_label_drop_trains_the_no_class_embedding(causal):
    """label_drop=1 sends every label to the "no class" row; label_drop=0 never touches it."""
    m = tiny(causal=causal, num_classes=3)
    labels = torch.tensor([0, 1, 2, 1])
    for drop, trained in [(1.0, [3]), (0.0, [0, 1, 2])]:
        m.zero_grad()
        prior_loss(m, rand_tokens(4), labels, label_drop=drop)["loss"].backward()
        has_grad = m.prefix_emb.weight.grad.abs().sum(1) > 0
        assert has_grad.nonzero().flatten().tolist() == trained


class FakeTokenizer(torch.nn.Module):
    """encode(x) -> (quant (B, C, h, w), loss, flat indices (B·h·w·G,)) like the VQ models."""

    def __init__(self, groups):
        super().__init__()
        self.groups = groups
        self.scale = torch.nn.Parameter(torch.ones(()))

    def encode(self, x):
        quant = F.avg_pool2d(x, 2) * self.scale  # (B, 3, h, w)
        idx = (quant[:, :1].clamp(0, 0.999) * K).long().repeat(1, self.groups, 1, 1)  # (B, G, h, w)
        return quant, quant.new_zeros(()), idx.permute(0, 2, 3, 1).reshape(-1)


@pytest.mark.parametrize("groups", [1, 2])
def test_tokenize_dataset(groups):
    images = torch.rand(10, 3, 8, 8)
    labels = torch.arange(10) % 3
    tk = FakeTokenizer(groups)
    tokens, none = tokenize_dataset(tk, images, batch_size=4)
    assert none is None
    assert tokens.dtype == torch.long and tokens.shape == ((10, 4, 4) if groups == 1 else (10, 4, 4, groups))
    expected = (F.avg_pool2d(images, 2)[:, 0].clamp(0, 0.999) * K).long()
    assert torch.equal(tokens if groups == 1 else tokens[..., -1], expected)
    ds = torch.utils.data.TensorDataset(images, labels)
    tok2, lab2 = tokenize_dataset(tk, torch.utils.data.DataLoader(ds, batch_size=3))
    assert torch.equal(tok2, tokens) and torch.equal(lab2, labels) and tk.training


def test_tokenize_dataset_with_a_real_movq_and_decode_back():
    from minimovq.movq import MoVQ

    torch.manual_seed(0)
    movq = MoVQ.from_config("tiny", groups=4).eval()  # f = 4: 16 px -> a 4×4 grid, 4 indices per position
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    tokens = tokenize_dataset(movq, images, batch_size=2).tokens
    assert tokens.shape == (3, 4, 4, 4) and tokens.max() < movq.n_embed
    prior = MaskGIT(movq.n_embed, tokens.shape[1:3], dim=32, depth=1, heads=4, groups=4).eval()
    assert prior(tokens).shape == (3, 16, 4, movq.n_embed)
    with torch.no_grad():
        assert movq.decode_indices(sample(prior, 2, steps=2)).shape == (2, 3, 16, 16)


def test_prior_loss_plugs_into_the_trainer():
    from minimovq.train import Trainer

    m = tiny(num_classes=3)
    tokens, labels = rand_tokens(16), torch.arange(16) % 3
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(tokens, labels), batch_size=8)
    opt, sched = make_optimizer(m, lr=1e-3, warmup=2)
    trainer = Trainer(m, {"loss": opt}, schedulers={"loss": sched}, grad_clip=1.0)
    history = trainer.fit(loader, lambda batch, step: prior_loss(m, *batch), steps=3, progress=False)
    assert len(history["loss"]) == 3 and len(history["acc"]) == 3 and sched.last_epoch == 3


@pytest.mark.parametrize("causal", [False, True])
def test_trained_priors_sample_the_data_distribution(causal):
    """Grids that repeat one random code: a joint structure that one parallel step cannot capture.

    Decoding one position per step (T = N, or AR) reproduces it; T = 1 draws every position independently."""
    torch.manual_seed(0)
    m = MaskGIT(4, (3, 3), dim=32, depth=1, heads=4, causal=causal)
    opt, sched = make_optimizer(m, lr=5e-3, warmup=5)
    gen = torch.Generator().manual_seed(0)
    for _ in range(80):
        tok = torch.randint(0, 4, (32,), generator=gen)[:, None, None].expand(32, 3, 3)
        loss = prior_loss(m, tok, label_smoothing=0.0, generator=gen)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()

    def constant_share(s):
        return (s == s[:, :1, :1]).flatten(1).all(1).float().mean().item()

    g = torch.Generator().manual_seed(1)
    if causal:
        assert constant_share(sample_autoregressive(m, 64, generator=g)) > 0.8
    else:
        assert constant_share(sample(m, 64, steps=9, generator=g)) > 0.8
        assert constant_share(sample(m, 64, steps=1, generator=g)) < 0.1


def test_drop_labels_rate_and_generator():
    labels = torch.arange(20000) % 3
    out = drop_labels(labels, 0.1, null_id=3, generator=torch.Generator().manual_seed(0))
    kept = out != 3
    assert torch.equal(out[kept], labels[kept]) and abs((~kept).float().mean().item() - 0.1) < 0.01
    assert torch.equal(out, drop_labels(labels, 0.1, 3, torch.Generator().manual_seed(0)))
    assert torch.equal(drop_labels(labels, 0.0, 3), labels)
