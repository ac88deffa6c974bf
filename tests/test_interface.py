"""One interface across the package: named-tuple returns, one vocabulary, no import cycles, short modules."""
from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest
import torch

from minimovq.movq import MoVQ
from minimovq.outputs import ModelOutput, QuantizerOutput, TokenizedData
from minimovq.quantize import EMAVectorQuantizer, VectorQuantizer
from minimovq.tokens import tokenize_dataset
from minimovq.vqgan import VQGAN
from minimovq.vqvae import VQVAE
from tiny_configs import TINY  # tests/tiny_configs.py

PACKAGE = Path(__file__).resolve().parents[1] / "minimovq"

MODELS = {
    "vqvae": lambda: VQVAE(hidden=32, res_hidden=8, num_res_layers=1, embed_dim=8, n_embed=32),
    "vqgan": lambda: VQGAN(**TINY),
    "movq": lambda: MoVQ(**TINY),
    "movq-groups": lambda: MoVQ(**TINY, groups=4),
}


@pytest.mark.parametrize("name", MODELS)
def test_models_return_named_tuples_with_fixed_fields(name, images):
    torch.manual_seed(0)
    model = MODELS[name]()
    x = images(2, 3, 16, 16)
    enc = model.encode(x)
    assert type(enc) is QuantizerOutput and enc._fields == ("z_q", "vq_loss", "indices")
    out = model(x)
    assert type(out) is ModelOutput and out._fields == ("x_hat", "vq_loss", "indices")
    assert out.x_hat.shape == x.shape and out.vq_loss.ndim == 0
    assert torch.equal(out.indices, enc.indices)
    assert out.indices.shape[:3] == enc.z_q.shape[:1] + enc.z_q.shape[2:]


@pytest.mark.parametrize("cls", [VectorQuantizer, EMAVectorQuantizer])
def test_quantizers_return_named_tuples(cls):
    q = cls(n_embed=16, embed_dim=4)
    out = q(torch.randn(2, 4, 3, 3))
    assert type(out) is QuantizerOutput and out.indices.shape == (2, 3, 3)


def test_tokenize_dataset_returns_the_same_type_with_and_without_labels():
    model = MODELS["vqgan"]().eval()
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    plain = tokenize_dataset(model, x, batch_size=2)
    labelled = tokenize_dataset(model, torch.utils.data.TensorDataset(x, torch.arange(3)), batch_size=2)
    assert type(plain) is TokenizedData and plain.labels is None
    assert type(labelled) is TokenizedData and torch.equal(labelled.labels, torch.arange(3))
    assert torch.equal(plain.tokens, labelled.tokens)


def test_ema_update_skips_non_finite_latents_and_says_so():
    torch.manual_seed(0)
    q = EMAVectorQuantizer(n_embed=8, embed_dim=4, dead_code_threshold=1).train()
    z = torch.randn(2, 4, 3, 3)
    z[0, :, 1, 1] = float("nan")
    z[1, 2, 0, 0] = float("inf")
    with pytest.warns(RuntimeWarning, match="2 of 18 latent vectors are NaN or Inf"):
        q(z)
    assert torch.isfinite(q.embedding.weight).all() and torch.isfinite(q.embed_sum).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, _, idx = q(torch.randn(2, 4, 3, 3))  # a clean batch afterwards maps to real codes
    assert torch.isfinite(q.embedding.weight[idx]).all()


def _imports(path: Path) -> set[str]:
    """The minimovq modules a file imports at module level (inside functions too: a cycle is a cycle)."""
    mod = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(mod.parts[:-1]) if mod.name != "__init__" else list(mod.parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[:len(parts) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
                targets = [name] if node.module else [f"{name}.{a.name}" for a in node.names]
            else:
                targets = [node.module or ""]
            out.update(t for t in targets if t.startswith("minimovq"))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("minimovq"))
    return out


def test_no_import_cycles():
    files = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
             for p in PACKAGE.rglob("*.py")}
    graph = {m: {t for t in _imports(p) if t in files and t != m} for m, p in files.items()}
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for t in graph[m]:
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if not state.get(t):
                visit(t, stack + [t])
        state[m] = 2

    for m in graph:
        if not state.get(m):
            visit(m, [m])


def test_modules_stay_short():
    long = {p.name: n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 320}
    assert not long, f"modules over ~300 lines (split them by concept): {long}"
