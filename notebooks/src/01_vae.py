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
# 3. train a convolutional VAE on a built-in dataset, and look at reconstructions, samples, interpolations, a
#    latent walk and the latent space itself,
# 4. trace what β trades as a **rate–distortion** curve, from the plain autoencoder to a heavily regularised VAE,
# 5. measure the **blur** that motivates the rest of the course.
#
# Run the cells in order. Exercises raise `NotImplementedError` until you fill them in; the check after each one
# says what differs and, until it passes, lends you the reference solution so the notebook still runs.

# %%
{{SETUP}}

# %% [markdown]
# ## 0. Configuration
# Every size below comes from the profile: `quick` (a CI smoke test), `cpu` (a laptop) or `gpu` (a Colab T4); the
# README lists each lesson's measured time per profile. Change `DATASET` to `"mnist"` or `"cifar10"` to train on a real
# dataset (downloaded once into `data/cache/`).

# %%
import time
import matplotlib.pyplot as plt
import torch.nn.functional as F
from minimovq import data, viz
from minimovq.metrics import evaluate_reconstruction, format_table, high_frequency_energy
from minimovq.checkpoint import run_checkpoint
from minimovq.reference import record   # keeps this lesson's headline tables under `make reference`
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
# **What β means.** Multiply the negative ELBO by $2\sigma^2$ (which does not move its minimum):
# $\sum(x - \hat x)^2 + 2\sigma^2\,\mathrm{KL}$. So $\beta = 2\sigma^2$: choosing β *is* choosing how much Gaussian
# noise the decoder assumes on every pixel, $\sigma = \sqrt{\beta/2}$.
# - $\beta = 1$ is the exact ELBO of a decoder with $\sigma = 1/\sqrt 2 \approx 0.71$ per pixel. Our images live in
#   $[-1, 1]$, a range of 2, so that is noise of about a third of the whole range: a model that may call most fine
#   detail "noise" and leave it out of the code.
# - $\beta = 0.1$ means $\sigma \approx 0.22$; $\beta \to 0$ means $\sigma \to 0$, a noiseless decoder, and the KL
#   stops mattering: the plain **autoencoder** is the $\beta = 0$ end of the family.
# - $\beta > 1$ is the β-VAE (Higgins et al. 2017), which weighs the prior more than the ELBO does.
#
# Section 7 trains the whole range and plots what each β buys.

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
from minimovq.figures import draw_vae
draw_vae(VAE(in_channels=3, image_size=IMAGE_SIZE, width=WIDTH, latent_dim=LATENT), x_test);

# %% [markdown]
# Every shape in this figure (B = batch) is measured in one forward pass of a model with this lesson's settings, so
# it follows any change to `WIDTH`, `LATENT` or `IMAGE_SIZE`. Follow the image down to $(\mu, \log\sigma^2)$, then
# the one random step $z = \mu + \sigma\varepsilon$, and back up through the transposed convolutions to $\hat x$.

# %%
def make_vae():
    seed_everything(0)
    return VAE(in_channels=3, image_size=IMAGE_SIZE, width=WIDTH, latent_dim=LATENT).to(P.device)


def train_vae(beta, steps, desc):
    model = make_vae()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    # A checkpoint per run (none in the quick profile): re-running after a disconnect resumes training.
    ckpt = run_checkpoint(f"01_vae-beta{beta}-{DATASET}-w{WIDTH}-s{steps}", config={"lr": LR, "batch": BATCH, "latent": LATENT, "size": IMAGE_SIZE, "n": N_TRAIN})
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
print(format_table(record("vae", {"VAE β=1": scores}), keys=["psnr", "ssim", "mse"]))
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
# **The latent space, seen.** Every test image's mean code $\mu$, projected on the same two directions, coloured by
# the image's class where the dataset has one (for `shapes`, its largest object), over the prior's circles at 1 and
# 2 standard deviations. If the KL did its job the cloud fills the circles without holes, so a random
# $z \sim \mathcal N(0, I)$ lands among real codes; look for holes and for far outliers.

# %%
LABELS = getattr(test_set, "labels", None)   # shapes: the class of each image's largest object; None without labels
CLASSES = getattr(test_set, "classes", None)

def latent_scatter(ax, mus, title):
    """mus: (N, LATENT) mean codes of the test split; plots their two highest-variance coordinates."""
    dims = mus.var(0).argsort(descending=True)[:2]
    xy = mus[:, dims].cpu()
    if LABELS is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=4, c="C0", alpha=0.6)
    else:
        labels = torch.as_tensor(LABELS[:len(xy)])
        for c in labels.unique().tolist():
            name = CLASSES[c] if CLASSES is not None else str(c)
            ax.scatter(*xy[labels == c].T, s=4, c=f"C{c % 10}", alpha=0.6, label=name)
    for r in (1, 2):
        ax.add_patch(plt.Circle((0, 0), r, fill=False, ls="--", ec="k", lw=0.8))
    ax.set_aspect("equal"); ax.set_title(title, fontsize=9)
    ax.set_xlabel(f"μ[{dims[0].item()}]"); ax.set_ylabel(f"μ[{dims[1].item()}]")

fig, ax = plt.subplots(figsize=(4.5, 4.5))
latent_scatter(ax, mus, "test codes μ (β = 1), prior circles at 1σ, 2σ")
if LABELS is not None:
    ax.legend(fontsize=7, markerscale=3, loc="upper right")

# %% [markdown]
# ## 7. Experiment: what β trades — a rate–distortion curve
# The KL term is the **rate**: how many nats the code carries about the image beyond what the prior already says
# (the cost of sending $z$ with a code built for $\mathcal N(0, I)$). The reconstruction error is the
# **distortion**. β sets the exchange rate between the two, so training the same model at several β traces a
# curve, with the plain **autoencoder** (β = 0: the KL is logged but not trained on) as its end. All runs have the
# same budget; the rate is the mean KL over the test split, the distortion the test MSE with $z = \mu$, and the
# `σ` column is the decoder noise that each β assumes, $\sqrt{\beta/2}$.
#
# What to look for: as β grows the points should move left (less rate) and up (more distortion). Read the
# `sharpness %` column too: the share of the input's high-frequency energy that survives (section 8 defines it).
# If the autoencoder is sharper than every VAE, the KL is what blurs; if it is blurry too, the pixel loss and the
# small bottleneck are to blame, whatever the latent. Lesson 3 comes back to this question.

# %% [markdown]
# **Check your understanding, question 1 — predict, then run.** Before running the next cell, write down your
# guesses: how do the rate (KL) and the distortion (MSE) move as β goes from 0 to 4? Will the autoencoder (β = 0)
# be sharper than every VAE? Which β will give *samples* (decoded from $z \sim \mathcal N(0, I)$) that look most
# like the training images?

# %%
@torch.no_grad()
def test_rate(model):
    """Mean KL(q(z|x) || N(0, I)) over the test split, in nats per image."""
    return torch.cat([kl_divergence(*model.encode(b.to(P.device))) for b in test_loader]).mean().item()


@torch.no_grad()
def sharpness(model):
    xs = torch.cat([b.to(P.device) for b in test_loader])
    x_hat = torch.cat([reconstruct(model, b).clamp(-1, 1) for b in xs.split(256)])
    return 100 * (high_frequency_energy(x_hat).mean() / high_frequency_energy(xs).mean()).item()


BETAS = (0.0, 0.1, 0.3, 1.0, 4.0)
rows, recs, samps, sweep_mus = {}, {}, {}, {}
for beta in BETAS:
    m, h = train_vae(beta=beta, steps=BETA_STEPS, desc=f"β={beta}")
    s = evaluate_reconstruction(lambda x: reconstruct(m, x), test_loader, device=P.device)
    name = "β=0 (autoencoder)" if beta == 0 else f"β={beta}"
    rows[name] = {"β": beta, "σ": (beta / 2) ** 0.5, "rate (nats)": test_rate(m), "mse": s["mse"],
                  "psnr": s["psnr"], "ssim": s["ssim"], "sharpness %": sharpness(m)}
    recs[f"{name} recon"] = reconstruct(m, x_test).clamp(-1, 1)
    samps[f"{name} samples"] = m.sample(8, generator=torch.Generator(device=P.device).manual_seed(2)).clamp(-1, 1)
    with torch.no_grad():
        sweep_mus[name] = torch.cat([m.encode(b.to(P.device))[0] for b in test_loader])
print(format_table(record("beta_sweep", rows)))

fig, ax = plt.subplots(figsize=(6, 3.8))
rate = [r["rate (nats)"] for r in rows.values()]
dist = [r["mse"] for r in rows.values()]
ax.plot(rate, dist, "o-", c="C0")
for name, x_, y_ in zip(rows, rate, dist):
    ax.annotate(name.split(" ")[0] + (" (AE)" if "autoencoder" in name else ""), (x_, y_), fontsize=8,
                textcoords="offset points", xytext=(5, 4))
ax.set_xscale("log"); ax.set_xlabel("rate: KL(q(z|x) ‖ N(0, I)), nats per image (log)")
ax.set_ylabel("distortion: test MSE"); ax.set_title("the β sweep as a rate–distortion curve"); ax.grid(alpha=0.3)
viz.compare_grid({"input": x_test, **recs, **samps}, n=8);

# %% [markdown]
# The same sweep in latent space: each panel is the test codes $\mu$ of one model on its two highest-variance
# coordinates, with the prior's 1σ and 2σ circles. Compare the scale of the autoencoder's cloud with the circles, and
# then its samples above: nothing asked its codes to look like $\mathcal N(0, I)$, so decoding prior samples is a
# gamble. Large β squeezes the codes onto the prior — and, read with the table, throws away what they said.

# %%
fig, axes = plt.subplots(1, len(sweep_mus), figsize=(3.2 * len(sweep_mus), 3.3))
for ax, (name, m_) in zip(axes, sweep_mus.items()):
    latent_scatter(ax, m_, name)
fig.tight_layout();

# %% [markdown]
# ## 8. The blur, measured
# Zoom in on an edge. The VAE's Gaussian likelihood is an L2 loss: when the decoder is unsure where an edge is, the
# loss-minimising answer is the *average* of the possibilities — a blur. We measure it as the share of
# high-frequency energy (the image minus a 3×3 box blur) that survives in the reconstruction.

# %%
x_hat = reconstruct(vae, x_test).clamp(-1, 1)
ratio = (high_frequency_energy(x_hat).mean() / high_frequency_energy(x_test).mean()).item()
print(f"high-frequency energy kept by the VAE: {record('sharpness_pct', 100 * ratio):.1f}% of the input's")
record("headline", f"VAE β=1: PSNR {scores['psnr']:.2f} dB, keeps {100 * ratio:.1f}% of the input's high-frequency energy")
viz.zoom_crops({"input": x_test, "VAE": x_hat}, box=(4, 4, IMAGE_SIZE // 2), index=0);
print(f"lesson time: {time.perf_counter() - t_lesson:.0f} s in the '{P.name}' profile")

# %% [markdown]
# ## Check your understanding
# 1. *(Predict, then run — before the β sweep in section 7.)* How do rate and distortion move with β, is the
#    autoencoder the sharpest, and which β gives the most plausible samples?
# 2. `torch.normal(mu, sigma)` draws from the same distribution as `mu + sigma * eps`. Why does only the second one
#    train the encoder? What does check 1.1 measure to tell them apart?
# 3. `kl_divergence` *sums* over the latent dimensions and `elbo_loss` *averages* over the batch. If you averaged
#    over the 32 latent dimensions instead, which β would you really be training with?
# 4. A loss written as `torch.tensor([k.item() for k in kl])` prints the right number. What happens when the model
#    trains with it?

# %% [markdown] solution-only
# **Answers.**
#
# 1. As β grows the rate falls and the distortion rises: the points move left and up. Whether the autoencoder is
#    the sharpest is the question the section asks; if it is blurry too, the pixel loss and the small bottleneck
#    blur, not the KL. Samples usually look most like the data at the *larger* β: the codes the decoder was
#    trained on then stay close to $\mathcal N(0, I)$, which is where samples come from. At small β (and β = 0) the
#    codes drift away from the prior, so a draw from $\mathcal N(0, I)$ often lands where the decoder has never
#    been. Check your guesses against the table and the plot.
# 2. `torch.normal` returns a fresh sample with no path back to `mu` and `sigma`, so their gradient is zero. In
#    `mu + sigma * eps` the randomness sits in `eps` only, so $\partial z/\partial\mu = 1$ and
#    $\partial z/\partial\log\sigma^2 = \tfrac12\sigma\varepsilon$. Check 1.1 computes these two gradients and
#    compares them with the reference.
# 3. β/32. A mean over 32 dimensions is the sum divided by 32, so the KL weighs 32 times less against the
#    reconstruction, which is summed over every pixel. The model moves towards the plain-autoencoder end of the
#    rate–distortion curve: more rate, lower distortion, and samples from $\mathcal N(0, I)$ that need no longer
#    look like data. Section 7's β sweep shows how far along that curve each β sits in your run.
# 4. The tensor is built from Python floats, so it has no graph. The KL term adds to the printed loss but gives no
#    gradient, so the encoder is trained by the reconstruction alone and the KL keeps growing. Checks 1.2 and 1.3
#    reject such a loss ("carries no gradient").

# %% [markdown]
# ## Takeaways
# - The ELBO = reconstruction − KL; the reparameterization trick makes it trainable by backprop.
# - With a Gaussian decoder, β = 2σ²: β is the pixel noise the decoder assumes. β = 1 on images in [−1, 1] assumes
#   σ ≈ 0.71, a very noisy decoder; β → 0 is the plain autoencoder.
# - β moves the model along a rate–distortion curve (section 7): fewer nats in the code, more error. One Gaussian
#   latent cannot be both cheap and faithful.
# - An L2 loss through a small bottleneck loses high-frequency detail: section 8 prints how much survives, and the
#   sweep's sharpness column says whether dropping the KL (β = 0) brings it back.
#
# **Next — Lesson 2 (VQ-VAE).** Replace the continuous Gaussian code by a grid of *discrete* codes from a learned
# codebook: a rate fixed by the grid and the codebook size instead of by β, and a token grid that a transformer can
# later model (Lesson 5). It keeps the pixel loss, so keep measuring the blur; Lesson 3 shows where it comes from.

# % [markdown]
# ## Where you stand
# Each exercise of this lesson: passed, failed, not implemented, or not checked (its check cell has not run), and
# which cells ran on the reference solution instead of yours. Fix an exercise, re-run its check and the cells after
# it, then this cell.

# %
from minimovq.checks import scoreboard
scoreboard(1, globals());
