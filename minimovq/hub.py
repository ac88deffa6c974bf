"""Where released weights come from: the Hugging Face download, and a clear error when it cannot happen.

Used by ``VQGAN.from_pretrained`` and ``MoVQ.from_pretrained``; nothing here runs at import time.
"""
from __future__ import annotations

from .checkpoint import CheckpointError

__all__ = ["hf_download"]


def hf_download(repo_id: str, filename: str, how: str) -> str:
    """Fetch ``filename`` from the Hugging Face repo ``repo_id`` (cached by huggingface_hub) and return its
    local path. Offline, or without huggingface_hub, raise :class:`CheckpointError` that ends with ``how``:
    what the user can do instead (download by hand and pass ``checkpoint_path``)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise CheckpointError(f"huggingface_hub is not installed (pip install huggingface_hub, or "
                              f"pip install 'minimovq[hub]'); or {how}") from None
    try:
        return hf_hub_download(repo_id=repo_id, filename=filename)
    except Exception as e:  # offline, proxy, rate limit, ...
        first = str(e).splitlines()[0][:200] if str(e) else "no details"
        raise CheckpointError(f"could not download {filename} from {repo_id} ({type(e).__name__}: {first}). "
                              f"You may be offline: {how}") from e
