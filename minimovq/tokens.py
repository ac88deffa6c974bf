"""Turn an image dataset into token grids once, with a trained tokenizer (Lesson 5's prior trains on them)."""
from __future__ import annotations

import torch

from .outputs import TokenizedData

__all__ = ["tokenize_dataset", "TokenizedData"]


@torch.no_grad()
def tokenize_dataset(tokenizer, dataset_or_loader, batch_size=64, device=None, progress=False):
    """Encode a dataset once with a trained VQ tokenizer (e.g. ``minimovq.movq.MoVQ``).

    Items (or loader batches) are images, or (image, label) pairs. ``tokenizer.encode(x)`` must return
    (z_q (B, D, h, w), vq_loss, indices) with B·h·w·G indices, ordered b, h, w (then g).
    Returns ``TokenizedData(tokens, labels)``: tokens a LongTensor (N, h, w) (G = 1) or (N, h, w, G) on the CPU,
    labels a LongTensor (N,) when the items carry labels, else None. The type never depends on the data.
    """
    if isinstance(dataset_or_loader, torch.utils.data.DataLoader):
        loader = dataset_or_loader
    else:
        loader = torch.utils.data.DataLoader(dataset_or_loader, batch_size=batch_size, shuffle=False)
    device = device or next(tokenizer.parameters()).device
    was_training = tokenizer.training
    tokenizer.eval()
    tokens, labels = [], []
    it = loader
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(loader, desc="tokenize")
    for batch in it:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        if isinstance(batch, (list, tuple)) and len(batch) > 1:
            labels.append(torch.as_tensor(batch[1]).long().cpu())
        z_q, _, idx = tokenizer.encode(x.to(device))
        B, _, h, w = z_q.shape
        grid = idx.reshape(B, h, w, -1).long().cpu()  # (B, h, w, G)
        tokens.append(grid[..., 0] if grid.shape[-1] == 1 else grid)
    tokenizer.train(was_training)
    if not tokens:
        raise ValueError("tokenize_dataset got an empty dataset; pass a dataset with at least one image.")
    tokens = torch.cat(tokens)
    return TokenizedData(tokens, torch.cat(labels) if labels else None)
