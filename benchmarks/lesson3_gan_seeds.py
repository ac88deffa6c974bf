"""Does Lesson 3's GAN fine-tune robustly beat L1+LPIPS at a profile's budget? The check behind its recipe.

    OMP_NUM_THREADS=1 python benchmarks/lesson3_gan_seeds.py --seed 1 --disc-weights 0.8 0.3 0.1
    OMP_NUM_THREADS=1 python benchmarks/lesson3_gan_seeds.py --seed 1 --gan-start "STEPS // 3" --grid /tmp/s1.png
    python benchmarks/lesson3_gan_seeds.py --seed 2 --profile gpu

Runs Lesson 3's solution notebook up to its ablation, with the model's and the training's seeds replaced by
``--seed``, the L1 arm dropped, and one GAN fine-tune per ``--disc-weights`` value on the same L1+LPIPS base.
``--gan-start`` replaces the lesson's branch point (an expression in ``STEPS``); ``--grid`` saves the
reconstructions of every arm as one image.
Prints the table the lesson prints (PSNR, SSIM, LPIPS, sharpness, FD-patch, FD-VGG) and the grey-level spectrum of
the reconstructions over the inputs' (``power lo``/``power hi``: its geometric mean over the lower and the upper half
of the frequencies; 1 = the inputs' energy). Each run trains from scratch
in a temporary checkpoint folder. About 10 minutes per seed on one CPU core in the ``cpu`` profile.
"""
from __future__ import annotations

import argparse

from _notebook import execute, replace_once, solution_code_cells

TRAIN = "models, histories = {}, {}"


def patched_cells(seed: int, weights: list[float], gan_start: str | None = None, grid: str | None = None) -> list:
    """The solution's code cells up to the ablation table, with the seeds and the arms replaced."""
    cells = []
    for cell in solution_code_cells("03_vqgan"):
        src = cell.source
        if "def make_vqgan(" in src:
            src = replace_once(src, "    seed_everything(0)\n", f"    seed_everything({seed})\n", "the model's seed")
        if "def train_vqgan(" in src:
            src = replace_once(src, "    torch.manual_seed(1)\n    loss_fn", f"    torch.manual_seed({seed + 1})\n    loss_fn",
                               "the training's seed")
        if gan_start is not None and "GAN_START = " in src:
            src = replace_once(src, "GAN_START = 2 * STEPS // 3", f"GAN_START = {gan_start}", "the branch point")
        if TRAIN in src:
            arms = "".join(f'models["GAN w={w:g}"], histories["GAN w={w:g}"] = train_vqgan("GAN w={w:g}", '
                           f'gan_loss(disc_weight={w}), FINE_TUNE, init=base)\n' for w in weights)
            src = (src[:src.index(TRAIN)] + TRAIN + "\n" + 'base, base_history = train_vqgan("L1+LPIPS-base", '
                   'lpips_loss(), GAN_START)\nmodels["L1+LPIPS"], histories["L1+LPIPS"] = train_vqgan("L1+LPIPS", '
                   'lpips_loss(), FINE_TUNE, init=base)\n' + arms)
        last = 'record("ablation"' in src
        if last:
            src = src[:src.index('results = {"L1"')] + (
                'results = {k: evaluate(m, base_history.seconds + histories[k].seconds) for k, m in models.items()}\n'
                '_, real_power = radial_power_spectrum(x_all)\n'
                'for k, m in models.items():   # the grey-level spectrum, relative to the inputs (geometric means)\n'
                '    log_ratio = (radial_power_spectrum(reconstruct_all(m))[1] / real_power).log()\n'
                '    half = len(log_ratio) // 2\n'
                '    results[k]["power lo"] = log_ratio[:half].mean().exp().item()\n'
                '    results[k]["power hi"] = log_ratio[half:].mean().exp().item()\n'
                f'print("seed {seed}, GAN from step", GAN_START)\nprint(format_table(results))\n')
            if grid:
                src += ("with torch.no_grad():\n    recons = {k: m(x_test)[0].float().clamp(-1, 1) for k, m in models.items()}\n"
                        f"viz.compare_grid({{'input': x_test, **recons}}, n=16).savefig({grid!r})\n")
        cell.source = src
        cells.append(cell)
        if last:
            return cells
    raise RuntimeError("Lesson 3 has no ablation cell (record(\"ablation\", ...)): this benchmark needs updating")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--disc-weights", type=float, nargs="+", default=[0.8, 0.3, 0.1])
    p.add_argument("--gan-start", default=None, help='the branch point, e.g. "STEPS // 3" (default: the lesson\'s)')
    p.add_argument("--grid", default=None, help="save every arm's reconstructions of 16 test images to this PNG")
    p.add_argument("--profile", default="cpu", choices=("quick", "cpu", "gpu"))
    a = p.parse_args()
    execute(patched_cells(a.seed, a.disc_weights, a.gan_start, a.grid), a.profile, marker="FD-patch")


if __name__ == "__main__":
    main()
