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
  file's relative path. ``labels=True`` labels each image by its top-level sub-folder. Every image is decoded
  once when the dataset is built: corrupt or truncated files are left out with a warning that names them.

Files are read upright (EXIF orientation applied), 16-bit images are scaled to 8 bits (not clipped to white),
and a file that cannot be decoded raises ``UnreadableImageError`` naming it (``minimovq.image_files``); the
dataset classes live in ``minimovq.datasets``.

The data folder is ``<repo>/data``, or ``$MINIMOVQ_DATA_DIR``; for a pip-installed package without the
repository it is ``./data``.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from .datasets import (HOWTO, OFFLINE_DATASETS, PHOTO_TEST_FRACTION, DatasetUnavailableError,  # noqa: F401
                       PhotoCrops, ResizedImages, download_or_explain, image_folder)
from .image_files import IMAGE_EXTENSIONS, UnreadableImageError, open_rgb  # noqa: F401  (re-exported)
from .profiles import in_ci, in_colab
from .shapes import SHAPES_CLASSES, ShapesDataset

__all__ = ["load", "make_loader", "default_num_workers", "data_dir", "DatasetUnavailableError",
           "UnreadableImageError", "DATASETS", "OFFLINE_DATASETS", "SHAPES_CLASSES", "PhotoCrops", "open_rgb"]

DATASETS = ("shapes", "shapes-single", "photos", "mnist", "fashion_mnist", "cifar10", "flowers102", "celeba",
            "folder:<path>")
DEFAULT_N = {"train": 10_000, "test": 1_000}          # for the generated sets (shapes, photos)


def data_dir() -> Path:
    """The data folder: ``$MINIMOVQ_DATA_DIR``, else ``<repo>/data``, else (pip-installed) ``./data``."""
    if os.environ.get("MINIMOVQ_DATA_DIR"):
        return Path(os.environ["MINIMOVQ_DATA_DIR"]).expanduser()
    repo = Path(__file__).resolve().parents[1]
    return repo / "data" if (repo / "pyproject.toml").is_file() else Path.cwd() / "data"


def load(name: str, split: str = "train", image_size: int = 32, n: int | None = None, labels: bool = False,
         download: bool = True, root: str | Path | None = None, seed: int = 0, check_files: bool = True) -> Dataset:
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
        check_files: ``folder:<path>`` decodes every image once here (about 1 ms each), and leaves out the
            corrupt or truncated ones with a warning naming them, instead of failing mid-training in every
            epoch. With False, a bad file fails when it is read, with an ``UnreadableImageError`` naming it.
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
        source = image_folder(Path(key[len("folder:"):]).expanduser(), split, labels, check_files)
    elif key in HOWTO:
        if labels and key == "celeba":
            raise ValueError("celeba has no single class label here: use labels=False (or folder:<path> "
                             "with one sub-folder per class)")
        offline = os.environ.get("MINIMOVQ_OFFLINE", "0") == "1"
        source = download_or_explain(key, split, Path(root) if root is not None else data_dir() / "cache",
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
