"""Quality of translations against the exact ground truth: the paper's networks and losses
(`tiny`) beside the editing preset (`edit-32`), each trained on the CPU budget on one hard
synthetic CelebA set and judged by the same independent attribute classifier.

For each preset it prints target accuracy, preservation, PSNR to the truth at model size and
at the photos' full size, next to doing nothing (the untouched input, measured in the same
run: a model worth running beats it), and seconds per training step; it writes each
preset's sample grid and a full-size contact sheet (held-out photos x every target).

    python bench/quality.py                                # tiny and edit-32, ~25 minutes
    python bench/quality.py --presets edit-32 --set num_iters=3000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from stargan_core.checkpoint import load_models
from stargan_core.config import preset
from stargan_core.data import read_dataset
from stargan_core.data.dataset import FaceDataset, held_out, preload
from stargan_core.data.images import read_rgb
from stargan_core.editing import Editor
from stargan_core.evaluation import evaluate, ground_truth_for, train_classifier
from stargan_core.preprocessing import Preprocessing
from stargan_core.synthetic import write_celeba
from stargan_core.targets import single_targets
from stargan_core.train import train
from stargan_core.translate import photo_grid

COLUMNS = [("translation_accuracy", "target acc", "{:.1%}"),
           ("preservation", "preserved", "{:.1%}"),
           ("psnr", "PSNR", "{:.1f}"), ("psnr_do_nothing", "nothing", "{:.1f}"),
           ("psnr_full", "PSNR full", "{:.1f}"), ("psnr_full_do_nothing", "nothing full", "{:.1f}")]


def parse_overrides(items: list[str]) -> dict[str, object]:
    overrides = {}
    for item in items:
        name, _, value = item.partition("=")
        overrides[name] = json.loads(value) if value[:1].isdigit() or value in (
            "true", "false") else value
    return overrides


def contact_sheet(editor: Editor, photos: list[torch.Tensor], labels: torch.Tensor,
                  path: Path) -> None:
    """Whole held-out photos, each then translated into every single target."""
    targets = single_targets(editor.spec)
    edited = editor.edit(photos, targets, c_org=labels)
    rows = [[photo, *(per_target[i] for per_target in edited)] for i, photo in enumerate(photos)]
    photo_grid(rows, ["input", *(t.text for t in targets)], cell=128).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "edit-32"])
    parser.add_argument("--images", type=int, default=6000,
                        help="synthetic faces; the last 10%% are held out (default: 6000)")
    parser.add_argument("--eval-images", type=int, default=300, help="held-out faces evaluated")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a training option of every preset")
    parser.add_argument("--out", default="bench-output/quality", help="data, runs and sheets")
    args = parser.parse_args()
    out = Path(args.out)
    data = out / f"celeba-{args.images}"
    if not (data / "list_attr_celeba.txt").is_file():
        write_celeba(data, args.images, seed=0, progress=True)
    raw = read_dataset(data)
    spec = raw.spec
    configs = {name: preset(name, **parse_overrides(args.set)) for name in args.presets}
    sizes = {c.image_size for c in configs.values()}
    sets = {}
    for size in sizes:
        print(f"decoding {args.images} images at {size} px ...", flush=True)
        sets[size] = (preload(FaceDataset(raw.split("train"), spec, raw.format, size)),
                      held_out(FaceDataset(raw.split("test"), spec, raw.format, size),
                               args.eval_images))
    # One independent classifier per resolution, the same for every preset.
    classifiers = {size: train_classifier(sets[size][0], spec) for size in sizes}
    sheet_photos = [read_rgb(s.path) for s in raw.split("test")[:6]]
    results = {}
    for name, config in configs.items():
        train_set, test_set = sets[config.image_size]
        print(f"training {name}: {config.num_iters} steps ...", flush=True)
        start = time.perf_counter()
        result = train(config, spec, [train_set], out / name, sample_images=test_set.images[:8],
                       sample_labels=test_set.labels[:8], data_format=raw.format, resume=False)
        seconds = time.perf_counter() - start
        g, d, *_ = load_models(result.checkpoint)
        truth = ground_truth_for(str(data), config.image_size)
        evaluation = evaluate(g, classifiers[config.image_size], spec, test_set, truth=truth)
        editor = Editor(g, d, spec, Preprocessing.of(raw.format, config.image_size))
        contact_sheet(editor, sheet_photos, test_set.labels[:6], out / f"{name}-contact-sheet.png")
        results[name] = (evaluation.metrics(), seconds / config.num_iters, seconds)
        (out / name / "metrics.json").write_text(json.dumps(results[name][0], indent=1))

    print(f"\n{args.images} hard synthetic faces, {args.eval_images} held out x every single "
          f"target that changes them; {torch.get_num_threads()} threads")
    header = f"{'preset':10} " + " ".join(f"{title:>12}" for _, title, _ in COLUMNS)
    print(header + f" {'s/step':>7} {'minutes':>8}")
    for name, (metrics, per_step, seconds) in results.items():
        cells = " ".join(f"{style.format(metrics[f'eval/{key}']):>12}"
                         for key, _, style in COLUMNS)
        print(f"{name:10} {cells} {per_step:7.3f} {seconds / 60:8.1f}")
    for name, (metrics, *_) in results.items():
        per_target = {k.rsplit("/", 1)[1]: round(v, 3) for k, v in metrics.items()
                      if k.startswith("eval/translation_accuracy/")}
        print(f"{name} target accuracy per target: {per_target}")
    print(f"sample grids: {out}/<preset>/samples; contact sheets: {out}/<preset>-contact-sheet.png")


if __name__ == "__main__":
    main()
