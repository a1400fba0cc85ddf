"""How well a verdict predicts whether an edit took, against the exact ground truth, and what
the verdicts cost.

A trained generator translates held-out synthetic faces (full-size photos, as translate-bulk
does) into every single target that changes them. Each output's ground-truth outcome is
whether it made at least a quarter, or half, of the true change (`metrics.true_change` at
full size: 1 - L1(output, truth) / L1(input, truth) where the truth differs from the input).
Per target the bench prints how often the verdict says the edit took beside how often it
did, and the AUC with which the judge's confidence, and the changed share (which needs no
judge), separate outputs that took from those that did not. The judge is trained as the
train-stargan flow trains the one it registers (`train_judge`, on unseen faces with
artefacts painted in).

It writes a contact sheet of the first held-out faces x every target, the outputs whose
verdict says the edit did not take framed in red. Then the cost, in the same run on the
same photos: translations/s for the translation alone, with the changed share, and with the
whole verdict (changed share and judge).

    make demo && python bench/verdicts.py \\
        --checkpoint <the demo's run>/checkpoints --data demo-output/storage/raw/synthetic-celeba
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from stargan_core.checkpoint import load_models, resolve_checkpoint
from stargan_core.editing import Editor
from stargan_core.evaluation import evaluation_set, train_judge
from stargan_core.evaluation.metrics import true_change
from stargan_core.evaluation.verdicts import NOT_TAKEN_BELOW, Judge, verdicts
from stargan_core.grids import photo_grid
from stargan_core.io.images import decode_rgb
from stargan_core.preprocessing import Preprocessing
from stargan_core.targets import satisfies, single_targets

TOOK = (0.25, 0.5)  # an output took when it made at least this share of the true change


def auc(scores: list[float], took: list[bool]) -> float | None:
    """The chance that an output that took scores above one that did not (ties: half);
    None without both kinds."""
    pos = [s for s, t in zip(scores, took, strict=True) if t]
    neg = [s for s, t in zip(scores, took, strict=True) if not t]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="a .ckpt file or a run folder (its latest checkpoint)")
    parser.add_argument("--data", required=True,
                        help="the raw synthetic CelebA folder it was trained on (its held-out "
                        "split is judged, against the truth drawn with it)")
    parser.add_argument("--eval-images", type=int, default=400, help="held-out faces")
    parser.add_argument("--judge-images", type=int, default=2000,
                        help="unseen faces the judge learns from (the flow's default)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per variant")
    parser.add_argument("--out", default="bench-output/verdicts", help="the contact sheet's folder")
    args = parser.parse_args()

    g, d, spec, config, _ = load_models(resolve_checkpoint(args.checkpoint))
    evidence = evaluation_set(args.data, spec, config.image_size, limit=args.eval_images)
    if evidence.truth is None:
        raise SystemExit(f"{args.data} has no ground truth: give a synthetic data set")
    truth = evidence.truth
    print(f"training the judge on {args.judge_images} unseen faces ...", flush=True)
    judge = Judge(spec, config.image_size, {evidence.label_set: train_judge(
        spec, evidence.label_set, evidence.train, truth, images=args.judge_images)})
    editor = Editor(g, d, spec, Preprocessing.of(truth.raw_format, config.image_size),
                    framing="model")
    test = evidence.test
    photos = [truth.photo(i) for i in test.ids]

    print(f"\n{len(test)} held-out faces x every single target that changes them. Took: the "
          "output made at least 25 % / 50 % of the true change (full size); judge: the verdict "
          f"says it took (confidence >= {NOT_TAKEN_BELOW}); AUC of the confidence and of the "
          "changed share against each outcome ('-': one outcome only)")
    print(f"{'target':<12} {'outputs':>7} {'true change':>11} {'took 25':>7} {'took 50':>7} "
          f"{'judge':>6} {'AUC conf 25':>11} {'50':>5} {'AUC changed 25':>14} {'50':>5}")
    for target in single_targets(spec):
        need = (~satisfies(spec, test.labels, target)).nonzero().flatten().tolist()
        found_all, shares = [], []
        for start in range(0, len(need), args.batch_size):
            rows = need[start:start + args.batch_size]
            done = editor.translate([photos[i] for i in rows], [target],
                                    c_org=test.labels[rows])
            found = verdicts(judge, done, [target])[0]
            files = truth.truths([test.ids[i] for i in rows], target)
            for k, (i, file) in enumerate(zip(rows, files, strict=True)):
                if file is not None:
                    share, _ = true_change(done.outputs[0][k][None] / 255,
                                           photos[i][None] / 255, decode_rgb(file)[None] / 255)
                    found_all.append(found[k])
                    shares.append(float(share[0]))
        if not shares:
            continue
        confidence = [v.confidence for v in found_all]
        changed = [v.changed_share for v in found_all]
        cells = []
        for scores in (confidence, changed):
            for took in TOOK:
                value = auc(scores, [s >= took for s in shares])
                cells.append("-" if value is None else f"{value:.2f}")
        n = len(shares)
        print(f"{target.text:<12} {n:>7} {sum(shares) / n:>11.1%} "
              f"{sum(s >= TOOK[0] for s in shares) / n:>7.0%} "
              f"{sum(s >= TOOK[1] for s in shares) / n:>7.0%} "
              f"{sum(not v.not_taken for v in found_all) / n:>6.0%} "
              f"{cells[0]:>11} {cells[1]:>5} {cells[2]:>14} {cells[3]:>5}")

    targets = single_targets(spec)
    sheet = Path(args.out) / "verdicts-contact-sheet.png"
    sheet.parent.mkdir(parents=True, exist_ok=True)
    done = editor.translate(photos[:8], targets)
    judged = verdicts(judge, done, targets)
    photo_grid([[photo, *(outputs[i] for outputs in done.outputs)]
                for i, photo in enumerate(done.inputs)], ["input", *(t.text for t in targets)],
               flagged=[(i, k + 1) for k, found in enumerate(judged)
                        for i, v in enumerate(found) if v.not_taken]).save(sheet)
    print(f"contact sheet (the first 8 held-out faces; framed in red: the verdict says the edit "
          f"did not take): {sheet}")
    batches = [photos[i:i + args.batch_size] for i in range(0, len(photos), args.batch_size)]
    variants = {"translation alone": lambda done: None,
                "+ changed share": lambda done: verdicts(None, done, targets),
                "+ changed share and judge": lambda done: verdicts(judge, done, targets)}
    timings = {}
    for _ in range(args.repeats):  # interleaved: drift in the machine's speed hits all alike
        for name, judged in variants.items():
            start = time.perf_counter()
            for batch in batches:
                judged(editor.translate(batch, targets))
            timings.setdefault(name, []).append(time.perf_counter() - start)
    translations = len(photos) * len(targets)
    base = translations / min(timings["translation alone"])
    print(f"\ncost: {len(photos)} photos x {len(targets)} targets, best of {args.repeats}, "
          f"{torch.get_num_threads()} threads (D reads each photo's labels)")
    for name, seconds in timings.items():
        rate = translations / min(seconds)
        print(f"{name:<27} {rate:8.1f} translations/s  {rate / base:5.2f}x")


if __name__ == "__main__":
    main()
