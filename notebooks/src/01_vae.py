# %% [markdown]
# # Lesson 1 — The variational autoencoder{{VARIANT}}
# {{COLAB_BADGE}}
#
# **Where this goes.** This course builds, one lesson at a time, the image tokenizers behind modern image
# generators: a VAE (today), a VQ-VAE with EMA codebooks, a VQGAN with perceptual and adversarial losses, MoVQ with
# its spatially modulated decoder, and finally a MaskGIT prior that *generates* images as token grids.
#
# **Today.** An autoencoder squeezes an image through a small code and rebuilds it. It compresses, but you cannot
# *sample* from it: nothing says which codes are valid. The VAE fixes that by making the code a distribution and
# pulling it towards a simple prior $\mathcal N(0, I)$. You will
# 1. derive the loss (the ELBO) as reconstruction + KL,
# 2. implement the reparameterization trick, the KL term and the loss (three exercises, each with a check),
# 3. train a convolutional VAE on a built-in dataset, and look at reconstructions, samples, interpolations and a
#    latent walk,
# 4. see the **blur** that motivates the rest of the course.
#
# Run the cells in order. Exercises raise `NotImplementedError` until you fill them in; the check after each one
# says what differs and, until it passes, lends you the reference solution so the notebook still runs.

# %%
{{SETUP}}

# %% [markdown]
# ## 0. Configuration
# Every size below comes from the profile: `quick` (a CI smoke test, about a minute), `cpu` (a laptop, about ten
# minutes) or `gpu` (a Colab T4, about twenty). Change `DATASET` to `"mnist"` or `"cifar10"` to train on a real
# dataset (downloaded once into `data/cache/`).

# %%
import time
import matplotlib.pyplot as plt
import torch.nn.functional as F
from minimovq import data, viz
from minimovq.metrics import evaluate_reconstruction, format_table, high_frequency_energy
from minimovq.checkpoint import run_checkpoint
from minimovq.train import Trainer, count_parameters
from minimovq.vae import VAE

DATASET = "shapes"          # "shapes" (built in, offline) | "mnist" | "cifar10" | "photos"
IMAGE_SIZE = 32
N_TRAIN = P.pick(quick=1024, cpu=20000, gpu=50000)
N_TEST = P.pick(quick=256, cpu=1000, gpu=2000)
WIDTH = P.pick(quick=16, cpu=32, gpu=64)
LATENT = 32
BATCH = P.pick(quick=32, cpu=64, gpu=128)
STEPS = P.pick(quick=80, cpu=6000, gpu=12000)
BETA_STEPS = P.pick(quick=40, cpu=1500, gpu=3000)   # per model in the β experiment
LR = 2e-3
t_lesson = time.perf_counter()

train_set = data.load(DATASET, split="train", image_size=IMAGE_SIZE, n=N_TRAIN)
test_set = data.load(DATASET, split="test", image_size=IMAGE_SIZE, n=N_TEST)
train_loader = data.make_loader(train_set, batch_size=BATCH, shuffle=True)
test_loader = data.make_loader(test_set, batch_size=256, shuffle=False)
x_test = torch.stack([test_set[i] for i in range(16)]).to(P.device)
print(f"{DATASET}: {len(train_set)} train / {len(test_set)} test images of shape {tuple(train_set[0].shape)}")
viz.show_grid(x_test, nrow=8, title=f"{DATASET}: test images");

# %% [markdown]
# ## 1. From autoencoders to the ELBO
#
# An **autoencoder** maps $x \mapsto z = E(x) \mapsto \hat x = D(z)$ and minimises $\|x - \hat x\|^2$. Its codes
# scatter wherever the encoder likes, so a random $z$ usually decodes to garbage.
#
# A **VAE** treats $z$ as a latent variable with prior $p(z) = \mathcal N(0, I)$ and a decoder $p_\theta(x\mid z)$.
# The likelihood $\log p_\theta(x) = \log \int p_\theta(x\mid z)\,p(z)\,dz$ is intractable, so we introduce an
# encoder $q_\phi(z\mid x) = \mathcal N(\mu_\phi(x), \operatorname{diag}\sigma^2_\phi(x))$ and use Jensen's inequality:
#
# $$\log p_\theta(x) = \log \mathbb E_{q_\phi(z|x)}\Big[\tfrac{p_\theta(x|z)\,p(z)}{q_\phi(z|x)}\Big]
#   \;\ge\; \underbrace{\mathbb E_{q_\phi(z|x)}[\log p_\theta(x\mid z)]}_{\text{reconstruction}}
#   \;-\; \underbrace{\mathrm{KL}\big(q_\phi(z\mid x)\,\|\,p(z)\big)}_{\text{regulariser}} = \text{ELBO}.$$
#
# The gap is exactly $\mathrm{KL}(q_\phi(z|x)\,\|\,p_\theta(z|x)) \ge 0$. With a Gaussian decoder of fixed variance,
# $-\log p_\theta(x\mid z) = \tfrac{1}{2\sigma^2}\sum_\text{pixels}(x - \hat x)^2 + \text{const}$. Folding the
# constants into a weight $\beta$ gives the loss we minimise:
#
# $$\mathcal L(x) = \sum_\text{pixels}(\hat x - x)^2 + \beta\,\mathrm{KL}\big(\mathcal N(\mu, \sigma^2)\,\|\,\mathcal N(0, I)\big).$$
#
# $\beta = 1$ is the plain ELBO (for our pixel scale); $\beta > 1$ is the β-VAE (smoother latents, blurrier images).

# %% [markdown]
# ## 2. The reparameterization trick
# We need $\nabla_\phi\,\mathbb E_{z\sim q_\phi}[f(z)]$, but sampling is not differentiable. Write the sample as a
# deterministic function of the parameters and parameter-free noise:
# $$z = \mu + \sigma \odot \varepsilon,\qquad \varepsilon \sim \mathcal N(0, I),\qquad \sigma = \exp(\tfrac12 \log\sigma^2).$$
# The randomness now lives in $\varepsilon$, and gradients flow through $\mu$ and $\sigma$.
#
# **Exercise 1.1.** Implement `reparameterize(mu, logvar)`. Draw a *fresh* $\varepsilon$ with `mu`'s shape.

# %%
def reparameterize(mu, logvar):
    """mu, logvar: (B, D). Returns z: (B, D) = mu + exp(0.5 * logvar) * eps, eps ~ N(0, I)."""
    # BEGIN SOLUTION Exercise 1.1: implement reparameterize
    std = torch.exp(0.5 * logvar)
    return mu + std * torch.randn_like(std)
    # END SOLUTION

import minimovq.checks.vae as checks
reparameterize = checks.reparameterize(reparameterize)

# %% [markdown]
# A picture of what the trick does: the same noise $\varepsilon$ (grey) is shifted by $\mu$ and stretched by
# $\sigma$. Moving $\mu$ or $\sigma$ moves every sample smoothly — which is exactly what a gradient needs.

# %%
g = torch.Generator().manual_seed(0)
eps = torch.randn(400, 2, generator=g)
fig, ax = plt.subplots(figsize=(4.5, 4.5))
ax.scatter(*eps.T, s=6, c="0.7", label="ε ~ N(0, I)")
for mu, logvar, col in [((2.0, 1.0), (0.0, -1.5), "C0"), ((-1.5, -2.0), (-2.0, 0.5), "C1")]:
    z = reparameterize(torch.tensor(mu).expand(400, 2), torch.tensor(logvar).expand(400, 2))
    ax.scatter(*z.T, s=6, c=col, label=f"μ={mu}, log σ²={logvar}")
ax.set_aspect("equal"); ax.legend(fontsize=7, loc="lower right"); ax.set_title("z = μ + σ·ε");

# %% [markdown]
# ## 3. The KL term
# For a diagonal Gaussian against the standard normal the KL has a closed form, per latent dimension:
# $$\mathrm{KL}\big(\mathcal N(\mu,\sigma^2)\,\|\,\mathcal N(0,1)\big) = \tfrac12\big(\mu^2 + \sigma^2 - 1 - \log\sigma^2\big).$$
#
# **Exercise 1.2.** Implement `kl_divergence(mu, logvar)`, returning one value per sample (B,), summed over every
# non-batch dimension (the input may have any number of dimensions).

# %%
def kl_divergence(mu, logvar):
    """mu, logvar: (B, ...). Returns (B,): 0.5 * sum(mu² + exp(logvar) − 1 − logvar) over non-batch dims."""
    # BEGIN SOLUTION Exercise 1.2: implement kl_divergence
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)
    # END SOLUTION

kl_divergence = checks.kl_divergence(kl_divergence)

# %% [markdown]
# **Exercise 1.3.** Implement `elbo_loss(x_hat, x, mu, logvar, beta=1.0)`: the batch mean of
# $\sum_\text{pixels}(\hat x - x)^2 + \beta\,\mathrm{KL}$.

# %%
def elbo_loss(x_hat, x, mu, logvar, beta=1.0):
    """x_hat, x: (B, C, H, W); mu, logvar: (B, D). Returns a scalar: mean_b [Σ (x_hat − x)² + β·KL]."""
    # BEGIN SOLUTION Exercise 1.3: implement elbo_loss
    rec = (x_hat - x).pow(2).flatten(1).sum(1)
    return (rec + beta * kl_divergence(mu, logvar)).mean()
    # END SOLUTION

elbo_loss = checks.elbo_loss(elbo_loss)

# %% [markdown]
# ## 4. Train a VAE
# The model (`minimovq.vae.VAE`) is three stride-2 convolutions down to a $4\times4$ grid, a linear layer to
# $(\mu, \log\sigma^2)$, and the mirror image up. The training step below uses *your* three functions.

# %%
def make_vae():
    seed_everything(0)
    return VAE(in_channels=3, image_size=IMAGE_SIZE, width=WIDTH, latent_dim=LATENT).to(P.device)


def train_vae(beta, steps, desc):
    model = make_vae()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    # A checkpoint per run (none in the quick profile): re-running after a disconnect resumes training.
    ckpt = run_checkpoint(f"01_vae-beta{beta}-{DATASET}-w{WIDTH}-s{steps}")
    trainer = Trainer(model, {"loss": opt}, device=P.device, amp=P.amp, grad_clip=None, ckpt_path=ckpt)

    def step_fn(x, step):
        with trainer.autocast():
            mu, logvar = model.encode(x)
            x_hat = model.decode(reparameterize(mu, logvar))
        x_hat = x_hat.float()
        loss = elbo_loss(x_hat, x, mu.float(), logvar.float(), beta=beta)
        return {"loss": loss, "rec": F.mse_loss(x_hat, x, reduction="sum") / x.shape[0],
                "kl": kl_divergence(mu.float(), logvar.float()).mean()}

    history = trainer.fit(train_loader, step_fn, steps=steps, desc=desc)
    return model, history


vae, history = train_vae(beta=1.0, steps=STEPS, desc="VAE β=1")
print(f"{count_parameters(vae):,} parameters, {history.seconds:.1f} s")
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
history.plot(["rec"], smooth=20, ax=axes[0], logy=True, title="reconstruction (sum of squares)")
history.plot(["kl"], smooth=20, ax=axes[1], title="KL (nats)");

# %% [markdown]
# ## 5. Reconstructions, and how good they are
# We reconstruct with $z = \mu$ (the mean code) and measure PSNR and SSIM over the whole test split
# (definitions in `minimovq.metrics`: images mapped to [0, 1]; SSIM with an 11×11 Gaussian window, σ = 1.5).

# %%
@torch.no_grad()
def reconstruct(model, x):
    mu, _ = model.encode(x)
    return model.decode(mu)

scores = evaluate_reconstruction(lambda x: reconstruct(vae, x), test_loader, device=P.device)
print(format_table({"VAE β=1": scores}, keys=["psnr", "ssim", "mse"]))
viz.compare_grid({"input": x_test, "VAE reconstruction": reconstruct(vae, x_test).clamp(-1, 1)}, n=8);

# %% [markdown]
# ## 6. Sampling, interpolation and a latent walk
# Because the KL pulled $q(z\mid x)$ towards $\mathcal N(0, I)$, decoding random normal vectors gives images that
# look like the data — something a plain autoencoder cannot do.

# %%
samples = vae.sample(16, generator=torch.Generator(device=P.device).manual_seed(1)).clamp(-1, 1)
viz.show_grid(samples, nrow=8, title="samples from the prior z ~ N(0, I)");

# %%
with torch.no_grad():
    mu, _ = vae.encode(x_test[:2])
    ts = torch.linspace(0, 1, 8, device=P.device)[:, None]
    path = vae.decode((1 - ts) * mu[0] + ts * mu[1]).clamp(-1, 1)
viz.show_grid(path, nrow=8, title="linear interpolation between two test images in latent space");

# %% [markdown]
# **Latent walk.** Move along the two latent directions the encoder uses most (largest variance of $\mu$ over the
# test set) and watch what they control. In Jupyter you get sliders; elsewhere the cell shows the default.

# %%
with torch.no_grad():
    mus = torch.cat([vae.encode(b.to(P.device))[0] for b in test_loader])
top = mus.var(0).argsort(descending=True)[:2]
base = mus[0].clone()

def walk(a=0.0, b=0.0):
    z = base.clone()
    z[top[0]] += a
    z[top[1]] += b
    with torch.no_grad():
        img = vae.decode(z[None]).clamp(-1, 1)
    viz.show_grid(img, nrow=1, title=f"dim {top[0].item()} += {a:.1f}, dim {top[1].item()} += {b:.1f}", scale=0.6)
    plt.show()

viz.interactive(walk, a=(-3.0, 3.0, 0.25, 0.0), b=(-3.0, 3.0, 0.25, 0.0));

# %% [markdown]
# ## 7. Experiment: what β trades
# Train the same model with β = 0.1, 1 and 4 at equal budget. Small β behaves more like a plain autoencoder: the
# best reconstruction scores and a large KL (the codes drift away from the prior, so samples get worse); large β
# keeps the codes close to $\mathcal N(0, I)$ at the cost of blurrier, less faithful reconstructions. Watch the KL
# column fall and the PSNR column with it.

# %%
rows, recs, samps = {}, {}, {}
for beta in (0.1, 1.0, 4.0):
    m, h = train_vae(beta=beta, steps=BETA_STEPS, desc=f"β={beta}")
    s = evaluate_reconstruction(lambda x: reconstruct(m, x), test_loader, device=P.device)
    rows[f"β={beta}"] = {"psnr": s["psnr"], "ssim": s["ssim"], "kl": h.last("kl")}
    recs[f"β={beta} recon"] = reconstruct(m, x_test).clamp(-1, 1)
    samps[f"β={beta} samples"] = m.sample(8, generator=torch.Generator(device=P.device).manual_seed(2)).clamp(-1, 1)
print(format_table(rows))
viz.compare_grid({"input": x_test, **recs, **samps}, n=8);

# %% [markdown]
# ## 8. The blur, measured
# Zoom in on an edge. The VAE's Gaussian likelihood is an L2 loss: when the decoder is unsure where an edge is, the
# loss-minimising answer is the *average* of the possibilities — a blur. We measure it as the share of
# high-frequency energy (the image minus a 3×3 box blur) that survives in the reconstruction.

# %%
x_hat = reconstruct(vae, x_test).clamp(-1, 1)
ratio = (high_frequency_energy(x_hat).mean() / high_frequency_energy(x_test).mean()).item()
print(f"high-frequency energy kept by the VAE: {100 * ratio:.0f}% of the input's")
viz.zoom_crops({"input": x_test, "VAE": x_hat}, box=(4, 4, IMAGE_SIZE // 2), index=0);
print(f"lesson time: {time.perf_counter() - t_lesson:.0f} s in the '{P.name}' profile")

# %% [markdown]
# ## Takeaways
# - The ELBO = reconstruction − KL; the reparameterization trick makes it trainable by backprop.
# - β trades reconstruction against a regular latent space: you cannot have both with one Gaussian latent.
# - L2 reconstruction + a continuous bottleneck = **blur**: most high-frequency detail is lost.
#
# **Next — Lesson 2 (VQ-VAE).** Replace the continuous Gaussian code by a grid of *discrete* codes from a learned
# codebook: no KL blur, and a token grid that a transformer can later model (Lesson 5).
