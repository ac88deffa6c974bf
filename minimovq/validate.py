"""Input checks shared by every model: bad input fails early with a ``ValueError`` that names the problem, the
value it got, and the fix — before it can turn into a NaN loss, a raw dtype error, or (on CUDA) a device-side
assert that forces a runtime restart.

* :func:`check_images`: a float batch (B, C, H, W) of finite images in [-1, 1], in the model's dtype;
* :func:`check_token_ids`, :func:`check_labels`: integer ids inside the embedding table;
* :func:`check_sampling_args`: temperature, guidance, top_k, steps and batch size of a sampler.

Dtype policy: the models compute in ``torch.get_default_dtype()`` (float32). Outside autocast, images of
another float dtype (float64 from numpy, fp16/bf16 from an earlier autocast region) are refused with the
conversion to use, instead of being cast silently; under ``torch.autocast`` any float dtype is accepted, since
autocast casts each layer's input itself. A model kept in another precision passes ``dtype=``.
"""
from __future__ import annotations

import math
import numbers

import torch


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        return torch.is_autocast_enabled() if device_type == "cuda" else torch.is_autocast_cpu_enabled()


def check_images(x: torch.Tensor, *, channels: int | None = None, size: int | tuple[int, int] | None = None,
                 multiple_of: int | None = None, check_range: bool = True, name: str = "images",
                 dtype: torch.dtype | None = None) -> None:
    """Raise ``ValueError`` unless ``x`` is a non-empty float batch (B, C, H, W) of finite images in [-1, 1].

    Args:
        channels: the expected C.
        size: the expected H (and W), if fixed.
        multiple_of: H and W must be divisible by this (the model's downsampling factor).
        check_range: also check values lie in [-1, 1] (a small tolerance allows rounding). NaN and Inf are
            refused either way.
        dtype: the dtype the model computes in (default ``torch.get_default_dtype()``); not enforced under
            autocast.
    """
    c = channels if channels is not None else "C"
    expected = f"(B, {c}, H, W)"
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {expected}, got {type(x).__name__}")
    if x.ndim != 4:
        hint = " — add a batch dimension with x.unsqueeze(0)" if x.ndim == 3 else ""
        raise ValueError(f"{name} must have shape {expected}, got {tuple(x.shape)}{hint}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch, shape {tuple(x.shape)}: a model needs B >= 1 images (a batch "
                         "of 0 gives a NaN loss); check the dataset size, n= and batch_size / drop_last")
    if channels is not None and x.shape[1] != channels:
        hint = ""
        if x.shape[-1] == channels:
            hint = " — it looks channels-last: use x.permute(0, 3, 1, 2)"
        elif x.shape[1] == 1 and channels == 3:
            hint = " — for grayscale images use x.repeat(1, 3, 1, 1)"
        raise ValueError(f"{name} must have shape {expected} with C={channels}, got {tuple(x.shape)}{hint}")
    if size is not None:
        hw = (size, size) if isinstance(size, int) else tuple(size)
        if tuple(x.shape[-2:]) != hw:
            raise ValueError(f"{name} must be {hw[0]}x{hw[1]} pixels, got {tuple(x.shape)}; resize them first")
    if multiple_of is not None and (x.shape[-2] % multiple_of or x.shape[-1] % multiple_of):
        raise ValueError(f"{name} height and width must be multiples of {multiple_of} (the downsampling factor), "
                         f"got {tuple(x.shape)}; resize or crop them")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor in [-1, 1], got dtype {x.dtype}; "
                         "for uint8 images use x.float() / 127.5 - 1")
    want = dtype or torch.get_default_dtype()
    if x.dtype != want and not _autocast_on(x.device.type):
        raise ValueError(f"{name} have dtype {x.dtype}, but the model computes in {want}: convert them with "
                         f"x.to({want}) (e.g. x.float()), or run the model under torch.autocast for fp16/bf16")
    if x.numel():
        lo, hi = x.detach().aminmax()
        lo, hi = float(lo), float(hi)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            bad = int((~torch.isfinite(x.detach())).sum())
            raise ValueError(f"{name} contain {bad} NaN or Inf value(s) out of {x.numel()}: the model would turn "
                             "them into a NaN loss; find where they come from (a division by zero, a log of 0, "
                             "a corrupt file, an unstable previous step) or replace them with torch.nan_to_num")
        if check_range and (lo < -1.01 or hi > 1.01):
            hint = " (it looks like [0, 255]: use x / 127.5 - 1)" if hi > 2 else ""
            raise ValueError(f"{name} must lie in [-1, 1], got values in [{lo:.3g}, {hi:.3g}]{hint}")


def check_token_ids(tokens: torch.Tensor, high: int, *, name: str = "token ids", fix: str = "") -> None:
    """Raise ``ValueError`` unless every entry of the integer tensor ``tokens`` lies in [0, high].

    An id outside the embedding table is a raw IndexError on the CPU and a device-side assert on CUDA (which
    poisons the CUDA context until the runtime restarts), so this check runs before the lookup."""
    if not torch.is_tensor(tokens) or tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got {getattr(tokens, 'dtype', type(tokens).__name__)}; "
                         "convert with .long()")
    if tokens.numel() == 0:
        return
    lo, hi = (int(v) for v in tokens.aminmax())
    if lo < 0 or hi > high:
        raise ValueError(f"{name} must lie in [0, {high}], got values in [{lo}, {hi}]" + (f"; {fix}" if fix else ""))


def check_labels(labels, num_classes: int | None, batch_size: int, *, allow_null: bool = True,
                 name: str = "labels") -> torch.Tensor:
    """Validate class labels for a model with ``num_classes`` classes and return them as a (batch_size,) long
    tensor (one int is broadcast). ``allow_null``: the id ``num_classes`` ("no class") is allowed too."""
    if num_classes is None:
        raise ValueError(f"{name} were given but the model is unconditional; build it with num_classes=C "
                         "or pass labels=None.")
    t = labels if torch.is_tensor(labels) else torch.as_tensor(labels)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must be integer class ids, got dtype {t.dtype}; convert with .long()")
    t = t.reshape(-1)
    if t.numel() not in (1, batch_size):
        raise ValueError(f"{name} must be one int or {batch_size} ids (one per sample), got {t.numel()}")
    top = num_classes if allow_null else num_classes - 1
    null = f" ({num_classes} is 'no class')" if allow_null else ""
    check_token_ids(t, top, name=name, fix=f"the model has num_classes={num_classes}{null}; check the dataset's "
                                           "labels against num_classes")
    return t.long().expand(batch_size)


def _number(value, what: str, fix: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if torch.is_tensor(value) and value.numel() == 1:
            value = value.item()
        else:
            raise ValueError(f"{what} must be a number, got {value!r}; {fix}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value}; {fix}")
    return value


def _count(value, what: str, fix: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{what} must be an int >= {minimum}, got {value!r}; {fix}")
    return int(value)


def check_sampling_args(*, batch_size=None, temperature=None, guidance=None, top_k=None, steps=None,
                        choice_temperature=None) -> None:
    """Raise ``ValueError`` for sampler arguments that would silently give wrong samples (a negative
    temperature picks the *least* likely tokens, NaN picks arbitrary ones). Arguments left at None are not
    checked, except ``top_k``, where None means "no cut"."""
    if batch_size is not None:
        _count(batch_size, "batch_size", "ask for at least one sample")
    for value, what, fix, why in (
            (temperature, "temperature", "use 0 for greedy decoding, 1 for the model's distribution",
             "a negative temperature inverts the distribution and picks the least likely tokens; use 0 (greedy) up "
             "to ~1-5"),
            (choice_temperature, "choice_temperature", "MaskGIT's official value is 4.5; 0 ranks by confidence alone",
             "it scales the Gumbel noise added to the confidence, and a negative scale keeps the least confident "
             "tokens; use 0 up to ~4.5"),
            (guidance, "guidance", "use 0 for no guidance, 1-5 for classifier-free guidance",
             "it scales l_c + w·(l_c − l_uncond); use 0 for plain conditional sampling, or labels=None for "
             "unconditional samples")):
        if value is not None and (v := _number(value, what, fix)) < 0:
            raise ValueError(f"{what} must be >= 0, got {v}: {why}")
    if top_k is not None:
        _count(top_k, "top_k", "use None to keep every code, or e.g. top_k=100")
    if steps is not None:
        _count(steps, "steps", "MaskGIT uses 8 to 12 decoding steps")
