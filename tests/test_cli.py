"""``python -m minimovq``: clear errors for bad options, the global batch order, and the whole pipeline
(train -> tokenize -> train-prior -> sample -> eval) on tiny models, in-process and in seconds."""
from __future__ import annotations

import json

import pytest
import torch

from minimovq import distributed
from minimovq.checkpoint import load_checkpoint
from minimovq.cli import load_tokenizer, main
from minimovq.cli import tools
from minimovq.cli.loop import GlobalBatchSampler, UsageError, check_batch
from minimovq.movq import MoVQ

TINY = ["--data", "shapes", "--num-images", "32", "--image-size", "16", "--batch-size", "8", "--workers", "0",
        "--device", "cpu"]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("MINIMOVQ_OFFLINE", "1")


@pytest.mark.parametrize("opts, message", [
    (["--model", "vqgann"], "unknown --model 'vqgann'; choose one of vqvae, vqgan, movq"),
    (["--model", "movq", "--config", "huge"], "unknown --config 'huge' for --model movq"),
    (["--model", "movq", "--config", "tiny", "--groups", "3"], "--groups 3 does not divide"),
    (["--model", "vqvae", "--quantizer", "kmeans"], "unknown --quantizer 'kmeans'"),
    (["--accum", "3"], "does not split into 1 process(es) x 3 micro-batch(es)"),
    (["--data", "folder:/no/such/folder"], "is not a directory"),
    (["--model", "vqvae", "--gan-start", "0"], "the VQ-VAE trains without a GAN"),
])
def test_bad_options_fail_before_work(tmp_path, capsys, opts, message):
    assert main(["train", *TINY, "--steps", "2", *opts, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err
    assert not (tmp_path / "last.pt").exists()


def test_batch_must_divide_across_processes():
    with pytest.raises(UsageError, match="does not split into 4 process"):
        check_batch(6, world=4, accum=1, dataset_size=100)
    assert check_batch(16, world=4, accum=2, dataset_size=100) == 2


@pytest.mark.parametrize("accum", [1, 2])
def test_global_batch_is_the_same_for_any_world_size(accum):
    def read(world, start=0):
        ranks = [list(GlobalBatchSampler(20, 8, steps=6, start=start, seed=3, rank=r, world=world, accum=accum))
                 for r in range(world)]
        # per step and micro-batch, concatenate the ranks' slices in rank order
        return [sum((ranks[r][i] for r in range(world)), []) for i in range(len(ranks[0]))]

    one = read(1)
    assert read(2) == one and read(4) == one
    assert read(2, start=4) == one[4 * accum:]  # the data position is the step: resume reads the same batches
    assert sorted(sum(one[:2 * accum], [])) == sorted(set(sum(one[:2 * accum], [])))  # an epoch: no repeats


def test_global_batchnorm_is_batchnorm_in_one_process():
    d = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    keys = list(d.state_dict())
    x = torch.randn(5, 3, 8, 8)
    ref = d(x)
    distributed.sync_batchnorm(d)
    assert isinstance(d[1], distributed.GlobalBatchNorm2d) and list(d.state_dict()) == keys
    torch.testing.assert_close(d(x), ref)


def test_pipeline_train_tokenize_prior_sample_eval(tmp_path, capsys):
    run = tmp_path / "movq"
    assert main(["train", *TINY, "--model", "movq", "--config", "tiny", "--steps", "2", "--gan-start", "1",
                 "--ckpt-every", "1", "--log-every", "1", "--out", str(run)]) == 0
    state = load_checkpoint(run / "last.pt")
    assert state["step"] == 2 and {"model", "optimizers", "scaler", "rng", "discriminator"} <= set(state)
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_0000001.png", "step_0000002.png"]
    lesson = MoVQ.from_checkpoint(run / "last.pt")  # a lesson loads the result
    net, _ = load_tokenizer(run / "last.pt")
    assert torch.equal(lesson.state_dict()["quantize.embedding.weight"], net.state_dict()["quantize.embedding.weight"])

    # resuming with other options is refused, with the fix
    assert main(["train", *TINY[:-6], "--batch-size", "16", "--workers", "0", "--device", "cpu", "--model", "movq",
                 "--config", "tiny", "--steps", "3", "--out", str(run)]) == 2
    assert "--batch-size 8 (now 16)" in capsys.readouterr().err

    tokens = tmp_path / "tokens.pt"
    assert main(["tokenize", "--ckpt", str(run / "last.pt"), "--data", "shapes-single", "--num-images", "16",
                 "--labels", "--device", "cpu", "--workers", "0", "--out", str(tokens)]) == 0
    data = load_checkpoint(tokens)
    assert data["tokens"].shape == (16, 4, 4) and data["labels"].shape == (16,)

    prior = tmp_path / "prior"
    assert main(["train-prior", "--tokens", str(tokens), "--dim", "32", "--depth", "1", "--heads", "2",
                 "--class-cond", "--batch-size", "8", "--steps", "2", "--device", "cpu", "--out", str(prior)]) == 0
    assert load_checkpoint(prior / "last.pt")["step"] == 2
    grid = tmp_path / "grid.png"
    assert main(["sample", "--prior", str(prior / "last.pt"), "--num-samples", "4", "--steps", "2", "--label", "1",
                 "--choice-temperature", "0", "--device", "cpu", "--out", str(grid)]) == 0
    assert grid.stat().st_size > 0

    capsys.readouterr()
    assert main(["eval", "--ckpt", str(run / "last.pt"), "--num-images", "8", "--batch-size", "4",
                 "--device", "cpu", "--workers", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"psnr", "ssim", "lpips", "n"} <= set(report) and report["n"] == 8
    assert "rfid" not in report and "rfid_skipped" in report


def test_rfid_says_why_not(monkeypatch):
    monkeypatch.setattr(tools.importlib.util, "find_spec", lambda name: None)
    assert "neither torch-fidelity nor clean-fid is installed" in tools.rfid_unavailable()
    monkeypatch.setattr(tools.importlib.util, "find_spec", lambda name: object() if name == "cleanfid" else None)
    assert "MINIMOVQ_OFFLINE=1 forbids downloading" in tools.rfid_unavailable()
    monkeypatch.setenv("MINIMOVQ_OFFLINE", "0")
    assert tools.rfid_unavailable() is None


def test_missing_token_file_is_a_clear_error(tmp_path, capsys):
    assert main(["train-prior", "--tokens", str(tmp_path / "none.pt"), "--out", str(tmp_path)]) == 2
    assert "no such file; write one with `python -m minimovq tokenize`" in capsys.readouterr().err
