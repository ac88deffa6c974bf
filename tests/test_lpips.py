"""LPIPS: same keys and numbers as the `lpips` package, frozen, deterministic, offline fallback."""
import socket
import time
import warnings

import pytest
import torch

import minimovq.lpips as L
from minimovq.lpips import LPIPS, lpips_layer_distance


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test may touch the network: the trunk is the seeded random one unless a test says otherwise."""
    monkeypatch.setenv("MINIMOVQ_OFFLINE", "1")
    monkeypatch.setattr(L, "_warned_random_trunk", False)
    L._imagenet_vgg16_features.cache_clear()
    yield
    getattr(L._imagenet_vgg16_features, "cache_clear", lambda: None)()  # may still be monkeypatched


@pytest.fixture(scope="module")
def model():
    return LPIPS(pretrained=False)  # the seeded random trunk, without a warning


@pytest.fixture(scope="module")
def reference(model):
    """The `lpips` package's LPIPS, holding our (seeded random) trunk and the package's lin weights."""
    lpips_pkg = pytest.importorskip("lpips")
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")  # torchvision's "pretrained is deprecated"
        # built on the meta device: its VGG16 classifier (120M params) is never used, skip its init
        ref = lpips_pkg.LPIPS(net="vgg", pnet_rand=True, verbose=False)
    ref = ref.to_empty(device="cpu")
    result = ref.load_state_dict(model.state_dict(), strict=False)
    assert result.unexpected_keys == [] and all(k.startswith("lins.") for k in result.missing_keys)
    return ref


def _images(b=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, 3, size, size, generator=g) * 2 - 1, torch.rand(b, 3, size, size, generator=g) * 2 - 1)


def test_keys_match_taming_and_lpips_package(model, reference):
    ours = list(model.state_dict().keys())
    assert ours[:2] == ["scaling_layer.shift", "scaling_layer.scale"]
    assert "net.slice1.0.weight" in ours and "net.slice5.28.bias" in ours
    assert [k for k in ours if k.startswith("lin")] == [f"lin{k}.model.1.weight" for k in range(5)]
    theirs = {k for k in reference.state_dict() if not k.startswith("lins.")}  # `lins` aliases lin0..lin4
    assert set(ours) == theirs
    for k, v in reference.state_dict().items():
        if not k.startswith("lins."):
            assert model.state_dict()[k].shape == v.shape, k


def test_equals_lpips_package_with_the_same_trunk(model, reference):
    reference.load_state_dict(model.state_dict(), strict=False)
    torch.testing.assert_close(reference.lins[2].model[1].weight, L._lin_weights()["lin2.model.1.weight"])
    for size in (16, 32, 48):
        x0, x1 = _images(3, size, seed=size)
        with torch.no_grad():
            ours, theirs = model(x0, x1), reference(x0, x1)
        assert ours.shape == (3, 1, 1, 1)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_lin_weights_come_from_the_lpips_package(model):
    w = L._lin_weights()
    assert sorted(w) == [f"lin{k}.model.1.weight" for k in range(5)]
    for k, v in w.items():
        torch.testing.assert_close(model.state_dict()[k], v)
        assert (v >= 0).all()


def test_pretrained_trunk_is_mapped_from_torchvision_features(monkeypatch, reference):
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(3)
    features = {f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}
    monkeypatch.delenv("MINIMOVQ_OFFLINE")
    monkeypatch.setattr(L, "_imagenet_vgg16_features", lambda: features)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a pretrained trunk must not warn
        m = LPIPS()
    assert m.pretrained_trunk
    torch.testing.assert_close(m.state_dict()["net.slice5.28.weight"], features["features.28.weight"])
    reference.load_state_dict(m.state_dict(), strict=False)
    x0, x1 = _images()
    with torch.no_grad():
        torch.testing.assert_close(m(x0, x1), reference(x0, x1), rtol=1e-5, atol=1e-6)


def test_identity_frozen_and_gradients_reach_the_input(model):
    x0, x1 = _images()
    assert torch.equal(model(x0, x0), torch.zeros(2, 1, 1, 1))
    assert all(not p.requires_grad for p in model.parameters())
    x1 = x1.requires_grad_(True)
    d = model(x0, x1)
    assert (d > 0).all()
    d.sum().backward()
    assert x1.grad is not None and x1.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_stays_in_eval_mode_so_dropout_is_off(model):
    parent = torch.nn.ModuleDict({"lpips": model})
    x0, x1 = _images()
    parent.eval()
    in_eval = model(x0, x1)
    parent.train()  # a training loop calls .train() on everything it holds
    assert not model.training and not model.lin0.model[0].training
    torch.testing.assert_close(model(x0, x1), in_eval)  # dropout stays off: the same distance as in eval mode


def test_sum_of_layer_distances_is_lpips(model):
    x0, x1 = _images(seed=5)
    with torch.no_grad():
        f0, f1 = model.features(x0), model.features(x1)
        total = sum(lpips_layer_distance(a, b, getattr(model, f"lin{k}").model[1].weight.flatten())
                    for k, (a, b) in enumerate(zip(f0, f1, strict=True)))
        maps = model.layer_distances(x0, x1)
        torch.testing.assert_close(total, model(x0, x1).flatten(), rtol=1e-5, atol=1e-6)
    assert [m.shape[-1] for m in maps] == [32, 16, 8, 4, 2]


def test_layer_distance_by_hand():
    f0 = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)   # unit: (0.6, 0.8)
    f1 = torch.tensor([0.0, 2.0]).view(1, 2, 1, 1)   # unit: (0, 1)
    w = torch.tensor([1.0, 2.0])
    expected = 1.0 * 0.6 ** 2 + 2.0 * 0.2 ** 2
    torch.testing.assert_close(lpips_layer_distance(f0, f1, w), torch.tensor([expected]))
    with pytest.raises(ValueError, match="w must have shape"):
        lpips_layer_distance(f0, f1, torch.ones(3))


def test_random_trunk_is_seeded_and_leaves_global_rng_alone():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = torch.get_rng_state()
        a, b, c = LPIPS(seed=0), LPIPS(seed=0), LPIPS(seed=1)
        assert torch.equal(state, torch.get_rng_state())
    assert not a.pretrained_trunk
    assert torch.equal(a.state_dict()["net.slice3.12.weight"], b.state_dict()["net.slice3.12.weight"])
    assert not torch.equal(a.state_dict()["net.slice3.12.weight"], c.state_dict()["net.slice3.12.weight"])


def test_offline_env_skips_the_network_and_warns_once(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("MINIMOVQ_OFFLINE=1 must not touch the network")

    monkeypatch.setattr(L, "_reachable", no_network)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.warns(UserWarning, match="random") as record:
        LPIPS()
        LPIPS()
    assert sum("random" in str(w.message) for w in record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not LPIPS(pretrained=False).pretrained_trunk  # asked for random: no warning


def test_unreachable_network_fails_fast(monkeypatch, tmp_path):
    """A DNS lookup or connect that hangs must not hang LPIPS(): the probe gives up after its timeout."""
    monkeypatch.delenv("MINIMOVQ_OFFLINE")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # nothing cached
    monkeypatch.setattr(L, "_PROBE_TIMEOUT", 0.3)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: time.sleep(30))

    def no_download(*args, **kwargs):
        raise AssertionError("an unreachable host must not start a download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    start = time.perf_counter()
    with pytest.warns(UserWarning, match="random"):
        m = LPIPS()
    assert time.perf_counter() - start < 3.0
    assert not m.pretrained_trunk


def test_failed_download_falls_back(monkeypatch, tmp_path):
    monkeypatch.delenv("MINIMOVQ_OFFLINE")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(L, "_reachable", lambda url, timeout: True)

    def broken(*args, **kwargs):
        raise OSError("connection reset")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", broken)
    with pytest.warns(UserWarning, match="random"):
        assert not LPIPS().pretrained_trunk


def test_autocast_bfloat16_is_finite_and_close(model):
    x0, x1 = _images(seed=7)
    ref = model(x0, x1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(x0, x1)
        big = model(x0 * 50, x1 * 50)  # huge activations: the channel norm must not overflow
    assert low.dtype == torch.float32 and torch.isfinite(low).all() and torch.isfinite(big).all()
    torch.testing.assert_close(low, ref, rtol=0.1, atol=0.02)


def test_fp16_features_do_not_overflow_the_norm():
    f = torch.full((1, 512, 2, 2), 200.0, dtype=torch.float16)  # Σ f² = 2e7 > fp16 max
    g = f.clone()
    g[:, :256] = 0
    d = lpips_layer_distance(f, g, torch.ones(512, dtype=torch.float16))
    assert torch.isfinite(d).all() and d.item() > 0.1


def test_bad_input_raises(model):
    x = torch.zeros(1, 3, 8, 8)
    with pytest.raises(ValueError, match="at least 16"):
        model(x, x)
    with pytest.raises(ValueError, match="C=3"):
        model(torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="same shape"):
        model(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 16, 16))
