"""The Lesson 5 checks accept the references and reject known-wrong implementations."""
import math

import pytest
import torch

from minimovq import maskgit, sampling
from minimovq.checks import maskgit as checks


def test_references_are_the_package_functions():
    assert checks.mask_tokens.reference is maskgit.mask_tokens
    assert checks.decode_step.reference is sampling.decode_step
    assert checks.mask_tokens.exercise_number == "5.1" and checks.decode_step.exercise_number == "5.2"


def test_a_plain_learner_version_passes():
    def mask_mine(tokens, mask_id, generator=None):  # a different but valid random-draw order
        B, N = tokens.shape
        order = torch.stack([torch.randperm(N, generator=generator) for _ in range(B)])
        r = torch.rand(B, generator=generator)
        n = torch.clamp(torch.ceil(torch.cos(math.pi * r / 2) * N), min=1).long()
        mask = torch.zeros(B, N, dtype=torch.bool).scatter(1, order, torch.arange(N).expand(B, N) < n[:, None])
        return tokens.masked_fill(mask, mask_id), mask

    checks.mask_tokens(mask_mine, strict=True)
    checks.decode_step(_decoder(), strict=True)
    checks.decode_step(_decoder(loop=True), strict=True)


def _masker(count, rng="generator", positions="random", fill=True):
    """Build a mask_tokens variant; ``count(gamma, N) -> LongTensor (B,)``."""

    def fn(tokens, mask_id, generator=None):
        B, N = tokens.shape[:2]
        gen = generator if rng == "generator" else None
        r = torch.rand(B, generator=gen) if rng != "one_r" else torch.rand(1, generator=generator).expand(B)
        n = count(torch.cos(math.pi * r / 2), N)
        if positions == "random":
            scores = torch.rand(B, N, generator=gen)
        else:  # always the first n positions
            scores = torch.arange(N, dtype=torch.float).expand(B, N)
        mask = sampling.select_to_remask(scores, n)
        return (tokens.masked_fill(mask, mask_id) if fill else tokens.clone()), mask

    return fn


good_count = lambda g, N: torch.ceil(g * N).long().clamp(min=1)  # noqa: E731


@pytest.mark.parametrize("wrong", [
    _masker(lambda g, N: torch.floor(g * N).long().clamp(min=1)),   # floor instead of ceil
    _masker(lambda g, N: torch.floor(g * N).long()),                # floor, may mask 0 positions
    _masker(lambda g, N: torch.round(g * N).long().clamp(min=1)),   # round
    _masker(lambda g, N: torch.ceil((1 - g) * N).long().clamp(min=1)),  # inverted ratio
    _masker(good_count, rng="global"),                              # ignores the generator
    _masker(good_count, rng="one_r"),                               # one r for the whole batch
    _masker(good_count, positions="first"),                         # not random positions
    _masker(good_count, fill=False),                                # forgot to write mask_id
    lambda tokens, mask_id, generator=None: (tokens, torch.zeros_like(tokens)),  # not a bool mask
])
def test_mask_tokens_rejects(wrong):
    assert checks.mask_tokens(_masker(good_count), strict=True)  # the builder itself is right
    with pytest.raises(AssertionError):
        checks.mask_tokens(wrong, strict=True)


def mask_in_place(tokens, mask_id, generator=None):  # tokens[mask] = mask_id: corrupts the caller's targets
    _, mask = maskgit.mask_tokens(tokens, mask_id, generator)
    tokens[mask] = mask_id
    return tokens, mask


def test_mask_tokens_rejects_in_place():
    with pytest.raises(AssertionError, match="in place"):
        checks.mask_tokens(mask_in_place, strict=True)


def _decoder(schedule_shift=1, noise_shift=1, use_log=True, known_inf=True, keep_known=True, floor=math.floor,
             n_from="n_start", clamp_low=True, clamp_high=True, last_zero=True, in_place=False, loop=False,
             axis=-1, sum_noise=True):
    """A decode_step variant written as a learner would (per row, Python ints); the defaults are right."""
    def fn(tokens, logits, sampled, noise, mask_id, step, steps, n_start, choice_temperature=4.5):
        unknown = tokens == mask_id
        if in_place:
            new = tokens
            new[unknown] = sampled[unknown]
        else:
            new = torch.where(unknown, sampled, tokens) if keep_known else sampled.clone()
        logp = logits.log_softmax(axis) if use_log else logits.softmax(-1)
        conf = logp.gather(-1, new[..., None])[..., 0]
        scale = choice_temperature * (1 - (step + noise_shift) / steps)
        conf = conf + scale * noise if sum_noise else conf
        if known_inf:
            conf = conf.masked_fill(~unknown, float("inf"))
        starts = torch.as_tensor(n_start).expand(tokens.shape[0])
        rows = []
        for b in range(tokens.shape[0]):
            u = int(unknown[b].sum())
            start = u if n_from == "u" else int(starts[b])
            n = floor(math.cos(math.pi / 2 * (step + schedule_shift) / steps) * start)
            if clamp_high:
                n = min(u - 1, n)
            if clamp_low:
                n = max(1, n)
            if u == 0 or (last_zero and step == steps - 1):
                n = 0
            row = new[b].clone()
            if loop:
                order = sorted(range(row.numel()), key=lambda i: float(conf[b, i]))[:n]
                row[order] = mask_id
            else:
                row[conf[b].argsort(stable=True)[:n]] = mask_id
            rows.append(row)
        return torch.stack(rows)
    return fn


@pytest.mark.parametrize("wrong", [
    _decoder(schedule_shift=0),          # γ(step/steps): the schedule one step behind
    _decoder(schedule_shift=2),          # γ((step+2)/steps): one step ahead
    _decoder(noise_shift=0),             # τ·(1 − step/steps): the annealing one step behind
    _decoder(sum_noise=False),           # no Gumbel noise on the confidence
    _decoder(use_log=False),             # softmax probabilities instead of log-probabilities
    _decoder(axis=1),                    # log_softmax over the positions instead of the codes
    _decoder(known_inf=False),           # known tokens can be re-masked
    _decoder(keep_known=False),          # overwrites known tokens with new samples
    _decoder(floor=math.ceil),           # ceil instead of floor
    _decoder(floor=round),               # round instead of floor
    _decoder(n_from="u"),                # γ · u instead of γ · n_start
    _decoder(clamp_low=False),           # may re-mask nothing before the last step
    _decoder(clamp_high=False),          # may re-mask every unknown position
    _decoder(last_zero=False),           # leaves a masked token after the last step
    _decoder(in_place=True),             # writes the samples into the caller's tokens
])
def test_decode_step_rejects(wrong):
    with pytest.raises(AssertionError):
        checks.decode_step(wrong, strict=True)


def test_decode_step_reference_handles_groups():
    K, B, N, G = 5, 2, 6, 3
    tokens = torch.randint(0, K, (B, N, G))
    tokens[:, :4] = K
    logits = torch.randn(B, N, G, K)
    sampled = torch.randint(0, K, (B, N, G))
    out = sampling.decode_step(tokens, logits, sampled, torch.zeros(B, N), K, 0, 4, 4)
    assert out.shape == (B, N, G) and torch.equal(out[:, 4:], tokens[:, 4:])
    masked = (out == K)
    assert torch.equal(masked.all(-1), masked.any(-1))  # a position is masked as a whole
    assert masked.all(-1).sum(1).tolist() == [3, 3]     # ⌊cos(π/8)·4⌋ = 3
