"""minimovq.data: the generated sets (shapes, photos), the loader helper, and the real torchvision loading code
run on files fabricated in each dataset's exact on-disk format (download=False, no network)."""
import pickle
import sys
import time
import types
import urllib.error

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
from PIL import Image

from minimovq import data
from minimovq.data import DatasetUnavailableError


# ------------------------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize("size", [32, 64])
def test_shapes_shape_dtype_range(size):
    ds = data.load("shapes", image_size=size, n=40)
    x = torch.stack([ds[i] for i in range(len(ds))])
    assert len(ds) == 40 and x.shape == (40, 3, size, size) and x.dtype == torch.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert x.min() < -0.5 and x.max() > 0.5           # the full range is used, not a grey soup


def test_shapes_deterministic_by_seed_split_index():
    a = data.load("shapes", n=64, seed=3)
    b = data.load("shapes", n=16, seed=3)
    assert torch.equal(a.images[:16], b.images)      # image i does not depend on n
    assert torch.equal(data.load("shapes", n=64, seed=3).images, a.images)
    assert not torch.equal(data.load("shapes", n=16, seed=4).images, b.images)
    test = data.load("shapes", split="test", n=16, seed=3)
    assert not torch.equal(test.images, b.images)
    assert len(data.load("shapes", split="test")) == 1000


def test_shapes_same_scene_at_any_size():
    small = data.load("shapes", image_size=32, n=8).images.float()
    big = data.load("shapes", image_size=64, n=8).images.float()
    down = torch.nn.functional.avg_pool2d(big, 2)
    assert (down - small).abs().mean() < 12          # same scene, rasterised twice (edges differ slightly)


def test_shapes_labels():
    ds = data.load("shapes", n=300, labels=True)
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and isinstance(y, int)
    assert ds.classes == data.SHAPES_CLASSES
    counts = torch.bincount(ds.labels, minlength=len(data.SHAPES_CLASSES))
    assert (counts > 20).all(), counts               # every class is the dominant one in some images
    assert torch.equal(ds.images, data.load("shapes", n=300).images)   # labels do not change the images


def test_shapes_single_variant_one_large_object_labelled_by_its_class():
    from minimovq.shapes import image_keys, sample_scenes

    ds = data.load("shapes-single", n=400, labels=True)
    scenes = sample_scenes(image_keys(0, "train", torch.arange(400)), single=True)
    assert (scenes["active"].sum(1) == 1).all()
    assert torch.equal(ds.labels, scenes["cls"][:, 0])                      # the label is the one object's class
    assert (torch.bincount(ds.labels, minlength=5) > 50).all()
    assert scenes["radius"][:, 0].min() >= 0.3 and (scenes["fill"][:, 0] == 0).all()     # large and flat
    assert not torch.equal(ds.images, data.load("shapes", n=400).images)
    assert torch.equal(ds.images, data.load("shapes-single", n=400).images)   # deterministic
    assert "single=True" in repr(ds) and "shapes-single" in data.OFFLINE_DATASETS


def _scene(objects):
    """One hand-made scene: a black background and flat objects (class, cx, cy, radius, rgb), back to front."""
    K = len(objects)
    col = lambda i: torch.tensor([[objects[k][i] for k in range(K)]], dtype=torch.float32)   # noqa: E731
    cls = torch.tensor([[data.SHAPES_CLASSES.index(o[0]) for o in objects]])
    return dict(corners=torch.zeros(1, 3, 2, 2), active=torch.ones(1, K, dtype=torch.bool), cls=cls,
                cx=col(1), cy=col(2), radius=col(3), angle=torch.zeros(1, K), fill=torch.zeros(1, K, dtype=torch.long),
                period=torch.full((1, K), 0.15), noise_key=torch.zeros(1, K, dtype=torch.long),
                color_a=torch.tensor([[o[4] for o in objects]]), color_b=torch.zeros(1, K, 3))


def test_shapes_label_is_the_largest_visible_class():
    from minimovq.shapes import render

    red, green = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)
    img, label = render(_scene([("circle", 0.5, 0.5, 0.3, red), ("square", 0.2, 0.2, 0.1, green)]), 32)
    assert data.SHAPES_CLASSES[label] == "circle"
    assert img[0, :, 16, 16].tolist() == [255, 0, 0] and img[0, :, 6, 6].tolist() == [0, 255, 0]
    assert img[0, :, 31, 0].tolist() == [0, 0, 0]                                  # background
    # A big square in front hides a small circle completely: the label follows what is visible.
    img, label = render(_scene([("circle", 0.5, 0.5, 0.1, red), ("square", 0.5, 0.5, 0.3, green)]), 32)
    assert data.SHAPES_CLASSES[label] == "square" and not (img[0, 0] == 255).any()


def test_shapes_is_fast():
    t = time.perf_counter()
    data.load("shapes", image_size=32, n=2000)
    assert time.perf_counter() - t < 5.0             # ~0.2 s on one core; a per-pixel loop would take minutes


# ------------------------------------------------------------------------------------------------ photos
def test_photos_splits_are_disjoint_and_deterministic():
    train = data.load("photos", split="train", n=300, image_size=32)
    test = data.load("photos", split="test", n=300, image_size=32)
    p, x0, _, side, _ = train.boxes.T
    assert (x0 + side <= train.boundaries[p]).all()
    p, x0, _, side, _ = test.boxes.T
    assert (x0 >= test.boundaries[p]).all()
    assert torch.equal(data.load("photos", split="train", n=300, image_size=32).boxes, train.boxes)
    assert torch.equal(train[5], data.load("photos", n=10, image_size=32)[5])
    x = torch.stack([train[i] for i in range(20)])
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    assert len(train.classes) == 7 and len(set(train.boxes[:, 0].tolist())) == 7


def test_photos_labels_and_size():
    ds = data.load("photos", split="test", n=5, image_size=64, labels=True)
    x, y = ds[0]
    assert x.shape == (3, 64, 64) and y == int(ds.boxes[0, 0])


def test_photos_missing_folder_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(DatasetUnavailableError, match="no photos found"):
        data.load("photos", root=tmp_path)
    monkeypatch.setenv("MINIMOVQ_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetUnavailableError, match="MINIMOVQ_DATA_DIR"):
        data.load("photos")
    (tmp_path / "photos").mkdir()
    Image.fromarray(np.full((200, 300, 3), 200, np.uint8)).save(tmp_path / "photos" / "grey.png")
    ds = data.load("photos", n=4)
    assert ds.classes == ("grey",) and torch.allclose(ds[0], torch.tensor(200 / 127.5 - 1))


# ------------------------------------------------------------------------------------------------ loader
def test_loader_workers(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.delenv("CI", raising=False)
    assert data.default_num_workers() == 0                              # locally
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert data.default_num_workers() == 2                              # Colab
    monkeypatch.setenv("CI", "true")
    assert data.default_num_workers() == 0                              # CI
    loader = data.make_loader(data.load("shapes", n=10), batch_size=4)
    assert loader.num_workers == 0 and loader.drop_last and len(loader) == 2
    assert next(iter(loader)).shape == (4, 3, 32, 32)
    assert not data.make_loader(data.load("shapes", n=3), batch_size=4).drop_last   # smaller than a batch
    assert len(data.make_loader(data.load("shapes", n=10), batch_size=4, shuffle=False)) == 3


def test_bad_names_and_arguments():
    with pytest.raises(ValueError, match="shapes, shapes-single, photos, mnist.*folder:<path>"):
        data.load("imagenet")
    with pytest.raises(ValueError, match="'train' or 'test'"):
        data.load("shapes", split="val")
    with pytest.raises(ValueError, match="image_size"):
        data.load("shapes", image_size=4)
    with pytest.raises(ValueError, match="labels=False"):
        data.load("celeba", labels=True)


# ------------------------------------------------------------------------------------------------ torchvision
def _write_idx(path, array):
    """MNIST's idx format: big-endian magic (0, 0, dtype 0x08 = uint8, ndim), big-endian dims, raw bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_idx_files(tmp_path, name, folder):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = {"train": rng.integers(0, 256, (12, 28, 28)), "t10k": rng.integers(0, 256, (5, 28, 28))}
    for prefix, imgs in images.items():     # un-gzipped, as torchvision keeps them after extraction
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", imgs)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(len(imgs)) % 10)
    ds = data.load(name, split="test", image_size=28, labels=True, root=tmp_path, download=False)
    x, y = ds[3]
    assert len(ds) == 5 and y == 3 and x.shape == (3, 28, 28)
    expected = torch.from_numpy(images["t10k"][3]).float() / 127.5 - 1
    assert torch.allclose(x, expected.expand(3, -1, -1), atol=1e-6)       # grayscale -> 3 equal channels
    ds = data.load(name, image_size=32, n=7, root=tmp_path, download=False)
    assert len(ds) == 7 and ds[0].shape == (3, 32, 32) and -1 <= ds[0].min() and ds[0].max() <= 1
    assert torch.equal(ds.indices, data.load(name, n=7, root=tmp_path, download=False).indices)
    with pytest.warns(UserWarning, match="fewer than n=13"):
        assert len(data.load(name, n=13, root=tmp_path, download=False)) == 12


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    """CIFAR-10's python batches: pickled dicts with 'data' (N, 3072) uint8, R then G then B planes, and
    'labels'; batches.meta holds 'label_names'. Fabricated files cannot match torchvision's md5 sums, so
    those (and only those) are switched off."""
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(1)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        with open(base / name, "wb") as f:
            pickle.dump({"data": batches[name], "labels": [1, 2, 3, 4], "batch_label": name}, f)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": 4, "num_vis": 3072}, f)
    monkeypatch.setattr(tvd.CIFAR10, "train_list", [[f"data_batch_{i}", None] for i in range(1, 6)])
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", None]])
    monkeypatch.setattr(tvd.CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names", "md5": None})
    return tmp_path, batches


def test_cifar10_pickled_batches(cifar_root):
    root, batches = cifar_root
    ds = data.load("cifar10", split="train", labels=True, root=root, download=False)
    assert len(ds) == 20 and ds.classes[0] == "airplane"
    x, y = ds[5]                                            # batch 2, row 1
    expected = torch.from_numpy(batches["data_batch_2"][1].reshape(3, 32, 32)).float() / 127.5 - 1
    assert y == 2 and torch.allclose(x, expected, atol=1e-6)
    test = data.load("cifar10", split="test", image_size=16, root=root, download=False)
    assert len(test) == 4 and test[0].shape == (3, 16, 16)


def test_failed_download_names_offline_datasets(tmp_path, monkeypatch):
    with pytest.raises(DatasetUnavailableError) as err:
        data.load("mnist", root=tmp_path, download=False)
    msg = str(err.value)
    assert "shapes, shapes-single, photos, folder:<path>" in msg and "MNIST/raw" in msg and "download=False" in msg

    def offline(self):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tvd.CIFAR10, "download", offline)
    with pytest.raises(DatasetUnavailableError, match="download failed.*URLError") as err:
        data.load("cifar10", root=tmp_path, download=True)
    assert "cifar-10-batches-py" in str(err.value) and "shapes, shapes-single, photos" in str(err.value)
    monkeypatch.setenv("MINIMOVQ_OFFLINE", "1")                    # never even tries the network
    with pytest.raises(DatasetUnavailableError, match="MINIMOVQ_OFFLINE"):
        data.load("cifar10", root=tmp_path, download=True)


def test_celeba_reads_extracted_jpegs(tmp_path):
    folder = tmp_path / "celeba" / "img_align_celeba" / "img_align_celeba"    # the Kaggle copy nests twice
    folder.mkdir(parents=True)
    for i in (1, 2, 170000, 182638):
        Image.fromarray(np.full((218, 178, 3), i % 256, np.uint8)).save(folder / f"{i:06d}.jpg")
    train = data.load("celeba", root=tmp_path, download=False, image_size=64)
    test = data.load("celeba", split="test", root=tmp_path, download=False)
    assert len(train) == 2 and len(test) == 1 and train[0].shape == (3, 64, 64)
    with pytest.raises(DatasetUnavailableError, match="quota"):
        data.load("celeba", root=tmp_path / "empty", download=False)


def test_flowers102_mat_files(tmp_path, monkeypatch):
    scipy_io = pytest.importorskip("scipy.io")
    base = tmp_path / "flowers-102"
    (base / "jpg").mkdir(parents=True)
    for i in range(1, 9):
        Image.fromarray(np.full((50, 70, 3), 20 * i, np.uint8)).save(base / "jpg" / f"image_{i:05d}.jpg")
    scipy_io.savemat(base / "imagelabels.mat", {"labels": np.array([1, 1, 2, 2, 3, 3, 4, 4])})
    scipy_io.savemat(base / "setid.mat", {"trnid": np.array([1, 2, 3]), "valid": np.array([4, 5]),
                                          "tstid": np.array([6, 7, 8])})
    monkeypatch.setattr(tvd.Flowers102, "_file_dict", {k: (v[0], None) for k, v in tvd.Flowers102._file_dict.items()})
    train = data.load("flowers102", labels=True, root=tmp_path, download=False)
    test = data.load("flowers102", split="test", labels=True, root=tmp_path, download=False)
    assert len(train) == 6 and len(test) == 2                   # train = official train + test, test = val
    x, y = test[0]
    assert x.shape == (3, 32, 32) and y == 1 and train.classes[0] == "pink primrose"


# ------------------------------------------------------------------------------------------------ folder
def test_image_folder(tmp_path):
    (tmp_path / "cats" / "deep").mkdir(parents=True)
    (tmp_path / "dogs").mkdir()
    for i in range(30):
        sub = tmp_path / ("cats/deep" if i % 3 == 0 else "cats" if i % 3 == 1 else "dogs")
        mode, ext = [("RGB", "png"), ("L", "jpg"), ("RGBA", "bmp")][i % 3]
        Image.new(mode, (40 + i, 30), color=(i * 8,) * len(mode)).save(sub / f"im{i}.{ext}")
    (tmp_path / "notes.txt").write_text("not an image")
    train = data.load(f"folder:{tmp_path}", image_size=16, labels=True)
    test = data.load(f"folder:{tmp_path}", split="test", image_size=16, labels=True)
    assert len(train) + len(test) == 30 and len(test) > 0
    assert not set(train.source.files) & set(test.source.files)
    assert train.classes == ["cats", "dogs"]
    x, y = train[0]
    assert x.shape == (3, 16, 16) and -1 <= x.min() and x.max() <= 1 and y in (0, 1)
    (tmp_path / "stray.png").write_bytes((tmp_path / "dogs" / "im2.bmp").read_bytes())
    with pytest.raises(ValueError, match="one sub-folder per class"):
        data.load(f"folder:{tmp_path}", labels=True)
    with pytest.raises(ValueError, match="not a directory"):
        data.load(f"folder:{tmp_path / 'missing'}")


def test_image_folder_with_train_test_subfolders(tmp_path):
    for split, count in (("train", 5), ("test", 2)):
        (tmp_path / split).mkdir()
        for i in range(count):
            Image.new("RGB", (20, 20), (255, 0, 0)).save(tmp_path / split / f"{i}.png")
    assert len(data.load(f"folder:{tmp_path}", split="train")) == 5
    test = data.load(f"folder:{tmp_path}", split="test", image_size=8)
    assert len(test) == 2 and torch.allclose(test[0][0], torch.ones(8, 8))   # pure red: R = +1


def test_public_names_survive_the_split_into_datasets_and_image_files():
    from minimovq import datasets, image_files

    for name in data.__all__:
        assert hasattr(data, name), name
    assert data.PhotoCrops is datasets.PhotoCrops and data.DatasetUnavailableError is datasets.DatasetUnavailableError
    assert data.open_rgb is image_files.open_rgb and issubclass(data.UnreadableImageError, ValueError)


def test_image_folder_reads_16_bit_and_exif_rotated_files(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    Image.fromarray(np.full((20, 20), 32896, np.uint16)).save(tmp_path / "train" / "grey16.png")   # 16-bit mid-grey
    exif = Image.Exif()
    exif[0x0112] = 8                                      # rotate 90° counter-clockwise to display
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = 255                                     # left half white
    Image.fromarray(img).save(tmp_path / "test" / "phone.jpg", exif=exif, quality=95)
    grey = data.load(f"folder:{tmp_path}", image_size=8)[0]
    assert torch.allclose(grey, torch.tensor(128 / 127.5 - 1), atol=1e-6)          # not all white (+1)
    up = data.load(f"folder:{tmp_path}", split="test", image_size=8)[0]
    assert up[:, -2:].mean() > 0.8 and up[:, :2].mean() < -0.8   # stored left half ends at the bottom
