"""World-size invariance and kill-and-resume of ``python -m minimovq train`` on CPU (gloo), with tiny models.

* 2 processes (torchrun) reach the weights of 1 process, up to floating-point reduction order: a VQ-VAE with the
  EMA quantizer and dead-code restarts, and a MoVQ whose GAN (adaptive weight, BatchNorm PatchGAN) is on.
* A run killed with SIGKILL and started again with the same command ends bit-identical to an uninterrupted run.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from minimovq.checkpoint import load_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MINIMOVQ_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
TINY = ["--data", "shapes", "--num-images", "64", "--image-size", "16", "--batch-size", "8", "--log-every", "1",
        "--workers", "0", "--device", "cpu"]


def train_cmd(out, *opts, procs=1):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"] \
        if procs > 1 else [sys.executable]
    return [*launcher, "-m", "minimovq", "train", *TINY, *opts, "--out", str(out)]


def run(cmd):
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]


def losses(path):
    return [{k: v for k, v in json.loads(line).items() if k not in ("images_per_s", "seconds")}
            for line in path.read_text().splitlines()]


def weight_gaps(a, b, free=()):
    """Max |a − b| over the tensors with a real gradient, and over the gradient-free ones (``free``)."""
    gap = {k: (a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point()}
    return max(v for k, v in gap.items() if k not in free), max([gap[k] for k in free] or [0.0])


def gradient_free(state, model_opts):
    """Parameters whose gradient is zero in exact arithmetic (e.g. conv biases right before a 1-channel-per-group
    GroupNorm): their computed gradient is rounding noise, which Adam scales to ±lr steps whatever its size, so
    they differ between any two summation orders without changing what the model computes."""
    from minimovq.cli.configs import build_tokenizer

    net = build_tokenizer(*model_opts)
    net.load_state_dict(state)
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x_hat, vq_loss, _ = net(x)
    ((x_hat - x) ** 2).mean().backward()
    norms = {n: p.grad.abs().max().item() for n, p in net.named_parameters() if p.grad is not None}
    typical = sorted(norms.values())[len(norms) // 2]
    return {n for n, g in norms.items() if g < 1e-4 * typical}  # a gap of 100x: 4e-9 vs 5e-7 here


def test_two_processes_match_one_vqvae_ema(tmp_path):
    opts = ["--model", "vqvae", "--config", "tiny", "--quantizer", "ema", "--dead-code", "2", "--steps", "3",
            "--ckpt-every", "3"]
    run(train_cmd(tmp_path / "one", *opts))
    run(train_cmd(tmp_path / "two", *opts, procs=2))
    a, b = (load_checkpoint(tmp_path / d / "last.pt") for d in ("one", "two"))
    assert a["world_size"] == 1 and b["world_size"] == 2
    for x, y in zip(losses(tmp_path / "one" / "metrics.jsonl"), losses(tmp_path / "two" / "metrics.jsonl"),
                    strict=True):
        assert x.keys() == y.keys() and all(abs(x[k] - y[k]) <= 1e-5 * max(1, abs(x[k])) for k in x)
    real, _ = weight_gaps(a["model"], b["model"])
    print(f"\nVQ-VAE (EMA, dead-code restarts), 3 steps: max |w1 - w2| = {real:.2e}")
    assert real < 1e-6
    assert torch.equal(a["model"]["quantize.steps_unused"], b["model"]["quantize.steps_unused"])


def test_two_processes_match_one_movq_with_gan(tmp_path):
    opts = ["--model", "movq", "--config", "tiny", "--loss", "taming", "--steps", "3", "--gan-start", "1",
            "--ckpt-every", "3"]
    run(train_cmd(tmp_path / "one", *opts))
    run(train_cmd(tmp_path / "two", *opts, procs=2))
    a, b = (load_checkpoint(tmp_path / d / "last.pt") for d in ("one", "two"))
    la, lb = losses(tmp_path / "one" / "metrics.jsonl"), losses(tmp_path / "two" / "metrics.jsonl")
    assert "disc_loss" in la[-1] and "d_weight" in la[-1]  # the GAN, its adaptive weight and D's BatchNorm ran
    for x, y in zip(la, lb, strict=True):
        assert x.keys() == y.keys() and all(abs(x[k] - y[k]) <= 1e-4 * max(1, abs(x[k])) for k in x), (x, y)
    free = gradient_free(a["model"], ("movq", "tiny", "vq"))
    real, noise = weight_gaps(a["model"], b["model"], free)
    disc, _ = weight_gaps(a["discriminator"], b["discriminator"])
    print(f"\nMoVQ + GAN, 3 steps: max |w1 - w2| = {real:.2e} (tokenizer), {disc:.2e} (discriminator); "
          f"{len(free)} gradient-free biases: {noise:.2e}")
    assert real < 1e-5 and disc < 5e-5


def test_killed_run_resumes_as_if_never_interrupted(tmp_path):
    opts = ["--model", "vqvae", "--config", "tiny", "--quantizer", "ema", "--dead-code", "2", "--steps", "30",
            "--ckpt-every", "1"]
    run(train_cmd(tmp_path / "whole", *opts))
    cut = tmp_path / "cut"
    proc = subprocess.Popen(train_cmd(cut, *opts), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (cut / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(cut / "last.pt")["step"]
    if killed_at >= 30:
        pytest.skip("the run finished before it could be killed (machine too fast for 30 tiny steps)")
    run(train_cmd(cut, *opts))  # the same command again
    a, b = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(cut / "last.pt")
    print(f"\nkilled at step {killed_at} of 30, resumed: ", end="")
    for key in ("model", "discriminator"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert b["step"] == 30
    assert all(torch.equal(x["exp_avg"], y["exp_avg"])
               for x, y in zip(a["optimizers"]["g"]["state"].values(), b["optimizers"]["g"]["state"].values(),
                                   strict=True))
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert losses(tmp_path / "whole" / "metrics.jsonl") == losses(cut / "metrics.jsonl")
    print("weights, optimizer, RNG and metrics.jsonl bit-identical to the uninterrupted run")
