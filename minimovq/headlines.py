"""One line per lesson for the README's reference table, computed from that lesson's recorded results.

``make reference`` stores each lesson's tables in ``docs/reference/results.json``; :func:`headline` turns them into
the sentence the README shows. The lessons in ``RULES`` get a line that names the comparison the lesson is about;
the others keep the ``"headline"`` they recorded, or get the best row of their first PSNR table.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["headline", "default_headline"]


def default_headline(results: dict[str, Any]) -> str:
    """The first table with a ``psnr`` column: its best row."""
    for table in results.values():
        if isinstance(table, dict) and table and all(isinstance(r, dict) and "psnr" in r for r in table.values()):
            name, row = max(table.items(), key=lambda kv: kv[1]["psnr"] or float("-inf"))
            return f"best PSNR: {name}, {row['psnr']:.2f} dB" + (f", SSIM {row['ssim']:.3f}" if "ssim" in row else "")
    return ""


def _vqvae(r: dict[str, Any]) -> str:
    q, rows = r["quantizers"], r["equal_rate"]
    seeds = [name.split("seed ")[1] for name in rows if name.startswith("VQ-VAE, seed ")]
    ahead = {k: sum(rows[f"VQ-VAE, seed {s}"][k] > rows[f"VAE, seed {s}"][k] for s in seeds) for k in ("psnr", "sharpness %")}
    return (f"EMA + restarts: PSNR {q['EMA + restarts']['psnr']:.2f} dB with {q['EMA + restarts']['usage %']:.0f}% "
            f"of the codebook used (plain VQ: {q['VQ (loss)']['usage %']:.0f}%); against a VAE at equal rate it has the "
            f"higher PSNR in {ahead['psnr']} of {len(seeds)} seeds, the higher sharpness in {ahead['sharpness %']} "
            f"of {len(seeds)}")


def _vqgan(r: dict[str, Any]) -> str:
    base, gan = r["ablation"]["L1+LPIPS"], r["ablation"]["L1+LPIPS+GAN"]
    return (f"GAN fine-tune vs L1+LPIPS at equal steps: FD-patch {gan['FD-patch']:.3f} vs {base['FD-patch']:.3f}, "
            f"PSNR {gan['psnr']:.2f} vs {base['psnr']:.2f} dB")


def _movq(r: dict[str, Any]) -> str:
    demo, fx = r["repeated_code_demo"], r["factorial_effects"]
    return (f"one code repeated: {demo['vqgan']} (VQGAN) and {demo['movq']} (MoVQ) cells copy the centre patch; "
            f"SpatialNorm's PSNR effect {fx['SpatialNorm, G=1']['Δpsnr']:+.2f} dB at G=1, "
            f"{fx['SpatialNorm, G=4']['Δpsnr']:+.2f} dB at G=4")


def _beyond(r: dict[str, Any]) -> str:
    q, rot = r["quantizers"], r["rotation_trick"]
    return (f"at 9 bits: FSQ {q['FSQ (8, 8, 8)']['psnr']:.2f} dB with {q['FSQ (8, 8, 8)']['usage %']:.0f}% of codes "
            f"used, VQ {q['VQ']['psnr']:.2f} dB with {q['VQ']['usage %']:.0f}%; the rotation trick takes VQ to "
            f"{rot['VQ + rotation trick']['psnr']:.2f} dB")


def _maskgit(r: dict[str, Any]) -> str:
    best = min(r["steps"], key=lambda k: r["steps"][k]["FD-shapes"])
    g = r["guidance"]
    return (f"lowest FD-shapes at {best}; guidance w=6 lifts MaskGIT's class agreement "
            f"{g['MaskGIT T=8, w=0']['class agreement']:.0%} → {g['MaskGIT T=8, w=6']['class agreement']:.0%}")


RULES: dict[str, Callable[[dict[str, Any]], str]] = {"02_vqvae": _vqvae, "03_vqgan": _vqgan, "04_movq": _movq,
                                                     "05_maskgit": _maskgit, "06_beyond_vq": _beyond}


def headline(lesson: str, results: dict[str, Any]) -> str:
    """The README's line for ``lesson``: its rule, else the headline the lesson recorded, else
    :func:`default_headline`."""
    rule = RULES.get(lesson)
    if rule is not None:
        try:
            return rule(results)
        except (KeyError, TypeError, ValueError):  # an older run without those tables
            pass
    return results.get("headline") or default_headline(results)
