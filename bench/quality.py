"""Quality of translations against the exact ground truth, on hard synthetic faces no model
has seen: CelebA's attributes, RaFD's expressions, or both at once (the mask vector).

For each preset it trains on 2 CPU cores and prints, per target (every single one, and
targets of two attributes at once: `--pairs`) and overall, what a user
would judge by: the share of the true change made (1 - L1(output, truth) / L1(input, truth)
where the truth differs from the input; a smudge earns nothing), the L1 outside it, target
accuracy by the judge (a classifier trained on faces of another seed, with generator-like
artefacts painted in: `evaluation.train_judge`), preservation, and PSNR to the truth at model
size and at the photos' full size next to doing nothing; and the seconds per step. It writes
each run's sample grids and a full-size contact sheet per data set (held-out photos x every
target, the joint model's cross-data-set targets included).

    python bench/quality.py                                    # edit-32 on CelebA
    python bench/quality.py --presets tiny edit-32             # beside the paper's networks
    python bench/quality.py --data rafd --presets edit-32      # expressions
    python bench/quality.py --data joint --presets edit-32     # CelebA + RaFD, one model
    python bench/quality.py --set num_iters=3000 --set d_projection=false
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from stargan_core.checkpoint import load_models
from stargan_core.config import preset
from stargan_core.data.loading import training_data
from stargan_core.domains import DomainSpec
from stargan_core.editing import Editor
from stargan_core.evaluation import EvaluationSet, evaluation_set, flat_metrics, train_judge
from stargan_core.evaluation.metrics import evaluate
from stargan_core.grids import photo_grid
from stargan_core.preprocessing import Preprocessing
from stargan_core.synthetic import write_celeba, write_rafd
from stargan_core.targets import Target, parse_target, single_targets
from stargan_core.train import TrainHooks, train

COLUMNS = [("translation_accuracy", "accuracy", "{:.1%}"),
           ("change_share", "change, 32", "{:.1%}"),
           ("change_share_full", "true change", "{:.1%}"),
           ("l1_outside_full", "L1 outside", "{:.4f}"),
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


def synthetic_sets(out: Path, data: str, images: int, identities: int) -> list[str]:
    """The synthetic folders of `data` (celeba, rafd or joint), drawn once."""
    urls = []
    if data in ("celeba", "joint"):
        celeba = out / f"celeba-{images}"
        if not (celeba / "list_attr_celeba.txt").is_file():
            write_celeba(celeba, images, seed=0, progress=True)
        urls.append(str(celeba))
    if data in ("rafd", "joint"):
        rafd = out / f"rafd-{identities}"
        if not (rafd / "synthetic.json").is_file():
            write_rafd(rafd, identities, seed=0, test_identities=max(2, identities // 8),
                       progress=True)
        urls.append(str(rafd))
    return urls


class Truth(torch.nn.Module):
    """The ceiling: a generator that answers each held-out image with its exact translation at
    model size, so that its scores at full size are what a perfect model-size edit reaches
    once carried back (the carry-back blurs what a small square cannot hold)."""

    def __init__(self, evidence: EvaluationSet, spec: DomainSpec) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # for the device
        self.evidence, self.spec = evidence, spec

    def forward(self, x: torch.Tensor, c_trg: torch.Tensor, c_org: torch.Tensor) -> torch.Tensor:
        test, truth = self.evidence.test, self.evidence.truth
        out = []
        for xi, trg, org in zip(x, c_trg, c_org, strict=True):
            index = next((i for i, h in enumerate(test.images) if torch.equal(h, xi)), None)
            values = {}  # what the labels change, less the group members switched off
            for i, ls in enumerate(self.spec.label_sets):
                for k, d in enumerate(ls.domains, self.spec.span(i).start):
                    if trg[k] != org[k] and (trg[k] or ls.group_of(d) is None):
                        values[d] = int(trg[k])
            answer = truth.synthetic.truth(test.ids[index], values) if index is not None \
                else None  # not a held-out image: the reconstruction's input, kept
            out.append(truth.preprocess(answer) if answer else xi)
        return torch.stack(out)


def all_targets(spec: DomainSpec, pairs: list[str]) -> list[Target]:
    """Every single target, then the targets of two attributes at once that `spec` knows."""
    names = {d for ls in spec.label_sets for d in ls.domains}
    chosen = [p for p in pairs if {v.split("=")[0] for v in p.split(",")} <= names]
    return single_targets(spec) + [parse_target(spec, p) for p in chosen]


def contact_sheet(editor: Editor, photos: list[torch.Tensor], labels: torch.Tensor,
                  path: Path, targets: list[Target]) -> None:
    """Whole held-out photos, each then translated into every target."""
    edited = editor.edit(photos, targets, c_org=labels)
    rows = [[photo, *(per_target[i] for per_target in edited)] for i, photo in enumerate(photos)]
    photo_grid(rows, ["input", *(t.text for t in targets)], cell=128).save(path)


def table(results: dict[str, dict[str, float]]) -> list[str]:
    """Per run, the overall row and one row per target."""
    lines = [f"{'run / target':28} " + " ".join(f"{t:>11}" for _, t, _ in COLUMNS)]

    def row(label: str, metrics: dict[str, float], prefix: str, suffix: str) -> str:
        cells = [metrics.get(f"{prefix}{key}{suffix}") for key, _, _ in COLUMNS]
        return f"{label:28} " + " ".join(
            f"{style.format(v) if v is not None else '-':>11}"
            for v, (_, _, style) in zip(cells, COLUMNS, strict=True))

    for name, metrics in results.items():
        # eval/, eval/<data set>/ and, for a joint model, eval/<data set>/cross/: its faces
        # translated into the other data set's targets, measured against the truth alone.
        for prefix in sorted({k.rsplit("/", 1)[0] + "/" for k in metrics
                              if k.endswith("/change_share_full")}):
            part = prefix.removeprefix("eval/").rstrip("/").replace("/cross", " to the other's")
            lines.append(row(f"{name} {part}".strip(), metrics, prefix, ""))
            targets = sorted(k.rsplit("/", 1)[1] for k in metrics
                             if k.startswith(f"{prefix}change_share_full/"))
            lines += [row(f"  {t}", metrics, prefix, f"/{t}") for t in targets]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--presets", nargs="+", default=["edit-32"])
    parser.add_argument("--pairs", nargs="*", default=["Blond_Hair,Young=0", "Brown_Hair,Male"],
                        help="targets of two attributes at once, measured beside the single "
                        "ones (those of a data set's domains)")
    parser.add_argument("--data", choices=("celeba", "rafd", "joint"), default="celeba",
                        help="what to train on (default: celeba)")
    parser.add_argument("--images", type=int, default=6000,
                        help="synthetic CelebA faces; the last 10%% are held out (default: 6000)")
    parser.add_argument("--identities", type=int, default=64,
                        help="synthetic RaFD identities x 24 photos; 1 in 8 held out "
                        "(default: 64)")
    parser.add_argument("--eval-images", type=int, default=300,
                        help="held-out photos evaluated per data set (default: 300)")
    parser.add_argument("--judge-images", type=int, default=2000,
                        help="unseen faces the judge learns from (default: 2000)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a training option of every preset")
    parser.add_argument("--out", default="bench-output/quality", help="data, runs and sheets")
    args = parser.parse_args()
    out = Path(args.out)
    urls = synthetic_sets(out, args.data, args.images, args.identities)
    configs = {name: preset(name, **parse_overrides(args.set)) for name in args.presets}
    results = {}
    sizes = {config.image_size for config in configs.values()}
    for size in sorted(sizes):  # the ceiling at each resolution
        data = training_data(urls, size, preload=False)
        ceiling = {}
        for url in urls:
            s = evaluation_set(url, data.spec, size, limit=args.eval_images)
            judge = train_judge(data.spec, s.label_set, s.train, s.truth, images=200, steps=50)
            ceiling[data.spec.label_sets[s.label_set].dataset] = evaluate(
                Truth(s, data.spec), judge, data.spec, s.test, s.label_set, truth=s.truth,
                targets=all_targets(data.spec, args.pairs))
        results[f"truth at {size} px"] = flat_metrics(ceiling, len(urls) > 1)
    for name, config in configs.items():
        data = training_data(urls, config.image_size, progress=True)
        spec, joint = data.spec, len(urls) > 1
        # The evidence: held-out photos with their truth, and a judge per data set.
        sets = [evaluation_set(url, spec, config.image_size, limit=args.eval_images)
                for url in urls]
        print(f"training the judge on {args.judge_images} unseen faces per data set ...",
              flush=True)
        judges = [train_judge(spec, s.label_set, s.train, s.truth, images=args.judge_images)
                  for s in sets]
        run = f"{name}-{args.data}"
        print(f"training {run}: {config.num_iters} steps ...", flush=True)
        start = time.perf_counter()
        (out / run).mkdir(parents=True, exist_ok=True)
        with open(out / run / "losses.jsonl", "w") as losses:
            def log(step: int, values: dict[str, float], losses=losses) -> None:
                losses.write(json.dumps({"step": step, **values}) + "\n")
                losses.flush()

            result = train(config, data, out / run, TrainHooks(on_log=log), resume=False)
        seconds = time.perf_counter() - start
        g, d, *_ = load_models(result.checkpoint)
        evaluations = {spec.label_sets[s.label_set].dataset:
                       evaluate(g, judge, spec, s.test, s.label_set, truth=s.truth, cross=joint,
                                targets=all_targets(spec, args.pairs))
                       for s, judge in zip(sets, judges, strict=True)}
        metrics = flat_metrics(evaluations, joint)
        for s, url in zip(sets, urls, strict=True):
            dataset = spec.label_sets[s.label_set].dataset
            editor = Editor(g, d, spec, Preprocessing.of(s.truth.raw_format, config.image_size),
                            framing="model")
            picks = list(range(0, len(s.test), max(1, len(s.test) // 6)))[:6]  # RaFD: each
            photos = [s.truth.photo(s.test.ids[i]) for i in picks]  # expression in turn
            sheet = out / f"{run}-{dataset}-contact-sheet.png"
            contact_sheet(editor, photos, s.test.labels[picks], sheet,
                          all_targets(spec, args.pairs))
            print(f"contact sheet: {sheet} ({url})")
        results[run] = metrics | {"seconds_per_step": seconds / config.num_iters,
                                  "minutes": seconds / 60}
        (out / run / "metrics.json").write_text(json.dumps(results[run], indent=1))

    print(f"\nhard synthetic faces: {args.eval_images} held out per data set x every single "
          f"target that changes them; {torch.get_num_threads()} threads")
    print("\n".join(table(results)))
    print("(truth at N px: the exact edit at model size, carried back: the ceiling at full "
          "size; its accuracy is a judge's trained for seconds, not measured)")
    for run, metrics in results.items():
        if "minutes" in metrics:
            print(f"{run}: {metrics['seconds_per_step']:.3f} s/step, {metrics['minutes']:.1f} "
                  "minutes of training")
    print(f"sample grids and losses: {out}/<run>/; contact sheets: "
          f"{out}/<run>-<data>-contact-sheet.png")


if __name__ == "__main__":
    main()
