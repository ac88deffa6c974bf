"""Architecture figures: every shape in the figure data is the real module's shape (tiny configs, 16 px)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
import torch
from tiny_configs import DD, TINY

from minimovq.figures import architecture, draw_maskgit, draw_vae, draw_vqgan, draw_vqvae
from minimovq.maskgit import MaskGIT
from minimovq.movq import MoVQ, SpatialNorm
from minimovq.vae import VAE
from minimovq.vqgan import VQGAN
from minimovq.vqvae import VQVAE


@pytest.fixture
def x():
    return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1


def _shapes_through(seq, h):
    """The output shape of every non-activation child of a Sequential, computed directly."""
    out = {}
    for name, child in seq.named_children():
        h = child(h)
        out[name] = tuple(h.shape)
    return out


@torch.no_grad()
def test_vae_shapes_are_the_modules(x):
    model = VAE(image_size=16, width=8, latent_dim=4)
    rng = torch.get_rng_state()
    d = architecture(model, x)
    assert model.training and torch.equal(rng, torch.get_rng_state())  # mode and random stream untouched
    enc = _shapes_through(model.enc, x[:1])
    for name in ("0", "2", "4"):
        assert d.stage(f"enc.{name}").shape == enc[name]
    mu, logvar = model.encode(x[:1])
    assert d.stage("to_stats").shape == (1, 2 * mu.shape[1]) and d.stage("z").shape == tuple(mu.shape)
    assert d.stage("dec.5").shape == tuple(x[:1].shape) == tuple(model.decode(mu).shape)


@torch.no_grad()
def test_vqvae_shapes_and_no_codebook_update(x):
    model = VQVAE(hidden=16, res_hidden=8, num_res_layers=1, embed_dim=8, n_embed=16, quantizer="ema")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    d = architecture(model, x)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # traced in eval mode
    z_q, _, indices = model.encode(x[:1])
    assert d.stage("quant_conv").shape == d.stage("quantize").shape == tuple(z_q.shape)
    assert str(tuple(indices.shape)[1:])[1:-1] in d.stage("quantize").note
    assert d.columns["decoder"][-1].shape == tuple(model(x[:1]).x_hat.shape)
    assert d.stage("encoder.5").shape == _shapes_through(model.encoder, x[:1])["5"]  # the ResidualStack


@torch.no_grad()
def test_vqgan_every_block_with_its_shape(x):
    model = VQGAN(**TINY)
    d = architecture(model, x)
    blocks = {n for n, m in model.named_modules()
              if type(m).__name__ in ("ResnetBlock", "AttnBlock", "Downsample", "Upsample")}
    assert blocks <= {s.name for s in d.stages()}
    h = model.encoder.conv_in(x[:1])
    assert d.stage("encoder.conv_in").shape == tuple(h.shape)
    assert d.stage("encoder.down.0.block.0").shape == tuple(model.encoder.down[0].block[0](h).shape)
    z_q = model.encode(x[:1]).z_q
    assert d.stage("quant_conv").shape == d.stage("quantize").shape == tuple(z_q.shape)
    assert d.stage("post_quant_conv").shape == (1, DD["z_channels"], *z_q.shape[-2:])
    assert d.stage("decoder.conv_out").shape == tuple(x[:1].shape)
    assert d.info["f"] == model.downsample_factor == 16 // z_q.shape[-1]
    assert d.z_q_entries() == [] and d.z_q_source is None
    labels = {s.label for s in d.stages()}
    assert any("GroupNorm(32)" in lab for lab in labels) and any("AttnBlock" in lab for lab in labels)


@pytest.mark.parametrize("groups", [1, 2])
@torch.no_grad()
def test_movq_marks_every_z_q_entry(x, groups):
    model = MoVQ(**TINY, groups=groups)
    d = architecture(model, x)
    norms = [n for n, m in model.named_modules() if isinstance(m, SpatialNorm)]
    assert len(d.z_q_entries()) == len(norms) and set(d.z_q_entries()) == set(norms)
    assert all(n.startswith("decoder.") for n in norms)  # the encoder keeps plain GroupNorm
    z_q, _, indices = model.encode(x[:1])
    assert all(shape == tuple(z_q.shape) for shape in d.info["z_q_in"].values())
    for stage in d.columns["decoder"]:  # each SpatialNorm sees the feature map at its box's resolution
        for n in stage.z_q:
            assert d.info["f_in"][n][-2:] in (stage.shape[-2:], tuple(s * 2 for s in stage.shape[-2:]))
    assert sum(len(s.z_q) for s in d.columns["decoder"] if "ResnetBlock" in s.label) == 2 * len(
        [m for m in model.decoder.modules() if type(m).__name__ == "ResnetBlock"])
    assert d.stage("decoder.norm_out").z_q == ("decoder.norm_out",)
    assert str(tuple(indices.shape)[1:])[1:-1] in d.stage("quantize").note


@pytest.mark.parametrize("causal", [False, True])
@torch.no_grad()
def test_maskgit_input_and_heads(causal):
    model = MaskGIT(16, (2, 3), dim=32, depth=2, heads=2, groups=2, num_classes=3, causal=causal)
    tokens = torch.randint(0, 16, (4, 2, 3, 2), generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3])
    d = architecture(model, tokens, labels)
    L = 6 - causal  # causal models shift the positions right behind the prefix
    assert d.stage("tok_emb").shape == (1, L, 2, 32) and d.stage("sum").shape == (1, L, 32)
    assert d.stage("prefix_emb").shape == (1, 32) and d.stage("input").shape == (1, L + 1, 32)
    assert d.stage("blocks.1").shape == (1, L + 1, 32)
    logits = model(tokens[:1], labels[:1])
    assert d.stage("logits").shape == tuple(logits.shape) == (1, 6, 2, 16)  # N positions either way
    assert d.stage("head").shape == (1, 6, 2 * 16)
    assert "(1, 7, 32)" in d.stage("input").note  # the position embeddings, one per slot


def test_figures_render(x):
    models = [(draw_vae, VAE(image_size=16, width=8, latent_dim=4), (x,)),
              (draw_vqvae, VQVAE(hidden=16, res_hidden=8, num_res_layers=1, embed_dim=8, n_embed=16), (x,)),
              (draw_vqgan, VQGAN(**TINY), (x,)), (draw_vqgan, MoVQ(**TINY), (x,)),
              (draw_maskgit, MaskGIT(16, 2, dim=32, depth=1, heads=2), (torch.zeros(1, 2, 2, dtype=torch.long),))]
    for draw, model, inputs in models:
        fig = draw(model, *inputs)
        n_boxes = len(architecture(model, *inputs).stages())
        assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes[0].patches) == n_boxes
        plt.close(fig)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="no architecture figure for Linear"):
        architecture(torch.nn.Linear(2, 2), torch.zeros(1, 2))
