"""The Lesson 5 checks accept the references and reject known-wrong implementations."""
import math

import pytest
import torch

from minimovq import maskgit, sampling
from minimovq.checks import maskgit as checks


def test_references_are_the_package_functions():
    assert checks.cosine_schedule.reference is maskgit.cosine_schedule
    assert checks.mask_tokens.reference is maskgit.mask_tokens
    assert checks.select_to_remask.reference is sampling.select_to_remask


def test_a_plain_learner_version_passes():
    def mine(r):
        return torch.cos(math.pi * r / 2)

    def mask_mine(tokens, mask_id, generator=None):  # a different but valid random-draw order
        B, N = tokens.shape
        order = torch.stack([torch.randperm(N, generator=generator) for _ in range(B)])
        r = torch.rand(B, generator=generator)
        n = torch.clamp(torch.ceil(torch.cos(math.pi * r / 2) * N), min=1).long()
        mask = torch.zeros(B, N, dtype=torch.bool).scatter(1, order, torch.arange(N).expand(B, N) < n[:, None])
        return tokens.masked_fill(mask, mask_id), mask

    def remask_mine(confidence, n):
        n = torch.as_tensor(n).expand(confidence.shape[0])
        order = confidence.argsort(dim=1)
        ranks = torch.empty_like(order).scatter_(1, order, torch.arange(confidence.shape[1]).expand_as(order))
        return ranks < n[:, None]

    checks.cosine_schedule(mine, strict=True)
    checks.mask_tokens(mask_mine, strict=True)
    checks.select_to_remask(remask_mine, strict=True)


@pytest.mark.parametrize("wrong", [
    lambda r: torch.sin(math.pi * r / 2),          # sin schedule
    lambda r: torch.cos(math.pi * r),              # forgot the /2
    lambda r: 1 - r,                               # linear
    lambda r: torch.cos(math.pi * r / 2).mean(),   # reduces
])
def test_cosine_schedule_rejects(wrong):
    with pytest.raises(AssertionError):
        checks.cosine_schedule(wrong, strict=True)


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


def _ranked(confidence, n):
    return confidence.argsort(dim=1, stable=True).argsort(dim=1, stable=True), \
        torch.as_tensor(n).long().reshape(-1).expand(confidence.shape[0])


def most_confident(confidence, n):
    ranks, n = _ranked(-confidence, n)
    return ranks < n[:, None]


def first_row_n(confidence, n):
    ranks, n = _ranked(confidence, n)
    return ranks < n[0]


def max_n(confidence, n):
    ranks, n = _ranked(confidence, n)
    return ranks < n.max()


def off_by_one(confidence, n):
    ranks, n = _ranked(confidence, n)
    return ranks <= n[:, None]


def as_float(confidence, n):
    ranks, n = _ranked(confidence, n)
    return (ranks < n[:, None]).float()


@pytest.mark.parametrize("wrong", [most_confident, first_row_n, max_n, off_by_one, as_float])
def test_select_to_remask_rejects(wrong):
    with pytest.raises(AssertionError):
        checks.select_to_remask(wrong, strict=True)
