# %% [markdown]
# # Lesson 4 — MoVQ: a spatially modulated decoder and multichannel codes{{VARIANT}}
# {{COLAB_BADGE}}
#
# **Where we are.** Lesson 3's VQGAN reconstructs sharp images from a grid of codes. MoVQ (Zheng et al. 2022,
# "MoVQ: Modulating Quantized Vectors for High-Fidelity Image Generation"), released at scale as SBER-MoVQGAN, keeps
# VQGAN's encoder and loss and changes two things:
# - **the decoder**: every normalisation layer is *modulated by the quantized latent itself* (spatially conditional
#   normalisation, `SpatialNorm`), against the **repeated artifacts** a VQGAN decoder paints where neighbouring
#   positions share a code;
# - **the codes**: each latent vector is split into channel groups quantized with one shared codebook
#   (**multichannel quantization**), so a position carries several indices.
#
# You will
# 1. see where the repeated-artifact problem comes from,
# 2. write `SpatialNorm` (an `nn.Module`) and multichannel quantization (two exercises, each with a check),
# 3. train VQGAN, MoVQ and MoVQ + multichannel at equal budget on `shapes` — smooth gradients and flat regions —
#    and measure PSNR, SSIM, LPIPS and the artifact itself, with a map of where the errors are,
# 4. look at capacity and codebook usage with several codes per position,
# 5. (on Colab) load the released SBER-MoVQGAN 67M with *this* code and compare it with your tiny model.

# %%
{{SETUP}}

# %% [markdown]
# ## 0. Configuration
# Sizes come from the profile: `quick` (a CI smoke test, under a minute), `cpu` (a laptop, 10–20 minutes) or `gpu`
# (a Colab T4, about 20 minutes). The models are lesson-sized SBER-style configs from `minimovq.movq.CONFIGS`
# (f = 4, so a 32 px image becomes 8 × 8 positions; 16-dimensional codes, K = 128 or 256). All three arms of the
# comparison share the encoder, the codebook size, the loss, the data order and the number of steps.

# %%
import time
import matplotlib.pyplot as plt
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from minimovq import data, movq, viz
from minimovq.checkpoint import CheckpointError, checkpoint_dir, run_checkpoint
from minimovq.losses import VQGANLoss
from minimovq.lpips import LPIPS
from minimovq.metrics import evaluate_reconstruction, format_table, grid_artifact, smooth_regions
from minimovq.movq import MoVQ
from minimovq.quantize import VectorQuantizer, codebook_usage
from minimovq.train import Trainer, count_parameters
from minimovq.vqgan import VQGAN

DATASET = "shapes"          # smooth gradients + flat shapes (built in, offline); or "photos", "cifar10", ...
IMAGE_SIZE = P.pick(quick=32, cpu=32, gpu=64)
CONFIG = P.pick(quick="tiny", cpu="tiny", gpu="small")      # a name in minimovq.movq.CONFIGS
GROUPS = 4                                                 # channel groups in the multichannel arm
N_TRAIN = P.pick(quick=256, cpu=10000, gpu=20000)
N_TEST = P.pick(quick=32, cpu=500, gpu=1000)
BATCH = P.pick(quick=8, cpu=16, gpu=32)
STEPS = P.pick(quick=8, cpu=500, gpu=3000)                  # per arm: an equal budget
# The step at which the PatchGAN joins (SBER: step 0; STEPS means never). On the cpu budget a GAN that joins
# mid-run wrecks the half-formed reconstructions (we measured the L2 loss doubling within 50 steps of its start),
# so that profile compares the decoders on L2 + LPIPS alone; quick keeps it on to exercise the code path.
GAN_START = P.pick(quick=STEPS // 2, cpu=STEPS, gpu=2 * STEPS // 3)
LR = P.pick(quick=4e-4, cpu=4e-4, gpu=2e-4)
t_lesson = time.perf_counter()

cfg = movq.CONFIGS[CONFIG]
F_DOWN = 2 ** (len(cfg["ddconfig"]["ch_mult"]) - 1)       # downsampling factor f: one code per f×f pixels
train_set = data.load(DATASET, split="train", image_size=IMAGE_SIZE, n=N_TRAIN)
test_set = data.load(DATASET, split="test", image_size=IMAGE_SIZE, n=N_TEST)
train_loader = data.make_loader(train_set, batch_size=BATCH, shuffle=True)
test_loader = data.make_loader(test_set, batch_size=64, shuffle=False)
x_all = torch.cat([b for b in test_loader]).to(P.device)          # the whole (small) test split
smooth_share = smooth_regions(x_all, F_DOWN).float().mean(dim=(1, 2, 3))
x_test = x_all[smooth_share.argsort(descending=True)[:16]]         # the test images with the most smooth area
print(f"{DATASET}: {len(train_set)} train / {len(test_set)} test images {tuple(train_set[0].shape)}; "
      f"config '{CONFIG}': f={F_DOWN}, K={cfg['n_embed']}, code dim D={cfg['embed_dim']}; "
      f"{100 * smooth_share.mean():.0f}% of test pixels lie in smooth regions")
viz.show_grid(x_test, nrow=8, title="test images with the most smooth area");

# %% [markdown]
# ## 1. The repeated-artifact problem
# A VQGAN decodes $\hat x = D(\text{post\_quant\_conv}(z_q))$. The decoder is a stack of convolutions, nearest
# upsamplings, GroupNorms and self-attention without position embeddings, and the codes enter it **once**, at
# `conv_in`. Two facts follow:
# - the decoder treats every position alike: two cells whose surrounding codes are the same (as far as the
#   convolutions reach) decode to the **same** $f\times f$ patch — and inside a large run of one code, every
#   feature map is constant, so the patch is one **flat** colour;
# - on a smooth region the encoder's output changes slowly, so the quantizer snaps neighbouring positions to the
#   **same** code.
#
# So across a sky or a gradient the decoder receives runs of one code and paints the same patch again and again: a
# slowly varying region becomes a staircase of flat plateaus (or, where two or three codes alternate, a wallpaper of
# the same tiles), with seams where the code changes. Larger codebooks make this rarer, not impossible.
#
# Below, a fresh VQGAN decodes a 48 × 48 grid of random codes with one code repeated over the central 36 × 36
# cells. The right panel is each cell's distance from the centre cell's patch: deep inside the run — further from
# its edge than the convolutions reach (about 13 cells for this decoder) — the output repeats **exactly**, as one
# flat colour. This does not depend on training: an untrained decoder shows it too.

# %%
seed_everything(0)
demo = VQGAN(**cfg).eval()
codes = torch.randint(0, cfg["n_embed"], (1, 48, 48))
codes[:, 6:42, 6:42] = 7                                                   # one code over 36 × 36 cells
with torch.no_grad():
    img = demo.decode_indices(codes)[0]                                    # (3, 48f, 48f)
cells = rearrange(img, "c (h i) (w j) -> h w c i j", i=F_DOWN, j=F_DOWN)   # one f×f patch per cell
dist = (cells - cells[24, 24]).abs().amax(dim=(2, 3, 4))                   # (48, 48): max distance to the centre patch
exact = (dist < 1e-4).sum().item()
print(f"{exact} of the {36 * 36} cells of the run decode to the centre cell's patch (max difference < 1e-4); "
      f"and inside that patch each colour channel varies by at most "
      f"{(cells[24, 24].amax(dim=(1, 2)) - cells[24, 24].amin(dim=(1, 2))).max().item():.1e}: one flat colour")
fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
axes[0].imshow(codes[0], cmap="tab20"); axes[0].set_title("codes: one code over the centre")
axes[1].imshow(((img.permute(1, 2, 0) + 1) / 2).clamp(0, 1)); axes[1].set_title("decoded (untrained decoder)")
im = axes[2].imshow(torch.log10(dist + 1e-7), cmap="viridis"); axes[2].set_title("log10 distance to the centre patch")
fig.colorbar(im, ax=axes[2], shrink=0.8)
for ax in axes:
    ax.set_axis_off()

# %% [markdown]
# **MoVQ's answer** is to condition *every* normalisation layer of the decoder on the quantized latent:
# $$\text{SpatialNorm}(f, z_q) \;=\; \text{GroupNorm}(f)\odot \text{conv}_y(z_q^{\uparrow}) + \text{conv}_b(z_q^{\uparrow}),
#   \qquad z_q^{\uparrow} = \text{nearest-upsample}(z_q)\ \text{to } f\text{'s } H\times W.$$
# A GroupNorm removes each group's mean and scale and then applies the *same* learned $\gamma, \beta$ everywhere.
# SpatialNorm keeps that normalisation (with its own affine $\gamma, \beta$) and then applies a **per-pixel** scale
# $\text{conv}_y(z_q)$ and shift $\text{conv}_b(z_q)$ computed from the code at that position — the form of
# SPADE (Park et al. 2019), with the codes as the "layout". The codes are no longer a starting point that 20 layers
# may wash out: each layer re-reads them at its own resolution and combines them with features that already carry
# context from the neighbours, so the decoder has a direct path to vary a patch with what surrounds it.
#
# It adds no information — the code grid is the same — and the decoder is still equivariant on it; what changes is
# how easily the decoder can *use* the codes. Whether that removes the artifacts is an empirical question: the
# paper reports it does (rFID 1.12 against VQGAN's 7.94 on ImageNet, with multichannel codes as well). We measure
# it at our scale below.
#
# **Exercise 4.1.** Implement `SpatialNorm(f_channels, z_q_channels)` as an `nn.Module` with submodules named
# exactly `norm_layer` (GroupNorm: 32 groups, eps 1e-6, affine), `conv_y` and `conv_b` (1×1 convolutions from
# `z_q_channels` to `f_channels`, with bias), so that SBER's weights load by name. In `forward(f, z_q)`, upsample `z_q`
# with **nearest** interpolation to `f`'s exact height and width (`size=`, not a scale factor: grids need not be
# square).

# %%
class SpatialNorm(nn.Module):
    """f (B, C, H, W), z_q (B, D, h, w) -> (B, C, H, W) = norm_layer(f) * conv_y(z_q↑) + conv_b(z_q↑)."""

    def __init__(self, f_channels, z_q_channels):
        super().__init__()
        # BEGIN SOLUTION Exercise 4.1: build norm_layer (GroupNorm 32, eps 1e-6, affine), conv_y and conv_b (1×1)
        self.norm_layer = nn.GroupNorm(num_groups=32, num_channels=f_channels, eps=1e-6, affine=True)
        self.conv_y = nn.Conv2d(z_q_channels, f_channels, kernel_size=1)
        self.conv_b = nn.Conv2d(z_q_channels, f_channels, kernel_size=1)
        # END SOLUTION

    def forward(self, f, z_q):
        # BEGIN SOLUTION Exercise 4.1: upsample z_q to f's size (nearest), then scale and shift the normalised f
        z_q_up = F.interpolate(z_q, size=f.shape[-2:], mode="nearest")
        return self.norm_layer(f) * self.conv_y(z_q_up) + self.conv_b(z_q_up)
        # END SOLUTION

import minimovq.checks.movq as checks
SpatialNorm = checks.SpatialNorm(SpatialNorm)

# %% [markdown]
# `minimovq.movq.MoVQ` is VQGAN with this module in place of **every** GroupNorm of the decoder (norm1 and norm2 of
# each ResnetBlock, the attention block's norm, and norm_out); the encoder keeps plain GroupNorm. Data flow, as in
# SBER's code: `conv_in` takes `post_quant_conv(z_q)`, and every SpatialNorm takes `z_q` itself.
# $$h = \text{quant\_conv}(E(x)),\quad (z_q, \mathcal L_{VQ}, \text{idx}) = Q(h),\quad
#   \hat x = D\big(\text{post\_quant\_conv}(z_q);\ z_q\big).$$

# %%
vq_demo, mo_demo = VQGAN(**cfg), MoVQ(**cfg)
n_sn = sum(isinstance(m, movq.SpatialNorm) for m in mo_demo.decoder.modules())
print(f"VQGAN '{CONFIG}': {count_parameters(vq_demo):,} parameters; MoVQ: {count_parameters(mo_demo):,} "
      f"(+{count_parameters(mo_demo) - count_parameters(vq_demo):,} in {n_sn} SpatialNorms)")
lib_norm = mo_demo.decoder.norm_out                                # a SpatialNorm inside the library's MoVQ
mine = SpatialNorm(lib_norm.norm_layer.num_channels, cfg["embed_dim"])
mine.load_state_dict(lib_norm.state_dict())                         # your module takes its weights by name
print("decoder.norm_out keys:", list(mine.state_dict()))
del vq_demo, mo_demo, demo

# %% [markdown]
# ## 2. Multichannel quantization
# A VQGAN position holds **one** of $K$ codes: $\log_2 K$ bits. MoVQ splits each $D$-dimensional latent vector into
# $G$ groups of $D/G$ channels and quantizes every group with the **same** codebook of $K$ vectors of width $D/G$.
# A position then holds $G$ indices: $K^G$ combinations, $G\log_2 K$ bits, for the same codebook size (and fewer
# codebook parameters). The paper's setting is 16 × 16 × 4 with $K = 1024$. With $G = 1$ it is exactly the plain
# quantizer. minimovq's convention: group $g$ holds the **contiguous** channels $[g\,D/G, (g+1)\,D/G)$.
#
# The catch: each group is a $D/G$-dimensional vector, so every single code carries less, and the $G$ groups are
# quantized independently of each other.

# %%
K, D = cfg["n_embed"], cfg["embed_dim"]
BITS = torch.log2(torch.tensor(float(K))).item()                   # bits of one index
rows = {f"G={g}": {"D/G": D // g, "codebook": K * D // g, "bits/pos": g * BITS, "K^G": f"{K ** g:.3g}"}
        for g in (1, 2, 4)}
print(format_table(rows, digits=0))

# %% [markdown]
# **Exercise 4.2.** Implement `group_quantize(z, codebook, groups)`: z is (B, D, H, W), the codebook (K, D/G).
# Return `z_q` (B, D, H, W) with straight-through gradients ($z_q = z + \text{sg}[e - z]$) and the indices
# (B, H, W, G). The nearest code minimises $\|z_g - e_k\|^2 = \|z_g\|^2 + \|e_k\|^2 - 2\,z_g\cdot e_k$.
# Hint: `rearrange(z, "b (g d) h w -> (b h w g) d", g=groups)` lists every group of every position as one row.

# %%
def group_quantize(z, codebook, groups):
    """z (B, D, H, W), codebook (K, D/G) -> z_q (B, D, H, W) (straight-through), indices (B, H, W, G)."""
    # BEGIN SOLUTION Exercise 4.2: split into G contiguous groups, find each group's nearest code, reassemble
    B, D, H, W = z.shape
    flat = rearrange(z, "b (g d) h w -> (b h w g) d", g=groups)                     # (B·H·W·G, D/G)
    dist = flat.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1) - 2 * flat @ codebook.t()
    idx = dist.argmin(dim=1)                                                         # (B·H·W·G,)
    z_q = rearrange(codebook[idx], "(b h w g) d -> b (g d) h w", b=B, h=H, w=W, g=groups)
    return z + (z_q - z).detach(), rearrange(idx, "(b h w g) -> b h w g", b=B, h=H, w=W, g=groups)
    # END SOLUTION

group_quantize = checks.group_quantize(group_quantize)

# %% [markdown]
# The library's quantizer with `groups=G` does the same (plus the codebook and commitment losses):

# %%
vq = VectorQuantizer(K, D, groups=GROUPS)
z = torch.randn(2, D, 3, 5)
z_q, idx = group_quantize(z, vq.embedding.weight.detach(), GROUPS)
z_q_lib, _, idx_lib = vq(z)
print(f"indices {tuple(idx.shape)}, same as VectorQuantizer(groups={GROUPS}): {torch.equal(idx, idx_lib)}; "
      f"max |z_q difference| = {(z_q - z_q_lib).abs().max().item():.1e}")

# %% [markdown]
# ## 3. Three decoders at equal budget
# The arms differ in one thing each:
# 1. **VQGAN**: `VQGAN(**CONFIGS[CONFIG])` — GroupNorm decoder, one code per position;
# 2. **+ SpatialNorm**: `MoVQ.from_config(CONFIG)` — the same, with the modulated decoder;
# 3. **+ multichannel**: `MoVQ.from_config(CONFIG, groups=GROUPS)` — and $G$ codes per position from the same $K$.
#
# All three train with SBER-MoVQGAN's loss, `VQGANLoss.sber_movqgan()`: L2 + 0.1·LPIPS + 0.1·GAN (hinge, a
# 2-layer PatchGAN, fixed weight) + the codebook loss. SBER switches the GAN on at step 0; at our short budgets we
# let the reconstructions form first (`GAN_START`), and on the `cpu` budget we leave the GAN out altogether: the
# artifact is a property of the decoder, and a GAN that joins a few hundred steps in only adds noise to the
# comparison (try `GAN_START = STEPS // 2` to see it destabilise training). Adam with SBER's betas (0.5, 0.9), gradient clipping, the same
# seed and the same data order for every arm.

# %%
lpips = LPIPS().to(P.device)   # ImageNet VGG16 trunk (downloaded once); offline: warns and uses a random trunk
ARMS = {"VQGAN": lambda: VQGAN(**cfg),
        "+ SpatialNorm": lambda: MoVQ(**cfg),
        "+ multichannel": lambda: MoVQ(**cfg, groups=GROUPS)}


def train_arm(name, steps):
    seed_everything(0)
    model = ARMS[name]().to(P.device)
    loss_fn = VQGANLoss.sber_movqgan(disc_start=GAN_START, perceptual=lpips).to(P.device)
    opt_g = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(loss_fn.discriminator.parameters(), lr=LR, betas=(0.5, 0.9))
    torch.manual_seed(1)                             # the same data order for every arm, whatever its init drew
    tag = name.strip("+ ").replace(" ", "_")
    ckpt = run_checkpoint(f"04_movq-{tag}-{DATASET}-{CONFIG}-{IMAGE_SIZE}px-s{steps}")   # None in quick
    trainer = Trainer(nn.ModuleDict({"model": model, "discriminator": loss_fn.discriminator}),
                      {"g": opt_g, "d": opt_d}, device=P.device, amp=P.amp, grad_clip=1.0, ckpt_path=ckpt)

    def step_fn(x, step):
        with trainer.autocast():
            x_hat, vq_loss, _ = model(x)
            loss_g, logs = loss_fn.generator_loss(vq_loss, x, x_hat, step, last_layer=model.last_layer)
            loss_d, d_logs = loss_fn.discriminator_loss(x, x_hat, step)
        return {"g": loss_g, "d": loss_d, **d_logs, **logs}

    history = trainer.fit(train_loader, step_fn, steps=steps, desc=name)
    return model.eval(), history


models, histories = {}, {}
for name in ARMS:
    models[name], histories[name] = train_arm(name, STEPS)
fig, ax = plt.subplots(figsize=(7, 3))
viz.plot_history({k: h["pixel_loss"] for k, h in histories.items()}, smooth=max(1, STEPS // 40), ax=ax, logy=True,
                 title="L2 reconstruction loss (training batches)");

# %% [markdown]
# ## 4. Measuring the artifact
# PSNR, SSIM and LPIPS score the whole image. The artifact we are after is more specific: **error that follows the
# latent grid inside smooth regions**. `minimovq.metrics.grid_artifact(x_hat, x, f)` measures it:
# - *smooth regions*: pixels with no step larger than 0.15 (on the [-1, 1] scale) within ±f pixels — the gradients
#   and the insides of flat shapes, not edges or textures;
# - the **phase map**: the mean error $|\hat x - x|$ at each of the $f\times f$ positions *inside* a latent cell,
#   averaged over every smooth cell of the test split. Error that ignores the grid gives a flat map; repeated tiles
#   or seams give a pattern (typically large at the cell borders). `grid score` = its standard deviation / mean;
# - **blockiness**: the mean step of $\hat x$ *across* cell borders over the mean step *inside* cells (smooth
#   regions), relative to the same ratio for $x$. 1 = no seams where the codes change; > 1 = a staircase.

# %%
@torch.no_grad()
def reconstruct_all(model):
    return torch.cat([model(b)[0].float().clamp(-1, 1) for b in x_all.split(64)])

recs_all, results, usages = {}, {}, {}
for name, model in models.items():
    scores = evaluate_reconstruction(lambda x: model(x).x_hat, test_loader, device=P.device, lpips=lpips)
    recs_all[name] = reconstruct_all(model)
    art = grid_artifact(recs_all[name], x_all, F_DOWN)
    usages[name] = codebook_usage(model, test_loader, device=P.device)
    smooth = smooth_regions(x_all, F_DOWN)
    err_smooth = ((recs_all[name] - x_all).abs().mean(1, keepdim=True) * smooth).sum() / smooth.sum()
    results[name] = {"psnr": scores["psnr"], "ssim": scores["ssim"], "lpips": scores["lpips"],
                     "smooth err": err_smooth.item(), "grid score": art["score"], "blockiness": art["blockiness"],
                     "usage %": 100 * usages[name].usage(), "perplexity": usages[name].perplexity(),
                     "seconds": histories[name].seconds, "_phase": art["phase"]}
print(f"{DATASET} {IMAGE_SIZE}px, config '{CONFIG}' (K={K}), {STEPS} steps × batch {BATCH} per arm; "
      f"LPIPS trunk: {'ImageNet' if lpips.pretrained_trunk else 'random'}")
print(format_table({k: {m: v for m, v in r.items() if m in ("psnr", "ssim", "lpips", "smooth err", "grid score",
                                                              "blockiness")} for k, r in results.items()}))

# %% [markdown]
# **Where the errors are.** For the smoothest test images: the reconstructions, the error maps with the latent grid
# drawn over them (one cell = one code position), and the phase maps of the whole test split on a shared scale.

# %%
def draw_grid(ax, size, f):
    for t in range(f, size, f):
        ax.axhline(t - 0.5, c="w", lw=0.4, alpha=0.6); ax.axvline(t - 0.5, c="w", lw=0.4, alpha=0.6)

with torch.no_grad():
    recons = {name: m(x_test)[0].float().clamp(-1, 1) for name, m in models.items()}
show = 4
fig, axes = plt.subplots(show, 1 + 2 * len(models), figsize=(2.0 * (1 + 2 * len(models)), 2.1 * show))
vmax = max((r[:show] - x_test[:show]).abs().mean(1).max().item() for r in recons.values())
for i in range(show):
    axes[i, 0].imshow(((x_test[i].permute(1, 2, 0) + 1) / 2).clamp(0, 1).cpu())
    for j, (name, r) in enumerate(recons.items()):
        axes[i, 1 + j].imshow(((r[i].permute(1, 2, 0) + 1) / 2).cpu())
        err = (r[i] - x_test[i]).abs().mean(0).cpu()
        axes[i, 1 + len(models) + j].imshow(err, cmap="magma", vmin=0, vmax=vmax)
        draw_grid(axes[i, 1 + len(models) + j], IMAGE_SIZE, F_DOWN)
        if i == 0:
            axes[0, 1 + j].set_title(name, fontsize=9)
            axes[0, 1 + len(models) + j].set_title(f"|error|: {name}", fontsize=9)
axes[0, 0].set_title("input", fontsize=9)
for ax in axes.flat:
    ax.set_axis_off()
fig.tight_layout()

fig, axes = plt.subplots(1, len(models), figsize=(3.2 * len(models), 3))
phases = [r["_phase"] for r in results.values()]
lo, hi = min(p.min().item() for p in phases), max(p.max().item() for p in phases)
for ax, (name, r) in zip(axes, results.items()):
    im = ax.imshow(r["_phase"], cmap="magma", vmin=lo, vmax=hi)
    ax.set_title(f"{name}\ngrid score {r['grid score']:.3f}", fontsize=9)
    ax.set_xticks(range(F_DOWN)); ax.set_yticks(range(F_DOWN))
fig.colorbar(im, ax=axes, shrink=0.8, label="mean |error| in smooth regions")
fig.suptitle("error by position inside a latent cell (phase map)", fontsize=10);

# %% [markdown]
# **Neighbours that share a code.** The mechanism of section 1 needs runs of equal codes. How often do two
# neighbouring positions get the same code, inside smooth regions and elsewhere? (For the multichannel arm, "the
# same code" means all $G$ indices equal.)

# %%
@torch.no_grad()
def shared_neighbours(model):
    idx = torch.cat([model.encode(b).indices for b in x_all.split(64)])
    idx = idx.reshape(*idx.shape[:3], -1)                                        # (N, h, w, G)
    same_h = (idx[:, :, 1:] == idx[:, :, :-1]).all(-1)                           # (N, h, w-1)
    same_v = (idx[:, 1:] == idx[:, :-1]).all(-1)                                 # (N, h-1, w)
    cell_smooth = F.avg_pool2d(smooth_regions(x_all, F_DOWN).float(), F_DOWN)[:, 0] > 0.99   # (N, h, w)
    sm_h, sm_v = cell_smooth[:, :, 1:] & cell_smooth[:, :, :-1], cell_smooth[:, 1:] & cell_smooth[:, :-1]

    def rate(same, m):
        return (same & m).sum().item() / max(m.sum().item(), 1)

    return {"smooth": 100 * (rate(same_h, sm_h) + rate(same_v, sm_v)) / 2,
            "elsewhere": 100 * (rate(same_h, ~sm_h) + rate(same_v, ~sm_v)) / 2}

print("% of neighbouring positions with the same code(s):")
print(format_table({name: shared_neighbours(m) for name, m in models.items()}, digits=1))

# %% [markdown]
# ## 5. Multichannel codes: capacity and usage
# With the same $K$, the multichannel arm has $K^G$ combinations per position. Two questions: does it use its
# codebook better, and does the extra capacity show in the reconstructions? Usage and perplexity are measured over
# the whole test split (`minimovq.quantize.codebook_usage`; the multichannel arm counts the indices of all groups).

# %%
print(format_table({name: {"usage %": r["usage %"], "perplexity": r["perplexity"],
                           "bits/pos": (GROUPS if name == "+ multichannel" else 1) * BITS,
                           "psnr": r["psnr"]} for name, r in results.items()}, digits=2))
fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 2.6), sharey=True)
for ax, (name, u) in zip(axes, usages.items()):
    counts = u.counts.sort(descending=True).values.cpu()
    ax.bar(range(K), counts / counts.sum(), width=1.0)
    ax.set_title(f"{name}: {100 * u.usage():.0f}% used", fontsize=9); ax.set_xlabel("codes, by frequency")
axes[0].set_ylabel("share of indices")
viz.compare_grid({"input": x_test, **recons}, n=8)
viz.zoom_crops({"input": x_test, **recons}, box=(0, 0, IMAGE_SIZE // 2), index=0);

# %% [markdown]
# ## 6. The ablation
# One table at equal budget — each row adds one idea to the row above it. The `seconds` column is the training time
# of the arm (SpatialNorm adds two 1×1 convolutions per normalisation, at full resolution).

# %%
ablation = {name: {k: v for k, v in r.items() if not k.startswith("_")} for name, r in results.items()}
print(format_table(ablation))

# %% [markdown]
# **Reading it honestly.** These are tiny models trained for minutes, not SBER's 67M parameters trained for days,
# and the quick profile's numbers are a smoke test, not a result. Things to look for in the `cpu` and `gpu`
# profiles:
# - **multichannel** codes usually win clearly on every metric at this scale: with $K = 128$ codes of 16 dimensions,
#   one code per position cannot hold a position's colour *and* its local gradient; four indices can;
# - **SpatialNorm's** gain is smaller and less certain at lesson budgets. Compare the `smooth err`, the phase maps
#   and the zoomed crops rather than PSNR alone, and remember the two arms share the encoder and the codebook size:
#   when both models are still learning colours, the error is dominated by colour, not by grid-shaped artifacts;
# - the grid score and blockiness only mean something once reconstructions are decent. A flat phase map with a
#   large mean error is a model that is not there yet, not a model without artifacts.
#
# The MoVQ paper's ablation on ImageNet (rFID, lower is better) reads: VQGAN 16 × 16 codes 7.94 → + SpatialNorm
# and multichannel 16 × 16 × 4 with $K = 1024$: 1.12, with PSNR 22.42; SBER-MoVQGAN 67M (f = 8, 32 × 32 codes,
# $K = 16384$, one code per position) reaches PSNR 26.45.

# %% [markdown]
# ## 7. Meet the real thing: SBER-MoVQGAN 67M (Colab)
# `MoVQ.from_pretrained("67M")` downloads `movqgan_67M.ckpt` from the Hugging Face repo `ai-forever/MoVQGAN`
# (about 270 MB, through `huggingface_hub`), reads it with `weights_only=True`, drops the `loss.*` and weight-EMA
# entries and loads the rest into *this* code with `strict=True`: same keys, same shapes (67,832,495 parameters).
# We reconstruct 256 px `shapes` images (the procedural dataset renders at any size) and compare with your tiny
# model, run at its own size and upsampled. Offline (CI, a laptop without the file), the cell says why it is skipped;
# to run it there, download the file and set `MOVQ_CKPT` to its path.

# %%
MOVQ_CKPT = ""      # path to a downloaded movqgan_67M.ckpt; empty: download it from Hugging Face (on Colab)
if not (IN_COLAB or MOVQ_CKPT):
    print("skipped: meeting SBER-MoVQGAN needs its 270 MB checkpoint. On Colab this cell downloads it from "
          "https://huggingface.co/ai-forever/MoVQGAN; elsewhere download movqgan_67M.ckpt there and set "
          "MOVQ_CKPT to its path.")
else:
    real = None
    try:
        real = MoVQ.from_pretrained("67M", checkpoint_path=MOVQ_CKPT or None).to(P.device)
    except CheckpointError as e:
        print(f"skipped: {e}")
    if real is not None:
        try:
            import torchinfo  # noqa: F401
        except ImportError:
            import subprocess, sys
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "torchinfo"], check=True)
        real.summary(depth=2)
        big = data.load("shapes", split="test", image_size=256, n=8)
        x256 = torch.stack([big[i] for i in range(8)]).to(P.device)
        ours_model = models["+ multichannel"]
        with torch.no_grad():
            rec_real = real(x256)[0].float().clamp(-1, 1)
            small = F.interpolate(x256, size=IMAGE_SIZE, mode="area")
            rec_ours = F.interpolate(ours_model(small)[0].float(), size=256, mode="bicubic").clamp(-1, 1)
        table = {}
        for name, r in (("SBER-MoVQGAN 67M", rec_real), (f"yours ({IMAGE_SIZE} px, upsampled)", rec_ours)):
            s = evaluate_reconstruction(lambda x, r=r: r, [x256], device=P.device, lpips=lpips)
            table[name] = {"psnr": s["psnr"], "ssim": s["ssim"], "lpips": s["lpips"]}
        print(format_table(table))
        viz.compare_grid({"input (256 px)": x256, "SBER-MoVQGAN 67M": rec_real, "yours": rec_ours}, n=8, scale=2.0)
        viz.zoom_crops({"input": x256, "SBER 67M": rec_real, "yours": rec_ours}, box=(64, 64, 96), index=0)
        del real

# %% [markdown]
# ## 8. Save the tokenizer for Lesson 5
# Lesson 5 trains a MaskGIT prior on the token grids of your best model, the full MoVQ (+ multichannel). It is saved
# to `lesson4_movq.pt` in the checkpoint folder (Google Drive on Colab when mounted), with its config, so
# `MoVQ.from_checkpoint(path)` rebuilds it.

# %%
tokenizer = models["+ multichannel"]
path = tokenizer.save(checkpoint_dir() / "lesson4_movq.pt", dataset=DATASET, image_size=IMAGE_SIZE,
                      profile=P.name, steps=STEPS)
print(f"saved {path} ({count_parameters(tokenizer):,} parameters, {tokenizer.quantize.groups} codes per position)")
print(f"lesson time: {time.perf_counter() - t_lesson:.0f} s in the '{P.name}' profile")

# %% [markdown]
# ## Takeaways
# - A VQGAN decoder is a translation-equivariant function of the code grid: where neighbours share a code it paints
#   the same patch again — tiles and seams in smooth regions.
# - **SpatialNorm** re-injects the quantized latent at every normalisation as a per-pixel scale and shift:
#   $\text{GroupNorm}(f)\odot\text{conv}_y(z_q^\uparrow) + \text{conv}_b(z_q^\uparrow)$. Same information, a
#   direct path to every layer.
# - **Multichannel quantization** gives each position $G$ indices from one shared codebook: $K^G$ combinations for
#   the price of $K$ codes.
# - Measure the artifact you care about (here: error that follows the latent grid in smooth regions), not only
#   PSNR; and read small-budget ablations with care.
# - The released SBER-MoVQGAN weights load into this code unchanged — the architecture *is* the one you built.
#
# **Next — Lesson 5 (MaskGIT).** The tokens are good; now learn a prior over token grids and *generate* images.
