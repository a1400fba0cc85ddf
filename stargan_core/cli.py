"""The `stargan` command: make synthetic data, prepare shards, train, translate, evaluate
without any server, and promote a registered model version."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from statistics import mean

from stargan_core.config import DEFAULT_CPU_PRESET, PRESETS, TrainConfig, preset
from stargan_core.preprocessing import FRAMINGS
from stargan_core.synthetic.faces import STYLES
from stargan_core.threads import set_torch_threads, threads_environment, usable_cores

EXAMPLES = """\
examples:
  stargan synth --out data/synthetic
  stargan preprocess data/synthetic/celeba --out storage/ --image-size 128
  stargan train --data data/synthetic/celeba --out runs/edit
  stargan train --data storage/datasets/celeba/v1 --preset paper-128 --out runs/paper
  stargan translate --checkpoint runs/edit --input data/synthetic/celeba/img_align_celeba \\
      --target Blond_Hair --target Male=0 --out translated/
  stargan evaluate --checkpoint runs/edit --data data/synthetic/celeba
  stargan promote stargan-celeba 3
"""


def _parse_overrides(items: list[str]) -> dict[str, object]:
    """`--set name=value` pairs; the config converts and checks the values."""
    overrides: dict[str, object] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"stargan train: --set expects NAME=VALUE, got '{item}'")
        overrides[name] = value
    return overrides


def _domains(text: str | None) -> list[str] | None:
    return [d.strip() for d in text.split(",") if d.strip()] if text else None


def cmd_synth(args: argparse.Namespace) -> int:
    from stargan_core.synthetic import write_celeba, write_rafd

    out = Path(args.out)
    if args.dataset in ("celeba", "both"):
        write_celeba(out / "celeba", args.num_images, args.seed, progress=True, style=args.style)
        print(f"CelebA layout: {out / 'celeba'} ({args.num_images} images, {args.style} scenes; "
              "synthetic.json lets `stargan evaluate` draw the ground truth)")
    if args.dataset in ("rafd", "both"):
        write_rafd(out / "rafd", args.rafd_identities, args.seed, progress=True,
                   style=args.style)
        print(f"RaFD layout:   {out / 'rafd'} ({args.rafd_identities} identities x 8 "
              "expressions x 3 gazes; 256 px crops in which the face fills the frame, as RaFD "
              "is trained on; synthetic.json for the ground truth)")
    return 0


def cmd_preprocess(args: argparse.Namespace) -> int:
    from collections import Counter

    from tqdm import tqdm

    from stargan_core.data.prepare import PrepareConfig, ShardResult, dataset_url, prepare_dataset
    from stargan_core.io.images import ImageRule
    from stargan_core.storage import default_root

    name = args.name or args.source.rstrip("/").rsplit("/", 1)[-1]
    output = dataset_url(args.out or default_root(), name, args.version)
    config = PrepareConfig(
        args.source, output, args.format,
        ImageRule(args.image_size, args.encoding, args.quality, args.max_upscale),
        args.rows_per_shard, args.row_group_size, overwrite=args.overwrite,
    )
    bars: list[tqdm] = []  # opened with the first shard: errors in planning print cleanly
    counts = Counter[str]()  # over all shards so far

    def on_shard(result: ShardResult, done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, desc="shards", unit="shard", dynamic_ncols=True))
        counts.update(rows=result.rows, rejected=len(result.rejected))
        bars[0].update()
        bars[0].set_postfix(counts)

    manifest = prepare_dataset(config, workers=args.workers, on_shard=on_shard)
    for bar in bars:
        bar.close()
    splits = ", ".join(f"{split} {info['rows']}" for split, info in manifest["splits"].items())
    print(f"{output}: {manifest['rows']} images ({splits}) of {manifest['inputs']} inputs in "
          f"{len(manifest['shards'])} shards")
    rejected = manifest["rejected"]
    if rejected["count"]:
        reasons = ", ".join(f"{n} {reason}" for reason, n in rejected["by_reason"].items())
        print(f"rejected {rejected['count']} inputs ({reasons}): see "
              f"{output}/{rejected['path']}", file=sys.stderr)
    print(f"manifest: {output}/manifest.json")
    return 0


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The config `stargan train` trains with: the preset, its --set options, then --iters,
    --batch-size and --seed; a ValueError names what is wrong."""
    overrides = _parse_overrides(args.set or [])
    for name in ("num_iters", "batch_size", "seed"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    return preset(args.preset, **overrides)


def cmd_train(args: argparse.Namespace) -> int:
    import subprocess

    from tqdm import tqdm

    from stargan_core.checkpoint import checkpoint_step, latest_checkpoint
    from stargan_core.data.loading import training_data
    from stargan_core.devices import check_gpus, resolve_device
    from stargan_core.distributed import World, torchrun_command
    from stargan_core.train import TrainHooks, train

    config = train_config(args)
    world = World.from_environment()
    if args.processes < 1:
        raise ValueError(f"--processes must be 1 or more, got {args.processes}")
    if args.processes > 1 and not world.parallel:  # this same command, under torchrun
        # or say what to change
        World(size=args.processes).local_batch(config.batch_size)
        check_gpus(resolve_device(args.device), args.processes, "training processes")
        command = torchrun_command(args.processes, "stargan_core.cli", args.argv)
        return subprocess.run(command, check=False,
                              env=threads_environment(args.processes)).returncode
    say = print if world.is_main else (lambda *_, **__: None)
    data = training_data(args.data, config.image_size, format=args.format,
                         domains=_domains(args.domains), seed=config.seed,
                         progress=world.is_main)
    spec = data.spec
    say(f"training {args.preset} on {', '.join(args.data)}: domains {', '.join(spec.domains)}; "
          f"{sum(len(d) for d in data.datasets)} images, {config.num_iters} steps" +
          (f", {world.size} processes" if world.parallel else ""))
    last = latest_checkpoint(Path(args.out) / "checkpoints")
    if last is not None and not args.no_resume:
        say(f"resuming at step {checkpoint_step(last.name)} from {last} "
            "(--no-resume starts over)")
    bar = tqdm(total=config.num_iters, desc="train", unit="step", dynamic_ncols=True,
               disable=not world.is_main)

    def on_log(step: int, metrics: dict[str, float]) -> None:
        bar.update(step - bar.n)
        bar.set_postfix({k: f"{metrics[k]:.3f}" for k in ("D/loss_cls", "G/loss_cls", "G/loss_rec")
                         if k in metrics} | {"img/s": f"{metrics['images_per_second']:.0f}"})

    result = train(config, data, args.out, TrainHooks(on_log=on_log), device=args.device,
                   resume=not args.no_resume)
    bar.close()
    say(f"checkpoint: {result.checkpoint}")
    say(f"sample grids: {Path(args.out) / 'samples'}")
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from stargan_core.checkpoint import load_models, resolve_checkpoint
    from stargan_core.devices import resolve_device
    from stargan_core.evaluation.verdicts import Judge
    from stargan_core.io.sample import IMAGE_SUFFIXES
    from stargan_core.registry import resolve_model
    from stargan_core.serving import load_registered
    from stargan_core.translate import collect_inputs, other_files, translate_files

    device = resolve_device(args.device)
    judge = Judge.load(args.judge, device) if args.judge else None
    if args.checkpoint.startswith("models:/"):  # a registered version, with its judge
        model = load_registered(resolve_model(args.checkpoint).uri, str(device))
        g, d, spec, preprocessing = model.editor.g, model.editor.d, model.spec, \
            model.editor.preprocessing
        judge = judge or model.judge
    else:
        g, d, spec, _, preprocessing = load_models(resolve_checkpoint(args.checkpoint), device)
    total = len(collect_inputs(args.input))
    with tqdm(total=total, desc="translate", unit="img", dynamic_ncols=True) as bar:
        result = translate_files(
            g, d, spec, preprocessing, args.input, args.target or [],
            args.out, batch_size=args.batch_size, grid_rows=args.grid_rows, device=device,
            progress=bar.update, output_size=args.output_size, quality=args.quality,
            file_format=args.format, framing=args.framing, strength=args.strength,
            report=args.report, judge=judge,
        )
    for path, reason in result.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    for path in other_files(args.input):
        print(f"skipped {path}: not an image file ({', '.join(IMAGE_SUFFIXES)})", file=sys.stderr)
    print(f"wrote {len(result.outputs)} images under {args.out}")
    print(f"grid: {result.grid}")
    if result.report:
        print(f"verdicts ({'judge: ' + (args.judge or args.checkpoint) if judge else 'no judge'}"
              f"): {result.report}")
        for target, found in result.verdicts.items():
            confidence = [v.confidence for v in found if v.confidence is not None]
            line = (f"  {target}: {len(found)} outputs, "
                    f"changed {mean(v.changed_share for v in found):.1%} of the pixels")
            if confidence:
                line += (f"; the edit did not take in {sum(v.not_taken for v in found)}, "
                         f"mean confidence {mean(confidence):.2f}")
            print(line)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from stargan_core.checkpoint import load_models, resolve_checkpoint
    from stargan_core.devices import resolve_device
    from stargan_core.evaluation import Harness, flat_metrics, summarize
    from stargan_core.preprocessing import Framer

    device = resolve_device(args.device)
    g, _, spec, config, preprocessing = load_models(resolve_checkpoint(args.checkpoint), device)
    print("reading held-out images and training the attribute classifier ...", file=sys.stderr)
    framer = Framer(preprocessing, args.framing) if args.framing else None
    harness = Harness.build([args.data], spec, config.image_size, images=args.images,
                            classifier_steps=args.classifier_steps, device=device,
                            format=args.format, framer=framer)
    for evaluation_set in harness.sets:
        if evaluation_set.rejected:
            path, reason = evaluation_set.rejected[0]
            print(f"left out {len(evaluation_set.rejected)} images the framing rejects "
                  f"(first: {path}: {reason})", file=sys.stderr)
    results = harness.evaluate(g)
    metrics = flat_metrics(results, joint=False)
    print(json.dumps(metrics, indent=2))
    print(summarize(metrics), file=sys.stderr)
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from mlflow import MlflowClient

    from stargan_core.registry import CHAMPION, champion_version
    from stargan_core.review import TAG, promote_reviewed

    client = MlflowClient()
    before = champion_version(args.name, client)
    promote_reviewed(args.name, args.version, "stargan promote", client)
    tags = client.get_model_version(args.name, args.version).tags
    print(f"{args.name}: version {args.version} is now '{CHAMPION}'"
          + (f" (was version {before})" if before and before != str(args.version) else ""))
    if tags.get(TAG) == "keep":
        print(f"note: its review advised keeping the champion: {tags.get(TAG + '.detail')}",
              file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stargan",
        description="StarGAN (Choi et al., CVPR 2018): one generator that translates a face into "
        "any target domain. These commands work on local folders without any server; the "
        "Prefect flows run the same code at scale.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="write synthetic face data in CelebA's and RaFD's layouts",
                       description="Draw a small synthetic face data set with visible, learnable "
                       "attributes, in CelebA's exact on-disk layout and/or RaFD's. Deterministic "
                       "under --seed.")
    p.add_argument("--out", required=True, help="folder to write <out>/celeba and <out>/rafd into")
    p.add_argument("--dataset", choices=("celeba", "rafd", "both"), default="both",
                   help="which layout(s) to write (default: both)")
    p.add_argument("--num-images", type=int, default=2000,
                   help="CelebA images; the last 10%% form the test split (default: 2000)")
    p.add_argument("--rafd-identities", type=int, default=24,
                   help="RaFD identities, each in 8 expressions x 3 gazes; the last 4 are the "
                   "test split (default: 24)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default: 0)")
    p.add_argument("--style", choices=STYLES, default="hard",
                   help="hard: cluttered, textured backgrounds, uneven light, sensor noise, JPEG "
                   "artefacts and small shifts, as in real photos; easy: flat backgrounds "
                   "(default: hard)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("preprocess", help="prepare a data set as Parquet shards + manifest",
                       description="Turn a CelebA, RaFD or ImageFolder data set (local folder or "
                       "s3:// prefix) into Parquet shards of square, re-encoded images with all "
                       "their labels, plus manifest.json, under <out>/datasets/<name>/<version>/. "
                       "Inputs that are not usable images are listed with their reason in "
                       "rejected.parquet, never dropped silently. Running it again writes only "
                       "what is missing. For S3-compatible stores set AWS_ENDPOINT_URL; "
                       "credentials come from the environment.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="input rule: greyscale, palette, CMYK and 16-bit images are "
                       "converted to RGB\n(transparency over white); empty, truncated, "
                       "non-image, over-40-MP and too-small\nimages are rejected.")
    p.add_argument("source", help="the raw data set: a folder or an s3:// prefix")
    p.add_argument("--format", choices=("auto", "celeba", "rafd", "imagefolder"), default="auto",
                   help="layout of the source (default: detected)")
    p.add_argument("--out", help="storage root (default: $STARGAN_STORAGE_URL, else "
                   "./stargan-storage)")
    p.add_argument("--name", help="data set name (default: the source folder's name)")
    p.add_argument("--version", default="v1", help="data set version (default: v1)")
    p.add_argument("--image-size", type=int, default=256, help="stored size in pixels, square "
                   "(default: 256; CelebA is centre-cropped to 178 first, as in the paper)")
    p.add_argument("--encoding", choices=("jpeg", "png"), default="jpeg",
                   help="stored encoding (default: jpeg)")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality (default: 95)")
    p.add_argument("--max-upscale", type=float, default=2.0,
                   help="reject images that would need more enlargement than this (default: 2)")
    p.add_argument("--rows-per-shard", type=int, default=8000, help="inputs per shard")
    p.add_argument("--row-group-size", type=int, default=2000, help="rows per Parquet row group")
    p.add_argument("--workers", type=int, default=usable_cores().usable,
                   help="parallel processes (default: one per core this process may use)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a version that was prepared from other inputs or parameters")
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("train", help="train StarGAN on one data set, or two jointly",
                       description="Train G and D on a CelebA, RaFD or ImageFolder data set. "
                       "Checkpoints go to <out>/checkpoints, sample grids to <out>/samples; "
                       "running the same command again resumes from the last checkpoint. Data "
                       "sets whose decoded images fit in 1 GiB are decoded once into memory.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="presets:\n" + "\n".join(
                           f"  {name}: {c.image_size}px, {c.num_iters} steps, batch "
                           f"{c.batch_size}" for name, c in PRESETS.items()))
    p.add_argument("--data", required=True, action="append",
                   help="a data set folder, or a prepared data set (its manifest.json or the "
                   "folder holding it; local or s3://); give it twice (CelebA and RaFD) for "
                   "joint training with the mask vector")
    p.add_argument("--format", choices=("auto", "celeba", "rafd", "imagefolder"), default="auto",
                   help="layout of --data (default: detected)")
    p.add_argument("--domains", help="CelebA attributes to learn, comma-separated (default: "
                   "Black_Hair,Blond_Hair,Brown_Hair,Male,Young)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_CPU_PRESET,
                   help="edit-32 (default; CPU-sized) and edit-128 (for GPUs) make faithful "
                   "edits: masked output, label differences, identity loss, moving average of "
                   "G; paper-128 and tiny are the paper's networks and losses as published")
    p.add_argument("--iters", dest="num_iters", type=int, help="training steps (overrides preset)")
    p.add_argument("--batch-size", type=int, help="images per step (overrides preset)")
    p.add_argument("--seed", type=int, help="random seed (overrides preset)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="override any training option, e.g. --set n_critic=5 --set g_lr=1e-4")
    p.add_argument("--out", required=True, help="run folder for checkpoints and sample grids")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1")
    p.add_argument("--no-resume", action="store_true",
                   help="start from scratch, deleting the checkpoints already in <out>")
    p.add_argument("--processes", type=int, default=1,
                   help="data-parallel training processes on this machine, one per GPU (or "
                   "per CPU core): starts this command under torchrun; each process takes "
                   "its part of every batch. On several machines, start `torchrun ... -m "
                   "stargan_core.cli train ...` on each instead (see docs/training.md)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("translate", help="translate images into target domains",
                       description="Translate one image, several, or folders of images to one or "
                       "more targets. Writes <out>/<target>/<input name> per input and target and "
                       "<out>/grid.png (input column, then one column per target). The domains a "
                       "target leaves alone are read off each input by the discriminator.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="targets: Blond_Hair | Male=0 | Blond_Hair,Young=0 | happy | "
                       "expression=happy\n(default: every single-domain target of the model)")
    p.add_argument("--checkpoint", required=True,
                   help="a .ckpt file, a run folder (its latest checkpoint), or a registered "
                   "version: models:/NAME@ALIAS or models:/NAME/VERSION (with its judge)")
    p.add_argument("--report", action="store_true",
                   help="write <out>/report.csv: each output's verdict, the judge's "
                   "probability that the target was reached and that every other domain was "
                   "kept, their product (confidence) and the share of pixels changed; frame "
                   "in red in grid.png the outputs whose edit did not take (confidence < 0.5)")
    p.add_argument("--judge", help="the judge of --report for a checkpoint: a judge.pt (the "
                   "training run's artifact judge/judge.pt); a registered version brings its "
                   "own; without one the report has the changed share alone")
    p.add_argument("--input", required=True, nargs="+",
                   help="image files and/or folders, local or s3://")
    p.add_argument("--target", action="append", help="a target domain; repeat for several")
    p.add_argument("--out", required=True, help="output folder, local or s3://")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    p.add_argument("--grid-rows", type=int, default=8, help="inputs shown in grid.png")
    p.add_argument("--output-size", choices=("input", "model"), default="input",
                   help="input: each photo at its own size with the edit in it (default); "
                   "model: the model's square crop")
    p.add_argument("--strength", type=float, default=1.0,
                   help="how strong the edit is: 0 nothing, 1 as trained (default), up to 2; "
                   "for models conditioned on label differences (edit-32, edit-128)")
    p.add_argument("--framing", choices=FRAMINGS, default="auto",
                   help="where the model looks in each photo. face: find every face, align it "
                   "as CelebA's faces are, edit it and blend it back into the photo, keeping "
                   "every other pixel (a photo without a face is skipped); celeba: the centre "
                   "of an aligned face; center: the centre square; full: the whole photo; "
                   "model: as the model's training images were. auto (default): a model "
                   "trained on aligned faces frames a photo of their 178:218 shape as celeba "
                   "and any other photo as face; other models as they were trained")
    p.add_argument("--format", choices=("auto", "png", "jpeg", "webp"), default="auto",
                   help="file type of the outputs: auto, the input's own (GIF, TIFF: PNG; the "
                   "default); png for lossless; jpeg; webp. An output of another type than its "
                   "input gets the type's suffix added: photo.png.jpg")
    p.add_argument("--quality", type=int, choices=range(1, 101), default=95, metavar="1-100",
                   help="quality of JPEG (4:4:4 chroma) and WebP outputs; 100 makes WebP "
                   "lossless (default: 95)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("evaluate", help="how faithful a checkpoint's translations are",
                       description="Train an attribute classifier on the real training images of "
                       "--data, then report, on its test split, per target and overall: target "
                       "accuracy (the classifier finds the target), preservation (every domain "
                       "the target leaves alone keeps its value), the classifier's accuracy on "
                       "real images and the reconstruction L1, as JSON. On synthetic sets "
                       "(`stargan synth`) also the PSNR and L1 to the exact ground truth, at "
                       "model size and at full size, beside doing nothing (the untouched input), "
                       "which a model worth running beats.")
    p.add_argument("--checkpoint", required=True, help="a .ckpt file or a run folder")
    p.add_argument("--data", required=True, help="a data set: a raw folder with a test split, "
                   "or a prepared one (its folder or manifest.json), local or s3://")
    p.add_argument("--format", choices=("auto", "celeba", "rafd", "imagefolder"), default="auto",
                   help="the raw folder's layout (default: detected)")
    p.add_argument("--framing", choices=FRAMINGS,
                   help="frame a raw folder's images as `translate --framing` does, for the "
                   "classifier and the held-out images alike (face: each photo's largest face; "
                   "photos without one are left out and counted). Default: as the data set's "
                   "training images are framed, with its ground truth where it has one")
    p.add_argument("--classifier-steps", type=int, default=600, help="classifier training steps")
    p.add_argument("--images", type=int, default=2000, help="held-out images evaluated")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("promote", help="make a registered model version the champion",
                       description="Move the MLflow registry alias 'champion' to VERSION of "
                       "the registered model NAME (translate-bulk uses models:/NAME@champion by "
                       "default). The tracking server comes from MLFLOW_TRACKING_URI. The MLflow "
                       "UI does the same: Models -> NAME -> version -> Aliases.")
    p.add_argument("name", help="registered model, e.g. stargan-celeba")
    p.add_argument("version", help="model version number")
    p.set_defaults(func=cmd_promote)
    return parser


def main(argv: list[str] | None = None) -> int:
    from stargan_core.storage import StorageError

    args = build_parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    if args.command != "promote":  # the others compute with torch
        print(set_torch_threads(), file=sys.stderr)
    try:
        return args.func(args)
    except (ValueError, LookupError, FileNotFoundError, StorageError) as err:
        print(f"stargan {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
