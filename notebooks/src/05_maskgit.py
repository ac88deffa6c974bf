# %% [markdown]
# # Lesson 5 — MaskGIT: generating images as token grids{{VARIANT}}
# {{COLAB_BADGE}}
#
# **Where we are.** Lessons 2–4 built a *tokenizer*: MoVQ turns an image into a small grid of discrete codes and
# back, with little loss. A tokenizer alone does not generate anything. To make new images we need a **prior**, a
# model of which token grids are likely; then we sample a grid and decode it.
#
# The classic prior is autoregressive (taming's transformer): predict the tokens one at a time in raster order.
# That needs one forward pass per token — 256 passes for a 16 × 16 grid. **MaskGIT** (Chang et al. 2022,
# "MaskGIT: Masked Generative Image Transformer") trains a *bidirectional* transformer to fill in masked tokens,
# and generates a whole grid in a few parallel steps (8–12 in the paper), keeping the confident predictions at each
# step.
#
# You will
# 1. tokenize a dataset once with Lesson 4's MoVQ,
# 2. meet the cosine masking schedule, write the training mask (an exercise), and train MaskGIT,
# 3. write the re-masking rule of the decoder (an exercise), and watch a grid being decoded step by step,
# 4. measure sample quality and diversity against the number of steps T, with unconditional samples,
# 5. race MaskGIT against an autoregressive prior of the same size and budget,
# 6. generate class by class, with and without classifier-free guidance, and close the loop:
#    image → MoVQ tokens → MaskGIT → image.
#
# Each exercise is followed by a check that says what differs and, until it passes, lends you the reference.

# %%
{{SETUP}}

# %% [markdown]
# ## 0. Configuration
# Sizes come from the profile: `quick` (a CI smoke test, under a minute), `cpu` (a laptop) or `gpu` (a Colab T4).
# The tokenizer is the MoVQ that Lesson 4 saved (`lesson4_movq.pt` in `minimovq.checkpoint.checkpoint_dir()`);
# without it, or when it was trained on another `DATASET`, this notebook trains a small one first. Switch `DATASET`
# to `"cifar10"` for a real labelled dataset (downloaded once into `data/cache/`). A tokenizer trained on `shapes`
# gets its prior trained on **`shapes-single`**, the labelled variant of the same generator: one large flat-coloured
# object per image, so that the class label says what the image shows (a `shapes` scene of up to four objects is
# labelled by its dominant one, too weak a signal for section 9).

# %%
import hashlib
import math
import time
import matplotlib.pyplot as plt
import torch.nn as nn
import torch.nn.functional as F
from minimovq import data, viz
from minimovq.checkpoint import CheckpointError, checkpoint_dir, load_checkpoint, run_checkpoint
from minimovq.maskgit import MaskGIT, cosine_schedule, drop_labels, make_optimizer, prior_loss
from minimovq.metrics import format_table, frechet_distance  # FID's formula, in our own feature space
from minimovq.reference import record   # keeps this lesson's headline tables under `make reference`
from minimovq.movq import MoVQ
from minimovq.sampling import gumbel_noise, sample, sample_autoregressive
from minimovq.tokens import tokenize_dataset
from minimovq.train import Trainer, count_parameters

DATASET = "shapes"        # a labelled set: "shapes" (built in, offline) | "cifar10" | "mnist" | "photos"
N_TRAIN = P.pick(quick=512, cpu=10000, gpu=50000)
N_TEST = P.pick(quick=128, cpu=1000, gpu=2000)
DIM, DEPTH, HEADS = P.pick(quick=(64, 2, 4), cpu=(128, 3, 4), gpu=(256, 6, 8))
BATCH = P.pick(quick=32, cpu=32, gpu=128)
STEPS = P.pick(quick=40, cpu=2000, gpu=8000)          # per prior: MaskGIT and AR get the same budget
LR = P.pick(quick=2e-3, cpu=1e-3, gpu=5e-4)
N_EVAL = P.pick(quick=32, cpu=500, gpu=2000)          # samples per quality measurement
CHUNK = P.pick(quick=32, cpu=250, gpu=500)            # samples per sampler call (memory)
TOKENIZER = P.pick(quick=("tiny", 32), cpu=("tiny", 32), gpu=("small", 64))  # config, px: as Lesson 4
TOKENIZER_STEPS = P.pick(quick=4, cpu=750, gpu=3000)   # these two only without Lesson 4's checkpoint
LABEL_DROP = 0.1          # fraction of training labels replaced by "no class" (classifier-free guidance, section 9)
t_lesson = time.perf_counter()

# %% [markdown]
# ## 1. A tokenizer, and the dataset as tokens
# Lesson 4 saved its MoVQ. If it is missing (you skipped Lesson 4, or this is a fresh Colab runtime without
# Drive), we train a small one here, with the L2 and codebook losses only: enough to get tokens, not Lesson 4's
# quality.

# %%
def load_or_train_tokenizer():
    """(MoVQ in eval mode, the dataset it was trained on, its image size)."""
    path = checkpoint_dir() / "lesson4_movq.pt"
    if path.is_file():
        try:
            meta = load_checkpoint(path)
            if meta.get("dataset", DATASET) == DATASET and meta.get("profile", P.name) == P.name:
                model = MoVQ.from_checkpoint(path).to(P.device).eval()
                print(f"loaded Lesson 4's MoVQ from {path} (trained on {meta.get('dataset')} at "
                      f"{meta.get('image_size')} px, profile {meta.get('profile')}, {meta.get('steps')} steps)")
                return model, DATASET, meta.get("image_size", model.ddconfig["resolution"])
            if meta.get("dataset", DATASET) != DATASET:
                print(f"Lesson 4's MoVQ ({path}) was trained on {meta.get('dataset')!r}, not DATASET={DATASET!r}: "
                      f"a tokenizer only knows the images it saw, so this notebook trains one on {DATASET!r}")
            else:
                print(f"Lesson 4's MoVQ ({path}) was trained in the {meta.get('profile')!r} profile, not "
                      f"{P.name!r} (a different budget): this notebook trains one at this profile's budget")
        except (CheckpointError, ValueError, KeyError) as e:
            print(f"could not use {path}: {e}")
    config, size = TOKENIZER
    print(f"training a small MoVQ ('{config}', {size} px, G=4) for {TOKENIZER_STEPS} steps (L2 + codebook loss)")
    seed_everything(0)
    model = MoVQ.from_config(config, groups=4).to(P.device)
    ds = data.load(DATASET, split="train", image_size=size, n=N_TRAIN)
    opt = torch.optim.Adam(model.parameters(), lr=4e-4)
    trainer = Trainer(model, {"loss": opt}, device=P.device, amp=P.amp,
                      ckpt_path=run_checkpoint(f"05_maskgit-movq-{DATASET}-{config}-{size}px-s{TOKENIZER_STEPS}"))

    def step_fn(x, step):
        with trainer.autocast():
            x_hat, vq_loss, _ = model(x)
        rec = F.mse_loss(x_hat.float(), x)
        return {"loss": rec + vq_loss, "rec": rec}

    trainer.fit(data.make_loader(ds, batch_size=16), step_fn, steps=TOKENIZER_STEPS, desc="MoVQ")
    return model.eval(), DATASET, size


movq, DATASET, IMAGE_SIZE = load_or_train_tokenizer()
PRIOR_DATASET = "shapes-single" if DATASET == "shapes" else DATASET  # the labelled variant (see section 0)
# A fingerprint of the tokenizer's codebook: the priors' checkpoints carry it in their name, so retraining Lesson 4
# never resumes a prior that learned another tokenizer's tokens.
TOKENIZER_ID = hashlib.sha1(movq.quantize.embedding.weight.detach().float().cpu().numpy().tobytes()).hexdigest()[:8]
K, G = movq.n_embed, movq.quantize.groups
train_set = data.load(PRIOR_DATASET, split="train", image_size=IMAGE_SIZE, n=N_TRAIN, labels=True)
test_set = data.load(PRIOR_DATASET, split="test", image_size=IMAGE_SIZE, n=N_TEST, labels=True)


@torch.no_grad()
def decode(tokens, chunk=128):
    """Token grids (B, h, w[, G]) -> images (B, 3, H, W) in [-1, 1]."""
    return torch.cat([movq.decode_indices(t.to(P.device)).clamp(-1, 1) for t in tokens.split(chunk)])


t0 = time.perf_counter()
train_tokens, train_labels = tokenize_dataset(movq, train_set, batch_size=128, device=P.device)
test_tokens, test_labels = tokenize_dataset(movq, test_set, batch_size=128, device=P.device)
GRID = tuple(train_tokens.shape[1:3])
NUM_CLASSES = int(train_labels.max()) + 1
print(f"{len(train_tokens)} {PRIOR_DATASET} training images -> tokens {tuple(train_tokens.shape)} in "
      f"{time.perf_counter() - t0:.1f} s: a {GRID[0]}×{GRID[1]} grid, G={G} indices per position, K={K} codes, "
      f"{NUM_CLASSES} classes")
x_test = torch.stack([test_set[i][0] for i in range(8)]).to(P.device)
viz.compare_grid({"image": x_test, "MoVQ(tokens)": decode(test_tokens[:8])}, n=8);

# %% [markdown]
# Encoding happens **once**: the prior trains on these integer grids, never touching the autoencoder again. Each
# position holds G indices (Lesson 4's multichannel quantization). The prior treats a *position* as the unit: its
# G tokens are masked together and predicted together by G output heads, and its input is the sum of G token
# embeddings.
#
# The G heads of a position are **conditionally independent**: given what is visible, the network outputs G
# separate distributions over the K codes, and the sampler draws the G tokens of a position independently of each
# other. Whatever ties them together must come through the context, never from one token of the position to
# another. With G = 1 (the paper's MaskGIT: one token per position) this costs nothing; with G > 1 it is an
# approximation, and a grid whose G tokens disagree decodes into a position that mixes two different patches.

# %% [markdown]
# ## 2. The masking schedule
# MaskGIT trains on grids with a random fraction of the positions replaced by a special `[MASK]` token and learns
# to predict the originals. The fraction follows a **schedule** $\gamma$, a decreasing function from
# $\gamma(0) = 1$ (all masked) to $\gamma(1) = 0$. The paper found the cosine best:
# $$\gamma(r) = \cos\!\Big(\frac{\pi r}{2}\Big),\qquad r \in [0, 1].$$
# The same $\gamma$ serves twice: in training, $r \sim U(0, 1)$ sets how much of a grid is hidden; in decoding,
# $r = (t+1)/T$ sets how many tokens are still masked after step $t$ of $T$. Concave near $r = 0$, it keeps
# most tokens masked for the first steps — the model commits to few tokens while it knows little.
# `minimovq.maskgit.cosine_schedule(r)` computes it, elementwise.

# %%
r = torch.linspace(0, 1, 101)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for name, g in [("cosine", cosine_schedule(r)), ("linear", 1 - r), ("square", 1 - r ** 2)]:
    axes[0].plot(r, g, label=name)
axes[0].set(xlabel="r", ylabel="γ(r): fraction masked", title="mask schedules"); axes[0].legend()
N_POS = GRID[0] * GRID[1]
for T in (4, 8, 12):
    left = [N_POS] + [math.floor(cosine_schedule(torch.tensor((t + 1) / T)).item() * N_POS) for t in range(T - 1)] + [0]
    axes[1].step(range(T + 1), left, where="post", label=f"T={T}")
axes[1].set(xlabel="decoding step", ylabel="positions still masked", title=f"decoding a {N_POS}-position grid")
axes[1].legend();

# %% [markdown]
# ## 3. Masking a training batch
# For each grid: draw $r \sim U(0, 1)$, and mask $n = \max(1, \lceil\gamma(r)\,N\rceil)$ of its $N$ positions,
# chosen uniformly at random. The loss is the cross-entropy on the **masked positions only** — the visible ones
# are given, predicting them teaches nothing:
# $$\mathcal L = -\,\mathbb E_{r}\ \sum_{i\,\in\,\text{masked}} \log p_\theta\big(x_i \mid x_{\text{visible}}\big).$$
#
# **Exercise 5.1.** Implement `mask_tokens(tokens, mask_id, generator=None)`: tokens (B, N) → (masked_tokens, mask),
# with `mask_id` at the masked positions and a boolean mask (B, N). Draw every random number from `generator`.
# Hint: the n smallest of N uniform random scores are a uniformly random set of n positions.

# %%
def mask_tokens(tokens, mask_id, generator=None):
    """tokens: (B, N) long. Returns masked_tokens (B, N), mask (B, N) bool (True = masked)."""
    # BEGIN SOLUTION Exercise 5.1: implement mask_tokens as described above (tokens must stay unchanged)
    B, N = tokens.shape
    r = torch.rand(B, generator=generator, device=tokens.device)
    n = torch.ceil(cosine_schedule(r) * N).long().clamp(min=1)               # (B,)
    scores = torch.rand(B, N, generator=generator, device=tokens.device)
    ranks = scores.argsort(dim=1).argsort(dim=1)                            # a random permutation per row
    mask = ranks < n[:, None]
    return tokens.masked_fill(mask, mask_id), mask
    # END SOLUTION

import minimovq.checks.maskgit as checks
mask_tokens = checks.mask_tokens(mask_tokens)

# %%
demo = test_tokens[:6].reshape(6, -1, G)[..., 0]  # the first group's index at each position
masked_demo, mask_demo = mask_tokens(demo, K, generator=torch.Generator().manual_seed(0))
fig, axes = plt.subplots(1, 6, figsize=(12, 2.2))
for ax, row, m in zip(axes, masked_demo.float(), mask_demo):
    img = row.masked_fill(m, float("nan")).reshape(GRID)
    ax.imshow(img, cmap=plt.get_cmap("viridis").with_extremes(bad="0.85"), vmin=0, vmax=K - 1)
    ax.set_title(f"{int(m.sum())}/{N_POS} masked", fontsize=9); ax.axis("off")
fig.suptitle("training grids (colour = code index of group 0, grey = [MASK])");

# %% [markdown]
# ## 4. The transformer, and training it
# `minimovq.maskgit.MaskGIT` is a pre-LN transformer (`F.scaled_dot_product_attention`) over the $N$ positions plus
# one prefix token — the class embedding (classes make generation controllable, section 9). Learned position
# embeddings; the `[MASK]` token has id $K$; the output is $G$ heads of $K$ logits per position. The training
# step below uses *your* `mask_tokens`, on positions: a masked position hides all of its G tokens. The paper
# trains with label smoothing 0.1 and AdamW with a linear warm-up (`make_optimizer`). One more line: a random 10% of
# the labels become the "no class" label (id `NUM_CLASSES`), so that the same network also learns the
# *unconditional* distribution — section 9 uses both.

# %%
from minimovq.figures import draw_maskgit
draw_maskgit(MaskGIT(K, GRID, dim=DIM, depth=DEPTH, heads=HEADS, groups=G, num_classes=NUM_CLASSES),
             test_tokens[:1], test_labels[:1]);

# %% [markdown]
# Every shape (B = batch) is measured in one forward pass of this configuration: the G token embeddings of a position
# are summed into one vector, the class embedding takes the extra first slot, and a learned position embedding is
# added to every slot before the blocks. At the output the prefix slot is dropped, and G heads give K logits per
# position, each head independent of the others given the context.

# %%
token_loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(train_tokens, train_labels),
                                           batch_size=BATCH, shuffle=True, drop_last=True)


def make_prior(causal):
    seed_everything(0)
    return MaskGIT(K, GRID, dim=DIM, depth=DEPTH, heads=HEADS, groups=G, num_classes=NUM_CLASSES,
                   causal=causal).to(P.device)


def train_prior(model, step_fn, name):
    opt, sched = make_optimizer(model, lr=LR, warmup=max(1, STEPS // 20), total_steps=STEPS)
    trainer = Trainer(model, {"loss": opt}, schedulers={"loss": sched}, device=P.device, amp=P.amp,
                      ckpt_path=run_checkpoint(f"05_maskgit-{name}-{PRIOR_DATASET}-{TOKENIZER_ID}-d{DIM}x{DEPTH}-s{STEPS}",
                                               config={"lr": LR, "batch": BATCH, "label_drop": LABEL_DROP}))
    history = trainer.fit(token_loader, lambda batch, step: step_fn(trainer, *batch), steps=STEPS, desc=name)
    tokens_per_s = STEPS * BATCH * N_POS / max(history.seconds, 1e-9)
    print(f"{name}: {count_parameters(model):,} parameters, {history.seconds:.1f} s, "
          f"{tokens_per_s:,.0f} training tokens/s (positions)")
    return history, tokens_per_s


def maskgit_step(trainer, tokens, labels):
    tokens = maskgit.flatten_tokens(tokens)                          # (B, N, G)
    labels = drop_labels(labels, LABEL_DROP, null_id=NUM_CLASSES)   # 10% "no class", for guidance
    _, mask = mask_tokens(tokens[..., 0], maskgit.mask_id)           # (B, N): which positions to hide
    masked = tokens.masked_fill(mask[..., None], maskgit.mask_id)    # all G tokens of a masked position
    with trainer.autocast():
        logits = maskgit(masked, labels)                             # (B, N, G, K)
    logits, target = logits[mask].float(), tokens[mask]             # (M, G, K), (M, G): masked positions only
    loss = F.cross_entropy(logits.reshape(-1, K), target.reshape(-1), label_smoothing=0.1)
    return {"loss": loss, "acc": (logits.argmax(-1) == target).float().mean()}


maskgit = make_prior(causal=False)
mg_history, mg_tokens_per_s = train_prior(maskgit, maskgit_step, "MaskGIT")
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
mg_history.plot(["loss"], smooth=20, ax=axes[0], title="cross-entropy on masked tokens")
mg_history.plot(["acc"], smooth=20, ax=axes[1], title="accuracy on masked tokens");

# %% [markdown]
# ## 5. Decoding: keep the confident, re-mask the rest
# Start from an all-`[MASK]` grid. At step $t = 0, \dots, T-1$:
# 1. predict every masked position and **sample** a token from $p_\theta$;
# 2. score each sampled token by its confidence $c_i = \log p_\theta(\hat x_i) + \tau\,(1 - \tfrac{t+1}{T})\,g_i$,
#    $g_i \sim \text{Gumbel}(0, 1)$: the noise, annealed linearly to 0, keeps early steps from committing only to
#    the easiest tokens (τ = 4.5 in the official code, where it is called `choice_temperature`; it scales the noise
#    on the confidence, not the logits). Tokens fixed earlier get $c_i = +\infty$;
# 3. **re-mask** the $n = \lfloor\gamma(\tfrac{t+1}{T})\,N\rfloor$ least confident (at least 1, fewer than are
#    masked now); after the last step nothing is masked.
#
# $T$ forward passes instead of $N$. With G tokens per position, the confidence of a position is the sum of its G
# log-probabilities.
#
# **Why Gumbel noise?** The *Gumbel-top-k trick* (Kool et al. 2019, "Stochastic Beams and Where to Find Them"): add
# independent Gumbel(0, 1) noise to log-probabilities and keep the k largest, and you have drawn k items *without
# replacement*, each in proportion to its probability. At τ = 1 the kept tokens are such a draw, weighted by the
# model's confidence; τ > 1 flattens the weights towards a uniformly random choice, and τ → 0 keeps the k most
# confident tokens every time.
#
# **Paper and code differ on the schedule.** The paper writes the number of tokens to mask at iteration $t$ as
# $n = \lceil\gamma(t/T)\,N\rceil$. The official code computes the count left masked *after* step $t$ as
# $\lfloor\gamma(\tfrac{t+1}{T})\,N\rfloor$ and clamps it to at least 1 and to fewer than are masked now, and
# anneals the noise as $\tau\,(1 - \tfrac{t+1}{T})$. minimovq follows the code, as written above.
#
# **Exercise 5.2.** Implement one decoding iteration,
# `decode_step(tokens, logits, sampled, noise, mask_id, step, steps, n_start, choice_temperature=4.5)`, made
# deterministic by passing the random draws in:
# - `tokens` (B, N) holds `mask_id` at the unknown positions; `logits` (B, N, K) is the model's output for this
#   step (K = `n_embed` codes); `sampled` (B, N) is a token drawn from softmax(logits) at every position; `noise`
#   (B, N) is standard Gumbel noise;
# - the new grid takes `sampled` at the unknown positions and keeps `tokens` elsewhere;
# - the confidence is `log_softmax(logits)` at the chosen token plus
#   $\tau\,(1 - \tfrac{\text{step}+1}{\text{steps}})\cdot$`noise`, and $+\infty$ at positions known before this step;
# - for step < steps − 1, re-mask $n = \max(1, \min(u - 1, \lfloor\gamma(\tfrac{\text{step}+1}{\text{steps}})\cdot
#   n_\text{start}\rfloor))$ positions, where $u$ is the number of unknown positions before this step ($n = 0$ when
#   $u = 0$); at the last step $n = 0$. `n_start` (an int or a LongTensor (B,)) is the number of unknown positions
#   when decoding began;
# - return the new grid with the $n$ least-confident positions of each row set back to `mask_id`. Do not modify
#   `tokens`.
#
# `cosine_schedule` and `minimovq.maskgit.select_to_remask(confidence, n)` (True at the n lowest of each row) are
# there to use.

# %%
def decode_step(tokens, logits, sampled, noise, mask_id, step, steps, n_start, choice_temperature=4.5):
    """tokens, sampled: (B, N) long; logits: (B, N, K); noise: (B, N). Returns the new grid (B, N) long."""
    # BEGIN SOLUTION Exercise 5.2: implement one decoding step as described above
    unknown = tokens == mask_id                                              # (B, N)
    new = torch.where(unknown, sampled, tokens)
    ratio = (step + 1) / steps
    confidence = logits.float().log_softmax(-1).gather(-1, new[..., None])[..., 0]
    confidence = confidence + choice_temperature * (1 - ratio) * noise
    confidence = confidence.masked_fill(~unknown, float("inf"))
    u = unknown.sum(1)                                                       # (B,)
    if step == steps - 1:
        n = torch.zeros_like(u)
    else:
        n = torch.floor(cosine_schedule(ratio) * torch.as_tensor(n_start)).long().expand_as(u)
        n = torch.where(u > 0, torch.clamp(torch.minimum(u - 1, n), min=1), 0)
    ranks = confidence.argsort(dim=1, stable=True).argsort(dim=1)            # 0 = least confident
    return new.masked_fill(ranks < n[:, None], mask_id)
    # END SOLUTION

decode_step = checks.decode_step(decode_step)

# %% [markdown]
# One step by hand, with your `decode_step`: the first step of a T = 8 decode. For this picture a position is
# scored by its first group's head only; `sample` sums the G log-probabilities.

# %%
T = 8
gen = torch.Generator(device=P.device).manual_seed(0)
labels4 = torch.arange(4, device=P.device) % NUM_CLASSES
grid0 = torch.full((4, N_POS, G), maskgit.mask_id, device=P.device)
with torch.no_grad():
    logits0 = maskgit(grid0, labels4).float()[:, :, 0]                              # (4, N, K): group 0's head
sampled0 = torch.distributions.Categorical(logits=logits0).sample()                 # (4, N)
after = decode_step(grid0[..., 0], logits0, sampled0, gumbel_noise(sampled0.shape, device=P.device),
                    maskgit.mask_id, step=0, steps=T, n_start=N_POS)
confidence = logits0.log_softmax(-1).gather(-1, sampled0[..., None])[..., 0]        # (4, N)
n_kept = int((after[0] != maskgit.mask_id).sum())
fixed_cmap = plt.matplotlib.colors.ListedColormap(["tab:orange", "0.15"])          # orange = [MASK], dark = fixed
fig, axes = plt.subplots(2, 4, figsize=(10, 5))
for i in range(4):
    axes[0, i].imshow(confidence[i].reshape(GRID).cpu(), cmap="magma"); axes[0, i].axis("off")
    axes[1, i].imshow((after[i] != maskgit.mask_id).float().reshape(GRID).cpu(), cmap=fixed_cmap, vmin=0, vmax=1)
    axes[1, i].axis("off")
axes[0, 0].set_title("log p of the sampled tokens", fontsize=9, loc="left")
axes[1, 0].set_title(f"after step 1: {n_kept} of {N_POS} fixed (dark), orange = [MASK]", fontsize=9, loc="left");

# %% [markdown]
# `minimovq.sampling.sample` runs the whole loop (the same rules; read it). With `return_history=True` it also
# returns the grid after every step (`"tokens"`, `[MASK]` where still masked) and the full prediction at every step
# (`"prediction"`): decode those to *see* the image form.

# %%
out, hist = sample(maskgit, 4, steps=T, choice_temperature=4.5, labels=labels4, return_history=True, generator=gen)
preds = decode(hist["prediction"].flatten(0, 1)).reshape(T, 4, 3, IMAGE_SIZE, IMAGE_SIZE)
still = (hist["tokens"] == maskgit.mask_id).reshape(T, 4, N_POS, G).all(-1)         # (T, 4, N)
fig, axes = plt.subplots(3, T, figsize=(1.4 * T, 4.6))
for t in range(T):
    kept = (~still[t, 0]).float().reshape(GRID).cpu()
    axes[0, t].imshow(kept, cmap=fixed_cmap, vmin=0, vmax=1); axes[0, t].set_title(f"step {t + 1}", fontsize=8)
    axes[1, t].imshow(viz.to_image(preds[t, 0]).cpu())
    axes[2, t].imshow(viz.to_image(preds[t, 1]).cpu())
    for a in axes[:, t]:
        a.axis("off")
axes[0, 0].text(-2, GRID[0] / 2, "fixed", rotation=90, va="center", ha="right", fontsize=8)
fig.suptitle("row 1: dark = fixed tokens, orange = [MASK]; rows 2–3: the decoded prediction at every step",
             fontsize=10);

# %%
def show_step(step=T // 2):
    masked = still[step - 1].float().reshape(4, 1, *GRID)                              # 1 = still [MASK]
    masked = F.interpolate(masked, size=(IMAGE_SIZE, IMAGE_SIZE), mode="nearest")
    orange = torch.tensor([1.0, 0.3, -1.0], device=masked.device).view(1, 3, 1, 1)   # [MASK], in [-1, 1]
    fixed = masked * orange + (1 - masked) * -0.7                                      # dark grey = fixed
    viz.compare_grid({"fixed tokens": fixed, "prediction": preds[step - 1]}, n=4, title=f"after step {step} of {T}")
    plt.show()

viz.interactive(show_step, step=(1, T, 1, T // 2));  # starts half-way: drag to see the grid fill

# %% [markdown]
# ## 6. Measuring sample quality
# **FID** (Heusel et al. 2017) compares real and generated images through the features of an Inception network:
# fit a Gaussian to each set of features and take the Fréchet distance
# $$d^2 = \|\mu_r - \mu_g\|^2 + \operatorname{Tr}\big(\Sigma_r + \Sigma_g - 2(\Sigma_r\Sigma_g)^{1/2}\big).$$
# Inception's weights must be downloaded, and its features suit 299 px photos, not 32 px shapes. So every profile
# reports a **Fréchet distance in the course's own feature space**: the penultimate layer (128 features) of a small
# CNN trained here to classify the labelled training images — the same recipe as FID, with a classifier that knows
# this data. It trains on the real images *and* their MoVQ reconstructions, so that it judges the shape and not the
# tokenizer's blur (a classifier trained on sharp images only may not recognise blurry reconstructions; section 9
# prints its accuracy on both). Call it **FD-shapes**: lower is better, it is only comparable at equal sample count (it is biased
# upwards for small sets), and only within one run (another run trains another classifier). Two reference points
# frame it: real test images (the floor) and MoVQ reconstructions of them (the best a prior over these tokens can
# do). The same classifier also scores class-conditional samples (section 9).

# %%
class FeatureNet(nn.Module):
    """A small classifier; ``features`` is its 128-d penultimate layer.

    The first layer keeps full resolution: a stride-2 first layer loses the corners that tell a square from a
    circle; section 9 prints this net's accuracy on real test images and on their reconstructions."""

    def __init__(self, num_classes, w=32):
        super().__init__()
        block = lambda cin, cout, stride: [nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU()]  # noqa: E731
        self.body = nn.Sequential(
            *block(3, w, 1), *block(w, 2 * w, 2), *block(2 * w, 2 * w, 1), *block(2 * w, 4 * w, 2),
            *block(4 * w, 4 * w, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classify = nn.Linear(4 * w, num_classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.classify(self.body(x))


seed_everything(0)
feature_net = FeatureNet(NUM_CLASSES).to(P.device)
recon_set = list(zip(decode(train_tokens[:N_TRAIN // 3]).cpu(), train_labels[:N_TRAIN // 3].tolist()))  # (image, int)
image_loader = data.make_loader(torch.utils.data.ConcatDataset([train_set, recon_set]), batch_size=64, shuffle=True)
Trainer(feature_net, {"loss": torch.optim.Adam(feature_net.parameters(), lr=2e-3)}, device=P.device).fit(
    image_loader, lambda b, step: {"loss": F.cross_entropy(feature_net(b[0]), b[1])},
    steps=P.pick(quick=30, cpu=800, gpu=3000), desc="feature net")
feature_net.eval()


@torch.no_grad()
def features(images):
    return torch.cat([feature_net.features(x.to(P.device)).double().cpu() for x in images.split(256)])


real_images = torch.stack([train_set[i][0] for i in range(min(len(train_set), max(N_EVAL, 1000)))])
real_features = features(real_images)
test_images = torch.stack([test_set[i][0] for i in range(min(len(test_set), N_EVAL))])
fd = lambda images: frechet_distance(features(images), real_features)  # noqa: E731
quality = {"real test images": {"FD-shapes": fd(test_images)},
           "MoVQ reconstructions": {"FD-shapes": fd(decode(test_tokens[:N_EVAL]).cpu())},
           "random tokens": {"FD-shapes": fd(decode(torch.randint(0, K, test_tokens[:N_EVAL].shape)).cpu())}}
print(format_table(quality))

# %% [markdown]
# **Real FID**, where it can run: `torch-fidelity` (`pip install torch-fidelity`) downloads Inception weights on
# first use. Offline, or without the package, the cell says so and moves on.

# %%
def real_fid(fake, real):
    try:
        import torch_fidelity
    except ImportError:
        print("FID skipped: torch-fidelity is not installed (pip install torch-fidelity); FD-shapes stands in")
        return None

    class U8(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
        def __len__(self):
            return len(self.x)
        def __getitem__(self, i):
            return self.x[i]

    try:
        m = torch_fidelity.calculate_metrics(input1=U8(fake), input2=U8(real), fid=True, verbose=False,
                                             cuda=P.device.type == "cuda")
        return m["frechet_inception_distance"]
    except Exception as e:  # no internet for the Inception weights, ...
        print(f"FID skipped: torch-fidelity could not run ({type(e).__name__}: {str(e)[:120]})")
        return None

# %% [markdown]
# ## 7. How many steps?
# Sample `N_EVAL` **unconditional** images — every one with the "no class" label (id `NUM_CLASSES`), the
# unconditional model that label dropout trained alongside the conditional one — with T = 1, 4, 8, 12 and 16, and
# time each run. T = 1 must fill every token from the all-`[MASK]` grid in one pass: each token is then drawn
# independently of the others, and tokens that only make sense together (the two halves of one shape) rarely agree.
# More steps let later tokens condition on earlier ones, while the time grows linearly with T. The paper (16 × 16
# grids on ImageNet) finds the gain saturates around T = 8–12 and quality drops beyond; our grid is much smaller, so
# the best T may well be smaller too. Why could more steps hurt? Each step keeps the most *confident* tokens, and a
# long, cautious decode may keep choosing the safest ones (flat background, mid colours): samples become typical
# and alike.
#
# Two columns to read together:
# - **FD-shapes** (lower is better): how far the set of samples is from the real images.
# - **diversity**: the mean distance between two samples' features, divided by the same for real test images
#   (1 = as varied as the data; well below 1 = samples alike). If the FD-shapes curve turns up at large T while
#   diversity falls, the extra steps cost variety; if diversity stays flat, look for another cause in the grids.

# %%
def generate(fn, labels, seed):
    """Sample len(labels) grids with fn(batch_size, labels, generator), CHUNK at a time."""
    g = torch.Generator(device=P.device).manual_seed(seed)
    return torch.cat([fn(len(lab), lab, g) for lab in labels.split(CHUNK)])


def timed(fn):
    if P.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if P.device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def diversity(feats):
    """Mean Euclidean distance between two different rows of feats (n, d)."""
    n = len(feats)
    return (torch.cdist(feats, feats).sum() / (n * (n - 1))).item()


real_diversity = diversity(features(test_images))
eval_labels = torch.full((N_EVAL,), NUM_CLASSES, device=P.device)   # "no class": unconditional samples
steps_table, step_samples = {}, {}
for T_ in (1, 4, 8, 12, 16):
    tokens, sec = timed(lambda: generate(lambda b, lab, g: sample(maskgit, b, steps=T_, labels=lab, generator=g),
                                         eval_labels, seed=T_))
    images = decode(tokens).cpu()
    feats = features(images)
    step_samples[f"T={T_}"] = images[:8]
    steps_table[f"T={T_}"] = {"passes": T_, "seconds": sec, "FD-shapes": frechet_distance(feats, real_features),
                              "diversity": diversity(feats) / real_diversity}
print(format_table(record("steps", steps_table)))
best_T = min(steps_table, key=lambda k: steps_table[k]["FD-shapes"])
print(f"lowest FD-shapes at {best_T}; real test images have diversity 1 by definition")
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
Ts = [v["passes"] for v in steps_table.values()]
axes[0].plot(Ts, [v["FD-shapes"] for v in steps_table.values()], "o-")
axes[0].set(xlabel="steps T", ylabel="FD-shapes (lower is better)", title="quality against steps")
axes[1].plot(Ts, [v["diversity"] for v in steps_table.values()], "o-", c="C1")
axes[1].axhline(1.0, c="k", lw=0.8, ls=":")
axes[1].set(xlabel="steps T", ylabel="diversity (real = 1)", title="variety against steps")
fig.tight_layout()
viz.compare_grid(step_samples, n=8);

# %% [markdown]
# ## 8. MaskGIT against an autoregressive prior
# The baseline is the **same** class with `causal=True`: identical size, the prefix token as the start token,
# inputs shifted by one and a causal attention mask, trained for the same number of steps on the same batches. Its
# sampler (`sample_autoregressive`) keeps a **KV cache**, so each of its N steps runs one position through the
# network — the fair baseline. (The AR prior trains without label smoothing, as taming's did: smoothing puts mass
# on every code, and ancestral sampling would then draw junk tokens.)
#
# What it is, exactly: autoregressive over **positions** in raster order, not over tokens. Like MaskGIT, it predicts
# the G tokens of a position with G conditionally independent heads, all at once; so with G > 1 it is not the
# token-by-token transformer of taming (one code per position, one token per step), but the closest AR relative of
# this lesson's MaskGIT: the same network, the same heads, only the order and the attention mask differ. Both
# samplers below are unconditional, with the "no class" label.

# %% [markdown]
# **Check your understanding, question 1 — predict, then run.** The next cells train the autoregressive prior and
# time both samplers. Before running them: with N positions per grid, how many forward passes does each sampler
# make per image, and how much faster do you expect MaskGIT (T = 8) to be on your device?

# %%
def ar_step(trainer, tokens, labels):
    with trainer.autocast():
        return prior_loss(ar, tokens, labels, label_smoothing=0.0, label_drop=LABEL_DROP)


ar = make_prior(causal=True)
ar_history, ar_tokens_per_s = train_prior(ar, ar_step, "AR")

# %%
race = {}
for name, fn in [("MaskGIT T=8", lambda b, lab, g: sample(maskgit, b, steps=8, labels=lab, generator=g)),
                 ("AR + KV cache", lambda b, lab, g: sample_autoregressive(ar, b, labels=lab, generator=g))]:
    fn(1, eval_labels[:1], None)  # warm-up
    _, sec1 = timed(lambda: fn(1, eval_labels[:1], None))
    tokens, sec = timed(lambda: generate(fn, eval_labels, seed=0))
    images = decode(tokens).cpu()
    race[name] = {"passes": 8 if "MaskGIT" in name else N_POS, "s, 1 image": sec1,
                  f"s, {N_EVAL}": sec, "FD-shapes": fd(images), "images": images}
    fid = real_fid(images, test_images) if not P.is_quick else None
    if fid is not None:
        race[name]["FID"] = fid
print(format_table(record("race", {k: {m: v for m, v in row.items() if m != "images"} for k, row in race.items()})))
viz.compare_grid({name: row["images"][:8] for name, row in race.items()}, n=8);

# %% [markdown]
# MaskGIT spends *more* arithmetic than the cached AR sampler: T passes over all N positions, against N passes
# over one new position each — about T·N against N position-passes, so roughly T = 8 times the FLOPs. But it needs
# only T **sequential** steps instead of N. When a step is **latency-bound** (a small batch, a GPU waiting on
# kernel launches), MaskGIT wins big; when it is **compute-bound** (a large batch on a CPU), the cached AR
# sampler's smaller FLOP count can win. For scale: the MaskGIT paper reports decoding 30–64× faster than an AR
# transformer on a GPU, and the MoVQ paper reports almost the same FID on FFHQ with either prior (8.78 with MaskGIT
# in 12 steps, 8.52 with AR in 1024 steps).
# `benchmarks/bench_maskgit.py` measures both regimes on a 16 × 16 grid (dim 256, depth 4).

# %% [markdown]
# ## 9. Class-conditional generation, and classifier-free guidance
# Both priors were trained with the class as their prefix token. Fix the class, sample, and ask the feature
# network's classifier how often the samples are recognised as the class they were asked for (its accuracy on
# real test images is the ceiling; chance is 1 / number of classes).
#
# A conditional model often follows its label only loosely. **Classifier-free guidance** (Ho & Salimans 2022; Muse,
# the text-to-image MaskGIT, uses it) pushes the logits away from the unconditional prediction, which the same
# network learned from the 10% of labels that were dropped:
# $$\ell_{\text{guided}} = \ell(x \mid c) + w\,\big(\ell(x \mid c) - \ell(x \mid \varnothing)\big).$$
# $w = 0$ is plain conditional sampling. Ho & Salimans report that a larger $w$ trades diversity for fidelity:
# samples more typical of their class, and less varied within it. It costs a second forward pass per step (batched
# with the first). `sample(..., guidance=w)` and
# `sample_autoregressive(..., guidance=w)` implement it.

# %%
per_class = P.pick(quick=4, cpu=40, gpu=100)
cond_labels = torch.arange(NUM_CLASSES, device=P.device).repeat_interleave(per_class)
with torch.no_grad():
    real_acc = (feature_net(test_images.to(P.device)).argmax(1) == test_labels[:len(test_images)].to(P.device)).float().mean().item()


def class_diversity(feats, labels):
    """The diversity *within* each class, averaged over the classes: how alike the samples of one class are."""
    classes = [c for c in labels.unique() if (labels == c).sum() > 1]     # a pair is needed for a distance
    return sum(diversity(feats[labels == c]) for c in classes) / len(classes)


real_class_diversity = class_diversity(features(test_images), test_labels[:len(test_images)].cpu())
guidance_table, guided_images = {}, {}
for name, w in [("MaskGIT T=8", 0.0), ("MaskGIT T=8", 3.0), ("MaskGIT T=8", 6.0), ("AR", 0.0), ("AR", 6.0)]:
    if name == "AR":
        fn = lambda b, lab, g: sample_autoregressive(ar, b, labels=lab, guidance=w, generator=g)  # noqa: E731
    else:
        fn = lambda b, lab, g: sample(maskgit, b, steps=8, labels=lab, guidance=w, generator=g)  # noqa: E731
    images = decode(generate(fn, cond_labels, seed=3))  # CHUNK samples per call
    with torch.no_grad():
        agree = (feature_net(images).argmax(1) == cond_labels).float().mean().item()
    feats = features(images.cpu())
    guidance_table[f"{name}, w={w:g}"] = {"class agreement": agree, "FD-shapes": frechet_distance(feats, real_features),
                                          "diversity": diversity(feats) / real_diversity,
                                          "class div.": class_diversity(feats, cond_labels.cpu()) / real_class_diversity}
    guided_images[(name, w)] = images
with torch.no_grad():
    recon_acc = (feature_net(decode(test_tokens[:len(test_images)])).argmax(1) == test_labels[:len(test_images)].to(P.device)).float().mean().item()
print(format_table(record("guidance", guidance_table)))
print(f"classifier accuracy on real test images: {real_acc:.0%}, on their MoVQ reconstructions: {recon_acc:.0%} "
      f"(the ceiling for a prior over these tokens); chance: {1 / NUM_CLASSES:.0%}")
names = getattr(train_set, "classes", [str(c) for c in range(NUM_CLASSES)])
for name, w in [("MaskGIT T=8", 0.0), ("MaskGIT T=8", 6.0), ("AR", 6.0)]:
    shown = guided_images[(name, w)]
    viz.compare_grid({names[c]: shown[c * per_class:c * per_class + 8] for c in range(NUM_CLASSES)},
                     n=min(8, per_class), title=f"{name}, one row per requested class, guidance w={w:g}")

# %% [markdown]
# Read the table against its two reference lines (printed under it): chance, and the classifier's accuracy on MoVQ
# reconstructions, the ceiling for any prior over these tokens.
# - **class agreement** should rise with $w$ for both priors. If plain conditional sampling ($w = 0$) sits close to
#   chance, that is not a bug: the label is worth at most $\ln C$ nats ($C$ classes) for a whole image of
#   $N \cdot G$ tokens, so the training loss barely notices it, and once the first tokens are drawn they decide the
#   shape as much as the label does. Guidance amplifies exactly the part of the prediction that the label changes.
# - **class div.** is the diversity *within* each class (real test images of one class = 1): the price Ho &
#   Salimans report for guidance is that it falls as $w$ grows. Read whether it does here, and by how much.
#   **diversity** (as in section 7, real = 1) mixes all classes, so it measures something else: when guidance
#   pulls each class towards its own typical shape, the classes move apart and the mixed diversity can *rise*
#   while the within-class diversity falls. Compare the two columns.
# - **FD-shapes** is measured against the whole training set, so it can move either way. It falls with $w$ when
#   many unguided samples are no recognisable shape at all; with a stronger prior, a large $w$ trades diversity for
#   fidelity and the distance rises again (the U-shaped FID-against-$w$ curve of Ho & Salimans 2022).

# %% [markdown]
# ## 10. The whole pipeline
# Image → MoVQ tokens → MaskGIT → image. Encode test images, hide the bottom half of their token grids, and let
# MaskGIT fill it in (the same decoder, started from a partly known grid), then decode.

# %%
x = x_test[:6]
with torch.no_grad():
    _, _, tokens = movq.encode(x)                                                   # (6, h, w, G)
start = tokens.clone()
start[:, GRID[0] // 2:] = maskgit.mask_id
filled = sample(maskgit, len(x), steps=8, tokens=start, labels=test_labels[:6].to(P.device),
                generator=torch.Generator(device=P.device).manual_seed(4))
half = decode(tokens.masked_fill(start == maskgit.mask_id, 0))
half[:, :, IMAGE_SIZE // 2:] = 0.0  # grey: the hidden half
viz.compare_grid({"image": x, "MoVQ tokens → image": decode(tokens), "top half kept": half,
                  "MaskGIT completes": decode(filled)}, n=6)
print(f"MaskGIT trained at {mg_tokens_per_s:,.0f} tokens/s, the AR prior at {ar_tokens_per_s:,.0f} tokens/s")
print(f"lesson time: {time.perf_counter() - t_lesson:.0f} s in the '{P.name}' profile")

# %% [markdown]
# ## Check your understanding
# 1. *(Predict, then run — before section 8.)* Forward passes per image for each sampler, and the speed-up you
#    expect.
# 2. In `decode_step`, why do the positions that were already known get confidence $+\infty$? What happens
#    without it?
# 3. Why does the noise on the confidence shrink to 0 over the steps, as $\tau\,(1 - \tfrac{t+1}{T})$? What would
#    a decode with no noise at all tend to produce?
# 4. `mask_tokens` written as `tokens[mask] = mask_id; return tokens, mask` returns the right values. What goes
#    wrong in the training step of section 4?

# %% [markdown] solution-only
# **Answers.**
#
# 1. MaskGIT makes T = 8 passes over all N positions; the autoregressive sampler makes N passes, each over one new
#    position (the KV cache keeps the earlier ones). The speed-up is large where a pass is latency-bound (a GPU,
#    small batches) and shrinks where it is compute-bound (a CPU, large batches), because MaskGIT does more
#    arithmetic in total. The table in section 8 has your device's numbers.
# 2. A token fixed at an earlier step is never re-masked: MaskGIT only adds tokens. With $+\infty$ they are never
#    among the n least confident. Without it, a fixed token with a low score can be masked again, and the count of
#    known tokens no longer follows the schedule.
# 3. Early on the model knows little, and the most confident tokens are the easy ones (background, flat colour).
#    The noise spreads the first choices over the grid; as more context is known the model's own confidence
#    becomes trustworthy, so the noise fades to 0. Without noise, decodes commit to the safest tokens first and the
#    samples become typical and alike (low diversity).
# 4. It writes into the caller's `tokens`, and the training step uses those same tokens as the *targets* of the
#    cross-entropy: the model is then asked to predict `mask_id` at every masked position, and learns nothing
#    useful. Check 5.1 tests that `tokens` is unchanged.

# %% [markdown]
# ## Takeaways
# - A tokenizer turns image generation into **sequence modelling over a small grid of codes**; the prior never
#   sees a pixel.
# - MaskGIT trains a bidirectional transformer to fill in masked tokens (cosine schedule, loss on masked tokens
#   only) and decodes in **T parallel steps** (8–12 in the paper), keeping confident tokens at each step; Gumbel
#   noise on the confidence makes the kept set a random draw that favours them (the Gumbel-top-k trick).
# - How many steps is a measurement, not a constant: section 7's table says where FD-shapes bottoms out on *this*
#   grid, and its diversity column whether more steps cost variety. The paper's 8–12 is for 16 × 16 ImageNet grids.
# - The G tokens of a position are predicted by conditionally independent heads, in MaskGIT and in this lesson's AR
#   baseline alike; the baseline is autoregressive over positions, not over tokens.
# - Against that AR prior, MaskGIT trades extra FLOPs for far fewer sequential steps: section 8 times both, on your
#   device; the speed-up is large when sampling is latency-bound and can vanish when it is compute-bound.
# - The same decoder inpaints and edits for free: start it from a partly known grid.
# - A class token makes generation controllable; label dropout also trains the unconditional model, which the "no
#   class" label samples (sections 7–8). Classifier-free guidance pushes away from those unconditional logits;
#   section 9 measures how much closer samples follow their class, and what it does to the variety within a class.
#
# **The course, end to end:** a VAE trades rate for distortion, and its pixel loss blurs (Lesson 1); discrete codes
# fix the rate by design and turn images into tokens (Lesson 2), and a continuous code at the same rate tells you
# whether discreteness itself sharpens; Lesson 3 measures what perceptual and adversarial losses add, and the LDM's
# continuous autoencoder, sharp with the same losses, says the codebook is not what sharpens (Rombach et al.); MoVQ
# re-injects the codes at every normalisation of the decoder (Lesson 4); and a masked transformer turns token grids
# into new images (Lesson 5).

# % [markdown]
# ## Where you stand
# Each exercise of this lesson: passed, failed, not implemented, or not checked (its check cell has not run), and
# which cells ran on the reference solution instead of yours. Fix an exercise, re-run its check and the cells after
# it, then this cell.

# %
from minimovq.checks import scoreboard
scoreboard(5, globals());
