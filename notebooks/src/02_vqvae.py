# %% [markdown]
# # Lesson 2 — VQ-VAE: discrete latents and EMA codebooks{{VARIANT}}
# {{COLAB_BADGE}}
#
# **Where we are.** Lesson 1's VAE squeezed each image into a continuous Gaussian code, and its reconstructions lost
# much of their fine detail (Lesson 1 measured how much). Today the code becomes **discrete**: a grid of integers,
# each the index of a vector in a learned *codebook* (van den Oord et al. 2017, "Neural Discrete Representation
# Learning"). You will
# 1. quantize by nearest neighbour and see the codebook carve the latent space into cells,
# 2. push gradients through a non-differentiable `argmin` with the **straight-through estimator**,
# 3. write the **codebook and commitment losses** (and meet the β swap hidden in the official code),
# 4. learn the codebook as **online k-means** with exponential moving averages (EMA),
# 5. train loss-based and EMA VQ-VAEs side by side, measure codebook usage and perplexity, and race them against
#    the same model with a continuous (VAE) code at the same rate,
# 6. watch a large codebook **collapse**, and fix it with dead-code restarts and l2-normalised codes,
# 7. edit an image one token at a time, and sample from a first, naive prior over tokens.
#
# Four exercises, each followed by a check that says what differs and, until it passes, lends you the reference
# so the rest of the notebook runs.
#
# **Three official codebases** come up in this course, and minimovq matches each number for number:
# - **Sonnet**: DeepMind's neural-network library for TensorFlow. It ships the VQ-VAE quantizers
#   (`VectorQuantizer`, `VectorQuantizerEMA`) and an example notebook that trains a VQ-VAE on CIFAR-10.
# - **taming-transformers** ("taming"): CompVis' official code of VQGAN (Esser et al. 2021), Lesson 3.
# - **SBER-MoVQGAN**: ai-forever's (Sber AI) open implementation of MoVQ (Zheng et al. 2022), Lesson 4.

# %%
{{SETUP}}

# %% [markdown]
# ## 0. Configuration
# Sizes come from the profile: `quick` (a CI smoke test), `cpu` (a laptop) or `gpu` (a Colab T4); the README lists
# each lesson's measured time per profile. The `gpu` profile trains Sonnet's CIFAR-10 VQ-VAE (hidden 128, K = 512, D = 64, batch 32, 10k steps) —
# set `DATASET = "cifar10"` (downloaded once into `data/cache/`) to compare with its published numbers.

# %%
import time
import matplotlib.pyplot as plt
import torch.nn.functional as F
from einops import rearrange
from minimovq import data, viz
from minimovq.metrics import evaluate_reconstruction, format_table, high_frequency_energy
from minimovq.reference import record   # keeps this lesson's headline tables under `make reference`
from minimovq.quantize import CodebookUsage, VectorQuantizer, codebook_usage
from minimovq.train import Trainer, count_parameters
from minimovq.vqvae import VQVAE

DATASET = "photos"          # "photos" (built in, offline) | "cifar10" | "shapes" | "mnist" | "folder:<path>"
IMAGE_SIZE = 32             # the latent grid is IMAGE_SIZE / 4 = 8 × 8 tokens
N_TRAIN = P.pick(quick=512, cpu=20000, gpu=50000)
N_TEST = P.pick(quick=128, cpu=1000, gpu=2000)
HIDDEN = P.pick(quick=32, cpu=64, gpu=128)
RES_HIDDEN = P.pick(quick=8, cpu=32, gpu=32)
RES_LAYERS = P.pick(quick=1, cpu=2, gpu=2)
EMBED_DIM = P.pick(quick=16, cpu=64, gpu=64)   # D, the width of a code
N_EMBED = P.pick(quick=128, cpu=512, gpu=512)  # K, the codebook size
BATCH = 32
STEPS = P.pick(quick=60, cpu=1200, gpu=10000)
LR = P.pick(quick=2e-3, cpu=1e-3, gpu=3e-4)
BIG_K = P.pick(quick=1024, cpu=4096, gpu=16384)            # the collapse experiment's codebook
COLLAPSE_STEPS = P.pick(quick=30, cpu=400, gpu=3000)
DEAD_AFTER = P.pick(quick=5, cpu=50, gpu=100)              # restart a code unused for this many batches
t_lesson = time.perf_counter()

train_set = data.load(DATASET, split="train", image_size=IMAGE_SIZE, n=N_TRAIN)
test_set = data.load(DATASET, split="test", image_size=IMAGE_SIZE, n=N_TEST)
train_loader = data.make_loader(train_set, batch_size=BATCH, shuffle=True)
test_loader = data.make_loader(test_set, batch_size=256, shuffle=False)
x_test = torch.stack([test_set[i] for i in range(16)]).to(P.device)
# the normalised MSE divides by the data variance (Sonnet's convention), measured on training images
DATA_VAR = torch.stack([train_set[i] for i in range(min(len(train_set), 2000))]).var().item()
print(f"{DATASET}: {len(train_set)} train / {len(test_set)} test images of shape {tuple(train_set[0].shape)}, "
      f"variance {DATA_VAR:.3f}")
viz.show_grid(x_test, nrow=8, title=f"{DATASET}: test images");

# %% [markdown]
# ## 1. Why discrete latents
# - **Tokens.** A $32\times32$ image becomes $8\times8 = 64$ integers in $[0, K)$: $64 \log_2 K$ bits, 576 for this
#   lesson's `cpu` codebook of $K = 512$. A transformer can model such grids like text — the MaskGIT prior of
#   Lesson 5 does exactly that.
# - **A rate fixed by design.** The VAE's rate was whatever its KL settled at for a given β (Lesson 1's
#   rate–distortion curve). The VQ-VAE's posterior is one-hot — the nearest code, with certainty — and its prior is
#   uniform over the $K$ codes, so the KL term of its ELBO is the constant $\log K$ per position (VQ-VAE paper,
#   section 3.1). The grid size and $K$ set the rate; there is no β to balance against the reconstruction.
# - **No posterior collapse.** In a VAE with a powerful decoder (one that models pixels autoregressively, say),
#   every nat that $z$ carries is charged by the KL, and setting $q(z\mid x) = p(z)$ makes the KL zero. If the
#   decoder can model the images without $z$, the ELBO *rewards* ignoring it: the posterior "collapses" onto the
#   prior. In a VQ-VAE the KL is the constant $\log K$ whatever the encoder outputs, so ignoring the code saves
#   nothing: nothing rewards it, and the decoder keeps reading its codes. The VQ-VAE paper names this as a
#   motivation.
# - **What discreteness may not do by itself: sharpen.** The decoder still trains on a pixel loss (MSE), and a pixel
#   loss is minimised by the average of the images the decoder cannot tell apart — a blur (Lesson 3, section 1).
#   Section 6 tests it directly: the same model with a continuous Gaussian code at the same rate, scored with
#   Lesson 1's *sharpness* measure. Lesson 3 then compares losses on one model at equal budget.
#
# The model: an encoder gives $z_e(x) \in \mathbb R^{D \times h \times w}$; each of its $h\cdot w$ vectors is replaced
# by its nearest code $e_k$ from a codebook $\{e_1,\dots,e_K\} \subset \mathbb R^D$; the decoder rebuilds $\hat x$
# from the quantized grid $z_q$.

# %% [markdown]
# ## 2. Nearest-neighbour quantization
# $$k_i = \arg\min_k \|z_i - e_k\|^2, \qquad z_{q,i} = e_{k_i}, \qquad
#   \|z - e\|^2 = \|z\|^2 + \|e\|^2 - 2\,z\cdot e.$$
# The expansion turns all $N\times K$ distances into one matrix product.
#
# **Exercise 2.1.** Implement `nearest_codes(z, codebook)`: `z` is (N, D), `codebook` is (K, D); return the (N,)
# LongTensor of indices of the nearest codes.

# %%
def nearest_codes(z, codebook):
    """z: (N, D), codebook: (K, D). Returns (N,) long: argmin_k ||z_i - e_k||²."""
    # BEGIN SOLUTION Exercise 2.1: return the index of the nearest code for every row of z
    dist = z.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1) - 2 * z @ codebook.t()  # (N, K)
    return dist.argmin(dim=1)
    # END SOLUTION

import minimovq.checks.vqvae as checks
nearest_codes = checks.nearest_codes(nearest_codes)

# %% [markdown]
# A picture of a codebook in 2-D: each code (a star) owns the cell of the plane closest to it — a *Voronoi*
# diagram — and each encoder output (a dot) is snapped to the code of its cell.

# %%
g = torch.Generator().manual_seed(0)
codebook_2d = torch.randn(12, 2, generator=g) * 1.3
z_2d = torch.randn(80, 2, generator=g) * 1.2
axis = torch.linspace(-3.5, 3.5, 240)
plane = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)   # (240·240, 2)
idx_2d = nearest_codes(z_2d, codebook_2d)

def draw_codebook(ax, codebook, title):
    ax.imshow(nearest_codes(plane, codebook).view(240, 240), origin="lower", extent=(-3.5, 3.5, -3.5, 3.5),
              cmap="tab20", alpha=0.3, interpolation="nearest")
    ax.scatter(*codebook.T, marker="*", s=160, c="C3", edgecolor="k", zorder=3, label="codes $e_k$")
    ax.set_xlim(-3.5, 3.5); ax.set_ylim(-3.5, 3.5); ax.set_aspect("equal"); ax.set_title(title)

fig, ax = plt.subplots(figsize=(5, 5))
draw_codebook(ax, codebook_2d, "a codebook of K = 12 codes in 2-D")
for p, k in zip(z_2d, idx_2d):
    ax.plot([p[0], codebook_2d[k, 0]], [p[1], codebook_2d[k, 1]], c="k", lw=0.5, alpha=0.5)
ax.scatter(*z_2d.T, s=10, c="k", label="encoder outputs $z$")
ax.legend(loc="lower right", fontsize=8);

# %% [markdown]
# ## 3. The straight-through estimator
# `argmin` is piecewise constant: its gradient is zero almost everywhere, so nothing would reach the encoder. The
# VQ-VAE copies the gradient from the decoder's input $z_q$ to the encoder's output $z_e$:
# $$z_q^{\text{ST}} = z_e + \operatorname{sg}[z_q - z_e] \quad\Rightarrow\quad \text{forward: } z_q,\qquad
#   \frac{\partial \mathcal L}{\partial z_e} = \frac{\partial \mathcal L}{\partial z_q},$$
# where $\operatorname{sg}$ (stop-gradient) is `.detach()`. The codebook cannot learn from this path; it gets its own
# loss (next section).
#
# **Exercise 2.2.** Implement `quantize(z, codebook, beta=0.25)` for z of shape (B, D, H, W): flatten to (B·H·W, D)
# (order b, h, w), find the nearest codes with your `nearest_codes`, and return
# - `z_q` (B, D, H, W) with straight-through gradients,
# - `loss` = `mean((sg[z] − e)²) + beta · mean((z − sg[e])²)` (section 4 explains it),
# - `indices` (B, H, W).

# %%
def quantize(z, codebook, beta=0.25):
    """z: (B, D, H, W), codebook: (K, D). Returns z_q (B, D, H, W), loss (), indices (B, H, W)."""
    # BEGIN SOLUTION Exercise 2.2: nearest codes, the VQ loss and the straight-through output
    B, D, H, W = z.shape
    flat = rearrange(z, "b d h w -> (b h w) d")                                   # (N, D)
    indices = nearest_codes(flat, codebook)                                        # (N,)
    z_q = rearrange(codebook[indices], "(b h w) d -> b d h w", b=B, h=H, w=W)      # (B, D, H, W)
    loss = F.mse_loss(z_q, z.detach()) + beta * F.mse_loss(z, z_q.detach())       # codebook + β·commitment
    z_q = z + (z_q - z).detach()                                                   # straight-through
    return z_q, loss, indices.view(B, H, W)
    # END SOLUTION

quantize = checks.quantize(quantize)

# %% [markdown]
# **The gradients, seen.** Suppose the decoder wants every quantized vector to move towards the point $t$ (loss
# $\sum\|z_q - t\|^2$). The argmin path alone gives the encoder nothing; with straight-through, each encoder output
# receives exactly the gradient computed at its code (arrows: the descent direction $-\partial\mathcal L/\partial z$).

# %%
target = torch.tensor([2.0, 2.0])
z_plain = z_2d.clone().requires_grad_()
print("argmin path: z_q requires grad?", codebook_2d[nearest_codes(z_plain, codebook_2d)].requires_grad)

z_st = z_2d.clone().requires_grad_()
z_q_st, _, idx_st = quantize(rearrange(z_st, "n d -> 1 d n 1"), codebook_2d)       # the N points as a 1×N grid
z_q_st = rearrange(z_q_st, "1 d n 1 -> n d")
(z_q_st - target).pow(2).sum().backward()
print("straight-through: dL/dz == dL/dz_q?", torch.allclose(z_st.grad, 2 * (z_q_st - target).detach()))

fig, ax = plt.subplots(figsize=(5, 5))
draw_codebook(ax, codebook_2d, "straight-through: each z gets its code's gradient")
ax.scatter(*z_2d.T, s=10, c="k")
ax.quiver(*z_2d.T, *(-z_st.grad).T, angles="xy", scale_units="xy", scale=8, width=0.004, color="C0")
ax.scatter(*target, marker="X", s=140, c="C2", edgecolor="k", zorder=4, label="target t")
ax.legend(loc="lower right", fontsize=8);

# %% [markdown]
# ## 4. The codebook and commitment losses — and the β swap
# The VQ-VAE loss (paper, eq. 3) has three terms:
# $$\mathcal L = \underbrace{\|x - \hat x\|^2}_{\text{reconstruction}}
#   + \underbrace{\|\operatorname{sg}[z_e] - e\|^2}_{\text{codebook: moves } e}
#   + \beta\,\underbrace{\|z_e - \operatorname{sg}[e]\|^2}_{\text{commitment: holds } z_e}, \qquad \beta = 0.25.$$
# The codebook term pulls each chosen code towards the encoder outputs assigned to it; the commitment term stops the
# encoder's outputs from drifting away from their codes faster than the codes can follow.
#
# **The swap.** The official taming-transformers and SBER-MoVQGAN code (default `legacy=True`) computes
# `mean((sg[z_q] − z)²) + β·mean((z_q − sg[z])²)`: β lands on the *codebook* term. The forward value is the same,
# $(1+\beta)\cdot\text{MSE}$, so the loss curve cannot tell you — only the gradients differ:

# %%
torch.manual_seed(0)
z_demo = torch.randn(4, 8, 5, 5)
paper, legacy = VectorQuantizer(32, 8), VectorQuantizer(32, 8, legacy=True)
legacy.load_state_dict(paper.state_dict())
rows = {}
for name, vq in (("paper (β on commitment)", paper), ("legacy (β on codebook)", legacy)):
    z = z_demo.clone().requires_grad_()
    _, loss, _ = vq(z)
    loss.backward()
    rows[name] = {"loss": loss.item(), "|dL/dz_e|": z.grad.norm().item(),
                  "|dL/de|": vq.embedding.weight.grad.norm().item()}
print(format_table(rows, digits=4))

# %% [markdown]
# With β = 0.25 the legacy form pulls the **encoder 4× harder** and moves the **codebook 4× more gently**. With Adam
# the codebook's factor hardly matters (the codebook gets gradient from this one term only, and Adam divides by the
# gradient's scale), but the encoder's does: its commitment pull competes with the reconstruction gradient, so the
# legacy form commits four times as strongly. Keep `legacy=True` to reproduce or fine-tune the official checkpoints;
# use the paper's form when you follow the paper's β. `minimovq.quantize.VectorQuantizer` offers both.

# %% [markdown]
# ## 5. EMA codebooks: online k-means
# Instead of a loss, the paper's appendix moves each code to the running mean of the encoder outputs assigned to it —
# the k-means update, made online with exponential moving averages (decay $\gamma = 0.99$):
# $$N_k \leftarrow \gamma N_k + (1-\gamma)\,n_k, \qquad m_k \leftarrow \gamma m_k + (1-\gamma)\sum_{i: k_i = k} z_i,
#   \qquad e_k = m_k / N_k,$$
# with $n_k$ the number of vectors assigned to code $k$ in this batch. The paper stops there; a code that no batch
# chooses then has $N_k \to 0$, and $m_k / N_k$ divides by (almost) zero. The official implementation, Sonnet's
# `VectorQuantizerEMA`, therefore smooths the counts with **additive (Laplace) smoothing** — add $\epsilon$ to every
# count, the classic fix for zero counts — and rescales so that the total stays $\sum_j N_j$:
# $\tilde N_k = \frac{N_k + \epsilon}{\sum_j N_j + K\epsilon}\sum_j N_j$ and $e_k = m_k / \tilde N_k$. The loss keeps only the commitment term $\beta\|z_e - \operatorname{sg}[e]\|^2$: the codebook
# gets no gradient. No $N\times K$ one-hot matrix is needed: `torch.bincount` counts, `index_add_` sums.
#
# **Exercise 2.3.** Implement `ema_update(cluster_size, embed_sum, z, indices, decay=0.99, eps=1e-5)` as a *pure*
# function (do not modify the inputs): cluster_size (K,), embed_sum (K, D), z (N, D), indices (N,). Return the new
# `(cluster_size, embed_sum, codebook)`.

# %%
def ema_update(cluster_size, embed_sum, z, indices, decay=0.99, eps=1e-5):
    """One EMA codebook step. Returns new (cluster_size (K,), embed_sum (K, D), codebook (K, D))."""
    # BEGIN SOLUTION Exercise 2.3: EMA statistics with Laplace smoothing, without modifying the inputs
    K = cluster_size.shape[0]
    counts = torch.bincount(indices, minlength=K).to(cluster_size.dtype)            # n_k, (K,)
    sums = torch.zeros_like(embed_sum).index_add_(0, indices, z)                   # Σ z_i per code, (K, D)
    cluster_size = decay * cluster_size + (1 - decay) * counts
    embed_sum = decay * embed_sum + (1 - decay) * sums
    n = cluster_size.sum()
    smoothed = (cluster_size + eps) / (n + K * eps) * n
    return cluster_size, embed_sum, embed_sum / smoothed.unsqueeze(1)
    # END SOLUTION

ema_update = checks.ema_update(ema_update)

# %% [markdown]
# Online k-means in 2-D: data from five blobs, eight codes (seven from a random start, one placed at the bottom,
# away from the data), one EMA step per batch of 64 points (decay 0.9 so it moves quickly). The statistics start
# as in `EMAVectorQuantizer`: $N_k = 1$ and $m_k = e_k$. Each code travels to the mean of the points it wins. The
# code at the bottom never wins one, so it never moves: a **dead code**, the problem of section 7.

# %%
g = torch.Generator().manual_seed(1)
blobs = torch.tensor([[-2.0, -2.0], [2.0, -1.5], [0.0, 2.5], [2.5, 2.0], [-2.5, 1.0]])
codebook = torch.randn(8, 2, generator=g) * 1.5
codebook[-1] = torch.tensor([0.0, -3.4])                                         # far from every blob
cluster_size, embed_sum = torch.ones(8), codebook.clone()
trail = [codebook]
for step in range(40):
    points = blobs[torch.randint(5, (64,), generator=g)] + 0.4 * torch.randn(64, 2, generator=g)
    cluster_size, embed_sum, codebook = ema_update(cluster_size, embed_sum, points,
                                                   nearest_codes(points, codebook), decay=0.9)
    trail.append(codebook)
trail = torch.stack(trail)                                                         # (steps + 1, K, 2)
fig, ax = plt.subplots(figsize=(5, 5))
draw_codebook(ax, codebook, "EMA codebook: online k-means (40 steps)")
ax.scatter(*points.T, s=6, c="0.4", label="last batch")
for k in range(8):
    ax.plot(*trail[:, k].T, c="C3", lw=1, alpha=0.7)
ax.legend(loc="lower right", fontsize=8);

# %% [markdown]
# **How much of the codebook is used?** The *perplexity* of the code distribution is the effective number of codes:
# with $p_k$ the fraction of tokens that use code $k$,
# $$\text{perplexity} = \exp\Big(-\sum_k p_k \ln p_k\Big) \in [1, K].$$
# It is $K$ when every code is used equally and 1 when one code takes everything.
#
# **Exercise 2.4.** Implement `perplexity(indices, num_codes)` for indices of any shape; return a scalar tensor.

# %%
def perplexity(indices, num_codes):
    """indices: any shape, values in [0, num_codes). Returns a scalar tensor exp(entropy) (natural log)."""
    # BEGIN SOLUTION Exercise 2.4: the exponential of the entropy of code usage
    p = torch.bincount(indices.flatten(), minlength=num_codes).float() / indices.numel()
    return torch.exp(-torch.special.xlogy(p, p).sum())
    # END SOLUTION

perplexity = checks.perplexity(perplexity)

# %% [markdown]
# ## 6. Loss-based vs EMA, side by side
# `minimovq.vqvae.VQVAE` is the paper's architecture: two stride-2 4×4 convolutions, a residual stack, a 1×1
# convolution to $D$ channels, the quantizer, then the mirror image with transposed convolutions. The quantizer is
# either `VectorQuantizer` (codebook loss, section 4) or `EMAVectorQuantizer` (section 5). All train on
# $\text{MSE}(x, \hat x) + \mathcal L_\text{VQ}$ with the same budget. A third model previews section 7: the EMA
# quantizer with **dead-code restarts** (a code unused for `DEAD_AFTER` batches is re-seeded from the data). We log
# *your* `perplexity` per batch, and the fraction of the codebook each batch uses.

# %%
from minimovq.figures import draw_vqvae
draw_vqvae(VQVAE(hidden=HIDDEN, res_hidden=RES_HIDDEN, num_res_layers=RES_LAYERS, embed_dim=EMBED_DIM,
                 n_embed=N_EMBED), x_test);

# %% [markdown]
# Every shape (B = batch) is measured in one forward pass of this configuration: two stride-2 convolutions shrink each
# side by 4, and `quant_conv` maps every position to a $D$-dimensional vector that the quantizer replaces by one of
# $K$ codes, whose integer indices are the tokens. All three arms below share this architecture; only the quantizer
# differs.

# %%
def make_vqvae(quantizer, n_embed=N_EMBED, seed=0, **options):
    seed_everything(seed)
    return VQVAE(hidden=HIDDEN, res_hidden=RES_HIDDEN, num_res_layers=RES_LAYERS, embed_dim=EMBED_DIM,
                 n_embed=n_embed, quantizer=quantizer, quantizer_kwargs=options).to(P.device)


def train_vqvae(model, steps, desc, loader=None):
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=LR)
    trainer = Trainer(model, {"loss": opt}, device=P.device, amp=P.amp, grad_clip=None)
    K = model.quantize.n_embed

    def step_fn(x, step):
        with trainer.autocast():
            x_hat, vq_loss, indices = model(x)
        rec = F.mse_loss(x_hat.float(), x)
        return {"loss": rec + vq_loss, "nmse": rec / DATA_VAR, "vq_loss": vq_loss,
                "perplexity": perplexity(indices, K), "usage": indices.unique().numel() / K}

    return trainer.fit(loader or train_loader, step_fn, steps=steps, desc=desc)


x_all = torch.cat([b.to(P.device) for b in test_loader])   # the whole test split


@torch.no_grad()
def quality(model):
    """Reconstruction quality over the whole test split (not one batch), with Lesson 1's sharpness. In eval mode:
    in training mode an EMA codebook would keep learning from the test images, and restarts would re-seed codes."""
    model.eval()
    scores = evaluate_reconstruction(lambda x: model(x).x_hat, test_loader, device=P.device)
    x_hat = torch.cat([model(b).x_hat.float().clamp(-1, 1) for b in x_all.split(256)])
    kept = (high_frequency_energy(x_hat).mean() / high_frequency_energy(x_all).mean()).item()
    return {"nmse": scores["mse"] / DATA_VAR, "psnr": scores["psnr"], "ssim": scores["ssim"], "sharpness %": 100 * kept}


@torch.no_grad()
def evaluate(model):
    """Quality and codebook health over the whole test split."""
    usage = codebook_usage(model, test_loader, device=P.device)
    return {**quality(model), "usage %": 100 * usage.usage(), "perplexity": usage.perplexity()}, usage


models, histories, results, usages = {}, {}, {}, {}
setups = {"VQ (loss)": dict(quantizer="vq"), "EMA": dict(quantizer="ema"),
          "EMA + restarts": dict(quantizer="ema", dead_code_threshold=DEAD_AFTER)}
for name, options in setups.items():
    models[name] = make_vqvae(**options)
    histories[name] = train_vqvae(models[name], STEPS, desc=f"VQ-VAE {name}")
    results[name], usages[name] = evaluate(models[name])
    results[name]["batch ppl"] = histories[name].last("perplexity")
    results[name]["seconds"] = histories[name].seconds
print(f"{count_parameters(models['EMA']):,} parameters; K = {N_EMBED}, D = {EMBED_DIM}, {STEPS} steps each")
print(format_table(results))

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 3.3))
smooth = max(1, STEPS // 50)
viz.plot_history({k: h["nmse"] for k, h in histories.items()}, smooth=smooth, ax=axes[0], logy=True,
                 title="reconstruction MSE / data variance")
viz.plot_history({k: h["perplexity"] for k, h in histories.items()}, smooth=smooth, ax=axes[1],
                 title=f"perplexity per batch (of K = {N_EMBED})")
viz.plot_history({k: [100 * u for u in h["usage"]] for k, h in histories.items()}, smooth=smooth, ax=axes[2],
                 title="% of the codebook used per batch")
with torch.no_grad():
    recons = {f"{k} reconstruction": m(x_test)[0].clamp(-1, 1) for k, m in models.items()}
viz.compare_grid({"input": x_test, **recons}, n=8);

# %% [markdown]
# Two measures of usage, two different questions. The **per-batch** perplexity (what Sonnet reports) says how many
# codes one batch of 32 images spreads over; the **split** perplexity (`CodebookUsage`, accumulated over every test
# image) says how much of the codebook the model uses at all. A code can be rare in every batch yet vital to the
# split.
#
# Do not be surprised if the two textbook quantizers use only a small part of their codebook: the codes start in a
# tiny ball around the origin (uniform in ±1/K, taming-transformers' initialisation, minimovq's default), and a code that never wins a vector never
# moves — it gets no gradient (loss-based) and no statistics (EMA). Restarts re-seed such codes where the data is;
# section 7 looks at this closely.

# %% [markdown]
# ### The same model with a continuous code, at the same rate
# Does the *discreteness* change the reconstructions? Test it with everything else fixed: the same encoder,
# decoder, data, seed and steps, with the quantizer replaced by a Gaussian posterior at every position,
# $q(z\mid x) = \mathcal N(\mu(x), \operatorname{diag}\sigma^2(x))$ (`minimovq.vae.GaussianBottleneck`, Lesson 1's
# reparameterization on a grid). That is a VAE with the VQ-VAE's architecture.
#
# **Equal rate.** Section 1 showed that the VQ-VAE's KL is $\log K$ per position: $h w \log_2 K$ bits per image, the
# most its tokens can carry. A VAE's rate is its KL, which β sets (Lesson 1). Rather than guess β, let training
# find it: after every step, $\log\beta \leftarrow \log\beta + \eta\,(\mathrm{KL}/\text{target} - 1)$, which raises
# β while the code carries too many nats and lowers it while it carries too few — dual ascent on the constraint
# $\mathrm{KL} = \text{target}$ (the constrained view of the β-VAE, Rezende & Viola 2018, "Taming VAEs";
# `minimovq.vae.RateController`). The loss per value is Lesson 1's, $\text{MSE} + \beta\,\mathrm{KL}/(3HW)$.
#
# Two rates for the VQ-VAE: the **nominal** $h w \log_2 K$ that its ELBO charges, and the rate it **uses**,
# $h w \log_2(\text{perplexity})$: the bits per image of its tokens under their own frequencies (a unigram code).
#
# **One run is one sample.** At this budget another initialisation and another order of the training images can
# move a model's PSNR by as much as the gap between two models. So the race runs once per seed in `SEEDS`: seed 0
# reuses the VQ-VAE trained above (EMA + restarts) and trains the VAE on the same data order; every other seed
# trains a fresh pair, both from that seed and on that seed's own data order. The cell then counts, column by column,
# in how many seeds the VQ-VAE comes out ahead.
#
# **How to read it.** Compare within a seed first, then across seeds: an ordering that holds in every seed is a
# finding at this budget; one that flips between seeds is within the noise of a single run. PSNR and SSIM say which
# reconstruction is closer to its input. `sharpness %` says how much of the input's high-frequency energy survives,
# but it counts *any* high-frequency content, errors included: edges painted in the wrong place, or a faint pattern
# at the scale of the code grid, score as energy too. So: if neither model is ahead in every seed, discreteness is
# not what decides the quality at this rate. If the VQ-VAE keeps more energy in every seed, check two things before
# you call that detail: whether it is also closer to its input, and how far *both* models stay below 100% — a gap
# of a few points between two blurs is not the difference between blurry and sharp (that is the loss's doing,
# Lesson 3). Either way, what discreteness surely buys is the token grid itself: a prior can model it like text
# (section 9, Lesson 5), while the VAE's continuous code needs a continuous prior.

# %%
import math
from minimovq.vae import GaussianBottleneck, RateController

GRID = IMAGE_SIZE // 4                                    # the latent grid is GRID × GRID positions
target_bits = GRID * GRID * math.log2(N_EMBED)             # the VQ-VAE's nominal rate, bits per image
n_values = 3 * IMAGE_SIZE ** 2                             # values per image: the loss is per value
SEEDS = (0, 1)                                             # one run is one sample: race once per seed


def train_vae_at_rate(seed, loader):
    """The VQ-VAE's encoder and decoder around a Gaussian code, β steered so that the KL meets target_bits."""
    vae = make_vqvae(GaussianBottleneck(EMBED_DIM), seed=seed)
    controller = RateController(target_nats=target_bits * math.log(2), beta=0.1, lr=0.02)
    trainer = Trainer(vae, {"loss": torch.optim.Adam(vae.parameters(), lr=LR)}, device=P.device, amp=P.amp,
                      grad_clip=None)

    def vae_step(x, step):
        with trainer.autocast():
            x_hat, kl, _ = vae(x)                          # kl: nats per image (the bottleneck's loss slot)
        rec = F.mse_loss(x_hat.float(), x)
        beta = controller.beta
        controller.update(kl.item())                       # the next step's β
        return {"loss": rec + beta * kl / n_values, "nmse": rec / DATA_VAR, "kl bits": kl / math.log(2), "beta": beta}

    return vae, trainer.fit(loader, vae_step, steps=STEPS, desc=f"VAE at equal rate, seed {seed}")


@torch.no_grad()
def evaluate_vae(model):
    """The same quality columns, and the rate: the mean KL per test image, in bits."""
    model.eval()                                          # the KL of the posterior's mean code, as in quality()
    kl_bits = sum(model.encode(b).vq_loss.item() * len(b) for b in x_all.split(256)) / len(x_all) / math.log(2)
    return {"bits (rate)": kl_bits, "bits (used)": kl_bits, **quality(model)}


matched, vq_models, vaes, vae_histories = {}, {}, {}, {}
for seed in SEEDS:
    if seed == 0:                                          # the race's model: seed 0, the lesson's data order
        vq_models[seed], loader, vq_row = models["EMA + restarts"], train_loader, results["EMA + restarts"]
    else:                                                  # another initialisation and another data order
        loader = data.make_loader(train_set, batch_size=BATCH, shuffle=True, seed=seed)
        vq_models[seed] = make_vqvae(**setups["EMA + restarts"], seed=seed)
        train_vqvae(vq_models[seed], STEPS, desc=f"VQ-VAE EMA + restarts, seed {seed}", loader=loader)
        vq_row = evaluate(vq_models[seed])[0]
    matched[f"VQ-VAE, seed {seed}"] = {"bits (rate)": target_bits,
                                       "bits (used)": GRID * GRID * math.log2(vq_row["perplexity"]),
                                       **{k: vq_row[k] for k in ("nmse", "psnr", "ssim", "sharpness %")}}
    vaes[seed], vae_histories[seed] = train_vae_at_rate(seed, loader)
    matched[f"VAE, seed {seed}"] = evaluate_vae(vaes[seed])
print(f"target {target_bits:.0f} bits per image; the VQ-VAE is EMA + restarts, the VAE the same model with a "
      "Gaussian code")
print(format_table(record("equal_rate", matched)))
for column in ("psnr", "ssim", "sharpness %"):
    ahead = sum(matched[f"VQ-VAE, seed {s}"][column] > matched[f"VAE, seed {s}"][column] for s in SEEDS)
    print(f"{column:>12}: the VQ-VAE is higher in {ahead} of {len(SEEDS)} seeds")

fig, axes = plt.subplots(1, 2, figsize=(11, 3.3))
viz.plot_history({f"VAE KL, seed {s}": h["kl bits"] for s, h in vae_histories.items()}, smooth=max(1, STEPS // 50),
                 ax=axes[0], title="the VAE's rate (bits per image) during training")
axes[0].axhline(target_bits, c="0.5", ls=":", label="target: the VQ-VAE's nominal rate"); axes[0].legend()
viz.plot_history({f"β, seed {s}": h["beta"] for s, h in vae_histories.items()}, ax=axes[1], logy=True,
                 title="β, set by dual ascent")
with torch.no_grad():
    viz.compare_grid({"input": x_test, **{f"{kind}, seed {s}": m[s](x_test).x_hat.clamp(-1, 1)
                                          for s in SEEDS for kind, m in (("VQ-VAE", vq_models), ("VAE", vaes))}}, n=8);

# %% [markdown]
# ## 7. Codebook collapse, and two fixes
# Make the codebook large ($K$ = `BIG_K`). With the loss-based quantizer only the codes that win a vector get a
# gradient; the others never move, never win, and are wasted: the codebook **collapses** onto a few codes. Two
# fixes from the literature, both options of minimovq's quantizers:
# - **dead-code restarts** (`dead_code_threshold=n`; the "random restarts" of Jukebox, Dhariwal et al. 2020): a
#   code unused for $n$ training batches is re-initialised to a random encoder output of the current batch, where
#   the data is;
# - **l2-normalised codes** (`l2_norm=True`; ViT-VQGAN, Yu et al. 2022, introduced them to raise codebook usage):
#   codes and encoder outputs live on the unit sphere, so nearest means most similar in direction and no code can
#   be stranded far out by its norm.

# %% [markdown]
# **Check your understanding, question 1 — predict, then run.** Before running the next cell, guess the share of
# the `BIG_K` codes that plain VQ will use after training, and rank the five variants by usage.

# %%
variants = {
    "VQ": dict(quantizer="vq"),
    "VQ + restarts": dict(quantizer="vq", dead_code_threshold=DEAD_AFTER),
    "VQ + l2 codes": dict(quantizer="vq", l2_norm=True),
    "VQ + l2 + restarts": dict(quantizer="vq", l2_norm=True, dead_code_threshold=DEAD_AFTER),
    "EMA + restarts": dict(quantizer="ema", dead_code_threshold=DEAD_AFTER),
}
collapse, collapse_usage = {}, {}
for name, options in variants.items():
    model = make_vqvae(n_embed=BIG_K, **options)
    history = train_vqvae(model, COLLAPSE_STEPS, desc=name)
    collapse[name], collapse_usage[name] = evaluate(model)
    collapse[name]["seconds"] = history.seconds
print(f"K = {BIG_K}, {COLLAPSE_STEPS} steps each; usage and perplexity over the {len(test_set)} test images")
print(format_table(collapse, keys=["usage %", "perplexity", "nmse", "psnr", "seconds"]))

fig, ax = plt.subplots(figsize=(7, 3.3))
for name, usage in collapse_usage.items():
    counts = usage.counts.sort(descending=True).values.float().cpu()
    ax.plot(torch.arange(1, BIG_K + 1), counts / counts.sum(), label=f"{name} ({100 * usage.usage():.0f}% used)")
ax.set_xscale("log"); ax.set_yscale("log"); ax.set_xlabel("code rank"); ax.set_ylabel("share of tokens")
ax.set_title(f"code usage on the test split, K = {BIG_K}"); ax.legend(fontsize=8); ax.grid(alpha=0.3);

# %% [markdown]
# **Reading the table.** Compare each fix with the plain `VQ` row, one column at a time.
# - `usage %` and `perplexity`: restarts attack collapse directly (every dead code is put back where the data is),
#   so they should lift usage well above plain VQ. If a restart row does not, the threshold `DEAD_AFTER` was too
#   lax for this budget.
# - `nmse` and `psnr`: more codes in use is only worth it if reconstruction improves too. Freshly re-seeded codes
#   can cost the decoder quality for a while, so a row with high usage and worse nmse is a real outcome, not a bug.
# - l2 alone versus l2 + restarts: does normalising make restarts pay off in nmse?
#
# A short run is not the last word. Check the curve above as well: a healthy codebook has a long, flat head instead
# of a cliff.

# %% [markdown]
# ## 8. Edit an image, one token at a time
# The decoder reads a grid of integers, so we can edit them. Pick a position of the 8×8 token grid and a new code:
# the image changes only around that position (the decoder's receptive field), and the new code's content
# shows up there. (In Jupyter you get sliders; elsewhere the cell shows the default setting.)

# %%
ema_model = models["EMA + restarts"]
with torch.no_grad():
    tokens = ema_model.encode(x_test[:1])[2]                                      # (1, h, w)
h, w = tokens.shape[-2:]
popular = usages["EMA + restarts"].counts.argsort(descending=True)

def swap_code(row=h // 2, col=w // 2, rank=0):
    """Replace the token at (row, col) by the rank-th most used code."""
    edited = tokens.clone()
    old = edited[0, row, col].item()
    edited[0, row, col] = popular[rank].to(edited.device)
    with torch.no_grad():
        before, after = ema_model.decode_indices(tokens), ema_model.decode_indices(edited)
    diff = (after - before).abs().mean(1, keepdim=True).expand(-1, 3, -1, -1) * 4 - 1
    title = f"token ({row}, {col}): code {old} → {edited[0, row, col].item()}   (before | after | 4·|change|)"
    viz.compare_grid({title: torch.cat([before, after, diff]).clamp(-1, 1)}, n=3, scale=2.0)
    plt.show()

viz.interactive(swap_code, row=(0, h - 1, 1, h // 2), col=(0, w - 1, 1, w // 2),
                rank=(0, min(N_EMBED, 64) - 1, 1, 0));

# %% [markdown]
# ## 9. What discrete tokens make possible: a prior
# A VQ-VAE alone cannot generate: it needs a distribution over token grids. The crudest prior draws each token
# independently from the codes' overall frequencies (a *unigram* model). It knows which codes are common, but
# nothing about which codes go **together**. Look at its samples below the decoded grids of real images: do they
# show objects, or only the textures and colours that the common codes paint? Lesson 5 trains a transformer
# (MaskGIT) that models the dependencies between tokens.

# %%
train_usage = codebook_usage(ema_model, train_loader, device=P.device, max_batches=20)
p_codes = train_usage.counts.float() / train_usage.counts.sum()
g = torch.Generator().manual_seed(0)
random_tokens = torch.multinomial(p_codes.cpu(), 8 * h * w, replacement=True, generator=g).view(8, h, w)
with torch.no_grad():
    unigram_samples = ema_model.decode_indices(random_tokens.to(P.device)).clamp(-1, 1)
    real_grids = ema_model.decode_indices(ema_model.encode(x_test[:8]).indices).clamp(-1, 1)
bits_uniform = h * w * torch.log2(torch.tensor(float(N_EMBED))).item()
bits_unigram = h * w * torch.log2(torch.tensor(train_usage.perplexity())).item()
print(f"bits per image: {bits_uniform:.0f} with a uniform prior, {bits_unigram:.0f} with the unigram prior "
      "(the best prior that models dependencies between tokens needs no more: a joint entropy is at most the sum "
      "of its marginals; Lesson 5 trains one)")
viz.compare_grid({"decoded token grids of real images": real_grids,
                  "decoded samples from the unigram prior": unigram_samples}, n=8);

# %% [markdown]
# ## Results to report
# Quality over the test split (normalised MSE = MSE / data variance, PSNR in dB, SSIM) and codebook health (usage
# and perplexity over the split; `batch ppl` is the per-batch perplexity at the end of training, Sonnet's measure).
# With the `gpu` profile on CIFAR-10 the target is Sonnet's EMA VQ-VAE: its example notebook (K = 512, D = 64,
# batch 32, 10k steps) reaches a normalised MSE of about 0.056 and a per-batch perplexity of about 330 of 512.
# `sharpness %` is Lesson 1's measure: the share of the input's high-frequency energy that the reconstructions keep.

# %%
print(f"profile {P.name}, {DATASET} at {IMAGE_SIZE} px, K = {N_EMBED}, {STEPS} steps")
print(format_table(record("quantizers", results)))
print(f"\ncollapse experiment, K = {BIG_K}, {COLLAPSE_STEPS} steps")
print(format_table(record("collapse", collapse), keys=["usage %", "perplexity", "nmse", "psnr"]))
print(f"\nthe same model with a continuous code, at the VQ-VAE's nominal rate ({target_bits:.0f} bits per image)")
print(format_table(matched))
print(f"\nlesson time: {time.perf_counter() - t_lesson:.0f} s in the '{P.name}' profile")

# %% [markdown]
# ## Check your understanding
# 1. *(Predict, then run — before the collapse experiment in section 7.)* What share of a large codebook does plain
#    VQ use, and how do the variants rank?
# 2. `z_q + (z - z.detach())` has the value of `z_q` and passes the decoder's gradient to `z` unchanged, exactly like
#    `z + (z_q - z).detach()`. What else does it do, and why does it matter?
# 3. Why does β multiply the commitment term $\|z - \mathrm{sg}[e]\|^2$ and not the codebook term?
# 4. A run reports perplexity 16 with K = 512. What does that tell you about code usage, and what does it not?
# 5. Section 6 matched the VAE's KL to the VQ-VAE's *nominal* rate. Read the `bits (used)` column: is that
#    comparison generous to the VAE or to the VQ-VAE, and how would you make it tighter?

# %% [markdown] solution-only
# **Answers.**
#
# 1. Plain VQ usually uses only a small share: a code that never wins a vector gets no gradient, never moves and
#    never wins. Restarts re-seed such codes from the data and l2-normalised codes keep every code on the same
#    sphere as the encoder outputs, so both are designed to raise usage; how much each does at this budget, and
#    whether combining them adds more, is what the table above measured in your run.
# 2. It keeps the graph of `z_q` itself, so the decoder's gradient also flows into the codebook entries that were
#    looked up: the codes are pulled by the reconstruction loss, not only by the codebook loss (and with an EMA
#    codebook they get a gradient they should never see). Check 2.2 tests that $\partial z_q/\partial e = 0$.
# 3. The codebook term trains the codes towards the encoder outputs at full weight. β only sets how strongly the
#    encoder is held to its current code: a small β keeps the encoder free to move while the codes follow it.
#    Swapping them scales the codebook's gradient by β and the encoder's commitment by 1/β relative to the paper;
#    with plain SGD the codes would learn β times slower, with Adam (section 4) mostly the encoder's stronger
#    commitment remains.
# 4. The code usage is as spread out as a uniform usage of 16 codes would be: the codebook is collapsed onto
#    about 16 effective codes. It does not say which codes they are, how many codes are used at all (a long tail of
#    rare codes adds little), or how good the reconstructions are.
# 5. Generous to the VAE: it may spend the full nominal rate, while the VQ-VAE's tokens carry at most
#    $hw\log_2(\text{perplexity})$ bits under their own frequencies, usually well below $hw\log_2 K$ (and less
#    still under a prior that models their dependencies). For a tighter race, set the controller's target to the
#    VQ-VAE's `bits (used)`. A continuous code has a second advantage at any rate: it can spend its bits unevenly,
#    more on a busy patch and fewer on a flat one, where every token costs the same $\log_2 K$.

# %% [markdown]
# ## Takeaways
# - A VQ-VAE replaces the Gaussian code by the nearest of $K$ learned vectors; images become grids of integers.
# - `argmin` has no gradient: the straight-through estimator copies $\partial\mathcal L/\partial z_q$ to $z_e$, and the
#   codebook learns from its own term (loss-based) or as online k-means (EMA).
# - The loss is $\|\operatorname{sg}[z_e]-e\|^2 + \beta\|z_e-\operatorname{sg}[e]\|^2$; the official code swaps β onto
#   the codebook term — same value, different gradients.
# - Discrete codes fix the rate by design and leave nothing to gain from ignoring the code. Whether they also
#   sharpen is a measurement, not a given: section 6 raced a continuous code at the same rate over two seeds (read
#   its `sharpness %` and PSNR columns, and in how many seeds each ordering holds); Lesson 3 shows what the loss
#   does.
# - Watch the codebook: perplexity and usage over a whole split. Large codebooks collapse; section 7 measures how far
#   dead-code restarts and l2-normalised codes bring them back at this budget.
#
# **Next — Lesson 3 (VQGAN).** The VQ-VAE still trains on L2, and the `sharpness %` column shows how much fine
# texture its reconstructions keep. VQGAN keeps this quantizer and adds a perceptual (LPIPS) and an adversarial
# (PatchGAN) loss, so that the decoder is rewarded for *sharp* detail, and measures what each one buys.

# % [markdown]
# ## Where you stand
# Each exercise of this lesson: passed, failed, not implemented, or not checked (its check cell has not run), and
# which cells ran on the reference solution instead of yours. Fix an exercise, re-run its check and the cells after
# it, then this cell.

# %
from minimovq.checks import scoreboard
scoreboard(2, globals());
