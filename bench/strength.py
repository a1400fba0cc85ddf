"""Edit strength against the exact ground truth: a trained generator conditioned on label
differences, its edit scaled by s (`editing.ScaledEdit`: 0 nothing, 1 as trained, up to 2), on
held-out synthetic faces with their true translations.

Per strength it prints the share of the true change made (1 - L1(output, truth) /
L1(input, truth) where the truth differs from the input), the L1 outside that region,
preservation and target accuracy by the judge (a classifier that G never saw, trained on
unseen faces with artefacts painted in), and PSNR to the truth at model and full size; and it
writes a contact sheet of one face: a row per target, the input then a column per strength.

    make demo && python bench/strength.py \\
        --checkpoint <the demo's run>/checkpoints --data demo-output/storage/raw/synthetic-celeba
    python bench/strength.py --checkpoint runs/edit --data data/synthetic/celeba --face 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from stargan_core.checkpoint import load_models, resolve_checkpoint
from stargan_core.editing import Editor, scaled
from stargan_core.evaluation import evaluation_set, flat_metrics, train_judge
from stargan_core.evaluation.metrics import evaluate
from stargan_core.grids import photo_grid
from stargan_core.preprocessing import Preprocessing
from stargan_core.targets import single_targets

COLUMNS = [("change_share", "true change", "{:.1%}"), ("l1_outside", "L1 outside", "{:.4f}"),
           ("preservation", "preserved", "{:.1%}"), ("translation_accuracy", "accuracy",
                                                      "{:.1%}"),
           ("psnr", "PSNR", "{:.1f}"), ("psnr_full", "PSNR full", "{:.1f}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="a .ckpt file or a run folder (its latest checkpoint) of a "
                        "generator conditioned on label differences (edit-32, edit-128)")
    parser.add_argument("--data", required=True,
                        help="the raw synthetic CelebA folder it was trained on (its held-out "
                        "split is judged, against the truth drawn with it)")
    parser.add_argument("--strengths", type=float, nargs="+",
                        default=[0.0, 0.25, 0.5, 1.0, 1.5, 2.0])
    parser.add_argument("--eval-images", type=int, default=400, help="held-out faces")
    parser.add_argument("--judge-images", type=int, default=1000,
                        help="unseen faces the judge learns from")
    parser.add_argument("--face", type=int, default=0, help="the held-out face of the sheet")
    parser.add_argument("--out", default="bench-output/strength", help="the contact sheet's folder")
    args = parser.parse_args()

    g, d, spec, config, _ = load_models(resolve_checkpoint(args.checkpoint))
    for s in args.strengths:
        scaled(g, s)  # a model or a strength that cannot be scaled fails before any work
    evidence = evaluation_set(args.data, spec, config.image_size, limit=args.eval_images)
    if evidence.truth is None:
        raise SystemExit(f"{args.data} has no ground truth: give a synthetic data set "
                         "(stargan synth)")
    print(f"training the judge on {args.judge_images} unseen faces ...", flush=True)
    judge = train_judge(spec, evidence.label_set, evidence.train, evidence.truth,
                        images=args.judge_images)
    rows = []
    for s in args.strengths:
        start = time.perf_counter()
        found = evaluate(scaled(g, s), judge, spec, evidence.test, evidence.label_set,
                         truth=evidence.truth)
        metrics = flat_metrics({spec.label_sets[evidence.label_set].dataset: found}, False)
        rows.append((s, metrics, time.perf_counter() - start))

    print(f"\n{len(evidence.test)} held-out faces x every single target that changes them; "
          f"{torch.get_num_threads()} threads")
    print(f"{'strength':>8} " + " ".join(f"{title:>11}" for _, title, _ in COLUMNS) + "  seconds")
    for s, metrics, seconds in rows:
        cells = [metrics.get(f"eval/{key}") for key, _, _ in COLUMNS]
        print(f"{s:>8g} " + " ".join(f"{style.format(v) if v is not None else '-':>11}"
                                     for v, (_, _, style) in zip(cells, COLUMNS, strict=True))
              + f"  {seconds:7.1f}")

    editor = Editor(g, d, spec, Preprocessing.of(evidence.truth.raw_format, config.image_size),
                    framing="model")
    targets = single_targets(spec)
    face = evidence.test.ids[args.face]
    photo = evidence.truth.photo(face)
    labels = evidence.test.labels[args.face:args.face + 1]
    by_strength = [editor.edit([photo], targets, c_org=labels, strength=s)
                   for s in args.strengths]
    sheet_rows = [[photo, *(edited[t][0] for edited in by_strength)]
                  for t in range(len(targets))]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sheet = out / "strength-contact-sheet.png"
    photo_grid(sheet_rows, ["input", *(f"strength {s:g}" for s in args.strengths)],
               cell=128).save(sheet)
    print(f"contact sheet ({face}; rows: {', '.join(t.text for t in targets)}): {sheet}")


if __name__ == "__main__":
    main()
