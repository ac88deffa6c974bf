"""Checkpoints are atomic and safe; the Trainer trains, resumes, and handles two optimizers."""
import os

import pytest
import torch
from torch import nn

from minimovq.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, unwrap_state_dict
from minimovq.train import History, Trainer, moving_average


def test_save_and_load_roundtrip(tmp_path):
    p = tmp_path / "a.pt"
    save_checkpoint({"w": torch.arange(3), "step": 5}, p)
    s = load_checkpoint(p)
    assert s["step"] == 5 and torch.equal(s["w"], torch.arange(3))
    assert [f.name for f in tmp_path.iterdir()] == ["a.pt"]  # no temp files left behind


def test_truncated_checkpoint_is_a_clear_error_and_keeps_previous(tmp_path):
    p = tmp_path / "a.pt"
    save_checkpoint({"w": torch.ones(100)}, p)
    good = p.read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(bad)
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    assert p.read_bytes() == good


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path):
    p = tmp_path / "a.pt"
    save_checkpoint({"w": torch.ones(3)}, p)
    before = p.read_bytes()

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        save_checkpoint({"w": Unpicklable()}, p)
    assert p.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["a.pt"]


def test_pickled_code_is_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"f": os.getcwd, "x": torch.ones(1)}, p)  # a pickled function
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(p)


def test_unwrap_lightning_checkpoint():
    sd = {"state_dict": {"encoder.w": torch.ones(1), "loss.d": torch.ones(1)}, "epoch": 3}
    assert list(unwrap_state_dict(sd, drop_prefixes=("loss.",))) == ["encoder.w"]


def _data(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return [x[i:i + 16] for i in range(0, n, 16)]


def test_trainer_fits_and_logs():
    torch.manual_seed(0)
    model = nn.Linear(4, 4)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    tr = Trainer(model, {"loss": opt})
    hist = tr.fit(_data(), lambda x, s: {"loss": ((model(x) - x) ** 2).mean(), "aux": 1.0}, steps=60,
                  progress=False)
    assert isinstance(hist, History) and len(hist["loss"]) == 60 and hist["aux"][0] == 1.0
    assert hist["loss"][-1] < 0.2 * hist["loss"][0]


def test_trainer_resumes_from_checkpoint(tmp_path):
    ck = tmp_path / "run.pt"
    torch.manual_seed(0)
    m1 = nn.Linear(4, 4)
    t1 = Trainer(m1, {"loss": torch.optim.SGD(m1.parameters(), lr=0.1)}, ckpt_path=ck, ckpt_every=5)
    t1.fit(_data(), lambda x, s: {"loss": ((m1(x) - x) ** 2).mean()}, steps=10, progress=False)
    m2 = nn.Linear(4, 4)
    t2 = Trainer(m2, {"loss": torch.optim.SGD(m2.parameters(), lr=0.1)}, ckpt_path=ck)
    assert t2.step == 10 and len(t2.history["loss"]) == 10
    assert torch.equal(m2.weight, m1.weight)
    t2.fit(_data(), lambda x, s: {"loss": ((m2(x) - x) ** 2).mean()}, steps=15, progress=False)
    assert t2.step == 15 and len(t2.history["loss"]) == 15


def test_two_optimizers_clear_the_discriminator_grads():
    """The generator loss backprops through D; D's own step must only see the D loss's gradient."""
    torch.manual_seed(0)
    G, D = nn.Linear(2, 2), nn.Linear(2, 1)
    model = nn.ModuleDict({"G": G, "D": D})
    og = torch.optim.SGD(G.parameters(), lr=0.0)
    od = torch.optim.SGD(D.parameters(), lr=1.0)
    seen = {}

    def step_fn(x, step):
        fake = G(x)
        loss_g = -D(fake).mean() * 1000.0  # a huge gradient into D that must not leak into D's step
        loss_d = D(fake.detach()).mean()
        return {"g": loss_g, "d": loss_d}

    tr = Trainer(model, {"g": og, "d": od}, grad_clip=None)
    x = torch.randn(8, 2)
    w0 = D.weight.detach().clone()
    tr.fit([x], step_fn, steps=1, progress=False)
    expected = w0 - 1.0 * G(x).detach().mean(0, keepdim=True)  # d loss_d / dW = mean(fake)
    assert torch.allclose(D.weight, expected, atol=1e-5), seen


def test_non_finite_loss_raises_clear_error():
    model = nn.Linear(2, 2)
    tr = Trainer(model, {"loss": torch.optim.SGD(model.parameters(), lr=0.1)})
    with pytest.raises(FloatingPointError, match="learning rate"):
        tr.fit([torch.ones(2, 2)], lambda x, s: {"loss": model(x).sum() * float("nan")}, steps=1, progress=False)


def test_empty_loader_is_a_clear_error():
    model = nn.Linear(2, 2)
    tr = Trainer(model, {"loss": torch.optim.SGD(model.parameters(), lr=0.1)})
    with pytest.raises(ValueError, match="no batches"):
        tr.fit([], lambda x, s: {"loss": model(x).sum()}, steps=1, progress=False)


def test_moving_average():
    assert moving_average([1, 2, 3, 4], 2) == [1, 1.5, 2.5, 3.5]


def test_resume_from_a_different_model_is_a_clear_error(tmp_path):
    ck = tmp_path / "run.pt"
    m1 = nn.Linear(4, 4)
    Trainer(m1, {"loss": torch.optim.SGD(m1.parameters(), lr=0.1)}, ckpt_path=ck).save()
    m2 = nn.Linear(4, 8)
    with pytest.raises(CheckpointError, match="different model"):
        Trainer(m2, {"loss": torch.optim.SGD(m2.parameters(), lr=0.1)}, ckpt_path=ck)


def test_run_checkpoint_is_off_in_quick_profile(monkeypatch, tmp_path):
    from minimovq.checkpoint import run_checkpoint
    from minimovq.profiles import get_profile

    monkeypatch.setenv("MINIMOVQ_CKPT_DIR", str(tmp_path))
    assert run_checkpoint("x", get_profile("quick")) is None
    assert run_checkpoint("x", get_profile("cpu")) == tmp_path / "x-cpu.pt"
    cfg = run_checkpoint("x", get_profile("cpu"), config={"lr": 1e-3, "drop": 0.1})
    assert cfg.name.startswith("x-") and cfg.name.endswith("-cpu.pt") and cfg != tmp_path / "x-cpu.pt"
    assert cfg == run_checkpoint("x", get_profile("cpu"), config={"drop": 0.1, "lr": 1e-3})     # order-free
    assert cfg != run_checkpoint("x", get_profile("cpu"), config={"lr": 2e-3, "drop": 0.1})


def test_trainer_save_removes_temp_files_of_a_killed_save(tmp_path):
    ck = tmp_path / "run.pt"
    model = nn.Linear(2, 2)
    tr = Trainer(model, {"loss": torch.optim.SGD(model.parameters(), lr=0.1)}, ckpt_path=ck)
    for name in ("run.pt.k1ll3d_a.tmp", "run.pt.k1ll3d_b.tmp"):     # two saves killed mid-write
        (tmp_path / name).write_bytes(b"\0" * 1000)
    tr.fit([torch.ones(2, 2)], lambda x, s: {"loss": model(x).sum()}, steps=1, progress=False)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["run.pt"]
