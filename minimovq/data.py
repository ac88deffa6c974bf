"""Every dataset of the course behind one entry point, and a DataLoader helper.

>>> ds = load("shapes", split="train", image_size=32, n=2000)    # items: (3, H, W) float in [-1, 1]
>>> ds = load("shapes", image_size=32, labels=True)              # items: (image, label)
>>> loader = make_loader(ds, batch_size=64)                      # workers: 0 in CI and locally, 2 on Colab

Names (``DATASETS``):

- ``shapes``: procedural gradients, shapes and textures (``minimovq.shapes``); offline, any size, labelled by
  the dominant shape class (``SHAPES_CLASSES``).
- ``shapes-single``: the labelled variant, one large flat-coloured object per image, labelled by its class
  (for class-conditional generation).
- ``photos``: deterministic random crops of seven public-domain / CC0 photos in ``data/photos/`` (see
  ``data/SOURCES.md``). Train crops come from the left 75% of each photo, test crops from the right 25%, so
  the splits never share a pixel. The crops are 0.5-1x the test strip's width (56-128 source pixels), so
  they suit image_size <= 64. Labelled by the photo they come from.
- ``mnist``, ``fashion_mnist``, ``cifar10``, ``flowers102``, ``celeba``: through torchvision, cached under
  ``data/cache/``. Grayscale becomes 3 channels; images are resized (shorter side) and centre-cropped.
  flowers102: train = the official train + test splits (7,169 images), test = the official val split (1,020),
  since a generative model wants the larger share. celeba: train/test = the official partitions (images
  000001-162770 / 182638-202599) of the aligned JPEGs, unlabelled.
- ``folder:<path>``: every image under ``path`` (recursive; png, jpg, jpeg, bmp, gif, webp, tif, ppm). With
  ``path/train`` and ``path/test`` those are the splits; otherwise a stable 90/10 split by a hash of each
  file's relative path. ``labels=True`` labels each image by its top-level sub-folder.

The data folder is ``<repo>/data``, or ``$MINIMOVQ_DATA_DIR``; for a pip-installed package without the
repository it is ``./data``.
"""
from __future__ import annotations

import os
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from .profiles import in_ci, in_colab
from .shapes import SHAPES_CLASSES, ShapesDataset, image_keys, uniform

__all__ = ["load", "make_loader", "default_num_workers", "data_dir", "DatasetUnavailableError",
           "DATASETS", "OFFLINE_DATASETS", "SHAPES_CLASSES", "PhotoCrops"]

DATASETS = ("shapes", "shapes-single", "photos", "mnist", "fashion_mnist", "cifar10", "flowers102", "celeba",
            "folder:<path>")
OFFLINE_DATASETS = ("shapes", "shapes-single", "photos", "folder:<path>")
DEFAULT_N = {"train": 10_000, "test": 1_000}          # for the generated sets (shapes, photos)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
PHOTO_TEST_FRACTION = 0.25                             # the right quarter of every photo is the test region

_HOWTO = {  # how to place each dataset's files by hand, relative to the cache folder {root}
    "mnist": "put the un-gzipped files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte "
             "and t10k-labels-idx1-ubyte in {root}/MNIST/raw/",
    "fashion_mnist": "put the un-gzipped idx files (same four names as MNIST) in {root}/FashionMNIST/raw/",
    "cifar10": "extract cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) into {root}, "
               "giving {root}/cifar-10-batches-py/ with data_batch_1..5, test_batch and batches.meta",
    "flowers102": "put the jpg/ folder of 102flowers.tgz, imagelabels.mat and setid.mat "
                  "(https://www.robots.ox.ac.uk/~vgg/data/flowers/102/) in {root}/flowers-102/",
    "celeba": "the automatic download comes from Google Drive, which often refuses it ('quota exceeded') and "
              "needs `pip install gdown`. Download img_align_celeba.zip by hand (the CelebA page, or a mirror "
              "such as Kaggle's celeba-dataset) and extract it so that the JPEGs lie anywhere under "
              "{root}/celeba/img_align_celeba/ -- or use load('folder:<extracted folder>')",
}


class DatasetUnavailableError(RuntimeError):
    """A dataset's files are missing and could not be downloaded (offline, quota, missing package)."""


def data_dir() -> Path:
    """The data folder: ``$MINIMOVQ_DATA_DIR``, else ``<repo>/data``, else (pip-installed) ``./data``."""
    if os.environ.get("MINIMOVQ_DATA_DIR"):
        return Path(os.environ["MINIMOVQ_DATA_DIR"]).expanduser()
    repo = Path(__file__).resolve().parents[1]
    return repo / "data" if (repo / "pyproject.toml").is_file() else Path.cwd() / "data"


def load(name: str, split: str = "train", image_size: int = 32, n: int | None = None, labels: bool = False,
         download: bool = True, root: str | Path | None = None, seed: int = 0) -> Dataset:
    """Return a Dataset of (3, image_size, image_size) float tensors in [-1, 1] (``(image, label)`` pairs
    with ``labels=True``).

    Args:
        name: one of ``DATASETS``; ``folder:<path>`` for any image folder.
        split: ``"train"`` or ``"test"``.
        n: number of images. shapes/photos: any n (default 10,000 train / 1,000 test); other sets: a seeded
            random subset of size n (default, or when n exceeds the split: all, with a warning).
        download: allow torchvision to download missing files into the cache (``MINIMOVQ_OFFLINE=1`` forbids it).
        root: the cache folder for downloaded sets (default ``data/cache``), or the photos folder for photos.
        seed: picks the generated images (shapes, photos) or the subset (others). Train and test always differ.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8 (e.g. 32 or 64), got {image_size!r}")
    if n is not None and n < 1:
        raise ValueError(f"n must be a positive number of images (or None), got {n}")
    key = name.lower() if isinstance(name, str) and not name.startswith("folder:") else name
    if key in ("shapes", "shapes-single"):
        return ShapesDataset(n=n or DEFAULT_N[split], image_size=image_size, split=split, seed=seed, labels=labels,
                             single=key == "shapes-single")
    if key == "photos":
        folder = Path(root) if root is not None else data_dir() / "photos"
        return PhotoCrops(folder, split, image_size, n or DEFAULT_N[split], seed=seed, labels=labels)
    if isinstance(key, str) and key.startswith("folder:"):
        source = _folder(Path(key[len("folder:"):]).expanduser(), split, labels)
    elif key in _HOWTO:
        if labels and key == "celeba":
            raise ValueError("celeba has no single class label here: use labels=False (or folder:<path> "
                             "with one sub-folder per class)")
        offline = os.environ.get("MINIMOVQ_OFFLINE", "0") == "1"
        source = _download_or_explain(key, split, Path(root) if root is not None else data_dir() / "cache",
                                      download and not offline)
    else:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if n is not None and n > len(source):
        warnings.warn(f"{name!r} ({split}) has {len(source)} images, fewer than n={n}: using all of them",
                      stacklevel=2)
    idx = torch.arange(len(source))
    if n is not None and n < len(source):
        idx = torch.randperm(len(source), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return ResizedImages(source, idx, image_size, labels)


def default_num_workers() -> int:
    """DataLoader workers: 2 on Colab (its 2 vCPUs decode while the GPU trains), else 0 (CI, laptops, notebooks)."""
    return 2 if (in_colab() and not in_ci()) else 0


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = True, num_workers: int | None = None,
                drop_last: bool | None = None, seed: int = 0) -> DataLoader:
    """A DataLoader with sensible defaults: ``default_num_workers()``, pinned memory on CUDA, a seeded shuffle.

    ``drop_last`` defaults to True when shuffling (training: every step sees a full batch), unless the dataset
    is smaller than one batch; False otherwise (evaluation sees every image).
    """
    workers = default_num_workers() if num_workers is None else num_workers
    if drop_last is None:
        drop_last = shuffle and len(dataset) >= batch_size
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, drop_last=drop_last,
                      pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
                      generator=torch.Generator().manual_seed(seed) if shuffle else None)


# ----------------------------------------------------------------------------------------------------------
# photos
# ----------------------------------------------------------------------------------------------------------
class PhotoCrops(Dataset):
    """Deterministic square crops of the photos in ``folder``, resized to ``image_size``.

    ``boxes`` (N, 5) int64 holds (photo, x0, y0, side, flip) in source pixels; ``boundaries`` (P,) the x that
    separates each photo's train region [0, b) from its test region [b, W). ``classes`` are the photo names.
    """

    def __init__(self, folder: Path, split: str, image_size: int, n: int, seed: int = 0, labels: bool = False):
        files = sorted(f for f in Path(folder).glob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise DatasetUnavailableError(
                f"no photos found in {folder}. They ship with the minimovq repository (data/photos/) and are not "
                "part of a pip-installed package: clone the repository, or set MINIMOVQ_DATA_DIR to a folder "
                "that holds photos/, or pass root=<folder of photos>. Offline alternatives: shapes, folder:<path>.")
        self.classes = tuple(f.stem for f in files)
        self.photos = [_to_tensor(_open_rgb(f)) for f in files]                          # (3, H, W) in [0, 1]
        self.image_size, self.return_labels = image_size, labels
        H = torch.tensor([p.shape[1] for p in self.photos])
        W = torch.tensor([p.shape[2] for p in self.photos])
        self.boundaries = torch.round(W * (1 - PHOTO_TEST_FRACTION)).long()
        smax = torch.minimum(W - self.boundaries, H)                 # the largest crop that fits the test strip
        u = uniform(image_keys(seed, split, torch.arange(n)), 100, 5)                    # (N, 5)
        p = (u[:, 0] * len(files)).long().clamp(max=len(files) - 1)
        side = torch.round(smax[p] * (0.5 + 0.5 * u[:, 1])).long()
        lo = torch.zeros_like(p) if split == "train" else self.boundaries[p]
        hi = self.boundaries[p] if split == "train" else W[p]       # crops lie in [lo, hi) horizontally
        x0 = lo + (u[:, 2] * (hi - lo - side + 1)).long()
        y0 = (u[:, 3] * (H[p] - side + 1)).long()
        self.boxes = torch.stack([p, x0, y0, side, (u[:, 4] < 0.5).long()], dim=1)

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, i: int):
        p, x0, y0, side, flip = self.boxes[i].tolist()
        crop = self.photos[p][:, y0:y0 + side, x0:x0 + side]
        crop = crop.flip(-1) if flip else crop
        x = F.interpolate(crop[None], size=(self.image_size, self.image_size), mode="bilinear",
                          antialias=True, align_corners=False)[0]
        x = x.clamp(0.0, 1.0) * 2.0 - 1.0                                                # [0, 1] -> [-1, 1]
        return (x, p) if self.return_labels else x


# ----------------------------------------------------------------------------------------------------------
# Files on disk: torchvision sets, image folders, CelebA
# ----------------------------------------------------------------------------------------------------------
def _open_rgb(path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")          # grayscale, palette and RGBA all become 3 channels


def _to_tensor(img) -> torch.Tensor:
    """PIL RGB image -> (3, H, W) float in [0, 1]."""
    return rearrange(torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()), "h w c -> c h w").float() / 255.0


class ResizedImages(Dataset):
    """Wraps a source of ``(PIL image, label)`` items: RGB, shorter side resized to ``image_size`` (bicubic,
    antialiased), centre-cropped, mapped to [-1, 1]. ``indices`` selects the subset; ``classes`` if known."""

    def __init__(self, source, indices: torch.Tensor, image_size: int, labels: bool):
        self.source, self.indices, self.image_size, self.return_labels = source, indices, image_size, labels
        self.classes = getattr(source, "classes", None)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        img, label = self.source[int(self.indices[i])]
        img, s = img.convert("RGB"), self.image_size
        w, h = img.size
        if (w, h) != (s, s):
            scale = s / min(w, h)
            w, h = max(s, round(w * scale)), max(s, round(h * scale))
            img = img.resize((w, h), Image.BICUBIC)
            left, top = (w - s) // 2, (h - s) // 2
            img = img.crop((left, top, left + s, top + s))
        x = _to_tensor(img) * 2.0 - 1.0                                                  # [0, 1] -> [-1, 1]
        return (x, int(label)) if self.return_labels else x


class _Files(Dataset):
    """A list of image files (and labels) -> ``(PIL image, label)`` items."""

    def __init__(self, files: list[Path], targets: list[int], classes=None):
        self.files, self.targets, self.classes = files, targets, classes

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        return _open_rgb(self.files[i]), self.targets[i]


def _images_under(folder: Path) -> list[Path]:
    return sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())


def _folder(path: Path, split: str, labels: bool) -> _Files:
    if not path.is_dir():
        raise ValueError(f"folder:{path} is not a directory; give folder:<path to a folder of images>")
    if (path / "train").is_dir() and (path / "test").is_dir():
        base = path / split
        files = _images_under(base)
    else:  # a stable 90/10 split: 1 file in 10 by a hash of its relative path goes to test
        base = path
        files = [f for f in _images_under(path)
                 if (zlib.crc32(f.relative_to(path).as_posix().encode()) % 10 == 0) == (split == "test")]
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) for split {split!r} under {path}")
    classes, targets = None, [0] * len(files)
    if labels:
        tops = [f.relative_to(base).parts for f in files]
        if any(len(t) < 2 for t in tops):
            raise ValueError(f"labels=True needs one sub-folder per class under {base}, but some images lie "
                             "directly in it; move them into class folders or use labels=False")
        classes = sorted({t[0] for t in tops})
        targets = [classes.index(t[0]) for t in tops]
    return _Files(files, targets, classes)


def _celeba(root: Path, split: str, download: bool) -> _Files:
    folder = root / "celeba" / "img_align_celeba"
    if download and not (folder.is_dir() and _images_under(folder)):
        import torchvision

        torchvision.datasets.CelebA(str(root), split="all", download=True)
    files = _images_under(folder) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no JPEGs under {folder}")
    ids = [int(f.stem) if f.stem.isdigit() else 0 for f in files]          # 000001.jpg ... 202599.jpg
    keep = [f for f, i in zip(files, ids, strict=True) if (1 <= i <= 162770 if split == "train" else i >= 182638)]
    return _Files(keep, [0] * len(keep))


def _torchvision(name: str, split: str, root: Path, download: bool):
    import torchvision.datasets as tvd

    train = split == "train"
    if name == "mnist":
        return tvd.MNIST(str(root), train=train, download=download)
    if name == "fashion_mnist":
        return tvd.FashionMNIST(str(root), train=train, download=download)
    if name == "cifar10":
        return tvd.CIFAR10(str(root), train=train, download=download)
    if name == "flowers102":
        import importlib.util

        if importlib.util.find_spec("scipy") is None:
            raise ImportError("flowers102 reads its labels from .mat files, which needs scipy: pip install scipy")
        parts = ["train", "test"] if train else ["val"]
        sets = [tvd.Flowers102(str(root), split=s, download=download) for s in parts]
        both = ConcatDataset(sets)
        both.classes = sets[0].classes
        return both
    return _celeba(root, split, download)


def _download_or_explain(name: str, split: str, root: Path, download: bool):
    """Build the dataset; on any failure raise DatasetUnavailableError naming the offline sets and the fix."""
    try:
        return _torchvision(name, split, root, download)
    except Exception as e:  # offline (URLError), Drive quota, md5 mismatch, missing gdown/scipy, missing files
        why = f"the download failed ({type(e).__name__}: {e})" if download else \
            f"its files are not in {root} and downloads are off (download=False or MINIMOVQ_OFFLINE=1; " \
            f"{type(e).__name__}: {e})"
        raise DatasetUnavailableError(
            f"could not load {name!r}: {why}.\n"
            f"To use it offline, {_HOWTO[name].format(root=root)}.\n"
            f"Datasets that need no download: {', '.join(OFFLINE_DATASETS)} (e.g. data.load('shapes')).") from e
