"""The datasets behind :func:`minimovq.data.load`: crops of the bundled photos, image folders, CelebA's
JPEGs and the torchvision sets, all resized to square tensors in [-1, 1]. Reading one file (EXIF rotation,
16-bit images, corrupt files) is :mod:`minimovq.image_files`; choosing a dataset by name is
:mod:`minimovq.data`.
"""
from __future__ import annotations

import warnings
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset

from .image_files import IMAGE_EXTENSIONS, find_unreadable, images_under, open_rgb, to_tensor
from .shapes import image_keys, uniform

__all__ = ["PhotoCrops", "ResizedImages", "DatasetUnavailableError", "OFFLINE_DATASETS", "PHOTO_TEST_FRACTION"]

OFFLINE_DATASETS = ("shapes", "shapes-single", "photos", "folder:<path>")
PHOTO_TEST_FRACTION = 0.25                             # the right quarter of every photo is the test region

HOWTO = {  # how to place each dataset's files by hand, relative to the cache folder {root}
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
        self.photos = [to_tensor(open_rgb(f)) for f in files]                          # (3, H, W) in [0, 1]
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
        x = to_tensor(img) * 2.0 - 1.0                                                  # [0, 1] -> [-1, 1]
        return (x, int(label)) if self.return_labels else x


class _Files(Dataset):
    """A list of image files (and labels) -> ``(PIL image, label)`` items."""

    def __init__(self, files: list[Path], targets: list[int], classes=None):
        self.files, self.targets, self.classes = files, targets, classes

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        return open_rgb(self.files[i]), self.targets[i]


def image_folder(path: Path, split: str, labels: bool, check_files: bool = True) -> _Files:
    """The images of ``split`` under ``path``. With ``check_files`` every one is decoded once now, and the
    files that do not decode are left out with a warning naming them, instead of failing mid-training."""
    if not path.is_dir():
        raise ValueError(f"folder:{path} is not a directory; give folder:<path to a folder of images>")
    if (path / "train").is_dir() and (path / "test").is_dir():
        base = path / split
        files = images_under(base)
    else:  # a stable 90/10 split: 1 file in 10 by a hash of its relative path goes to test
        base = path
        files = [f for f in images_under(path)
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
    bad = dict(find_unreadable(files)) if check_files else {}
    if bad:
        if len(bad) == len(files):
            raise ValueError(f"none of the {len(files)} images for split {split!r} under {path} can be read "
                             f"(e.g. {next(iter(bad))}: {next(iter(bad.values()))}); check the folder")
        listed = "; ".join(f"{f} ({why})" for f, why in list(bad.items())[:10])
        more = f"; and {len(bad) - 10} more" if len(bad) > 10 else ""
        warnings.warn(f"skipped {len(bad)} unreadable image(s) of {len(files)} under {path}: {listed}{more}. "
                      "They are corrupt, truncated or not images: delete or re-save them to use them "
                      "(check_files=False skips this check).", stacklevel=3)
        keep = [i for i, f in enumerate(files) if f not in bad]
        files, targets = [files[i] for i in keep], [targets[i] for i in keep]
    return _Files(files, targets, classes)


def _celeba(root: Path, split: str, download: bool) -> _Files:
    folder = root / "celeba" / "img_align_celeba"
    if download and not (folder.is_dir() and images_under(folder)):
        import torchvision

        torchvision.datasets.CelebA(str(root), split="all", download=True)
    files = images_under(folder) if folder.is_dir() else []
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


def download_or_explain(name: str, split: str, root: Path, download: bool):
    """Build the dataset; on any failure raise DatasetUnavailableError naming the offline sets and the fix."""
    try:
        return _torchvision(name, split, root, download)
    except Exception as e:  # offline (URLError), Drive quota, md5 mismatch, missing gdown/scipy, missing files
        why = f"the download failed ({type(e).__name__}: {e})" if download else \
            f"its files are not in {root} and downloads are off (download=False or MINIMOVQ_OFFLINE=1; " \
            f"{type(e).__name__}: {e})"
        raise DatasetUnavailableError(
            f"could not load {name!r}: {why}.\n"
            f"To use it offline, {HOWTO[name].format(root=root)}.\n"
            f"Datasets that need no download: {', '.join(OFFLINE_DATASETS)} (e.g. data.load('shapes')).") from e
