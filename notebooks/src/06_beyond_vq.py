# %% [markdown]
# # Lesson 6 — Beyond the VQ codebook: FSQ, LFQ, residual VQ and the rotation trick{{VARIANT}}
# {{COLAB_BADGE}}
#
# **Where we are.** Lessons 2–5 used the codebook of 2017: $K$ learned vectors, a nearest-neighbour lookup, a
# straight-through gradient, and a fight against dead codes. Today's tokenizers have moved on. You will
# 1. see four quantizers side by side in 2-D: a VQ codebook's Voronoi cells, FSQ's grid, LFQ's corners and RVQ's
#    nested cells,
# 2. write **finite scalar quantization** (FSQ, Mentzer et al. 2023): no codebook at all, just bounded rounding,
# 3. meet **lookup-free quantization** (LFQ, MAGVIT-v2, Yu et al. 2023) and its entropy penalty,
# 4. meet **residual quantization** (RVQ: SoundStream, RQ-VAE): a coarse-to-fine stack of small codebooks,
# 5. write the **rotation trick** (Fifty et al. 2024), a better gradient than straight-through,
# 6. measure them all with Lesson 2's encoder and decoder, on the same data, at **9 bits per position** and the
#    same number of steps; then trace rate against distortion, and straight-through against the rotation trick.
#
# Two exercises, each followed by a check that says what differs and, until it passes, lends you the reference
# so the rest of the notebook runs.

# %%
{{SETUP}}

# %% [markdown]
# ## 0. Configuration
# Sizes come from the profile: `quick` (a CI smoke test), `cpu` (a laptop) or `gpu` (a Colab T4); the README lists
# each lesson's measured time per profile. The autoencoder is Lesson 2's VQ-VAE at the same sizes; only the quantizer changes. Every arm trains for
# `STEPS` steps. `DATASET = "cifar10"` switches to CIFAR-10 (downloaded once into `data/cache/`).

# %%
import math
import time
import matplotlib.pyplot as plt
import torch.nn.functional as F
from einops import rearrange
from minimovq import data, viz
from minimovq.fsq import FSQ
from minimovq.lfq import LFQ, entropy_terms
from minimovq.lpips import LPIPS
from minimovq.metrics import evaluate_reconstruction, format_table
from minimovq.quantize import CodebookUsage, EMAVectorQuantizer, VectorQuantizer, kmeans, nearest_codes
from minimovq.reference import record   # keeps this lesson's headline tables under `make reference`
from minimovq.rvq import ResidualVQ
from minimovq.train import Trainer, count_parameters
from minimovq.vqvae import VQVAE

DATASET = "photos"          # "photos" (built in, offline) | "cifar10" | "shapes" | "folder:<path>"
IMAGE_SIZE = 32             # the latent grid is IMAGE_SIZE / 4 = 8 × 8 positions
N_TRAIN = P.pick(quick=512, cpu=20000, gpu=50000)
N_TEST = P.pick(quick=128, cpu=1000, gpu=2000)
N_LPIPS = P.pick(quick=32, cpu=128, gpu=1000)  # LPIPS (a VGG16 pass per image) on the first test images only
HIDDEN = P.pick(quick=32, cpu=64, gpu=128)
RES_HIDDEN = P.pick(quick=8, cpu=32, gpu=32)
RES_LAYERS = P.pick(quick=1, cpu=2, gpu=2)
EMBED_DIM = P.pick(quick=16, cpu=64, gpu=64)   # D of the VQ and RVQ arms (FSQ and LFQ fix their own D)
K = 512                                        # 9 bits per position for every arm
BATCH = 32
STEPS = P.pick(quick=25, cpu=400, gpu=4000)    # the same for every model of the lesson
LR = P.pick(quick=2e-3, cpu=1e-3, gpu=3e-4)
DEAD_AFTER = P.pick(quick=5, cpu=50, gpu=100)  # restarts, and the window that counts a code as dead
t_lesson = time.perf_counter()

train_set = data.load(DATASET, split="train", image_size=IMAGE_SIZE, n=N_TRAIN)
test_set = data.load(DATASET, split="test", image_size=IMAGE_SIZE, n=N_TEST)
train_loader = data.make_loader(train_set, batch_size=BATCH, shuffle=True)
test_loader = data.make_loader(test_set, batch_size=256, shuffle=False)
lpips_loader = data.make_loader(torch.utils.data.Subset(test_set, range(min(N_LPIPS, len(test_set)))),
                                batch_size=64, shuffle=False)
x_test = torch.stack([test_set[i] for i in range(16)]).to(P.device)
DATA_VAR = torch.stack([train_set[i] for i in range(min(len(train_set), 2000))]).var().item()
print(f"{DATASET}: {len(train_set)} train / {len(test_set)} test images of shape {tuple(train_set[0].shape)}")

# %% [markdown]
# ## 1. Why move past the learned codebook?
# Lesson 2 met the codebook's three troubles:
# - **Collapse.** A code that never wins a vector gets no gradient and no EMA statistics; large codebooks die back
#   to a few live codes unless we restart them.
# - **Extra losses.** The codebook loss and the commitment loss (with its β) exist only to keep the encoder and
#   the codebook near each other.
# - **A biased gradient.** Straight-through copies $\partial\mathcal L/\partial z_q$ to $z_e$ as if $z_q = z_e$; it
#   ignores where $z_e$ sits in its cell.
#
# The four ideas of this lesson answer them differently:
#
# | method | the codebook | bits per position | extra loss | designed against (its paper's claim) |
# |---|---|---|---|---|
# | **FSQ** | a fixed grid $\prod_i L_i$, nothing learned | $\sum_i \log_2 L_i$ | none | collapse, extra losses (Mentzer et al. 2023) |
# | **LFQ** | the corners $\{-1, +1\}^d$ | $d$ | entropy penalty | low usage, lookup cost (MAGVIT-v2, Yu et al. 2023) |
# | **RVQ** | $Q$ small learned codebooks on residuals | $Q \log_2 K$ | per stage | the rate: bits add up (SoundStream, Zeghidour et al. 2021) |
# | **rotation trick** | any VQ codebook | unchanged | unchanged | the biased gradient (Fifty et al. 2024) |
#
# The last column is what each paper reports at its scale. Whether it holds at this lesson's budget is what
# sections 7–9 measure.

# %% [markdown]
# ## 2. Four quantizers in 2-D
# Colour every point of the plane by the code it quantizes to. A VQ codebook carves **Voronoi cells** around
# learned codes. FSQ rounds each coordinate separately: a **grid** of rectangles (in $z$, the tanh bound makes the
# outer cells wider). LFQ keeps one sign per coordinate: **quadrants**, with codes at the corners $(\pm1, \pm1)$.
# RVQ's second stage splits each first-stage cell again: **nested cells** (thick lines: stage 1).

# %%
g = torch.Generator().manual_seed(0)
lim = 2.5
axis = torch.linspace(-lim, lim, 300)
plane = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)   # (300·300, 2)

def show_cells(ax, index, title, n_codes):
    ax.imshow(index.view(300, 300) % 20, origin="lower", extent=(-lim, lim, -lim, lim), cmap="tab20",
              vmin=0, vmax=19, alpha=0.55, interpolation="nearest")
    ax.set_title(f"{title}\n{n_codes} codes", fontsize=10); ax.set_xticks([]); ax.set_yticks([])

fig, axes = plt.subplots(1, 4, figsize=(16, 4.2))
codebook_2d = torch.randn(16, 2, generator=g) * 1.1
show_cells(axes[0], nearest_codes(plane, codebook_2d), "VQ: Voronoi cells of learned codes", 16)
axes[0].scatter(*codebook_2d.T, marker="*", s=120, c="k")

fsq_2d = FSQ([5, 4])
fsq_index = fsq_2d(rearrange(plane, "n d -> 1 d n 1"))[2].flatten()
show_cells(axes[1], fsq_index, "FSQ, levels (5, 4): a grid", fsq_2d.n_embed)
axes[1].scatter(*fsq_2d.codebook().T, s=14, c="k", label="grid values ẑ")
axes[1].legend(loc="lower right", fontsize=8)

lfq_2d = LFQ(2)
lfq_index = lfq_2d(rearrange(plane, "n d -> 1 d n 1"))[2].flatten()
show_cells(axes[2], lfq_index, "LFQ, d = 2: the signs", lfq_2d.n_embed)
axes[2].scatter([-1, -1, 1, 1], [-1, 1, -1, 1], marker="*", s=120, c="k")

cloud = torch.randn(4000, 2, generator=g) * 1.2
stage1 = kmeans(cloud, 4, generator=g)
stage2 = kmeans(cloud - stage1[nearest_codes(cloud, stage1)], 4, generator=g)
i1 = nearest_codes(plane, stage1)
i2 = nearest_codes(plane - stage1[i1], stage2)
show_cells(axes[3], i1 * 4 + i2, "RVQ, 2 stages of 4 codes: nested cells", 16)
axes[3].contour(axis, axis, i1.view(300, 300).float(), levels=[0.5, 1.5, 2.5], colors="k", linewidths=2)
sums = (stage1[:, None] + stage2[None]).reshape(-1, 2)
axes[3].scatter(*sums.T, s=14, c="k"); axes[3].scatter(*stage1.T, marker="*", s=160, c="C3")
fig.tight_layout();

# %% [markdown]
# ## 3. Finite scalar quantization
# FSQ (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple") drops the codebook. The encoder
# outputs $d$ channels; channel $i$ is squashed into an interval that holds $L_i$ integers and rounded:
# $$\text{bound}(z) = \tanh(z + s)\cdot h - o, \qquad h = \frac{(L-1)(1-\varepsilon)}{2},\quad
#   o = \begin{cases}0.5 & L \text{ even}\\ 0 & L\text{ odd}\end{cases},\quad s = \tan(o/h),\quad \varepsilon = 10^{-3},$$
# $$\hat z = \frac{\operatorname{round}_{\text{STE}}(\text{bound}(z))}{\lfloor L/2 \rfloor}.$$
# - $h$ sets the interval's half-width; $(1-\varepsilon)$ keeps tanh's limits strictly inside the outer levels.
# - An **even** $L$ has no integer at the centre of a symmetric interval, so the interval moves down by half a step
#   ($o = 0.5$): $L = 4$ gives the levels $\{-2, -1, 0, 1\}$. The shift $s$ moves tanh so that $z = 0$ still lands
#   (almost) on 0.
# - Dividing by $\lfloor L/2 \rfloor$ brings the levels back to about $[-1, 1]$.
# - Rounding uses straight-through; nothing else is learned. The implicit codebook is the grid of
#   $\prod_i L_i$ points, and the index of a point is its mixed-radix number with basis
#   $\text{cumprod}([1, L_1, \dots, L_{d-1}])$.
#
# **Exercise 6.1.** Implement `fsq_quantize(z, levels)`: `z` has shape (..., d), channel-last, and `levels` is a
# list of $d$ integers. Return $\hat z$ of the same shape, with the paper's bound, a straight-through round and the
# division by `L // 2`.

# %%
def fsq_quantize(z, levels):
    """z: (..., d) channel-last, levels: d ints. Returns ẑ (..., d) on the grid, straight-through gradients."""
    # BEGIN SOLUTION Exercise 6.1: bound each channel, round with straight-through, divide by L // 2
    L = torch.tensor(levels, dtype=z.dtype, device=z.device)                       # (d,)
    half_l = (L - 1) * (1 - 1e-3) / 2
    offset = torch.where(L % 2 == 0, 0.5, 0.0)
    shift = torch.tan(offset / half_l)
    bounded = torch.tanh(z + shift) * half_l - offset                              # (..., d)
    rounded = bounded + (torch.round(bounded) - bounded).detach()                  # straight-through round
    return rounded / (L // 2)
    # END SOLUTION

import minimovq.checks.beyond as checks
fsq_quantize = checks.fsq_quantize(fsq_quantize)

# %% [markdown]
# The bound, seen: for $L = 5$ and $L = 4$, the continuous $\text{bound}(z)/\lfloor L/2\rfloor$ (thin) and the
# quantized $\hat z$ (thick), with your `fsq_quantize`. The dotted line is the common **atanh variant**
# (`FSQ(levels, shift="atanh")`): $\tanh(z + \operatorname{atanh}(o/h))\cdot h - o$ is exactly 0 at $z = 0$, where
# the paper's $\tan$ is off by a hair ($\tan x$ and $\operatorname{atanh} x$ agree to third order). This lesson does
# not measure whether it changes quality; it is undefined for $L = 2$.

# %%
from minimovq.fsq import bound
zs = torch.linspace(-4, 4, 801).unsqueeze(1)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.3))
for ax, L in zip(axes, (5, 4)):
    ax.plot(zs, bound(zs, [L]) / (L // 2), lw=1, label="bound(z) / (L // 2)")
    ax.plot(zs, fsq_quantize(zs, [L]), lw=2.5, label="ẑ (your fsq_quantize)")
    ax.plot(zs, bound(zs, [L], shift="atanh") / (L // 2), ":", lw=1, label="atanh variant")
    ax.set_title(f"L = {L}: {fsq_quantize(zs, [L]).unique().numel()} levels"); ax.grid(alpha=0.3)
    ax.set_xlabel("z")
axes[0].legend(fontsize=8);

# %% [markdown]
# ## 4. Lookup-free quantization
# LFQ (Yu et al. 2023, MAGVIT-v2) is FSQ with two levels per channel and no bound: the code is the sign,
# $$z_{q} = \operatorname{sign}(z) \in \{-1, +1\}^d, \qquad \text{index} = \sum_j [z_j > 0]\, 2^j,$$
# so a 9-channel latent addresses $2^9 = 512$ codes, and MAGVIT-v2's 18 channels address 262,144 with no lookup.
# Nothing pulls the encoder to use every corner, so MAGVIT-v2 adds an **entropy penalty**: with a soft assignment
# $p(c\mid z) \propto \exp(-\|z - c\|^2/\tau)$ over the corners,
# $$\mathcal L_\text{entropy} = \mathbb E_z\big[H(p(\cdot\mid z))\big] - \gamma\, H\big(\mathbb E_z[p(\cdot\mid z)]\big):$$
# each latent should commit to one corner (low per-sample entropy) while the batch spreads over all corners (high
# codebook entropy). Because $\|c\|^2 = d$ for every corner, $p$ factorises over channels:
# $p(c_j = +1 \mid z_j) = \sigma(4 z_j / \tau)$. `minimovq.lfq` computes the codebook entropy exactly, a block of
# corners at a time, up to $d = 12$, and above that from the per-bit marginals (an upper bound; see its docstring).
#
# A batch that uses every corner once, confidently, against one that sits in a single corner:

# %%
corners = torch.cartesian_prod(*[torch.tensor([-1.0, 1.0])] * 3)                   # (8, 3): all corners
for name, z in {"every corner once": corners, "one corner": torch.ones(8, 3),
                "unsure (z near 0)": 0.01 * torch.randn(8, 3)}.items():
    per_sample, codebook_entropy = entropy_terms(z, temperature=0.1)
    print(f"{name:>18}: per-sample entropy {per_sample:.3f}, codebook entropy {codebook_entropy:.3f} "
          f"(max ln 8 = {math.log(8):.3f}), penalty {per_sample - codebook_entropy:+.3f}")

# %% [markdown]
# ## 5. Residual quantization
# One codebook of $K$ codes spends $\log_2 K$ bits per position. RVQ (SoundStream, Zeghidour et al. 2021; RQ-VAE,
# Lee et al. 2022) spends them in stages:
# $$r_1 = z,\qquad e_i = Q_i(r_i),\qquad r_{i+1} = r_i - e_i,\qquad z_q = \sum_{i=1}^{Q} e_i.$$
# Three stages of 8 codes reach $8^3 = 512$ points — the same 9 bits as one codebook of 512 — from only 24 stored
# vectors, and each stage refines the last (the nested cells of section 2). `minimovq.rvq.ResidualVQ` keeps its
# stages in `.layers`; each is a `VectorQuantizer` or an `EMAVectorQuantizer` with its own loss, and the decoder's
# gradient reaches $z$ through one straight-through step on the sum. With **quantizer dropout** (SoundStream), a
# training batch uses only its first $n \sim U\{1..Q\}$ stages, so one model learns to decode every depth: one
# tokenizer, several bitrates. Section 8 uses that to trace rate against distortion.

# %%
rvq_demo = ResidualVQ(3, 8, 2).eval()
for layer, codes in zip(rvq_demo.layers, (stage1, stage2, stage2 / 2)):
    layer.embedding.weight.data[:4] = codes
    layer.embedding.weight.data[4:] = codes * 0.5
points = cloud[:1000]
for n in (1, 2, 3):
    z_q, _, idx = rvq_demo(rearrange(points, "n d -> 1 d n 1"), n_quantizers=n)
    err = (rearrange(z_q, "1 d n 1 -> n d") - points).pow(2).sum(1).mean()
    print(f"depth {n}: {3 * n} bits per point, mean squared error {err:.4f}")

# %% [markdown]
# ## 6. The rotation trick
# Straight-through hands every encoder output in a cell the *same* gradient: the one computed at the code. Fifty
# et al. 2024 ("Restructuring Vector Quantization with the Rotation Trick") write the quantizer instead as a
# rotation and rescaling of $e$ (the encoder output) onto $q$ (its code),
# $$\tilde q = \lambda R\, e,\qquad R = I - 2 r r^\top + 2 \hat q \hat e^\top,\quad
#   r = \frac{\hat e + \hat q}{\|\hat e + \hat q\|},\quad \lambda = \frac{\|q\|}{\|e\|},$$
# with $R$ and $\lambda$ treated as **constants** (computed from detached tensors). The forward value is still $q$
# ($R\hat e = \hat q$), but the gradient that reaches $e$ is
# $$\frac{\partial\mathcal L}{\partial e} = \lambda R^\top \frac{\partial\mathcal L}{\partial q}:$$
# rotated by the angle between $e$ and its code, and scaled by their norms. Points far from their code (large
# angle) get gradients that turn with them; the code itself gets no gradient through this path (its codebook
# loss, or the EMA, still trains it). $R$ never needs to be a $D\times D$ matrix:
# $Re = e - 2r(r\cdot e) + 2\hat q(\hat e\cdot e)$.
#
# **Exercise 6.2.** Implement `rotate_to(e, q)` for rows: `e` and `q` are (N, D). The forward value is `q`, the
# gradient to `e` is $\lambda R^\top g$, and nothing reaches `q`.

# %%
def rotate_to(e, q):
    """e, q: (N, D). Returns (N, D) with value q; the gradient to e is λ Rᵀ g; q gets none."""
    # BEGIN SOLUTION Exercise 6.2: rotate and rescale e onto q with R and λ held constant
    with torch.no_grad():
        e_hat, q_hat = F.normalize(e, dim=1), F.normalize(q, dim=1)                # (N, D) each
        r = F.normalize(e_hat + q_hat, dim=1)
        lam = q.norm(dim=1, keepdim=True) / e.norm(dim=1, keepdim=True)             # (N, 1)
    rotated = e - 2 * r * (r * e).sum(1, keepdim=True) + 2 * q_hat * (e_hat * e).sum(1, keepdim=True)  # R e
    return lam * rotated
    # END SOLUTION

rotate_to = checks.rotate_to(rotate_to)

# %% [markdown]
# The two gradients, seen: the decoder wants the quantized vector to move right (the same $g$ for every point).
# Straight-through gives every point of the cell that same arrow; the rotation trick turns each arrow by the
# point's angle to the code and scales it by $\|q\|/\|e\|$.

# %%
code = torch.tensor([[1.2, 0.9]])
pts = code + 0.9 * torch.randn(40, 2, generator=g)
pts = pts[nearest_codes(pts, torch.cat([code, -code, code.flip(1) * torch.tensor([[-1.0, 1.0]])])) == 0]
g_up = torch.tensor([1.0, 0.0]).expand(len(pts), 2)
e = pts.clone().requires_grad_()
(g_rot,) = torch.autograd.grad(rotate_to(e, code.expand_as(pts)), e, g_up)
fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
for ax, grads, title in ((axes[0], g_up, "straight-through: one gradient per cell"),
                         (axes[1], g_rot, "rotation trick: λ Rᵀ g per point")):
    ax.scatter(*pts.T, s=12, c="k"); ax.scatter(*code.T, marker="*", s=200, c="C3", label="code q")
    ax.quiver(*pts.T, *grads.T, angles="xy", scale_units="xy", scale=4, width=0.004, color="C0")
    ax.plot([0], [0], "k+"); ax.set_aspect("equal"); ax.set_title(title, fontsize=10); ax.grid(alpha=0.3)
axes[0].legend(loc="lower right");

# %% [markdown]
# ## 7. One comparison, at 9 bits per position and the same budget
# Lesson 2's VQ-VAE, the same data, `STEPS` steps each, and five quantizers that all spend 9 bits per position:
# - **VQ**: `VectorQuantizer`, $K = 512$, $D$ = `EMBED_DIM` (Lesson 2's loss-based codebook);
# - **EMA + restarts**: `EMAVectorQuantizer`, $K = 512$, dead codes re-seeded after `DEAD_AFTER` batches;
# - **FSQ (8, 8, 8)**: $D = 3$, $8^3 = 512$ grid points;
# - **LFQ, 9 bits**: $D = 9$, $2^9 = 512$ corners, MAGVIT-v2's entropy penalty (weight 0.1);
# - **RVQ 3 × 8**: three EMA stages (with restarts) of 8 codes, $8^3 = 512$ sums.
#
# Every arm's indices are mapped to one number in $[0, 512)$ (RVQ: $i_1 + 8 i_2 + 64 i_3$), so **usage** and
# **perplexity** over the test split mean the same thing for all. **Dead codes** over training counts, at each
# step, the codes unused in the last `DEAD_AFTER` batches. Time per step includes everything.

# %%
def make_model(quantizer, seed=0):
    seed_everything(seed)
    return VQVAE(hidden=HIDDEN, res_hidden=RES_HIDDEN, num_res_layers=RES_LAYERS, embed_dim=quantizer.embed_dim,
                 quantizer=quantizer).to(P.device)


def n_codes(model):
    """The size of a model's (implicit) codebook: K, Π L_i, 2^d, or K^Q for RVQ."""
    q = model.quantize
    return q.n_embed ** q.num_quantizers if isinstance(q, ResidualVQ) else q.n_embed


def flat_codes(model, indices):
    """Any arm's indices -> one code per position in [0, n_codes) (RVQ: the joint index of its stages)."""
    q = model.quantize
    return q.joint_indices(indices) if isinstance(q, ResidualVQ) else indices


def train(model, desc, steps=STEPS):
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=LR)
    trainer = Trainer(model, {"loss": opt}, device=P.device, amp=P.amp, grad_clip=None)
    n = n_codes(model)
    last_seen = torch.full((n,), -1, dtype=torch.long, device=P.device)            # the step each code was last used

    def step_fn(x, step):
        with trainer.autocast():
            x_hat, vq_loss, indices = model(x)
        rec = F.mse_loss(x_hat.float(), x)
        codes = flat_codes(model, indices).flatten()
        last_seen[codes.unique()] = step
        dead = (last_seen < step + 1 - DEAD_AFTER).sum()                          # unused in the last DEAD_AFTER steps
        return {"loss": rec + vq_loss, "nmse": rec / DATA_VAR, "dead codes": dead,
                "usage": codes.unique().numel() / n}

    return trainer.fit(train_loader, step_fn, steps=steps, desc=desc)


lpips = LPIPS().to(P.device).eval()   # ImageNet VGG16 once downloaded; offline: a warning and a random trunk


@torch.no_grad()
def evaluate(model, history=None, reconstruct=None, with_lpips=True):
    """Quality and codebook health over the whole test split (LPIPS on its first N_LPIPS images)."""
    model.eval()
    reconstruct = reconstruct or (lambda x: model(x)[0])
    scores = evaluate_reconstruction(reconstruct, test_loader, device=P.device)
    row = {"psnr": scores["psnr"], "ssim": scores["ssim"]}
    if with_lpips:
        row["lpips"] = evaluate_reconstruction(reconstruct, lpips_loader, device=P.device, lpips=lpips)["lpips"]
    usage = CodebookUsage(n_codes(model))
    for x in test_loader:
        usage.update(flat_codes(model, model.encode(x.to(P.device))[2]))
    row.update({"usage %": 100 * usage.usage(), "perplexity": usage.perplexity()})
    if history is not None:
        row["dead (end)"] = history.last("dead codes", n=1)
        row["ms / step"] = 1000 * history.seconds / len(history["loss"])
    return row


arms = {
    "VQ": lambda: VectorQuantizer(K, EMBED_DIM),
    "EMA + restarts": lambda: EMAVectorQuantizer(K, EMBED_DIM, dead_code_threshold=DEAD_AFTER),
    "FSQ (8, 8, 8)": lambda: FSQ([8, 8, 8]),
    "LFQ (9 bits)": lambda: LFQ(9),
    "RVQ (3 × 8)": lambda: ResidualVQ(3, 8, EMBED_DIM, quantizer="ema", dead_code_threshold=DEAD_AFTER),
}
models, histories, results = {}, {}, {}
for name, make_quantizer in arms.items():
    models[name] = make_model(make_quantizer())
    histories[name] = train(models[name], desc=name)
    results[name] = evaluate(models[name], histories[name])
print(f"{DATASET} at {IMAGE_SIZE} px, 9 bits per position, {STEPS} steps each; "
      f"{count_parameters(models['VQ']):,} parameters in the VQ arm")
print(format_table(results))

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 3.3))
smooth = max(1, STEPS // 25)
viz.plot_history({k: h["nmse"] for k, h in histories.items()}, smooth=smooth, ax=axes[0], logy=True,
                 title="reconstruction MSE / data variance")
viz.plot_history({k: h["dead codes"] for k, h in histories.items()}, ax=axes[1],
                 title=f"dead codes (unused in the last {DEAD_AFTER} batches), of {K}")
viz.plot_history({k: [100 * u for u in h["usage"]] for k, h in histories.items()}, smooth=smooth, ax=axes[2],
                 title="% of the 512 codes used per batch")
with torch.no_grad():
    recons = {name: m(x_test)[0].clamp(-1, 1) for name, m in models.items()}
viz.compare_grid({"input": x_test, **recons}, n=8);

# %% [markdown]
# **Reading the table.** Look first at usage and dead codes. A fixed grid (FSQ, LFQ) has no codebook that can
# drift away from the data, so no code is *unreachable*; but whether the encoder actually spreads over the grid is
# up to training, and a grid point the encoder never visits is as dead as a stranded VQ code. So read the columns:
# which arms use the most of their 512 codes in your run, and is the fixed-grid advantage that the FSQ and MAGVIT-v2
# papers report (at far longer training) visible at this budget? Then quality per bit: all arms spend the same 9
# bits, so PSNR, SSIM and LPIPS compare how well each *uses* them. FSQ's latent has $D = 3$ channels where VQ's
# codes have `EMBED_DIM`: its decoder reads a much thinner latent, and it has no codebook to learn. Short runs
# favour whatever learns fastest; the `gpu` profile's longer runs are the fairer race.

# %% [markdown]
# ## 8. Rate against distortion
# How does quality grow with bits? Two families:
# - **RVQ, depth 1–4**: one model with four stages of 8 codes, trained with quantizer dropout, evaluated with its
#   first 1, 2, 3 and 4 stages (3, 6, 9 and 12 bits per position);
# - **FSQ at several level sets**, each a model of its own: (8, 6, 5), (8, 5, 5, 5) and (7, 5, 5, 5, 5) are the FSQ
#   paper's recommended levels for about $2^8$, $2^{10}$ and $2^{12}$ codes (its Table 1); (5, 3) adds a low-rate
#   point, and (8, 8, 8) is the arm of section 7.
#
# Every model trains for `STEPS` steps.

# %%
FSQ_LEVELS = [[5, 3], [8, 6, 5], [8, 8, 8], [8, 5, 5, 5], [7, 5, 5, 5, 5]]
rd = {}
for levels in FSQ_LEVELS:
    name = f"FSQ {tuple(levels)}"
    if levels == [8, 8, 8]:
        model = models["FSQ (8, 8, 8)"]
    else:
        model = make_model(FSQ(levels))
        train(model, desc=name)
    rd[name] = {"bits": model.quantize.bits, **evaluate(model, with_lpips=False)}

rvq_model = make_model(ResidualVQ(4, 8, EMBED_DIM, quantizer="ema", dead_code_threshold=DEAD_AFTER,
                                  quantizer_dropout=0.5))
train(rvq_model, desc="RVQ 4 × 8, quantizer dropout")
for depth in (1, 2, 3, 4):
    def at_depth(x, n=depth):
        return rvq_model.decode(rvq_model.quantize(rvq_model.quant_conv(rvq_model.encoder(x)), n_quantizers=n)[0])
    scores = evaluate_reconstruction(at_depth, test_loader, device=P.device)
    rd[f"RVQ depth {depth}"] = {"bits": 3.0 * depth, "psnr": scores["psnr"], "ssim": scores["ssim"]}
print(format_table(rd, keys=["bits", "psnr", "ssim"]))

fig, ax = plt.subplots(figsize=(6.5, 4))
for family, marker in (("FSQ", "o-"), ("RVQ", "s-")):
    rows = [r for k, r in rd.items() if k.startswith(family)]
    ax.plot([r["bits"] for r in rows], [r["psnr"] for r in rows], marker, label=family)
ax.axhline(results["VQ"]["psnr"], c="0.5", ls=":", label="VQ, K = 512 (9 bits)")
ax.set_xlabel("bits per position"); ax.set_ylabel("test PSNR (dB)"); ax.grid(alpha=0.3); ax.legend()
ax.set_title(f"rate against distortion, {STEPS} steps per model");

# %% [markdown]
# ## 9. Straight-through against the rotation trick
# The same VQ arm as section 7 ($K = 512$, loss-based codebook, same seed and steps), once more with
# `VectorQuantizer(..., rotation_trick=True)`. The forward pass is identical; only the gradient that reaches the
# encoder differs. Fifty et al. report better codebook usage and reconstruction; measure it here.

# %%
models["VQ + rotation trick"] = make_model(VectorQuantizer(K, EMBED_DIM, rotation_trick=True))
histories["VQ + rotation trick"] = train(models["VQ + rotation trick"], desc="VQ + rotation trick")
rotation = {"VQ (straight-through)": results["VQ"],
            "VQ + rotation trick": evaluate(models["VQ + rotation trick"], histories["VQ + rotation trick"])}
print(format_table(rotation))
fig, axes = plt.subplots(1, 2, figsize=(11, 3.3))
pair = {"straight-through": histories["VQ"], "rotation trick": histories["VQ + rotation trick"]}
viz.plot_history({k: h["nmse"] for k, h in pair.items()}, smooth=smooth, ax=axes[0], logy=True,
                 title="reconstruction MSE / data variance")
viz.plot_history({k: h["dead codes"] for k, h in pair.items()}, ax=axes[1], title=f"dead codes, of {K}");

# %% [markdown]
# ## 10. A short map of modern tokenizers
# | tokenizer | quantizer | note |
# |---|---|---|
# | VQ-VAE (van den Oord et al. 2017), VQ-VAE-2 (Razavi et al. 2019) | learned codebook, EMA | Lesson 2 |
# | VQGAN (Esser et al. 2021), MoVQ (Zheng et al. 2022) | learned codebook (+ multichannel) | Lessons 3–4 |
# | ViT-VQGAN (Yu et al. 2022) | learned, l2-normalised, low-dimensional lookup | codebook health by design |
# | SoundStream (Zeghidour et al. 2021), EnCodec (Défossez et al. 2022) | residual VQ, quantizer dropout | audio codecs |
# | RQ-VAE (Lee et al. 2022) | residual VQ with a shared codebook | images, coarse-to-fine |
# | MAGVIT-v2 (Yu et al. 2023), Open-MAGVIT2 (Luo et al. 2024) | LFQ, $2^{18}$ codes | images and video |
# | FSQ (Mentzer et al. 2023) and later image/video tokenizers | fixed scalar grid | no codebook losses |
# | Rotation trick (Fifty et al. 2024) | any VQ, a new gradient | a drop-in for straight-through |
#
# **The continuous alternative.** Latent diffusion (Rombach et al. 2022) keeps a *continuous* KL-regularised
# autoencoder latent and models it with diffusion, and autoregressive models can also predict continuous tokens
# with a per-token diffusion loss (Li et al. 2024, "Autoregressive Image Generation without Vector
# Quantization"). Discrete tokens remain the natural fit for language-model-style priors (Lesson 5) and for
# compression, where bits are what you pay for.

# %% [markdown]
# ## Check your understanding
# 1. **Predict, then run.** FSQ (8, 8, 8) has no codebook loss, no commitment loss and no restarts, and its encoder
#    sees only 3 channels. Before running the next cell, write down your guess: will its usage of the 512 codes on
#    the test split be higher or lower than the plain VQ arm's? And its PSNR?
# 2. Without the entropy penalty, LFQ's commitment term still pulls each $z_j$ towards $\pm 1$. Why can that make
#    codes freeze, and how does the penalty's codebook term push back?
# 3. In the rate–distortion plot, each RVQ stage adds 3 bits. Why does the PSNR gained per stage shrink with depth?
# 4. Two encoder outputs sit in the same Voronoi cell, one close to its code and one far from it at a large angle.
#    What gradient does each get under straight-through, and under the rotation trick?

# %%
for name in ("VQ", "FSQ (8, 8, 8)"):
    print(f"{name:>14}: usage {results[name]['usage %']:.1f}% of {K}, perplexity {results[name]['perplexity']:.1f}, "
          f"PSNR {results[name]['psnr']:.2f} dB")

# %% [markdown] solution-only
# **Answers** (this cell is in the solution notebook only).
#
# **1.** Every point of FSQ's grid *can* be reached: nothing is learned about the codes, so none can drift away
# from the data. Whether they *are* reached depends on the encoder: a grid point it never visits is dead too, and the
# printed usage says how far a short run gets. The plain VQ arm starts with its codes in a tiny ball, and a code that
# never wins never moves (Lesson 2), so expect FSQ above it, though not necessarily near 100%. PSNR is a closer call: FSQ's decoder reads a 3-channel latent and
# its levels are fixed, while VQ's 64-dimensional codes can sit exactly where the data is. Compare with the numbers
# printed above.
#
# **2.** A sign only changes when $z_j$ crosses 0. The commitment term pulls every $z_j$ away from 0 towards its
# current $\pm 1$, so the decoder's small straight-through gradient rarely wins and bits stop flipping; with the
# encoder's first guesses all alike, the batch can end up in a few corners. The penalty's codebook term rewards the
# batch for spreading over all corners (each bit used about half the time, the bits independent), which pushes
# bits that are stuck on one side back across 0; its per-sample term keeps each latent confident.
#
# **3.** Each stage quantizes what the earlier ones left. The first stage captures the largest variations; the
# residuals it leaves are smaller and closer to noise, so a fixed 8-code stage removes less error each time (and
# with quantizer dropout, the later stages are trained on fewer batches).
#
# **4.** Straight-through: both get exactly the gradient computed at the code, $g$, regardless of where they are.
# The rotation trick: each gets $\lambda R^\top g$, the gradient rotated by that point's angle to the code and scaled
# by $\|q\|/\|e\|$. The close point's gradient is nearly $g$ (times λ); the far one's is turned by its angle to the code,
# so points in the same cell are moved differently, and the encoder learns how its outputs sit inside the cells.

# %% [markdown]
# ## Results to report
# The comparison over the test split (PSNR in dB, SSIM, LPIPS on the first `N_LPIPS` images; usage and perplexity
# of the 512 codes over the split; dead codes at the end of training; milliseconds per training step), the
# rate–distortion points, and straight-through against the rotation trick.

# %%
print(f"profile {P.name}, {DATASET} at {IMAGE_SIZE} px, 9 bits per position, {STEPS} steps per model")
print(format_table(record("quantizers", results)))
print("\nrate against distortion")
print(format_table(record("rate_distortion", rd), keys=["bits", "psnr", "ssim"]))
print("\nstraight-through against the rotation trick")
print(format_table(record("rotation_trick", rotation)))
print(f"\nlesson time: {time.perf_counter() - t_lesson:.0f} s in the '{P.name}' profile")

# %%
from minimovq.checks._core import scoreboard
scoreboard(6, globals());

# %% [markdown]
# ## Takeaways
# - The learned codebook is one choice among several. **FSQ** replaces it with a fixed grid of bounded, rounded
#   scalars: no codebook loss, and no codebook to strand (its paper reports near-full usage; your table shows how much
#   of the grid a short run reaches). **LFQ** keeps only signs and adds an entropy penalty to spread them.
#   **RVQ** spends bits in stages, coarse to fine, and with quantizer dropout one model serves several bitrates.
# - The **rotation trick** keeps the forward pass and changes the gradient: $\lambda R^\top g$ instead of $g$.
# - Compare quantizers at **equal bits per position** and equal budget, and measure usage over a whole split: the
#   table of section 7 and the curve of section 8 are the course's last measurements — extend them with your own
#   level sets, depths and budgets.
#
# **Where next.** The tokenizers of Lessons 2–6 plus the MaskGIT prior of Lesson 5 are the whole pipeline of a
# discrete image generator. Swap in FSQ or LFQ codes and retrain Lesson 5's prior on them.
