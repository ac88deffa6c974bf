"""Nothing lost, nothing silent: every bad input gets an error that names the problem, the value and the fix.

Checkpoints (empty, truncated, full disk, killed saves), resumes with changed hyperparameters, image files
(corrupt, 16-bit, EXIF-rotated), token ids and labels out of range, sampler arguments, and image batches
(empty, non-finite, wrong dtype)."""
import errno
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from minimovq import data
from minimovq.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from minimovq.image_files import UnreadableImageError, open_rgb
from minimovq.maskgit import MaskGIT, prior_loss
from minimovq.sampling import sample, sample_autoregressive
from minimovq.train import Trainer
from minimovq.validate import check_images, check_sampling_args


# ------------------------------------------------------------------------------------------ checkpoints
@pytest.fixture
def empty_ckpt(tmp_path):
    p = tmp_path / "run.pt"
    p.write_bytes(b"")
    return p


def test_zero_byte_checkpoint_names_the_file_and_the_fix(empty_ckpt):
    with pytest.raises(CheckpointError, match="empty \\(0 bytes\\)") as err:
        load_checkpoint(empty_ckpt)
    assert str(empty_ckpt) in str(err.value) and "Delete it" in str(err.value) and "download" in str(err.value)


@pytest.mark.parametrize("keep", [1, 10, 200])
def test_truncated_checkpoint_of_any_length_is_a_checkpoint_error(tmp_path, keep):
    good = tmp_path / "good.pt"
    save_checkpoint({"w": torch.ones(500)}, good)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(good.read_bytes()[:keep])          # a few bytes give EOFError() with an empty message
    with pytest.raises(CheckpointError, match="corrupt or truncated") as err:
        load_checkpoint(bad)
    assert str(bad) in str(err.value) and "Delete it" in str(err.value)


def test_every_loading_path_reports_the_empty_file(empty_ckpt):
    from minimovq.vqgan import VQGAN, read_state_dict

    model = nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match="empty"):
        Trainer(model, {"loss": torch.optim.SGD(model.parameters(), lr=0.1)}, ckpt_path=empty_ckpt)
    with pytest.raises(CheckpointError, match="empty"):
        VQGAN.from_checkpoint(empty_ckpt)
    with pytest.raises(CheckpointError, match="empty"):
        read_state_dict(empty_ckpt)


def test_run_checkpoint_path_resumes_or_reports(monkeypatch, tmp_path):
    from minimovq.checkpoint import run_checkpoint
    from minimovq.profiles import get_profile

    monkeypatch.setenv("MINIMOVQ_CKPT_DIR", str(tmp_path))
    path = run_checkpoint("01_vae", get_profile("cpu"), config={"lr": 1e-3})
    path.write_bytes(b"")
    model = nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match=f"{path.name}.*empty"):
        Trainer(model, {"loss": torch.optim.Adam(model.parameters(), lr=1e-3)}, ckpt_path=path)


def test_a_save_removes_the_temp_files_of_killed_saves(tmp_path):
    p = tmp_path / "run.pt"
    stale = [tmp_path / "run.pt.ab12cd_9.tmp", tmp_path / "run.pt.zzzzzzzz.tmp"]   # what mkstemp leaves on a kill
    others = [tmp_path / "other.pt.ab12cd_9.tmp", tmp_path / "run.pt.x.pt.ab12cd_9.tmp", tmp_path / "notes.tmp"]
    for f in stale + others:
        f.write_bytes(b"x" * 100)
    save_checkpoint({"w": torch.ones(3)}, p)
    assert not any(f.exists() for f in stale)
    assert all(f.exists() for f in others)           # only this checkpoint's temp files are touched
    assert torch.equal(load_checkpoint(p)["w"], torch.ones(3))


@pytest.mark.parametrize("error", [
    RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0"),
    RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file data/0: "
                 "file write failed"),
    OSError(errno.ENOSPC, "No space left on device"),
])
def test_full_disk_is_a_clear_error_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, error):
    p = tmp_path / "run.pt"
    save_checkpoint({"w": torch.ones(3)}, p)
    before = p.read_bytes()

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise error

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match="no space left on device writing") as err:
        save_checkpoint({"w": torch.zeros(3)}, p)
    msg = str(err.value)
    assert str(p) in msg and "MINIMOVQ_CKPT_DIR" in msg and "free space" in msg and "previous run.pt is kept" in msg
    assert p.read_bytes() == before and sorted(f.name for f in tmp_path.iterdir()) == ["run.pt"]


def test_other_save_errors_are_not_called_a_full_disk(tmp_path, monkeypatch):
    def broken(obj, f, *args, **kwargs):
        raise TypeError("cannot pickle 'generator' object")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(TypeError, match="cannot pickle"):
        save_checkpoint({"w": torch.zeros(3)}, tmp_path / "run.pt")


# ------------------------------------------------------------------------------------------ resume hyperparameters
def _batches():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(8, 4, generator=g) for _ in range(2)]


def _run(ck, lr, steps, betas=(0.9, 0.999), weight_decay=0.0, **kwargs):
    torch.manual_seed(0)
    model = nn.Linear(4, 4)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)
    trainer = Trainer(model, {"loss": opt}, ckpt_path=ck, ckpt_every=5, **kwargs)
    trainer.fit(_batches(), lambda x, s: {"loss": ((model(x) - x) ** 2).mean()}, steps=steps, progress=False)
    return trainer


@pytest.mark.parametrize("change,expect", [
    ({"lr": 0.05}, "lr: checkpoint 0.01, now 0.05"),
    ({"lr": 0.01, "betas": (0.5, 0.9)}, "betas: checkpoint \\[0.9, 0.999\\], now \\[0.5, 0.9\\]"),
    ({"lr": 0.01, "weight_decay": 1e-4}, "weight_decay: checkpoint 0.0, now 0.0001"),
])
def test_resume_with_other_hyperparameters_raises(tmp_path, change, expect):
    ck = tmp_path / "run.pt"
    _run(ck, lr=0.01, steps=10)
    with pytest.raises(CheckpointError, match=expect) as err:
        _run(ck, steps=10, **change)
    msg = str(err.value)
    assert str(ck) in msg and "override_hparams=True" in msg and "run_checkpoint(name, config=" in msg


def test_resume_with_the_same_hyperparameters_continues(tmp_path):
    ck = tmp_path / "run.pt"
    _run(ck, lr=0.01, steps=5)
    t = _run(ck, lr=0.01, steps=10)
    assert t.step == 10 and len(t.history["loss"]) == 10


def test_override_hparams_resumes_with_the_new_values_and_warns(tmp_path):
    ck = tmp_path / "run.pt"
    _run(ck, lr=0.01, steps=5)
    with pytest.warns(UserWarning, match="NEW optimizer hyperparameters.*lr: checkpoint 0.01, now 0.05"):
        t = _run(ck, lr=0.05, steps=10, override_hparams=True)
    assert t.step == 10 and t.optimizers["loss"].param_groups[0]["lr"] == 0.05
    assert len(t.optimizers["loss"].state) > 0                  # Adam's moments were restored, not reset


def test_scheduled_lr_is_not_a_change_but_a_new_base_lr_is(tmp_path):
    ck = tmp_path / "run.pt"

    def run(lr, steps, **kwargs):
        model = nn.Linear(4, 4)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        tr = Trainer(model, {"loss": opt}, schedulers={"loss": sched}, ckpt_path=ck, **kwargs)
        tr.fit(_batches(), lambda x, s: {"loss": ((model(x) - x) ** 2).mean()}, steps=steps, progress=False)
        return tr

    run(0.01, 6)                                     # the live lr decayed to 0.00125: not a hyperparameter change
    assert run(0.01, 8).step == 8
    with pytest.raises(CheckpointError, match="initial_lr: checkpoint 0.01, now 0.02"):
        run(0.02, 10)


def test_run_checkpoint_config_gives_a_new_lr_its_own_file(monkeypatch, tmp_path):
    from minimovq.checkpoint import run_checkpoint
    from minimovq.profiles import get_profile

    monkeypatch.setenv("MINIMOVQ_CKPT_DIR", str(tmp_path))
    cpu = get_profile("cpu")
    _run(run_checkpoint("01_vae", cpu, config={"lr": 0.01}), lr=0.01, steps=10)
    t = _run(run_checkpoint("01_vae", cpu, config={"lr": 0.05}), lr=0.05, steps=10)
    assert len(t.history["loss"]) == 10 and t.step == 10            # trained 10 new steps, not 0
    assert len(list(tmp_path.glob("01_vae-*-cpu.pt"))) == 2


@pytest.mark.parametrize("lesson", ["01_vae", "03_vqgan", "04_movq"])
def test_lessons_key_their_checkpoints_by_hyperparameters(lesson):
    from pathlib import Path

    src = (Path(__file__).resolve().parents[1] / "notebooks" / "src" / f"{lesson}.py").read_text()
    calls = [line for line in src.splitlines() if "run_checkpoint(f\"" in line]
    assert calls and all('config={"lr": LR' in line for line in calls), calls


# ------------------------------------------------------------------------------------------ image files
def test_sixteen_bit_png_is_scaled_not_white(tmp_path):
    ramp = np.linspace(0, 65535, 16 * 32).reshape(16, 32).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    assert Image.open(tmp_path / "ramp.png").mode == "I;16"               # the exact on-disk format
    x = np.asarray(open_rgb(tmp_path / "ramp.png"))
    assert x.shape == (16, 32, 3) and x[0, 0, 0] == 0 and x[-1, -1, 0] == 255
    assert abs(x.mean() - 127.5) < 2                                      # a ramp, not all white (254)
    expected = np.round(ramp / 257.0)
    assert np.abs(x[..., 0] - expected).max() <= 1


def test_exif_rotation_is_applied(tmp_path):
    img = np.zeros((20, 40, 3), np.uint8)           # stored landscape, 40 wide: left half red, right half blue
    img[:, :20, 0] = 255
    img[:, 20:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6                                 # "rotate 90° clockwise to display": a phone held upright
    Image.fromarray(img).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    assert Image.open(tmp_path / "phone.jpg").getexif()[0x0112] == 6
    x = np.asarray(open_rgb(tmp_path / "phone.jpg")).astype(int)
    assert x.shape == (40, 20, 3)                    # displayed portrait
    assert x[5, 10, 0] > 200 and x[5, 10, 2] < 60    # the left (red) half is on top after the rotation
    assert x[35, 10, 2] > 200 and x[35, 10, 0] < 60


def _truncated_jpeg(path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path, quality=90)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_corrupt_image_is_named(tmp_path):
    _truncated_jpeg(tmp_path / "half.jpg")
    with pytest.raises(UnreadableImageError, match="half.jpg.*truncated.*Delete it, or re-save it"):
        open_rgb(tmp_path / "half.jpg")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match="text.png.*not an image"):
        open_rgb(tmp_path / "text.png")


def test_folder_dataset_finds_bad_files_when_built(tmp_path):
    for i in range(40):
        Image.new("RGB", (20, 20), (i * 6, 0, 0)).save(tmp_path / f"ok{i:02d}.png")
    _truncated_jpeg(tmp_path / "cut.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.warns(UserWarning, match="skipped 2 unreadable image\\(s\\).*(cut.jpg|empty.png).*delete or re-save"):
        train = data.load(f"folder:{tmp_path}", image_size=8, check_files=True)
        test = data.load(f"folder:{tmp_path}", split="test", image_size=8)
    assert len(train) + len(test) == 40
    x = torch.stack([train[i] for i in range(len(train))])           # a whole epoch reads cleanly
    assert x.shape == (len(train), 3, 8, 8) and torch.isfinite(x).all()


def test_folder_dataset_without_the_check_names_the_file_when_read(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    Image.new("RGB", (20, 20)).save(tmp_path / "test" / "a.png")
    _truncated_jpeg(tmp_path / "train" / "cut.jpg")
    with pytest.raises(ValueError, match="none of the 1 images.*cut.jpg"):
        data.load(f"folder:{tmp_path}")
    ds = data.load(f"folder:{tmp_path}", check_files=False)
    with pytest.raises(UnreadableImageError, match="cut.jpg"):
        ds[0]


# ------------------------------------------------------------------------------------------ token ids and labels
K, GRID = 8, (2, 2)


def _prior(causal=False, num_classes=None):
    torch.manual_seed(0)
    return MaskGIT(K, GRID, dim=16, depth=1, heads=2, num_classes=num_classes, causal=causal).eval()


@pytest.mark.parametrize("causal,bad,allowed", [(False, K + 1, f"\\[0, {K}\\]"), (True, K, f"\\[0, {K - 1}\\]"),
                                                (False, -1, f"\\[0, {K}\\]")])
def test_token_ids_out_of_range(causal, bad, allowed):
    tokens = torch.zeros(2, 4, dtype=torch.long)
    tokens[1, 2] = bad
    with pytest.raises(ValueError, match=f"token ids must lie in {allowed}, got values in .*n_embed={K}"):
        _prior(causal)(tokens)


def test_prior_loss_refuses_mask_id_and_out_of_range_targets():
    tokens = torch.zeros(2, 4, dtype=torch.long)
    tokens[0, 0] = K                                 # [MASK] is allowed as input, never as a training target
    with pytest.raises(ValueError, match=f"training token ids must lie in \\[0, {K - 1}\\].*n_embed={K}"):
        prior_loss(_prior(), tokens)
    with pytest.raises(ValueError, match="integer"):
        prior_loss(_prior(), tokens.float())


def test_labels_out_of_range():
    model = _prior(num_classes=3)
    tokens = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="labels must lie in \\[0, 3\\], got values in \\[0, 7\\].*num_classes=3"):
        model(tokens, torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="labels must lie in \\[0, 3\\], got values in \\[-1, -1\\]"):
        prior_loss(model, tokens, labels=torch.tensor([-1, -1]))
    with pytest.raises(ValueError, match="one int or 2 ids"):
        model(tokens, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="integer class ids"):
        model(tokens, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="unconditional"):
        _prior()(tokens, torch.tensor([0, 1]))
    assert model(tokens, torch.tensor([0, 3])).shape == (2, 4, 1, K)       # 3 = "no class" is fine
    with pytest.raises(ValueError, match="labels must lie in \\[0, 3\\]"):
        sample(model, 2, steps=2, labels=torch.tensor([5, 0]))
    with pytest.raises(ValueError, match="labels must lie in \\[0, 3\\]"):
        sample_autoregressive(_prior(causal=True, num_classes=3), 2, labels=9)


def test_empty_token_batch():
    with pytest.raises(ValueError, match="empty batch"):
        _prior()(torch.zeros(0, 4, dtype=torch.long))


# ------------------------------------------------------------------------------------------ sampler arguments
@pytest.mark.parametrize("kwargs,match", [
    ({"temperature": -1.0}, "temperature must be >= 0, got -1.0.*least likely"),
    ({"temperature": float("nan")}, "temperature must be finite, got nan"),
    ({"temperature": float("inf")}, "temperature must be finite"),
    ({"guidance": -2.0}, "guidance must be >= 0, got -2.0"),
    ({"guidance": float("nan")}, "guidance must be finite"),
    ({"batch_size": 0}, "batch_size must be an int >= 1, got 0"),
])
@pytest.mark.parametrize("causal", [False, True])
def test_samplers_refuse_bad_arguments(kwargs, match, causal):
    model = _prior(causal=causal)
    args = {"batch_size": 2, **kwargs}
    fn = sample_autoregressive if causal else sample
    if not causal and "temperature" in args:  # MaskGIT's τ is choice_temperature (noise on the confidence)
        args["choice_temperature"] = args.pop("temperature")
        match = match.replace("temperature", "choice_temperature").replace("least likely", "least confident")
    with pytest.raises(ValueError, match=match):
        fn(model, **args)


@pytest.mark.parametrize("kwargs,match", [
    ({"top_k": 0}, "top_k must be an int >= 1, got 0"), ({"top_k": 2.5}, "top_k must be an int"),
    ({"steps": 0}, "steps must be an int >= 1, got 0"), ({"steps": 2.0}, "steps must be an int"),
    ({"temperature": "hot"}, "temperature must be a number"),
    ({"choice_temperature": -4.5}, "choice_temperature must be >= 0, got -4.5.*least confident"),
    ({"choice_temperature": float("nan")}, "choice_temperature must be finite"),
])
def test_check_sampling_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        check_sampling_args(**kwargs)
    check_sampling_args(batch_size=1, temperature=0, guidance=0.0, top_k=None, steps=8)   # the valid corner


def test_valid_sampler_calls_still_work():
    assert sample(_prior(), 2, steps=2, choice_temperature=0.0).shape == (2, *GRID)
    out = sample_autoregressive(_prior(causal=True), 2, temperature=0.0, top_k=1)
    assert out.shape == (2, *GRID) and out.max() < K


# ------------------------------------------------------------------------------------------ image batches
def test_empty_batch_is_refused():
    with pytest.raises(ValueError, match="empty batch, shape \\(0, 3, 16, 16\\).*NaN loss.*batch_size"):
        check_images(torch.zeros(0, 3, 16, 16), channels=3)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_images_are_refused(value):
    x = torch.zeros(2, 3, 8, 8)
    x[1, 0, 3, 3] = value
    with pytest.raises(ValueError, match="contain 1 NaN or Inf value\\(s\\) out of 384.*nan_to_num"):
        check_images(x, channels=3)
    with pytest.raises(ValueError, match="NaN or Inf"):
        check_images(x, channels=3, check_range=False)      # LPIPS / discriminator inputs too


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_float_dtypes_get_a_clear_message(dtype):
    x = torch.zeros(1, 3, 8, 8, dtype=dtype)
    with pytest.raises(ValueError, match=f"have dtype {dtype}, but the model computes in torch.float32.*x.float\\(\\)"):
        check_images(x, channels=3)
    check_images(x, channels=3, dtype=dtype)                 # a model kept in that precision says so
    with torch.autocast("cpu", dtype=torch.bfloat16):
        check_images(x, channels=3)                          # autocast casts each layer's input itself


def test_models_refuse_bad_batches():
    from minimovq.vqgan import VQGAN
    from tiny_configs import TINY

    model = VQGAN(**TINY).eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with pytest.raises(ValueError, match="empty batch"):
        model(x[:0])
    with pytest.raises(ValueError, match="NaN or Inf"):
        model(torch.where(x > 0.9, float("nan"), x))
    with pytest.raises(ValueError, match="float64.*x.float"):
        model(x.double())
    with torch.no_grad():
        x_hat, vq_loss, _ = model(x)
    assert x_hat.shape == x.shape and math.isfinite(float(vq_loss))


def test_sample_temperature_was_renamed():
    """MaskGIT's τ scales the noise on the confidence, not the logits: the old name gets an error naming the new."""
    with pytest.raises(TypeError, match="choice_temperature"):
        sample(_prior(), 2, steps=2, temperature=4.5)
    with pytest.raises(ValueError, match="choice_temperature must be >= 0"):
        sample(_prior(), 2, steps=2, choice_temperature=-1.0)
