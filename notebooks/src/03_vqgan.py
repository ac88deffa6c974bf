# %% [markdown]
# # Lesson 3 — VQGAN: perceptual and adversarial losses{{VARIANT}}
# {{COLAB_BADGE}}
#
# **Where we are.** Lesson 2's VQ-VAE turns an image into a grid of tokens, but its reconstructions are soft: the
# pixel loss it trains on *rewards* blur. VQGAN (Esser, Rombach & Ommer 2021, "Taming Transformers for
# High-Resolution Image Synthesis") keeps the quantized autoencoder and changes what "a good reconstruction" means:
# - a **perceptual loss** (LPIPS) compares images through the features of a convolutional network,
# - a **patch discriminator** (PatchGAN) judges whether every local patch looks real,
# - an **adaptive weight** λ balances the two at the decoder's last layer.
#
# You will
# 1. see *why* a pixel loss blurs (it is the optimum, not a bug),
# 2. write one layer of LPIPS and look at what each VGG layer sees,
# 3. compute the receptive field of a PatchGAN logit, and see it,
# 4. write the hinge loss and derive the adaptive weight,
# 5. run an equal-budget ablation — L1, then L1 + LPIPS, then the same L1 + LPIPS model fine-tuned with a GAN — and
#    read it per image (PSNR, SSIM, LPIPS), as a set (sharpness, Fréchet distances of patches and of VGG
#    features) and by eye,
# 6. meet the failure modes, one safeguard at a time: a discriminator switched on too early, a fixed adversarial
#    weight, and NaNs under fp16,
# 7. see the continuous counterpoint: the latent-diffusion autoencoder, sharp without a codebook.
#
# Five exercises, each followed by a check that says what differs and, until it passes, lends you the reference
# so the rest of the notebook runs.

# %%
{{SETUP}}

# %% [markdown]
# ## 0. Configuration
# Sizes come from the profile: `quick` (a CI smoke test), `cpu` (a laptop) or `gpu` (a Colab T4); the README lists
# each lesson's measured time per profile. LPIPS costs more than the tiny autoencoder itself: a VGG16 pass per image.
# The model is `minimovq.vqgan.VQGAN`, taming's architecture at lesson size (`CONFIG`, a name in
# `minimovq.vqgan.CONFIGS`; f = 4, so a 32 px image becomes 8 × 8 tokens). `DATASET = "photos"` (built in,
# offline) has the textures and edges that a pixel loss smears; switch to `"cifar10"` or `"flowers102"`
# (downloaded once into `data/cache/`) for a real dataset.
#
# **One addition to taming's recipe: dead-code restarts.** taming's VQGAN quantizes with Lesson 2's loss-based VQ
# and nothing against dead codes. A small codebook trained for a few hundred steps may then collapse onto a few
# codes (Lesson 2, section 7 measured it), and a tokenizer with a handful of codes cannot show what a better loss
# buys. So `make_vqgan` adds Lesson 2's fix: a code unused for `RESTARTS` batches is re-seeded from the current
# batch. The ablation prints `usage %` and `perplexity` for every arm; set `RESTARTS = 0` for taming's quantizer
# exactly, and compare those columns.

# %%
import os
import time
import matplotlib.pyplot as plt
import torch.nn as nn
import torch.nn.functional as F
from minimovq import data, viz
from minimovq.checkpoint import run_checkpoint
from minimovq.discriminator import NLayerDiscriminator
from minimovq.losses import VQGANLoss
from minimovq.lpips import LPIPS
from minimovq.metrics import (evaluate_reconstruction, format_table, frechet_distance, high_frequency_energy, psnr,
                              radial_power_spectrum)
from minimovq.reference import record   # keeps this lesson's headline tables under `make reference`
from minimovq.quantize import VectorQuantizer
from minimovq.train import Trainer, count_parameters
from minimovq.usage import codebook_usage
from minimovq.vqgan import CONFIGS, VQGAN

DATASET = "photos"          # "photos" | "shapes" (built in, offline) | "cifar10" | "flowers102" | "folder:<path>"
IMAGE_SIZE = P.pick(quick=32, cpu=32, gpu=64)
CONFIG = P.pick(quick="tiny", cpu="tiny", gpu="small")   # 0.8M / 4.1M parameters
N_TRAIN = P.pick(quick=256, cpu=10000, gpu=20000)
N_TEST = P.pick(quick=32, cpu=500, gpu=1000)
BATCH = P.pick(quick=8, cpu=16, gpu=32)
STEPS = P.pick(quick=6, cpu=600, gpu=2500)        # per arm of the ablation: an equal budget
GAN_START = 2 * STEPS // 3                        # the L1+LPIPS model the GAN fine-tunes has trained this long
GAN_WARMUP = (STEPS - GAN_START) // 10            # ... and the GAN's weight on the generator ramps up over this
DISC_LAYERS = 2                                   # 34 px receptive field: a patch of a 32-64 px image
DISC_WEIGHT = 0.8                                 # taming's ImageNet value (try 0.3: section 6)
RESTARTS = P.pick(quick=3, cpu=50, gpu=100)       # dead-code restarts (Lesson 2, section 7); 0 = taming's quantizer
LR = P.pick(quick=4e-4, cpu=4e-4, gpu=2e-4)
t_lesson = time.perf_counter()

train_set = data.load(DATASET, split="train", image_size=IMAGE_SIZE, n=N_TRAIN)
test_set = data.load(DATASET, split="test", image_size=IMAGE_SIZE, n=N_TEST)
train_loader = data.make_loader(train_set, batch_size=BATCH, shuffle=True)
test_loader = data.make_loader(test_set, batch_size=64, shuffle=False)
x_test = torch.stack([test_set[i] for i in range(16)]).to(P.device)
hf = high_frequency_energy(x_test)  # (16,): the image minus its 3×3 box blur, squared
busiest = hf.argmax().item()          # the most textured test image: we zoom into it below
print(f"{DATASET}: {len(train_set)} train / {len(test_set)} test images of shape {tuple(train_set[0].shape)}")
viz.show_grid(x_test, nrow=8, title=f"{DATASET}: test images");

# %%
from minimovq.figures import draw_vqgan
with torch.random.fork_rng():   # a fresh model for the figure, without touching the lesson's random stream
    figure_model = VQGAN.from_config(CONFIG)
draw_vqgan(figure_model, x_test);
del figure_model

# %% [markdown]
# The `CONFIG` model, with every shape measured in one forward pass (B = batch): ResnetBlocks (GroupNorm, swish,
# 3×3 conv, twice, plus a skip) and Downsamples shrink the image by the factor $f$, `quant_conv` maps it to the code
# width $D$, and the decoder mirrors the encoder from `post_quant_conv`, with self-attention in the middle block
# (`mid.attn_1`). Note that the codes reach the decoder in one place only, through `post_quant_conv`: Lesson 4
# changes exactly that.

# %% [markdown]
# ## 1. Why a pixel loss blurs
# Suppose the decoder cannot know *exactly* where an edge is: given the tokens, the edge could sit at several
# positions, each equally likely. One prediction $\hat x$ must serve them all, and the loss decides which one is best:
# $$\arg\min_{\hat x}\ \mathbb E_{x}\,\|x - \hat x\|_2^2 = \mathbb E[x] \quad\text{(the mean)},\qquad
#   \arg\min_{\hat x}\ \mathbb E_{x}\,\|x - \hat x\|_1 = \operatorname{median}(x) \quad\text{(per pixel)}.$$
# The mean of several sharp edges is a ramp — a blur. The median of an odd number of them is one of the edges
# (taming's code trains with L1, not L2). Neither loss can ask for "any one of the sharp answers".

# %%
pos = torch.arange(48)
edges = torch.stack([(pos >= p).float() for p in (18, 24, 30)])     # three equally likely edge positions
fig, ax = plt.subplots(figsize=(7, 2.8))
for e, p in zip(edges, (18, 24, 30)):
    ax.step(pos, e, where="post", c="0.7", lw=1)
ax.plot(pos, edges.mean(0), c="C0", lw=2, drawstyle="steps-post", label="L2 optimum: the mean (a ramp)")
ax.plot(pos, edges.median(0).values, c="C3", lw=2, ls="--", drawstyle="steps-post", label="L1 optimum: the median")
ax.set_xlabel("pixel"); ax.set_title("three possible edges (grey) and the best single guess"); ax.legend(fontsize=8);

# %% [markdown]
# The same on images: nine equally likely versions of each test image, shifted by at most one pixel. We score three
# guesses by their *expected* error over the nine: the mean image, the per-pixel median, and one sharp version.

# %%
shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
x_few = x_test[[busiest, *range(7)]]                                             # the textured image first
versions = torch.stack([torch.roll(x_few, s, dims=(2, 3)) for s in shifts])     # (9, B, 3, H, W)
guesses = {"mean (L2 optimum)": versions.mean(0), "median (L1 optimum)": versions.median(0).values,
           "one sharp version": x_few}
lpips = LPIPS().to(P.device)   # downloads the ImageNet VGG16 trunk once; offline: warns, uses a random trunk
with torch.no_grad():
    table = {name: {"E[MSE]": torch.stack([F.mse_loss(g, v) for v in versions]).mean().item(),
                    "E[L1]": torch.stack([F.l1_loss(g, v) for v in versions]).mean().item(),
                    "E[LPIPS]": torch.stack([lpips(g, v).mean() for v in versions]).mean().item()}
             for name, g in guesses.items()}
print(format_table(table, digits=4))
viz.zoom_crops(guesses, box=(0, 0, IMAGE_SIZE // 2), index=0);

# %% [markdown]
# The mean wins on MSE *by construction*, and it is the blurriest picture; the median wins on L1. The sharp version
# loses on both, yet it is a perfectly plausible image. Look at the LPIPS column as well: a feature distance is
# still a distance, and an average of plausible images can stay close to all of them in feature space too (how
# close depends on the trunk: compare the random one used offline with the ImageNet one). What truly rejects the
# average is a judge of **realism** — the average of several sharp images is not itself a sharp image — and that
# is the discriminator of sections 3–4. LPIPS does a different job (section 2): it makes the reconstruction agree
# with the input on edges and textures rather than on raw pixel values.

# %% [markdown]
# ## 2. The perceptual loss: LPIPS
# LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric") runs both
# images through VGG16 and compares the activations at five depths $k$ (relu1_2 … relu5_3), after scaling the
# inputs with fixed `shift` and `scale` constants:
# $$\text{LPIPS}(x_0, x_1) = \sum_{k=1}^{5} \frac{1}{H_k W_k}\sum_{h,w}\ \sum_{c} w_{k,c}\,
#   \big(\hat f^{\,0}_{k,chw} - \hat f^{\,1}_{k,chw}\big)^2, \qquad
#   \hat f_{k,\cdot hw} = \frac{f_{k,\cdot hw}}{\|f_{k,\cdot hw}\|_2 + 10^{-10}}.$$
# Each feature vector is unit-normalised over its channels (so a layer's overall scale does not matter), the squared
# difference is weighted per channel by learned $w_{k,c} \ge 0$ (fitted to human judgements of image similarity),
# averaged over space and summed over the layers. Early layers see edges and fine texture, late layers see parts and
# objects.
#
# `minimovq.lpips.LPIPS` has the state-dict keys of taming and of the `lpips` package. The $w_{k,c}$ ship inside
# the `lpips` package; the VGG trunk comes from torchvision (ImageNet weights, downloaded once). **Without a
# network** it falls back to a seeded *random* trunk and says so. That is a weaker loss — random convolutions are
# still multi-scale edge and texture detectors, but the $w_{k,c}$ were fitted to ImageNet features — and
# SBER-MoVQGAN itself trained with exactly such a random trunk (its VGG is built with `pretrained=False`).

# %%
print("pretrained VGG16 trunk:", lpips.pretrained_trunk)

# %% [markdown]
# **Exercise 3.1.** Implement `lpips_layer_distance(f0, f1, w)`: `f0`, `f1` are one layer's features (B, C, H, W)
# of the two images, `w` the (C,) channel weights. Unit-normalise over channels (add 1e-10 to the norm), take the
# squared difference, sum over channels weighted by `w`, average over space; return (B,).

# %%
def lpips_layer_distance(f0, f1, w):
    """f0, f1: (B, C, H, W); w: (C,) >= 0. Returns (B,): mean_hw Σ_c w_c (f̂0 − f̂1)²."""
    # BEGIN SOLUTION Exercise 3.1: normalise over channels, weight the squared difference, average over space
    n0 = f0 / (f0.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
    n1 = f1 / (f1.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
    return ((n0 - n1).pow(2) * w.view(1, -1, 1, 1)).sum(dim=1).mean(dim=(1, 2))
    # END SOLUTION

import minimovq.checks.vqgan as checks
lpips_layer_distance = checks.lpips_layer_distance(lpips_layer_distance)

# %% [markdown]
# Your five layer terms add up to the library's LPIPS:

# %%
with torch.no_grad():
    feats0, feats1 = lpips.features(x_test[:4]), lpips.features(x_test[4:8])
    yours = sum(lpips_layer_distance(a.float(), b.float(), getattr(lpips, f"lin{k}").model[1].weight.flatten())
                for k, (a, b) in enumerate(zip(feats0, feats1)))
    print("yours  :", [f"{v:.4f}" for v in yours.tolist()])
    print("LPIPS  :", [f"{v:.4f}" for v in lpips(x_test[:4], x_test[4:8]).flatten().tolist()])

# %% [markdown]
# **What each layer sees.** Two distortions of the same image with the *same* MSE (so the same PSNR): a blur, and
# additive noise. `lpips.layer_distances` returns each layer's map before the spatial mean; brighter means "more
# different" to that layer. Compare where the two distortions light up, and at which depth.

# %%
def blur(x, k=5):
    w1 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=x.device)
    w2 = (w1[:, None] * w1[None, :] / w1.sum() ** 2).expand(x.shape[1], 1, k, k)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), w2, groups=x.shape[1])

x0 = x_test[busiest:busiest + 1]
blurred = blur(x0)
noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)).to(P.device)
noisy = x0 + noise * (blurred - x0).pow(2).mean().sqrt() / noise.pow(2).mean().sqrt()   # same MSE as the blur
fig, axes = plt.subplots(2, 6, figsize=(13, 4.6))
with torch.no_grad():
    for row, (name, img) in enumerate((("blur", blurred), ("noise", noisy))):
        maps = lpips.layer_distances(x0, img)
        viz.show_grid(img.clamp(-1, 1), nrow=1, ax=axes[row, 0])
        axes[row, 0].set_title(f"{name}: PSNR {psnr(img, x0).item():.1f} dB\nLPIPS {lpips(x0, img).item():.4f}",
                               fontsize=9)
        for k, m in enumerate(maps):
            axes[row, k + 1].imshow(m[0, 0].cpu(), cmap="magma")
            axes[row, k + 1].set_title(f"layer {k + 1} ({m.shape[-1]}×{m.shape[-1]}): {m.mean().item():.4f}",
                                       fontsize=8)
            axes[row, k + 1].set_axis_off()
fig.suptitle("LPIPS distance maps per VGG layer (mean in the title)", fontsize=10); fig.tight_layout();

# %% [markdown]
# ## 3. The PatchGAN discriminator
# The discriminator $D$ of VQGAN (from pix2pix, Isola et al. 2017) is fully convolutional: 4×4 convolutions with
# stride 2, then two with stride 1, ending in **one logit per position**. Each logit judges only the patch of the
# input it can see — its *receptive field*. Local realism (texture, crisp edges) is exactly what an L1 + LPIPS
# autoencoder loses, while global layout is already handled by the reconstruction losses.
#
# `minimovq.discriminator.NLayerDiscriminator` follows taming: `Conv(4, s2) → LeakyReLU(0.2)`, then
# `n_layers − 1` times `Conv(4, s2) → BatchNorm → LeakyReLU`, then `Conv(4, s1) → BatchNorm → LeakyReLU` and
# `Conv(4, s1) → 1 channel`; weights $\sim\mathcal N(0, 0.02)$. With 3 layers and 64 base channels it has
# 2,765,633 parameters and turns a 256 px image into a 30 × 30 grid of logits.
#
# **Exercise 3.2.** Implement `patchgan_receptive_field(n_layers)`: the side, in pixels, of the input square that
# one output logit sees. Walk from the output back to the input: a $k\times k$ convolution with stride $s$ turns a
# field of $r$ pixels into $(r - 1)\,s + k$.

# %%
def patchgan_receptive_field(n_layers):
    """Receptive field (px) of NLayerDiscriminator(n_layers=...): n_layers convs with stride 2, then 2 with stride 1."""
    # BEGIN SOLUTION Exercise 3.2: walk back from one output logit through every 4×4 conv
    r = 1
    for stride in [1, 1] + [2] * n_layers:        # the last layer first
        r = (r - 1) * stride + 4
    return r
    # END SOLUTION

patchgan_receptive_field = checks.patchgan_receptive_field(patchgan_receptive_field)

# %% [markdown]
# **Seeing it.** Back-propagate from one logit in the middle of the grid to a 128 px input: the pixels with a
# non-zero gradient are exactly the receptive field (BatchNorm in eval mode, so that pixels do not talk to each other
# through batch statistics). The square is your formula.

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
for ax, n_layers in zip(axes, (1, 2, 3)):
    torch.manual_seed(0)
    d = NLayerDiscriminator(ndf=8, n_layers=n_layers).eval()
    x_in = torch.randn(1, 3, 128, 128, requires_grad=True)
    logits = d(x_in)
    logits[0, 0, logits.shape[-2] // 2, logits.shape[-1] // 2].backward()
    ax.imshow(x_in.grad.abs().sum(1)[0].pow(0.3), cmap="viridis")
    rows, cols = x_in.grad.abs().sum(1)[0].nonzero().T
    r = patchgan_receptive_field(n_layers)
    ax.add_patch(plt.Rectangle((cols.min().item() - 0.5, rows.min().item() - 0.5), r, r, fill=False, ec="w",
                               lw=1.5, ls="--"))
    ax.set_title(f"n_layers={n_layers}: logits {tuple(logits.shape[-2:])}, field {r} px", fontsize=9)
    ax.set_axis_off()
fig.suptitle("|∂ logit / ∂ input| of one logit (128 px input)", fontsize=10); fig.tight_layout();

# %% [markdown]
# At 256 px, 3 layers give a 30 × 30 grid of 70 px patches. Our images are 32–64 px, so we use `DISC_LAYERS = 2`
# (34 px patches, the choice of SBER-MoVQGAN too): with 3 layers a single logit would see the whole image and the
# "patch" discriminator would become a global one.

# %% [markdown]
# ## 4. The adversarial loss: hinge
# $D$ learns to give real images logits above $+1$ and reconstructions logits below $-1$; the **hinge** loss
# ignores logits already past the margin:
# $$\mathcal L_D = \tfrac12\Big(\mathbb E\big[\operatorname{relu}(1 - D(x))\big] + \mathbb E\big[\operatorname{relu}(1 + D(\hat x))\big]\Big),
#   \qquad \mathcal L_{\text{GAN}} = -\,\mathbb E\big[D(\hat x)\big] \ \text{for the generator}.$$
# taming also offers the "vanilla" (logistic) form $\tfrac12(\mathbb E[\operatorname{softplus}(-D(x))] +
# \mathbb E[\operatorname{softplus}(D(\hat x))])$. $D$ runs on the real and on the fake batch **separately**:
# its BatchNorm then normalises each kind with its own statistics, as in taming.
#
# **Exercise 3.3.** Implement `hinge_d_loss(logits_real, logits_fake)`. The two logit maps may have different batch
# sizes: take each mean on its own.

# %%
def hinge_d_loss(logits_real, logits_fake):
    """Logit maps of any shape -> scalar: 0.5 * (mean relu(1 − real) + mean relu(1 + fake))."""
    # BEGIN SOLUTION Exercise 3.3: the hinge loss of the discriminator
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())
    # END SOLUTION

hinge_d_loss = checks.hinge_d_loss(hinge_d_loss)

# %%
t = torch.linspace(-3, 3, 200)
fig, ax = plt.subplots(figsize=(6.5, 3))
ax.plot(t, F.relu(1 - t), label="hinge, real: relu(1 − D)")
ax.plot(t, F.relu(1 + t), label="hinge, fake: relu(1 + D)")
ax.plot(t, F.softplus(-t), ls="--", label="vanilla, real: softplus(−D)")
ax.plot(t, F.softplus(t), ls="--", label="vanilla, fake: softplus(D)")
ax.set_xlabel("logit D(·)"); ax.set_title("per-logit discriminator losses"); ax.legend(fontsize=7); ax.grid(alpha=0.3);

# %% [markdown]
# Past the margin the hinge is flat: a logit that is already confidently right gives $D$ no gradient, which keeps
# $D$ from pushing its logits to infinity.

# %% [markdown]
# ## 5. The adaptive weight λ, derived
# The generator (encoder + codebook + decoder) minimises
# $$\mathcal L_G = \underbrace{\mathbb E\big[|x - \hat x| + w_p\,\text{LPIPS}(x, \hat x)\big]}_{\mathcal L_{\text{rec}}\ (\text{taming's } nll)}
#   + \lambda\, d\ \mathcal L_{\text{GAN}} + \mathcal L_{\text{VQ}},$$
# with $d$ = `disc_factor`, which is 0 before `disc_start`. What should λ be? The scale of $\mathcal L_{\text{GAN}}$'s
# gradient depends on how confident $D$ currently is, and it drifts during training, so any fixed λ is too strong at
# one time and too weak at another. VQGAN measures both gradients where they enter the network, at the decoder's
# last layer $G_L$ (`decoder.conv_out.weight`), and picks λ so that they have the **same size** there:
# $$\|\lambda\,\nabla_{G_L}\mathcal L_{\text{GAN}}\| = \|\nabla_{G_L}\mathcal L_{\text{rec}}\|
#   \quad\Longrightarrow\quad
#   \lambda = \frac{\|\nabla_{G_L}\mathcal L_{\text{rec}}\|}{\|\nabla_{G_L}\mathcal L_{\text{GAN}}\| + \delta}.$$
# **Paper and code differ on δ:** the paper (eq. 7) writes $\delta = 10^{-6}$; taming's code adds `1e-4`, and so do
# minimovq and the exercise below. Three details make it safe: δ keeps λ finite when $D$'s gradient vanishes, λ is
# **clamped** to $[0, 10^4]$ (in the code), and it is **detached** — a weight,
# not a path for gradients. taming multiplies it by `disc_weight` (0.8 for its ImageNet
# model). The last layer is a good place to measure: it is one small tensor, and every gradient that reaches the
# decoder passes through it.
#
# **Exercise 3.4.** Implement `adaptive_weight(nll_loss, g_loss, last_layer, delta=1e-4)` (without `disc_weight`).
# Use `torch.autograd.grad(loss, last_layer, retain_graph=True)`: the training step still needs the graph.

# %%
def adaptive_weight(nll_loss, g_loss, last_layer, delta=1e-4):
    """λ = clamp(‖∇_L nll‖ / (‖∇_L g‖ + delta), 0, 1e4), detached. Both losses are scalars; last_layer a parameter."""
    # BEGIN SOLUTION Exercise 3.4: the ratio of the two gradient norms at the last layer
    nll_grad = torch.autograd.grad(nll_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return torch.clamp(nll_grad.norm() / (g_grad.norm() + delta), 0.0, 1e4).detach()
    # END SOLUTION

adaptive_weight = checks.adaptive_weight(adaptive_weight)

# %% [markdown]
# On a fresh model and discriminator, the two gradients at the last layer and the λ that balances them:

# %%
def make_vqgan():
    """The CONFIG model with taming's quantizer plus Lesson 2's dead-code restarts (`RESTARTS`; 0 switches them off)."""
    seed_everything(0)
    quantizer = VectorQuantizer(CONFIGS[CONFIG]["n_embed"], CONFIGS[CONFIG]["embed_dim"], dead_code_threshold=RESTARTS)
    return VQGAN.from_config(CONFIG, quantizer=quantizer).to(P.device)

vqgan = make_vqgan()
d_demo = NLayerDiscriminator(n_layers=DISC_LAYERS).to(P.device)
x_hat = vqgan(x_test[:8]).x_hat
nll = ((x_test[:8] - x_hat).abs() + lpips(x_test[:8], x_hat)).mean()
g = -d_demo(x_hat).mean()
grad_rec = torch.autograd.grad(nll, vqgan.last_layer, retain_graph=True)[0].norm().item()
grad_gan = torch.autograd.grad(g, vqgan.last_layer, retain_graph=True)[0].norm().item()
lam = adaptive_weight(nll, g, vqgan.last_layer).item()
print(f"VQGAN '{CONFIG}': {count_parameters(vqgan):,} parameters; PatchGAN: {count_parameters(d_demo):,}")
print(f"‖∇ rec‖ = {grad_rec:.4g}   ‖∇ GAN‖ = {grad_gan:.4g}   λ = {lam:.4g}   "
      f"‖λ ∇ GAN‖ = {lam * grad_gan:.4g}")
del x_hat, nll, g

# %% [markdown]
# ### The discriminator's step
# The discriminator learns from its own loss, on the real batch and on the autoencoder's reconstructions. Two things
# decide whether it learns the right thing: the reconstructions must be **detached**, or the autoencoder is trained
# by the discriminator's loss too (to make its fakes *easier* to spot); and $D$ runs on the real and the fake batch
# in **two separate forward passes**, so that its BatchNorm never normalises a mixed batch.
#
# **Exercise 3.5.** Implement `discriminator_loss(disc, x, x_hat)`: the hinge loss
# $\tfrac12\big(\operatorname{mean}\operatorname{relu}(1 - D(x)) + \operatorname{mean}\operatorname{relu}(1 + D(\hat x))\big)$,
# with $\hat x$ detached and one forward pass for each batch. Return a scalar; do not call `.backward()` (the
# Trainer does).

# %%
def discriminator_loss(disc, x, x_hat):
    """disc: the discriminator; x, x_hat: (B, C, H, W) real images and reconstructions. Returns a scalar."""
    # BEGIN SOLUTION Exercise 3.5: implement the discriminator's loss as described above
    logits_real = disc(x)
    logits_fake = disc(x_hat.detach())
    return hinge_d_loss(logits_real, logits_fake)
    # END SOLUTION

discriminator_loss = checks.discriminator_loss(discriminator_loss)

# %% [markdown]
# ## 6. Training a VQGAN: two optimizers, one loop
# `minimovq.losses.VQGANLoss` is taming's `VQLPIPSWithDiscriminator` built from the four pieces above (the reference
# versions): `generator_loss(vq_loss, x, x_hat, step, last_layer)` and `discriminator_loss(x, x_hat, step)`
# each return `(loss, logs)`; its PatchGAN is `loss.discriminator`. The `Trainer` takes two optimizers: for every
# step it back-propagates `"g"` into the autoencoder, then `"d"` into the discriminator (whose loss sees `x_hat`
# detached). Both use Adam with taming's betas (0.5, 0.9) and gradient clipping; the generator's GAN weight ramps
# up over `GAN_WARMUP` steps after `GAN_START`, so the discriminator warms up before the autoencoder feels it.
#
# **The ablation.** Three arms with the same model, seed, data and the same total number of steps, `STEPS`:
# 1. **L1**: pixel loss only (+ the VQ loss), for `STEPS` steps;
# 2. **L1 + LPIPS**: a *base* model trains `GAN_START` steps on L1 + LPIPS, then keeps going on L1 + LPIPS for the
#    remaining `STEPS − GAN_START`;
# 3. **L1 + LPIPS + GAN**: the *same* base model, fine-tuned for those remaining steps with the discriminator on —
#    the VQGAN recipe, in which $D$ joins a model that already reconstructs well (taming: `disc_start`).
#
# `disc_weight` is `DISC_WEIGHT`, taming's 0.8, and λ adapts on top of it. A model this small, fine-tuned for a few
# hundred steps, can be pushed past the data's sharpness by the adversarial term (watch for `sharpness %` above
# 100% below). Try `DISC_WEIGHT = 0.3` and compare the tables; at this budget one run is one sample, so compare
# over seeds (`benchmarks/lesson3_gan_seeds.py` runs this ablation for a seed and several weights).
#
# Arms 2 and 3 share everything up to the branch point, and both restart their optimizer there, so the only
# difference between them is the GAN. That is the comparison to read.

# %%
def train_vqgan(name, loss_fn, steps, init=None):
    """Train `steps` steps with `loss_fn`, from scratch or from a copy of the weights of `init`."""
    model = make_vqgan()
    if init is not None:
        model.load_state_dict(init.state_dict())
    torch.manual_seed(1)
    loss_fn = loss_fn.to(P.device)
    opt_g = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(loss_fn.discriminator.parameters(), lr=LR, betas=(0.5, 0.9))
    # the checkpoint holds the autoencoder and the discriminator (not the frozen LPIPS); none in the quick profile
    ckpt = run_checkpoint(f"03_vqgan-{name}-{DATASET}-{CONFIG}-{IMAGE_SIZE}px-s{steps}", config={"lr": LR, "batch": BATCH, "n": N_TRAIN, "disc_start": loss_fn.disc_start, "warmup": GAN_WARMUP, "disc_layers": DISC_LAYERS, "disc_weight": loss_fn.disc_weight, "adaptive": loss_fn.use_adaptive_weight, "restarts": RESTARTS})
    trainer = Trainer(nn.ModuleDict({"vqgan": model, "discriminator": loss_fn.discriminator}),
                      {"g": opt_g, "d": opt_d}, device=P.device, amp=P.amp, grad_clip=1.0, ckpt_path=ckpt)
    use_gan = loss_fn.disc_start < steps

    def step_fn(x, step):
        with trainer.autocast():
            x_hat, vq_loss, _ = model(x)
            loss_g, logs = loss_fn.generator_loss(vq_loss, x, x_hat, step, last_layer=model.last_layer)
            out = {"g": loss_g}
            if use_gan:
                loss_d, d_logs = loss_fn.discriminator_loss(x, x_hat, step)
                out["d"] = loss_d
                logs = {**d_logs, **logs}   # shared keys (disc_factor, logits_fake): the generator's
        return {**out, **logs}

    history = trainer.fit(train_loader, step_fn, steps=steps, desc=name)
    return model, history


NEVER = 10 ** 9   # a disc_start that is never reached: no GAN
FINE_TUNE = STEPS - GAN_START


def lpips_loss():
    return VQGANLoss(NEVER, disc_num_layers=DISC_LAYERS, perceptual=lpips)


def gan_loss(**change):
    """The recipe of the GAN arm; `change` alters one setting (section 7)."""
    recipe = dict(disc_num_layers=DISC_LAYERS, disc_weight=DISC_WEIGHT, perceptual=lpips, disc_warmup_steps=GAN_WARMUP)
    return VQGANLoss(change.pop("disc_start", 0), **{**recipe, **change})


models, histories = {}, {}
models["L1"], histories["L1"] = train_vqgan(
    "L1", VQGANLoss(NEVER, disc_num_layers=DISC_LAYERS, perceptual_weight=0.0), STEPS)
base, base_history = train_vqgan("L1+LPIPS-base", lpips_loss(), GAN_START)
for name, loss_fn in (("L1+LPIPS", lpips_loss()), ("L1+LPIPS+GAN", gan_loss())):
    models[name], histories[name] = train_vqgan(name, loss_fn, FINE_TUNE, init=base)

# %% [markdown]
# **Evaluation** over the whole test split, with two kinds of measure.
#
# *Per image* — is each reconstruction close to its own input? PSNR and SSIM (pixel agreement; `minimovq.metrics`)
# and LPIPS (feature agreement).
#
# *Per distribution* — do the reconstructions, taken together, look like the inputs taken together? By section 1,
# a per-image score prefers the blurry average; what the discriminator fights for is different: reconstructions that
# are as sharp and as textured *as a set* as real images. Two measures of that:
# - **sharpness**, Lesson 1's measure: the share of the input's high-frequency energy (the image minus a 3 × 3 box
#   blur) that survives in the reconstructions. 100% is the target; far above it means invented detail.
# - **Fréchet distances**, FID's recipe (Heusel et al. 2017): fit a Gaussian to the features of each set of images
#   and take the Fréchet distance between the two (`minimovq.metrics.frechet_distance`, as in Lesson 5). Lower is
#   better. It compares statistics of the whole set, so it does not care *which* reconstruction has *which* texture,
#   only whether the set has the textures the inputs have. Two feature spaces:
#   - **FD-patch**: every non-overlapping 4 × 4 patch of every image, as a vector of 48 pixel values. The
#     covariance of such patches describes local contrast, edges and texture at the scale of a few pixels — the
#     local statistics a PatchGAN judges, read at the level of the whole set. Blur shrinks it; invented noise
#     inflates it.
#   - **FD-VGG**: LPIPS' own VGG trunk, each image's activations at relu1_2, relu2_2 and relu3_3 averaged over
#     space (like Inception's pooled features in FID): 448 numbers per image. Careful twice: the LPIPS arms were
#     trained against this trunk, image by image, and offline the trunk is random.
#
#   Both are only comparable within one run (same images, same trunk).

# %%
FD_LAYERS = (0, 1, 2)   # relu1_2, relu2_2, relu3_3 of LPIPS' VGG16

@torch.no_grad()
def vgg_features(images):
    """(N, 3, H, W) in [-1, 1] -> (N, 64 + 128 + 256): the VGG activations of FD_LAYERS, averaged over space."""
    out = []
    for x in images.split(64):
        feats = lpips.features(x.to(P.device))
        out.append(torch.cat([feats[k].float().mean(dim=(2, 3)) for k in FD_LAYERS], dim=1).cpu())
    return torch.cat(out)

def patches(images, size=4):
    """(N, 3, H, W) -> (N·(H/size)·(W/size), 3·size²): every non-overlapping size × size patch as a vector."""
    cols = F.unfold(images.float().cpu(), size, stride=size)               # (N, 3·size², L)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])

x_all = torch.cat([b.to(P.device) for b in test_loader])      # the whole test split
real_features, real_patches = vgg_features(x_all), patches(x_all)

@torch.no_grad()
def reconstruct_all(model):
    return torch.cat([model(b).x_hat.float().clamp(-1, 1) for b in x_all.split(64)])

def evaluate(model, seconds):
    scores = evaluate_reconstruction(lambda x: model(x).x_hat, test_loader, device=P.device, lpips=lpips)
    rec = reconstruct_all(model)
    usage = codebook_usage(model, test_loader, device=P.device)
    return {"psnr": scores["psnr"], "ssim": scores["ssim"], "lpips": scores["lpips"],
            "usage %": 100 * usage.usage(), "perplexity": usage.perplexity(),
            "sharpness %": 100 * (high_frequency_energy(rec).mean() / high_frequency_energy(x_all).mean()).item(),
            "FD-patch": frechet_distance(patches(rec), real_patches),
            "FD-VGG": frechet_distance(vgg_features(rec), real_features), "seconds": seconds}

results = {"L1": evaluate(models["L1"], histories["L1"].seconds)}
for name in ("L1+LPIPS", "L1+LPIPS+GAN"):
    results[name] = evaluate(models[name], base_history.seconds + histories[name].seconds)
print(f"{DATASET} {IMAGE_SIZE}px ({len(x_all)} test images), VQGAN '{CONFIG}', {STEPS} steps × batch {BATCH} per "
      f"arm, GAN from step {GAN_START} (LPIPS trunk: {'ImageNet' if lpips.pretrained_trunk else 'random'})")
print(format_table(record("ablation", results)))

# %%
with torch.no_grad():
    recons = {name: m(x_test)[0].float().clamp(-1, 1) for name, m in models.items()}
viz.compare_grid({"input": x_test, **recons}, n=8)
half = IMAGE_SIZE // 2
viz.zoom_crops({"input": x_test, **recons}, box=(0, 0, half), index=busiest)
viz.zoom_crops({"input": x_test, **recons}, box=(half // 2, half // 2, half), index=0);

# %% [markdown]
# **Sharpness, frequency by frequency.** `sharpness %` sums all the fine detail into one number. The radially
# averaged power spectrum (`minimovq.metrics.radial_power_spectrum`) spreads it out: the power of the grey levels at
# each spatial frequency, from coarse structure (left) to the finest detail a pixel grid can hold (0.5 cycles per
# pixel, right), for all reconstructions of the test split, divided by the same for the inputs. At 1 an arm keeps
# the inputs' energy at that scale; below 1 it has lost some (blur, or contrast); above 1 it adds energy the inputs
# do not have (texture that may or may not be in the right place: the crops tell which). Look for the frequency
# where the curves part, and for which arm stays closest to 1, at the right-hand end and overall.
#
# One difference from `sharpness %`: the spectrum is of grey levels (brightness), while `sharpness %` adds up the
# three colour channels. So if an arm's sharpness is above 100% while its curve here stays below 1, its extra energy
# is in *colour* — fringes and speckles that change hue more than brightness; look for them in the crops.

# %%
freqs, real_power = radial_power_spectrum(x_all)                       # (IMAGE_SIZE/2,) each
fig, ax = plt.subplots(figsize=(6.5, 3.3))
for name, model in models.items():
    ax.plot(freqs, radial_power_spectrum(reconstruct_all(model))[1] / real_power, label=name)
ax.axhline(1, c="k", lw=0.8, ls=":")
ax.set(xlabel="spatial frequency (cycles per pixel)", ylabel="power: reconstructions / inputs", yscale="log",
       title="how much of the inputs' spectrum each arm keeps")
ax.legend(fontsize=8);

# %% [markdown]
# **Reading the table.** Read it in two halves, and compare L1+LPIPS+GAN with L1+LPIPS first: the same base model,
# the same steps, and the GAN as the only difference.
# - *Per image (PSNR, SSIM, LPIPS).* By section 1 the blurry average is what maximises PSNR and SSIM, so a loss that
#   asks for sharp detail may *lower* them: a sharp edge one pixel off costs more MSE than a soft one. A small drop
#   is the expected price of the GAN, not its failure. LPIPS flatters the two arms that trained on it (and with a
#   random trunk it is a weaker judge still).
# - *Per distribution (sharpness, FD-patch, FD-VGG).* This is where the GAN is supposed to pay. Start with
#   sharpness: L1+LPIPS below 100% would be the blur of section 1 (the spectrum shows at which scales). Then
#   FD-patch, the distance the discriminator's job maps onto: if the GAN arm's is lower than L1+LPIPS's, its
#   reconstructions, as a set, have local statistics closer to real images — what the discriminator asks for — even
#   where each one agrees less with its own input.
#   Sharpness *above* 100% at the same time means it overshoots: it adds more high-frequency energy than the inputs
#   have, in places the decoder cannot yet get right (look for noise and ringing in the crops, and read the
#   spectrum to see whether the excess is in brightness or only in colour). That is the
#   discriminator's pull arriving faster than the decoder's skill, and it is what longer training and a later
#   `disc_start` are for (section 7). FD-VGG reads the same question in deeper features; if it disagrees with
#   FD-patch, remember its two caveats above.
#
# Trust the zoomed crops and the spectrum at least as much as any single number. And keep the scale in mind:
# taming's ImageNet model trains for hundreds of thousands of steps and lets the discriminator in only at step
# 250,001; here it gets `STEPS − GAN_START` steps.

# %%
gan = histories["L1+LPIPS+GAN"]
fig, axes = plt.subplots(1, 3, figsize=(15, 3.3))
smooth = max(1, STEPS // 40)
curves = {"L1": histories["L1"]["nll_loss"]}
for name in ("L1+LPIPS", "L1+LPIPS+GAN"):   # the shared base, then each branch
    curves[name] = base_history["nll_loss"] + histories[name]["nll_loss"]
viz.plot_history(curves, smooth=smooth, ax=axes[0], logy=True, title="reconstruction loss (L1 [+ LPIPS])")
ft_steps = range(GAN_START, GAN_START + len(gan["logits_real"]))
for key, label in (("logits_real", "D(real)"), ("logits_fake", "D(fake)")):
    axes[1].plot(ft_steps, viz.moving_average(gan[key], smooth), label=label)
axes[1].set(title="discriminator logits (GAN arm)", xlabel="step"); axes[1].legend(fontsize=8)
axes[2].plot(ft_steps, gan["d_weight"], label="λ·disc_weight")
axes[2].plot(ft_steps, gan["disc_factor"], label="disc_factor")
axes[2].set(title="adaptive weight and gate (GAN arm)", xlabel="step"); axes[2].legend(fontsize=8)
for ax in axes:
    ax.axvline(GAN_START, c="k", lw=0.8, ls=":")

# %% [markdown]
# ## 7. Failure modes
# **A discriminator that wins too early, or pushes too hard.** At step 0 the reconstructions are noise. A
# discriminator switched on now separates them from real images at once, and the autoencoder may learn to chase the
# discriminator instead of learning to reconstruct (look for drifting colours and invented texture). That is why
# `disc_start` exists (taming's ImageNet config waits 250k steps). And a fixed adversarial weight may be far too
# strong or too weak at a given moment; that is why λ adapts. Two arms test these two safeguards **one at a time**:
# each changes exactly one setting of the GAN arm's recipe, and keeps the same total budget.
# 1. **D from step 0**: the discriminator is on from the first step of a model trained from scratch, instead of
#    joining the trained base at `GAN_START`. Everything else (adaptive λ, `DISC_WEIGHT`, the warm-up) as in the
#    GAN arm.
# 2. **fixed weight**: the same fine-tune of the same base as the GAN arm, but with the weight on the adversarial
#    loss fixed at `DISC_WEIGHT` instead of λ·`DISC_WEIGHT` (SBER-MoVQGAN trains with a fixed weight, 0.1, from
#    step 0). The GAN arm's own λ·`disc_weight` is in the right-hand plot above: compare its size with `DISC_WEIGHT`.
#
# What to look for, against the GAN arm (the recipe) and L1+LPIPS: lower PSNR *and* a higher FD-patch means the change
# hurt on both counts; sharpness far above 100% with artifacts in the grid means the discriminator won. If an arm
# does about as well as the recipe, or better, the safeguard it removed was not needed at this budget — a real
# outcome: both safeguards insure against failures that grow with the discriminator's strength and the length of
# training. Keep the budgets in mind when you compare: "D from step 0" has the discriminator for all `STEPS` steps,
# the recipe for only `STEPS − GAN_START`, so at a short budget more adversarial steps can simply help.

# %% [markdown]
# **Check your understanding, question 1 — predict, then run.** The next cell trains the "D from step 0" arm: the
# same recipe as the GAN arm (adaptive λ included), except that the discriminator is on from the first step of a
# model trained from scratch. Before running it: will its PSNR be higher or lower than the L1+LPIPS arm's, and what
# will its reconstructions look like?

# %%
m_early, h_early = train_vqgan("D from step 0", gan_loss(disc_start=0), STEPS)                  # from scratch
m_fixed, h_fixed = train_vqgan("fixed weight", gan_loss(use_adaptive_weight=False), FINE_TUNE, init=base)
results["D from step 0"] = evaluate(m_early, h_early.seconds)
results["fixed weight"] = evaluate(m_fixed, base_history.seconds + h_fixed.seconds)
print(format_table(record("failure_modes", {k: results[k] for k in
                                            ("L1+LPIPS", "L1+LPIPS+GAN", "D from step 0", "fixed weight")})))
with torch.no_grad():
    viz.compare_grid({"input": x_test, "L1+LPIPS+GAN (recipe)": recons["L1+LPIPS+GAN"],
                      "D from step 0": m_early(x_test)[0].float().clamp(-1, 1),
                      f"fixed weight {DISC_WEIGHT}": m_fixed(x_test)[0].float().clamp(-1, 1)}, n=8)
fig, axes = plt.subplots(1, 2, figsize=(12, 3.2))
viz.plot_history({"D(real)": h_early["logits_real"], "D(fake)": h_early["logits_fake"]}, smooth=smooth,
                 ax=axes[0], title="logits when D starts at step 0")
viz.plot_history({"D from step 0": h_early["nll_loss"], "L1+LPIPS": curves["L1+LPIPS"],
                  "L1+LPIPS+GAN": curves["L1+LPIPS+GAN"]}, smooth=smooth, ax=axes[1], logy=True,
                 title="reconstruction loss");

# %% [markdown]
# Other signs of an overpowering discriminator: $D$(real) and $D$(fake) separate past ±1 and stay there (the hinge
# loss of $D$ drops to 0), the reconstruction loss *rises* after `disc_start`, and λ collapses towards 0 or hits its
# clamp. Remedies: start later, lower `disc_weight`, warm up (`disc_warmup_steps`), or give $D$ fewer layers.
#
# **NaNs under fp16.** On a T4, mixed precision runs in float16, whose largest value is 65504. Two places in a VQGAN
# overflow silently:
# - **LPIPS' channel norm**: relu5_3 has 512 channels; $\sum_c f_c^2$ of activations around 40 is already 800,000.
#   In fp16 it becomes `inf`, every normalised feature becomes 0, and the perceptual loss silently vanishes (or
#   turns into NaN once an `inf` meets another). `minimovq.lpips` normalises in float32.
# - **The quantizer's distances** $\|z\|^2 + \|e\|^2 - 2z\cdot e$: large and nearly equal, they round to ties or
#   overflow. `VQGAN.encode` runs the quantizer in float32 even under autocast.
#
# Beyond that, the `Trainer` uses a `GradScaler` with fp16, clips gradients, and stops with a clear error at the
# first non-finite loss instead of training on NaNs.

# %%
from minimovq.lpips import normalize_channels
f = torch.full((1, 512, 2, 2), 40.0, dtype=torch.float16)            # a relu5_3 feature map in fp16
naive = f / f.pow(2).sum(dim=1, keepdim=True).sqrt()
print("Σ f² in fp16:", f.pow(2).sum(dim=1).flatten()[0].item())
print("naive normalisation in fp16 ->", naive.flatten()[0].item(), "(every feature is 0: the loss vanishes)")
print("minimovq (float32)          ->", round(normalize_channels(f).flatten()[0].item(), 4), "= 1/sqrt(512)")

# %% [markdown]
# ## 8. (Colab) A released taming VQGAN
# taming-transformers released `vqgan_imagenet_f16_1024` (72,141,699 parameters, 16 × 16 tokens for a 256 px
# image, K = 1024). Its `last.ckpt` loads into `minimovq.vqgan.VQGAN` with `strict=True` after dropping the
# `loss.*` entries. Download it from the links in the taming-transformers README and set `TAMING_CKPT` to its path
# (or a direct URL). The file is about 1 GB, so this section is meant for Colab; it is skipped when `TAMING_CKPT`
# is empty, or offline when it is a URL. We upsample the test images to 256 px and compare its reconstructions with
# your model's.

# %%
TAMING_CKPT = ""     # e.g. "/content/drive/MyDrive/vqgan_imagenet_f16_1024/last.ckpt" or a direct https:// URL
offline = os.environ.get("MINIMOVQ_OFFLINE", "0") == "1"
if not TAMING_CKPT:
    print("skipped: set TAMING_CKPT to the path or URL of taming's vqgan_imagenet_f16_1024 last.ckpt to run this section")
elif TAMING_CKPT.startswith(("http://", "https://")) and offline:
    print("skipped: TAMING_CKPT is a URL but MINIMOVQ_OFFLINE=1; download the file and give its path instead")
else:
    from minimovq.checkpoint import checkpoint_dir
    path = TAMING_CKPT
    if TAMING_CKPT.startswith(("http://", "https://")):
        path = checkpoint_dir() / "vqgan_imagenet_f16_1024.ckpt"
        if not path.exists():
            torch.hub.download_url_to_file(TAMING_CKPT, str(path))
    taming = VQGAN.from_pretrained("vqgan_imagenet_f16_1024", checkpoint_path=path).to(P.device)
    x256 = F.interpolate(x_test[:8], size=256, mode="bicubic", align_corners=False).clamp(-1, 1)
    with torch.no_grad():
        rec_taming = taming(x256)[0].clamp(-1, 1)
        rec_ours = F.interpolate(recons["L1+LPIPS+GAN"][:8], size=256, mode="bicubic").clamp(-1, 1)
    print(f"taming VQGAN on the 256 px upsampled images: PSNR {psnr(rec_taming, x256).mean():.2f} dB, "
          f"LPIPS {lpips(rec_taming, x256).mean():.4f}")
    viz.compare_grid({"input (256 px)": x256, "taming f16, 1024 codes": rec_taming,
                      f"yours ({IMAGE_SIZE} px, upsampled)": rec_ours}, n=8, scale=2.0)
    del taming

print(f"lesson time: {time.perf_counter() - t_lesson:.0f} s in the '{P.name}' profile")

# %% [markdown]
# ## 9. A continuous counterpoint: the LDM autoencoder
# Is it the *discrete* code that makes a VQGAN sharp? The latent diffusion paper (Rombach et al. 2022,
# "High-Resolution Image Synthesis with Latent Diffusion Models") answers no. Its first stage comes in two
# flavours trained with the same loss as this lesson — a pixel loss + LPIPS + a patch discriminator: a VQ-regularised
# one, and a **KL-regularised** one, a plain VAE-style Gaussian latent with "a slight KL-penalty towards a standard
# normal" (the paper's words). How slight? The official configs (CompVis/latent-diffusion, `autoencoder_kl_*.yaml`)
# set `kl_weight: 0.000001`, against a reconstruction term summed over every pixel of an image, as in Lesson 1 (an
# L1 + LPIPS term there, not squared error). In Lesson 1's terms that is β = 10⁻⁶, five orders of magnitude below
# the smallest non-zero β of its sweep: the model sits at the **autoencoder end** of the rate–distortion curve.
# The KL only keeps the latent's scale from drifting; it no longer asks the codes to be samples of
# $\mathcal N(0, I)$.
#
# Such autoencoders reconstruct sharply (CompVis' Stable Diffusion release uses one, a KL autoencoder with f = 8),
# and the LDM paper trains them with the same LPIPS + patch-GAN objective as VQGAN, so their
# sharpness comes from those losses, not from a codebook (this lesson's ablation measures what each loss adds here). What they
# give up is what Lesson 2 gained: the latent is a grid of real-valued vectors, not tokens, so the prior that
# generates it is a diffusion model over continuous latents rather than a transformer over a vocabulary (Lesson 5),
# and its rate is not fixed by a codebook size. Which to choose depends on the generator you want to put on top, not
# on which one can be sharp: both can.

# %% [markdown]
# ## Check your understanding
# 1. *(Predict, then run — before "D from step 0" in section 7.)* Higher or lower PSNR than L1+LPIPS, and which
#    artifacts?
# 2. Without BatchNorm, `disc(torch.cat([x, x_hat]))` gives the same loss as two separate passes. Why does taming
#    (and Exercise 3.5) run $D$ twice?
# 3. `x_hat` is detached in the discriminator's loss but not in the generator's adversarial loss $-\operatorname{mean} D(\hat x)$.
#    Why each?
# 4. Computing λ with `nll.backward()` and reading `last_layer.grad` gives the right number. What breaks?

# %% [markdown] solution-only
# **Answers.**
#
# 1. Usually lower. At step 0 the reconstructions are noise and the discriminator separates them at once; its
#    gradient then pulls a model that cannot yet reconstruct towards whatever fools D: colours drift and invented
#    texture appears. The delayed start exists to prevent this (the adaptive λ, kept here, only bounds the size of
#    the push). Compare with the table: if this arm does about as well, the safeguard was not needed at this budget.
# 2. In training mode BatchNorm normalises with the statistics of the batch it sees. On a mixed batch, every
#    image's features depend on the other kind's statistics, so $D$ can tell real from fake by the batch, not by
#    the image. Its logits then differ from the ones the generator's pass (fakes only) sees. Two passes keep each
#    kind normalised by its own statistics.
# 3. The discriminator's loss must train $D$ only. Without the detach, the autoencoder would receive its gradient
#    and learn to make fakes easier to spot. The generator's loss exists to train the autoencoder *through* $D$, so
#    the gradient must flow through $D(\hat x)$ into $\hat x$ (the optimizer only steps the generator's parameters).
# 4. `.backward()` accumulates gradients into *every* leaf of the graph: the encoder, the codebook, the decoder, and
#    the discriminator when $g$ is involved. The next optimizer step then applies those stale gradients on top of
#    its own, and the graph is freed unless `retain_graph=True`. `torch.autograd.grad(loss, last_layer,
#    retain_graph=True)` returns the gradient without storing it anywhere; check 3.4 looks for leftover `.grad`.

# %% [markdown]
# ## Takeaways
# - A pixel loss is minimised by the **average** of the plausible images: blur is its optimum. L1 helps a little
#   (the median); it cannot ask for one sharp answer.
# - **LPIPS** compares unit-normalised VGG features, weighted per channel and summed over five depths; it cares
#   about edges and texture. A random trunk is weaker, but usable (SBER-MoVQGAN trained with one).
# - A **PatchGAN** scores every 70 × 70 (here 34 × 34) patch for realism; the **hinge** loss stops pushing once a
#   logit is past its margin.
# - The **adaptive weight** equalises the reconstruction and adversarial gradients at the decoder's last layer;
#   `disc_start` keeps the discriminator away until reconstructions are decent. (δ: 10⁻⁶ in the paper, 1e-4 in
#   taming's code.)
# - Judge reconstructions per image (PSNR, SSIM, LPIPS) *and* as a set (sharpness, a Fréchet distance in a feature
#   space) *and* by eye. A loss that asks for realism can lower PSNR while it brings the set closer to real images:
#   section 6 measures whether it did at this budget.
# - Test one safeguard at a time: section 7 removes `disc_start` and the adaptive λ separately.
# - Sharpness does not need a codebook: the LDM's KL autoencoder gets it from the same LPIPS + GAN loss, with a
#   Gaussian latent and a tiny KL weight (section 9).
#
# SBER-MoVQGAN simplified the recipe — `VQGANLoss.sber_movqgan()`: L2 + 0.1·LPIPS + 0.1·GAN (hinge, a 2-layer
# PatchGAN) from step 0, no adaptive weight. **Next — Lesson 4 (MoVQ).** Keep this loss, and change the decoder:
# spatially conditioned normalisation lets the quantized tokens modulate every layer, and multichannel quantization
# gives each position several codes.

# % [markdown]
# ## Where you stand
# Each exercise of this lesson: passed, failed, not implemented, or not checked (its check cell has not run), and
# which cells ran on the reference solution instead of yours. Fix an exercise, re-run its check and the cells after
# it, then this cell.

# %
from minimovq.checks import scoreboard
scoreboard(3, globals());
