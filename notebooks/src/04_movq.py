# %% [markdown]
# # Lesson 4 — MoVQ: a spatially modulated decoder and multichannel codes{{VARIANT}}
# {{COLAB_BADGE}}
#
# **Where we are.** Lesson 3's VQGAN reconstructs sharp images from a grid of codes. MoVQ (Zheng et al. 2022,
# "MoVQ: Modulating Quantized Vectors for High-Fidelity Image Generation"), released at scale as SBER-MoVQGAN, keeps
# VQGAN's encoder and loss and changes two things:
# - **the decoder**: every normalisation layer is *modulated by the quantized latent itself* (spatially conditional
#   normalisation, `SpatialNorm`). The paper introduces it against the **repeated artifacts** a VQGAN decoder paints
#   where neighbouring positions share a code;
# - **the codes**: each latent vector is split into channel groups quantized with one shared codebook
#   (**multichannel quantization**), so a position carries several indices.
#
# This lesson checks those two ideas against what a small model actually does. You will
# 1. decode a long run of one repeated code with **both** decoders, side by side, and see what neither can do;
# 2. write `SpatialNorm` (an `nn.Module`) and multichannel quantization (two exercises, each with a check);
# 3. train a **factorial ablation** at equal budget on `shapes` (smooth gradients and flat regions): VQGAN and MoVQ
#    decoders, each with one code or $G$ codes per position, plus a single-code model with as many bits per pixel
#    as the multichannel arms;
# 4. compare them on PSNR, SSIM, LPIPS, the grid-shaped artifact, and the **statistics of their code maps**: how
#    often neighbours share a code, and how long the runs of one code are;
# 5. (on Colab) load the released SBER-MoVQGAN 67M with *this* code and compare it with your tiny model.

# %%
{{SETUP}}

# %% [markdown]
# ## 0. Configuration
# Sizes come from the profile: `quick` (a CI smoke test), `cpu` (a laptop) or `gpu` (a Colab T4); the README lists
# each lesson's measured time per profile. The models are lesson-sized SBER-style configs from `minimovq.movq.CONFIGS`
# (f = 4, so a 32 px image becomes 8 × 8 positions; 16-dimensional codes, K = 128 or 256). Every arm of the
# comparison shares the encoder design, the codebook size $K$, the quantizer, the loss, the seed, the data order and
# the number of steps.
#
# **One addition to SBER's quantizer, as in Lesson 3: dead-code restarts.** SBER-MoVQGAN quantizes with taming's
# loss-based VQ and nothing against dead codes; a small codebook trained for a few hundred steps may then collapse
# onto a few codes (Lesson 2, section 7), and a comparison of decoders would mostly compare how many codes each arm
# happens to keep alive. Every arm therefore re-seeds a code unused for `RESTARTS` batches from the current batch.
# Section 5 prints each arm's usage and perplexity; set `RESTARTS = 0` for SBER's quantizer exactly and compare.

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
from minimovq.reference import record
from minimovq.train import Trainer, count_parameters
from minimovq.vqgan import VQGAN

DATASET = "shapes"          # smooth gradients + flat shapes (built in, offline); or "photos", "cifar10", ...
IMAGE_SIZE = P.pick(quick=32, cpu=32, gpu=64)
CONFIG = P.pick(quick="tiny", cpu="tiny", gpu="small")      # a name in minimovq.movq.CONFIGS
GROUPS = 4                                                 # channel groups in the multichannel arm
RESTARTS = P.pick(quick=3, cpu=50, gpu=100)                # dead-code restarts (Lesson 2, section 7); 0 = SBER's quantizer
N_TRAIN = P.pick(quick=256, cpu=10000, gpu=20000)
N_TEST = P.pick(quick=32, cpu=500, gpu=1000)
BATCH = P.pick(quick=8, cpu=16, gpu=32)
STEPS = P.pick(quick=8, cpu=400, gpu=3000)                  # per arm: an equal budget (five arms)
# The step at which the PatchGAN joins (SBER: step 0; STEPS means never). The cpu profile compares the decoders
# without it: five arms must fit its budget, and the question here is the decoder, not the adversarial loss;
# quick keeps it on to exercise the code path.
GAN_START = P.pick(quick=STEPS // 2, cpu=STEPS, gpu=2 * STEPS // 3)
LR = P.pick(quick=4e-4, cpu=4e-4, gpu=2e-4)
# SBER's 0.1·LPIPS in the training loss. The cpu budget drops it to fit five arms (LPIPS is still measured).
PERCEPTUAL = P.pick(quick=0.1, cpu=0.0, gpu=0.1)
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
# ## 1. A run of one code, on both decoders
# A VQGAN decodes $\hat x = D(\text{post\_quant\_conv}(z_q))$. The decoder is a stack of convolutions, nearest
# upsamplings, GroupNorms and self-attention without position embeddings, and the codes enter it **once**, at
# `conv_in`. Every one of these layers treats all positions alike: the decoder is **translation-equivariant** on the
# code grid (shift the codes by one cell and the image shifts by $f$ pixels). Two facts follow:
# - two cells whose surroundings hold the same codes, as far as the decoder's receptive field reaches, decode to the
#   **same** $f\times f$ patch; deep inside a run of one code every feature map is constant there, so the patch
#   is one **flat** colour, repeated;
# - on a smooth region the encoder's output changes slowly, so the quantizer tends to snap neighbouring positions
#   to the same code. The MoVQ paper's abstract names the result: the quantizer "encodes similar patches within an
#   image into the same index, resulting in a repeated artifact for similar adjacent regions".
#
# MoVQ's decoder adds a SpatialNorm at every normalisation (section 1.1): a per-pixel scale and shift computed by
# 1×1 convolutions **from the code at that pixel**. Inside a run, $z_q$ is the same vector everywhere, so the scale
# and shift are the same everywhere too, and every layer is still equivariant. So the prediction is that MoVQ
# repeats inside a run exactly as VQGAN does.
#
# The cell below tests this. Both decoders, fresh from initialisation, decode the same 48 × 48 grid of random
# codes, with one code repeated over the central 36 × 36 cells. The right-hand panels show each cell's distance
# from the centre cell's patch. Look at two numbers per decoder:
# - how many of the run's cells decode **exactly** (max difference < 1e-4) to the centre cell's patch;
# - how deep into the run, counted in cells from its edge, the exact repetition starts. That depth is set by the
#   receptive field, not by training.
#
# If MoVQ's count is close to VQGAN's, SpatialNorm does not vary the output inside a run. Only a decoder that
# knows *where* a cell sits could vary it, and no translation-equivariant network can. If the counts differed
# widely, look for what breaks the equivariance (padding reaches only the image border).

# %%
def repeated_code_demo(model, codes, f):
    """Decode `codes` (1, h, w); return the image (3, h·f, w·f) and each cell's max distance to the centre patch."""
    with torch.no_grad():
        img = model.decode_indices(codes)[0].float()                      # (3, h·f, w·f)
    cells = rearrange(img, "c (h i) (w j) -> h w c i j", i=f, j=f)          # one f×f patch per cell
    h, w = codes.shape[1:]
    dist = (cells - cells[h // 2, w // 2]).abs().amax(dim=(2, 3, 4))        # (h, w)
    return img, dist, cells[h // 2, w // 2]


seed_everything(0)
demo_models = {"vqgan": VQGAN(**cfg).eval(), "movq": MoVQ(**cfg).eval()}
codes = torch.randint(0, cfg["n_embed"], (1, 48, 48))
codes[:, 6:42, 6:42] = 7                                                    # one code over 36 × 36 cells
depth = torch.zeros(48, 48, dtype=torch.long)                               # cells from the run's edge (inside it)
rr = torch.arange(48)
depth[6:42, 6:42] = torch.minimum(torch.minimum(rr[6:42, None] - 6, 41 - rr[6:42, None]),
                                  torch.minimum(rr[None, 6:42] - 6, 41 - rr[None, 6:42]))
in_run = torch.zeros(48, 48, dtype=torch.bool)
in_run[6:42, 6:42] = True                                                  # the run's 36 × 36 cells
demo_out, repeated = {}, {}
for name, model in demo_models.items():
    img, dist, centre = repeated_code_demo(model, codes, F_DOWN)
    exact = (dist < 1e-4) & in_run
    # the smallest depth from which every cell of the run repeats the centre patch exactly
    start = next(d for d in range(19) if exact[in_run & (depth >= d)].all())
    flat = (centre.amax(dim=(1, 2)) - centre.amin(dim=(1, 2))).max().item()
    demo_out[name], repeated[name] = (img, dist), int(exact.sum())
    print(f"{name:>5}: {repeated[name]:4d} of the {int(in_run.sum())} cells of the run decode to the centre "
          f"cell's patch; every cell at least {start} cells from the run's edge does; inside the centre patch "
          f"each colour channel varies by at most {flat:.1e}")
record("repeated_code_demo", repeated)
fig, axes = plt.subplots(2, 3, figsize=(10, 6.6))
for row, (name, (img, dist)) in zip(axes, demo_out.items()):
    row[0].imshow(codes[0], cmap="tab20"); row[0].set_title("codes: one code over the centre", fontsize=9)
    row[1].imshow(((img.permute(1, 2, 0) + 1) / 2).clamp(0, 1)); row[1].set_title(f"{name}, untrained", fontsize=9)
    im = row[2].imshow(torch.log10(dist + 1e-7), cmap="viridis", vmin=-7, vmax=1)
    row[2].set_title(f"{name}: log10 distance to the centre patch", fontsize=9)
    fig.colorbar(im, ax=row[2], shrink=0.8)
for ax in axes.flat:
    ax.set_axis_off()
del demo_models

# %% [markdown]
# ## 1.1 What SpatialNorm is, in the paper and in the code
# **The paper's eq. (4)** (Zheng et al. 2022) normalises a decoder feature map $F^{i-1}$ and then modulates it with
# two learned transformations of the quantized latent:
# $$F^{i} \;=\; \phi_\gamma(z_q)\,\frac{F^{i-1} - \mu(F^{i-1})}{\sigma(F^{i-1})} \;+\; \phi_\beta(z_q),$$
# with $\mu$ and $\sigma$ the mean and standard deviation of the features, and $\phi_\gamma$, $\phi_\beta$ 1×1
# convolutions. The normalisation itself has **no affine** $\gamma, \beta$ of its own: all the scale and shift
# come from $z_q$.
#
# **SBER-MoVQGAN's code** (`SpatialNorm` in ai-forever/MoVQGAN) computes
# $$\text{SpatialNorm}(f, z_q) \;=\; \text{GroupNorm}(f)\odot \text{conv}_y(z_q^{\uparrow}) + \text{conv}_b(z_q^{\uparrow}),
#   \qquad z_q^{\uparrow} = \text{nearest-upsample}(z_q)\ \text{to } f\text{'s } H\times W,$$
# where the GroupNorm (32 groups, eps $10^{-6}$) is built **with** its affine $\gamma, \beta$. So the code applies a
# learned per-channel scale and shift first, then the per-pixel $\text{conv}_y$ and $\text{conv}_b$. Here paper and
# code differ. The extra affine adds no expressive power: a per-channel $\gamma$ times $\text{conv}_y(z_q)$ is still
# a 1×1 convolution of $z_q$, plus a $z_q$-independent term. But it changes the parameters, so you need it to load
# SBER's weights. We follow the code, since the released checkpoints must load into your module by name. The
# module copies SPADE (Park et al. 2019), with the codes as the "layout".
#
# **What it does, and what it cannot.** Nothing here is new information: the code grid is the same. What changes is
# where the decoder reads the codes. VQGAN reads them once, at `conv_in`. MoVQ reads them again at **every norm of
# every scale**, nearest-upsampled so that a change of code is a sharp step exactly at the cell border, at every
# resolution. That can matter in two places:
# - **at code boundaries**, where neighbouring codes differ, so the decoder can shape the transition at every
#   layer (section 4 measures the seams);
# - **in training**: the encoder and codebook get their gradients through these extra paths, so a MoVQ encoder may
#   learn to emit different code maps from a VQGAN encoder (section 4 measures the code maps).
#
# Inside a run it does nothing, as the demo shows. **What breaks runs is more distinct codes**:
# - $G$ indices per position (multichannel quantization, section 2), since a run now needs all $G$ indices equal;
# - a larger $K$. VQGAN f16 improves from rFID 7.94 at $K = 1024$ to 4.98 at $K = 16384$ on ImageNet, as reported
#   for taming-transformers' released models.
#
# The paper credits both ideas together for its ImageNet result: rFID 1.12 for MoVQ (16 × 16 × 4 codes,
# $K = 1024$) against 7.94 for VQGAN (16 × 16, $K = 1024$). Sections 3–6 separate them at our scale.
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
from minimovq.figures import draw_vqgan
with torch.random.fork_rng():   # a fresh model for the figure, without touching the lesson's random stream
    figure_model = MoVQ(**cfg)
draw_vqgan(figure_model, x_test);
del figure_model

# %% [markdown]
# Red marks every point where $z_q$ enters the decoder (measured in one forward pass, B = batch): norm1 and norm2 of
# each ResnetBlock, the attention block's norm and `norm_out`, each given $z_q$ nearest-upsampled to its own
# resolution. In Lesson 3's figure the codes enter once, through `post_quant_conv`; here they also enter at every
# norm of every scale.

# %%
vq_demo, mo_demo = VQGAN(**cfg), MoVQ(**cfg)
n_sn = sum(isinstance(m, movq.SpatialNorm) for m in mo_demo.decoder.modules())
print(f"VQGAN '{CONFIG}': {count_parameters(vq_demo):,} parameters; MoVQ: {count_parameters(mo_demo):,} "
      f"(+{count_parameters(mo_demo) - count_parameters(vq_demo):,} in {n_sn} SpatialNorms)")
lib_norm = mo_demo.decoder.norm_out                                # a SpatialNorm inside the library's MoVQ
mine = SpatialNorm(lib_norm.norm_layer.num_channels, cfg["embed_dim"])
mine.load_state_dict(lib_norm.state_dict())                         # your module takes its weights by name
print("decoder.norm_out keys:", list(mine.state_dict()))
del vq_demo, mo_demo

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
#
# **SBER-MoVQGAN does not use it.** Its released code has no multichannel quantization: one code per position
# ($G = 1$, $K = 16384$, 4-dimensional codes, f = 8). So what the released models share with the model you build
# here is the **SpatialNorm decoder**, not $G > 1$. Multichannel codes are the paper's idea (16 × 16 × 4 codes from
# one codebook of $K = 1024$).
#
# Bits are the fair unit for comparing tokenizers: $G\log_2 K$ bits per position, or $G\log_2 K / f^2$ bits per
# pixel. With $G = 4$, a single-code model matches them with twice as many positions per side ($f/2$, so 4× the
# positions). That is the **equal-bits** arm of section 3.

# %%
K, D = cfg["n_embed"], cfg["embed_dim"]
BITS = torch.log2(torch.tensor(float(K))).item()                   # bits of one index
rows = {f"G={g}, f={F_DOWN}": {"D/G": D // g, "codebook": K * D // g, "bits/pos": g * BITS,
                                "bits/pixel": g * BITS / F_DOWN ** 2, "K^G": f"{K ** g:.3g}"} for g in (1, 2, 4)}
rows[f"G=1, f={F_DOWN // 2}"] = {"D/G": D, "codebook": K * D, "bits/pos": BITS, "bits/pixel": BITS / (F_DOWN // 2) ** 2,
                                 "K^G": f"{K:.3g}"}
print(format_table(rows, digits=2))

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
# ## 3. A factorial ablation at equal budget
# Two ideas make four combinations. A fifth arm separates "more bits" from "bits arranged as $G$ indices":
#
# | arm | decoder | codes per position | positions (32 px) | bits per pixel |
# |---|---|---|---|---|
# | `vqgan` | GroupNorm | 1 | $(32/f)^2$ | $\log_2 K / f^2$ |
# | `vqgan+multichannel` | GroupNorm | $G$ | $(32/f)^2$ | $G \log_2 K / f^2$ |
# | `movq` | SpatialNorm | 1 | $(32/f)^2$ | $\log_2 K / f^2$ |
# | `movq+multichannel` | SpatialNorm | $G$ | $(32/f)^2$ | $G \log_2 K / f^2$ |
# | `equal-bits` | SpatialNorm | 1 | $(32/(f/2))^2$ | $\log_2 K / (f/2)^2$ |
#
# The equal-bits arm drops one downsampling level of the encoder and decoder (f/2). With $G = 4$ it holds as many
# bits per pixel as the multichannel arms, from the same codebook of $K$ codes. The only other way to match
# $4\log_2 K$ bits with one code per position would be a codebook of $K^4$ entries, far too large to store.
# Its decoder is MoVQ's, so comparing it with `movq+multichannel` asks one question: at equal bits, are $G$
# indices at one position better or worse than one index at each of 4 positions?
#
# Every arm trains with SBER-MoVQGAN's loss, `VQGANLoss.sber_movqgan()`: L2 + 0.1·LPIPS + 0.1·GAN (hinge, a
# 2-layer PatchGAN, fixed weight) + the codebook loss. SBER switches the GAN on at step 0; at our short budgets we
# let the reconstructions form first (`GAN_START`), and on the `cpu` budget we leave the GAN out altogether. The
# artifact is a property of the decoder, and a GAN that joins a few hundred steps in acts on half-formed
# reconstructions: one more source of variance between arms (try `GAN_START = STEPS // 2` and watch the L2 curve). To fit five arms into the `cpu`
# budget, that profile also drops the LPIPS term from the training loss (`PERCEPTUAL = 0`: L2 + codebook loss).
# LPIPS is still measured on the test split. Every arm uses Adam with SBER's betas
# (0.5, 0.9), gradient clipping, the same seed, the same data order and the same number of steps. "Equal budget"
# means equal steps and batches, not equal compute: the `seconds` column of section 6 shows what each arm cost.

# %% [markdown]
# **Check your understanding, question 1 — predict, then run.** The next cell trains the five arms. Before
# running it: which arms will have the fewest neighbouring positions sharing a code (section 4.1), and will the PSNR
# ranking follow the number of bits per pixel or the decoder?

# %%
lpips = LPIPS().to(P.device)   # ImageNet VGG16 trunk (downloaded once); offline: warns and uses a random trunk
# equal bits: one downsampling level fewer (f/2, 4× the positions), one code per position; with GROUPS = 4 it holds
# the multichannel arms' bits per pixel
ch_mult = cfg["ddconfig"]["ch_mult"]
cfg_equal_bits = {**cfg, "ddconfig": {**cfg["ddconfig"], "ch_mult": ch_mult[:1] + ch_mult[2:]}}


def vq(groups=1):
    """taming's / SBER's quantizer with Lesson 2's dead-code restarts (RESTARTS = 0: exactly theirs)."""
    return VectorQuantizer(cfg["n_embed"], cfg["embed_dim"], groups=groups, dead_code_threshold=RESTARTS)


ARMS = {"vqgan": lambda: VQGAN(**cfg, quantizer=vq()),
        "vqgan+multichannel": lambda: VQGAN(**cfg, groups=GROUPS, quantizer=vq(GROUPS)),
        "movq": lambda: MoVQ(**cfg, quantizer=vq()),
        "movq+multichannel": lambda: MoVQ(**cfg, groups=GROUPS, quantizer=vq(GROUPS)),
        "equal-bits": lambda: MoVQ(**cfg_equal_bits, quantizer=vq())}


def train_arm(name, steps):
    seed_everything(0)
    model = ARMS[name]().to(P.device)
    loss_fn = VQGANLoss.sber_movqgan(disc_start=GAN_START, perceptual=lpips,
                                     perceptual_weight=PERCEPTUAL).to(P.device)
    opt_g = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(loss_fn.discriminator.parameters(), lr=LR, betas=(0.5, 0.9))
    train_loader.generator.manual_seed(1)            # the same data order for every arm (the loader's own RNG)
    tag = name.strip("+ ").replace(" ", "_")
    ckpt = run_checkpoint(f"04_movq-{tag}-{DATASET}-{CONFIG}-{IMAGE_SIZE}px-s{steps}", config={"lr": LR, "batch": BATCH, "n": N_TRAIN, "gan_start": GAN_START, "groups": GROUPS, "restarts": RESTARTS})   # None in quick
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
# - *smooth regions*: pixels with no step larger than 0.15 (on the [-1, 1] scale) within ±f pixels. These are the
#   gradients and the insides of flat shapes, not edges or textures;
# - the **phase map**: the mean error $|\hat x - x|$ at each of the $f\times f$ positions *inside* a latent cell,
#   averaged over every smooth cell of the test split. Error that ignores the grid gives a flat map. Repeated tiles
#   or seams give a pattern, typically large at the cell borders. `grid score` = its standard deviation / mean;
# - **blockiness**: the mean step of $\hat x$ *across* cell borders over the mean step *inside* cells (smooth
#   regions), relative to the same ratio for $x$. 1 = no seams where the codes change; > 1 = a staircase.
#
# Each arm is measured on its own grid: f for four arms, f/2 for `equal-bits`. `smooth err` (the mean error in
# smooth regions) uses one mask for every arm, the smooth regions at the coarser grid f, so it compares like with
# like.

# %%
@torch.no_grad()
def reconstruct_all(model):
    return torch.cat([model(b)[0].float().clamp(-1, 1) for b in x_all.split(64)])

smooth = smooth_regions(x_all, F_DOWN)                               # (N, 1, H, W): one mask for every arm
recs_all, results, usages = {}, {}, {}
for name, model in models.items():
    f = model.downsample_factor
    scores = evaluate_reconstruction(lambda x: model(x).x_hat, test_loader, device=P.device, lpips=lpips)
    recs_all[name] = reconstruct_all(model)
    art = grid_artifact(recs_all[name], x_all, f)
    usages[name] = codebook_usage(model, test_loader, device=P.device)
    err_smooth = ((recs_all[name] - x_all).abs().mean(1, keepdim=True) * smooth).sum() / smooth.sum()
    results[name] = {"psnr": scores["psnr"], "ssim": scores["ssim"], "lpips": scores["lpips"],
                     "smooth err": err_smooth.item(), "grid score": art["score"], "blockiness": art["blockiness"],
                     "bits/pixel": model.quantize.groups * BITS / f ** 2,
                     "usage %": 100 * usages[name].usage(), "perplexity": usages[name].perplexity(),
                     "seconds": histories[name].seconds, "params": count_parameters(model), "_phase": art["phase"]}
print(f"{DATASET} {IMAGE_SIZE}px, config '{CONFIG}' (K={K}), {STEPS} steps × batch {BATCH} per arm; "
      f"LPIPS trunk: {'ImageNet' if lpips.pretrained_trunk else 'random'}")
print(format_table({k: {m: v for m, v in r.items() if m in ("bits/pixel", "psnr", "ssim", "lpips", "smooth err",
                                                              "grid score", "blockiness")} for k, r in results.items()}))

# %% [markdown]
# **Where the errors are.** For the smoothest test images: the reconstructions, the error maps with each arm's
# latent grid drawn over them (one cell = one code position), and the phase maps of the whole test split on a
# shared scale.

# %%
def draw_grid(ax, size, f):
    for t in range(f, size, f):
        ax.axhline(t - 0.5, c="w", lw=0.4, alpha=0.6); ax.axvline(t - 0.5, c="w", lw=0.4, alpha=0.6)

with torch.no_grad():
    recons = {name: m(x_test)[0].float().clamp(-1, 1) for name, m in models.items()}
show = 3
fig, axes = plt.subplots(show, 1 + 2 * len(models), figsize=(1.6 * (1 + 2 * len(models)), 1.7 * show))
vmax = max((r[:show] - x_test[:show]).abs().mean(1).max().item() for r in recons.values())
for i in range(show):
    axes[i, 0].imshow(((x_test[i].permute(1, 2, 0) + 1) / 2).clamp(0, 1).cpu())
    for j, (name, r) in enumerate(recons.items()):
        axes[i, 1 + j].imshow(((r[i].permute(1, 2, 0) + 1) / 2).cpu())
        err = (r[i] - x_test[i]).abs().mean(0).cpu()
        axes[i, 1 + len(models) + j].imshow(err, cmap="magma", vmin=0, vmax=vmax)
        draw_grid(axes[i, 1 + len(models) + j], IMAGE_SIZE, models[name].downsample_factor)
        if i == 0:
            axes[0, 1 + j].set_title(name, fontsize=8)
            axes[0, 1 + len(models) + j].set_title(f"|error|: {name}", fontsize=8)
axes[0, 0].set_title("input", fontsize=8)
for ax in axes.flat:
    ax.set_axis_off()
fig.tight_layout()

fig, axes = plt.subplots(1, len(models), figsize=(2.6 * len(models), 2.8))
phases = [r["_phase"] for r in results.values()]
lo, hi = min(p.min().item() for p in phases), max(p.max().item() for p in phases)
for ax, (name, r) in zip(axes, results.items()):
    im = ax.imshow(r["_phase"], cmap="magma", vmin=lo, vmax=hi)
    ax.set_title(f"{name}\ngrid score {r['grid score']:.3f}", fontsize=8)
    ax.set_xticks(range(r["_phase"].shape[1])); ax.set_yticks(range(r["_phase"].shape[0]))
fig.colorbar(im, ax=axes, shrink=0.8, label="mean |error| in smooth regions")
fig.suptitle("error by position inside a latent cell (phase map)", fontsize=10);

# %% [markdown]
# ## 4.1 Code maps: how long are the runs?
# Section 1's mechanism needs **runs of one code**. So look at what each trained encoder actually emits on the test
# split. For the multichannel arms, "the same code" means all $G$ indices equal:
# - `same %`: the share of pairs of neighbouring positions (left–right and up–down) with the same code; `smooth %`
#   and `elsewhere %` split it into pairs of wholly smooth cells and the rest;
# - `run px`: the mean length of a horizontal run of one code, in **pixels** (positions × f), so that the f/2 grid
#   of `equal-bits` compares fairly;
# - `distinct`: the mean number of different codes (or $G$-tuples) in one image, out of `positions`.
#
# How to read it:
# - **Multichannel against single** (same decoder): if `same %` and `run px` drop, the $G$ indices break the runs
#   that section 1 showed no decoder can vary inside. If they do not drop, the groups are moving together: the
#   encoder uses the extra indices for something else than splitting runs.
# - **SpatialNorm against GroupNorm** (same $G$): the quantizer is the same, so any difference is what the encoder
#   *learned* to emit, given a decoder that reads $z_q$ at every layer. More shared neighbours (longer runs, fewer
#   distinct codes) means the MoVQ encoder leaves more of the local detail to the decoder. Fewer means it spends
#   codes on that detail. Section 6 prints which way your run goes, for both $G$. Either way SpatialNorm does not
#   break runs of identical codes (section 1); what it can change is which codes the encoder emits.

# %%
@torch.no_grad()
def code_map_stats(model):
    """Statistics of the code maps of the test split: shared neighbours, run lengths, distinct codes per image."""
    f = model.downsample_factor
    idx = torch.cat([model.encode(b).indices for b in x_all.split(64)])
    idx = idx.reshape(*idx.shape[:3], -1)                                        # (N, h, w, G)
    same_h = (idx[:, :, 1:] == idx[:, :, :-1]).all(-1)                           # (N, h, w-1)
    same_v = (idx[:, 1:] == idx[:, :-1]).all(-1)                                 # (N, h-1, w)
    cell_smooth = F.avg_pool2d(smooth.float(), f)[:, 0] > 0.99                   # (N, h, w): wholly smooth cells
    sm_h, sm_v = cell_smooth[:, :, 1:] & cell_smooth[:, :, :-1], cell_smooth[:, 1:] & cell_smooth[:, :-1]

    def rate(same, m):
        return 100 * (same & m).sum().item() / max(m.sum().item(), 1)

    N, h, w, G = idx.shape
    n_runs = (~same_h).sum().item() + N * h                                      # code changes + one run per row
    combos = torch.unique(rearrange(idx, "n h w g -> (n h w) g"), dim=0, return_inverse=True)[1]
    distinct = sum(len(torch.unique(c)) for c in combos.view(N, h * w)) / N
    return {"same %": (rate(same_h, torch.ones_like(same_h)) + rate(same_v, torch.ones_like(same_v))) / 2,
            "smooth %": (rate(same_h, sm_h) + rate(same_v, sm_v)) / 2,
            "elsewhere %": (rate(same_h, ~sm_h) + rate(same_v, ~sm_v)) / 2,
            "run px": N * h * w / n_runs * f, "distinct": distinct, "positions": h * w,
            "_map": combos.view(N, h, w)}

code_maps = {name: code_map_stats(m) for name, m in models.items()}
code_table = {name: {k: v for k, v in s.items() if not k.startswith("_")} for name, s in code_maps.items()}
print(format_table(code_table, digits=1))
record("code_maps", code_table)
i0 = smooth_share.argsort(descending=True)[0].item()                   # the test image with the most smooth area
fig, axes = plt.subplots(1, 1 + len(models), figsize=(2.2 * (1 + len(models)), 2.4))
axes[0].imshow(((x_all[i0].permute(1, 2, 0) + 1) / 2).clamp(0, 1).cpu()); axes[0].set_title("input", fontsize=8)
for ax, (name, s) in zip(axes[1:], code_maps.items()):
    ax.imshow(s["_map"][i0].cpu() % 20, cmap="tab20", interpolation="nearest")
    ax.set_title(f"{name}\n{len(torch.unique(s['_map'][i0]))} distinct codes", fontsize=8)
for ax in axes:
    ax.set_axis_off()
fig.suptitle("the code map of one smooth test image (colour = code; one square = one position)", fontsize=9);

# %% [markdown]
# ## 5. Codebook usage
# With the same $K$, a multichannel arm has $K^G$ combinations per position. Does it use its codebook better than
# the single-code arms? Usage and perplexity are measured over the whole test split
# (`minimovq.quantize.codebook_usage`; a multichannel arm counts the indices of all its groups). With restarts on
# (`RESTARTS` > 0) a dead code does not stay dead, so expect high usage everywhere and read the *perplexity*: how
# evenly each arm spreads its indices. With `RESTARTS = 0`, usage itself becomes the question.

# %%
print(format_table({name: {"usage %": r["usage %"], "perplexity": r["perplexity"], "bits/pixel": r["bits/pixel"],
                           "psnr": r["psnr"]} for name, r in results.items()}, digits=2))
fig, axes = plt.subplots(1, len(models), figsize=(3.2 * len(models), 2.4), sharey=True)
for ax, (name, u) in zip(axes, usages.items()):
    counts = u.counts.sort(descending=True).values.cpu()
    ax.bar(range(K), counts / counts.sum(), width=1.0)
    ax.set_title(f"{name}: {100 * u.usage():.0f}% used", fontsize=8); ax.set_xlabel("codes, by frequency")
axes[0].set_ylabel("share of indices")
viz.compare_grid({"input": x_test, **recons}, n=8)
viz.zoom_crops({"input": x_test, **recons}, box=(0, 0, IMAGE_SIZE // 2), index=0);

# %% [markdown]
# ## 6. The ablation
# One table at equal budget. The `seconds` column is each arm's training time: SpatialNorm adds two 1×1
# convolutions per normalisation, at full resolution, and `equal-bits` runs its decoder on 4× the positions.

# %%
ablation = {name: {k: v for k, v in r.items() if not k.startswith("_")} for name, r in results.items()}
print(format_table(ablation))
record("ablation", ablation);

# %% [markdown]
# **The factorial, read as differences.** Each row below changes one thing and keeps the rest. A positive Δpsnr or
# Δssim, or a negative Δlpips, means the change helped. `Δsame %` is the change in shared neighbours (section 4.1).
# - rows 1–2, **SpatialNorm**, once without and once with multichannel codes;
# - rows 3–4, **multichannel**, once per decoder;
# - row 5, **how the bits are spent** at equal bits per pixel: $G$ indices at one position (`movq+multichannel`)
#   against one index at each of 4× the positions (`equal-bits`).
#
# The cell also prints whether each expected ordering holds in *your* run.

# %%
CONTRASTS = {"SpatialNorm, G=1": ("movq", "vqgan"),
             f"SpatialNorm, G={GROUPS}": ("movq+multichannel", "vqgan+multichannel"),
             "multichannel, GroupNorm": ("vqgan+multichannel", "vqgan"),
             "multichannel, SpatialNorm": ("movq+multichannel", "movq"),
             "G indices vs 4× positions": ("movq+multichannel", "equal-bits")}
effects = {label: {"Δpsnr": results[a]["psnr"] - results[b]["psnr"], "Δssim": results[a]["ssim"] - results[b]["ssim"],
                   "Δlpips": results[a]["lpips"] - results[b]["lpips"],
                   "Δsmooth err": results[a]["smooth err"] - results[b]["smooth err"],
                   "Δsame %": code_table[a]["same %"] - code_table[b]["same %"]}
           for label, (a, b) in CONTRASTS.items()}
print(format_table(effects))
record("factorial_effects", effects)


def better(a, b):
    """Does arm a beat arm b on all three of PSNR, SSIM and LPIPS?"""
    ra, rb = results[a], results[b]
    return ra["psnr"] > rb["psnr"] and ra["ssim"] > rb["ssim"] and ra["lpips"] < rb["lpips"]


for a, b in (("vqgan+multichannel", "vqgan"), ("movq+multichannel", "movq"),
             ("movq", "vqgan"), ("movq+multichannel", "vqgan+multichannel"),
             ("equal-bits", "movq+multichannel"), ("movq+multichannel", "equal-bits")):
    print(f"{a} beats {b} on PSNR, SSIM and LPIPS: {'yes' if better(a, b) else 'no'}")
for a, b in (("vqgan+multichannel", "vqgan"), ("movq+multichannel", "movq")):
    print(f"{a} has fewer shared neighbours than {b}: "
          f"{'yes' if code_table[a]['same %'] < code_table[b]['same %'] else 'no'}")
for a, b in (("movq", "vqgan"), ("movq+multichannel", "vqgan+multichannel")):
    print(f"{a}'s encoder emits more shared neighbours than {b}'s: "
          f"{'yes' if code_table[a]['same %'] > code_table[b]['same %'] else 'no'}")
print(f"equal-bits has a higher SSIM than movq+multichannel: "
      f"{'yes' if results['equal-bits']['ssim'] > results['movq+multichannel']['ssim'] else 'no'}")

# %% [markdown]
# **Reading it honestly.** These are tiny models trained for minutes, not the released SBER-MoVQGAN 67M. The quick
# profile's numbers are a smoke test, not a result. In the `cpu` and `gpu` profiles, look for these:
# - **Multichannel** (rows 3–4): with $K = 128$ codes, one code per position must stand for a position's colour
#   *and* its local gradient, while $G$ indices can split them, and they carry 4× the bits. Look for a gain on
#   PSNR, SSIM and LPIPS with both decoders, and for fewer shared neighbours; a row whose metrics disagree in sign
#   is not a clear gain.
# - **SpatialNorm** (rows 1–2): its effect with one code per position (row 1) against its effect with $G$ indices
#   (row 2). If the two rows differ a lot, the two ideas **interact**. One reading to test, consistent with section
#   4.1 but not proven by it: SpatialNorm acts where codes change, and the multichannel arms have far more code
#   boundaries to act on. Whatever your rows show, one run is one sample, not a result (see "Check it over seeds"
#   below). Read `smooth err`, `blockiness`, the phase maps and the crops as well as PSNR. A flat phase map with a
#   large mean error is a model that is not there yet, not a model without artifacts.
# - **Bits** (row 5): a positive Δ means $G$ indices per position use the same bits better than 4× the positions;
#   a negative one means the multichannel gain is the extra bits, not their arrangement. If the three metrics
#   disagree in sign, this budget does not separate the two ways of spending bits, and part of rows 3–4's gain may
#   simply be more bits. Read it with `seconds`, too: `equal-bits` pays for its finer grid in decoder compute,
#   and a token prior (Lesson 5) would pay for it in sequence length.
#
# **Check it over seeds.** One run is one sample. Re-run sections 3–6 with another seed: change
# `seed_everything(0)` and `train_loader.generator.manual_seed(1)` in `train_arm`, and set `MINIMOVQ_CKPT_DIR` to a
# fresh folder so that no checkpoint is resumed. An ordering that flips between seeds is not a result at this
# budget.
#
# **At scale, from the papers:** the MoVQ paper reports rFID (lower is better) on ImageNet falling from 7.94 for
# VQGAN (16 × 16 codes, $K = 1024$) to 1.12 for MoVQ (SpatialNorm **and** 16 × 16 × 4 multichannel codes,
# $K = 1024$), with PSNR 22.42. SBER-MoVQGAN 67M (f = 8, 32 × 32 codes, $K = 16384$, **one code per position**)
# reports PSNR 26.45. Neither number isolates SpatialNorm at equal bits: that is what the table above tries to do,
# at a much smaller scale.

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
        ours_model = models["movq+multichannel"]
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
# Lesson 5 trains a MaskGIT prior on the token grids of the paper's full model, `movq+multichannel`. It is saved
# to `lesson4_movq.pt` in the checkpoint folder (Google Drive on Colab when mounted), with its config, so
# `MoVQ.from_checkpoint(path)` rebuilds it.

# %%
tokenizer = models["movq+multichannel"]
path = tokenizer.save(checkpoint_dir() / "lesson4_movq.pt", dataset=DATASET, image_size=IMAGE_SIZE,
                      profile=P.name, steps=STEPS)
print(f"saved {path} ({count_parameters(tokenizer):,} parameters, {tokenizer.quantize.groups} codes per position)")
print(f"lesson time: {time.perf_counter() - t_lesson:.0f} s in the '{P.name}' profile")

# %% [markdown]
# ## Check your understanding
# 1. *(Predict, then run — before the five arms train in section 3.)* Which arms have the fewest shared
#    neighbours, and does PSNR follow the bits per pixel or the decoder?
# 2. A plain VQGAN decoder paints the same patch wherever neighbouring positions share a code. Which property of
#    a convolutional decoder causes this, and does SpatialNorm break it?
# 3. With K = 512 codes and G = 4 groups, how many different codes can a position take? And how many codebook
#    entries are stored?
# 4. `group_quantize` must split the channels into *contiguous* groups: `'b (g d) h w'`, not `'b (d g) h w'`.
#    Both give every channel to exactly one group. Why does the choice matter?

# %% [markdown] solution-only
# **Answers.**
#
# 1. The multichannel arms: G codes per position make identical neighbours rare (compare the `same %` column of
#    section 4.1). PSNR need not follow the bits: the multichannel arms carry 4× the bits per pixel of the
#    single-code ones, yet a better decoder with fewer bits can still win (compare `movq` with
#    `vqgan+multichannel` in your table). The `equal-bits` arm separates bits from their arrangement, and the
#    factorial table of section 6 asks what SpatialNorm adds at a fixed number of bits; at a small budget its sign
#    may change between seeds.
# 2. Translation equivariance: a convolution applies the same weights everywhere, so identical inputs give
#    identical outputs. SpatialNorm does not break it: it re-injects $z_q$ at every normalisation as a per-pixel
#    scale and shift, a function of the code grid alone, so inside a run of one code the modulation is constant and
#    the patch repeats (section 1). It can act where codes change and shape what the encoder learns to emit; what
#    breaks runs is more distinct codes (G > 1 or a larger K).
# 3. $K^G = 512^4 \approx 6.9\cdot10^{10}$ combinations per position, from 512 stored entries of D/G channels each
#    (one shared codebook).
# 4. The official weights and the rest of the model (the decoder's first conv, the Lesson 5 prior's G heads)
#    expect group g to be the channels $[g\,D/G, (g+1)\,D/G)$. Interleaving assigns different channels to each
#    group. It would still train, but pretrained weights, checkpoints and the reference stop agreeing with it.

# %% [markdown]
# ## Takeaways
# - Both decoders are translation-equivariant functions of the code grid. Inside a run of one code **neither**
#   can vary its output: VQGAN and MoVQ both paint the same flat patch again (section 1). Inside a run $z_q$ is
#   constant, so SpatialNorm's modulation is constant too.
# - **SpatialNorm** re-injects the quantized latent at every norm of every scale, as a per-pixel scale and shift.
#   The paper's eq. (4) has no affine in the norm; SBER's code keeps GroupNorm's affine and then applies
#   $\text{conv}_y(z_q^\uparrow)$ and $\text{conv}_b(z_q^\uparrow)$. It adds no information. It can act where codes
#   change, and on what a trained encoder learns to emit. Section 4.1's code-map table shows what it did here.
# - **What breaks runs is more distinct codes**: $G$ indices per position from one shared codebook ($K^G$
#   combinations for the price of $K$ codes), or a larger $K$. Compare a multichannel model with a single-code model
#   at **equal bits** (the `equal-bits` arm), not only at equal $K$, or more bits will pass for a better design.
# - Measure the artifact you care about (here: error that follows the latent grid in smooth regions) and the code
#   maps, not only PSNR. Check an ordering over seeds before you trust it.
# - The released SBER-MoVQGAN weights load into this code unchanged. They share your model's **SpatialNorm decoder**
#   (and encoder and quantizer), with one code per position: $G = 1$, no multichannel quantization.
#
# **Next — Lesson 5 (MaskGIT).** The tokens are good; now learn a prior over token grids and *generate* images.

# %% [markdown]
# ## Where you stand
# Each exercise of this lesson: passed, failed, not implemented, or not checked (its check cell has not run), and
# which cells ran on the reference solution instead of yours. Fix an exercise, re-run its check and the cells after
# it, then this cell.

# %%
from minimovq.checks import scoreboard
scoreboard(4, globals());
