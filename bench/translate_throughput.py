"""Bulk translation throughput: translations/s (one image into one target is one translation)
through the Dask path of translate-bulk with 1 and 2 workers (--workers; on GPUs, --device
cuda), and the scaling ratio.

Measured in the same run:
- the baseline: the registered model's own forward passes (D's domain classifier once per
  image, G once per target) in this process on one thread (or the GPU), inputs decoded
  beforehand: what a Dask worker would reach if decoding, encoding and storage cost nothing;
- the generator's achieved GFLOP/s (G's FLOPs per translation, counted with
  torch.utils.flop_counter's formulas, times translations/s) against an fp32 matrix-multiply
  peak on as many threads as the run uses.

The Dask runs do the whole job of a partition: read the JPEGs, decode, translate, encode, write
Parquet shards to a local folder. Worker start-up and model loading are not timed. With
--against-cli, `stargan translate` on the same images and device too (in this process, warm;
reading, translating and writing files, model loading included).

    python bench/translate_throughput.py                   # paper-128, 64 images x 2 targets
    python bench/translate_throughput.py --preset tiny --images 512
    python bench/translate_throughput.py --device cuda --workers 1 --images 512 --batch-size 32 \\
        --against-cli                                      # what bench/gpu_train.sh runs
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path

import torch
from train_throughput import FlopCount, matmul_peak

from stargan_core.bulk import BulkConfig, job_url, parse_targets, plan_job
from stargan_core.bulk.cluster import connect, load_model, run_partitions
from stargan_core.checkpoint import build_discriminator, build_generator, save_checkpoint
from stargan_core.config import preset
from stargan_core.domains import DomainSpec
from stargan_core.io.images import read_rgb
from stargan_core.synthetic import write_celeba
from stargan_core.targets import target_labels


def register_untrained(preset_name: str, folder: Path) -> str:
    """A randomly initialised generator of the preset as stargan-celeba v1 (speed does not
    depend on the weights)."""
    import mlflow

    from stargan_core.registry import register
    from stargan_core.serving import log_generator

    spec, config = DomainSpec.celeba(), preset(preset_name)
    torch.manual_seed(0)
    state = {"G": build_generator(spec, config).state_dict(),
             "D": build_discriminator(spec, config).state_dict(),
             "spec": spec.to_json(), "config": config.to_dict(),
             "preprocessing": {"framing": "celeba", "image_size": config.image_size}}
    with mlflow.start_run():
        info = log_generator(save_checkpoint(folder / "generator.ckpt", state))
    return f"models:/stargan-celeba/{register(info.model_uri, 'stargan-celeba', 'bench')}"


def baseline(model_uri: str, files: list[Path], targets: list, batch: int,
             device: torch.device) -> tuple[float, float]:
    """(translations/s of the bare forward passes on one thread or the GPU, G's GFLOP per
    translation)."""
    from stargan_core.editing import source_labels, translate_batch
    from stargan_core.serving import load_registered

    model = load_registered(model_uri, str(device))
    g, d, spec = model.editor.g, model.editor.d, model.spec
    images = torch.stack([model.editor.preprocessing(read_rgb(str(f))) for f in files])
    batches = [x.to(device) for x in images.split(batch)]

    def forward(x: torch.Tensor) -> None:
        translate_batch(g, spec, x, source_labels(d, spec, x), targets)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    forward(batches[0])  # warm-up
    x = batches[0]
    c_org = source_labels(d, spec, x)
    with torch.inference_mode(), FlopCount() as counter:
        g(x, target_labels(spec, c_org, targets[0]), c_org)
    gflop = counter.total / 1e9 / len(x)
    start = time.perf_counter()
    for x in batches:
        forward(x)
    return len(files) * len(targets) / (time.perf_counter() - start), gflop


def dask_rate(config: BulkConfig, workers: int, device: str) -> float:
    """translations/s of a whole job on a local cluster of `workers` one-thread processes
    (on GPUs: as connect() places them, one per GPU)."""
    plan = plan_job(config)
    with connect(workers=workers, device=device) as client:
        client.wait_for_workers(workers)
        plugin = load_model(client, config, device)  # not timed
        start = time.perf_counter()
        results = run_partitions(client, plan, plugin)
        seconds = time.perf_counter() - start
    return sum(r.rows for r in results) / seconds


def cli_rate(checkpoint: Path, inputs: Path, targets: list[str], device: str, batch: int,
             out: Path) -> float:
    """translations/s of `stargan translate` on the same inputs, in this process: the second of
    two runs (the first loads the libraries and warms the device up), model loading included,
    its progress output left out."""
    from stargan_core.cli import main as stargan

    argv = ["translate", "--checkpoint", str(checkpoint), "--input", str(inputs),
            "--device", device, "--batch-size", str(batch)]
    for target in targets:
        argv += ["--target", target]
    threads = torch.get_num_threads()
    seconds = 0.0
    for attempt in range(2):
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            if stargan([*argv, "--out", str(out / f"cli-{attempt}")]):
                raise RuntimeError(f"stargan {' '.join(argv)} failed")
        seconds = time.perf_counter() - start
    torch.set_num_threads(threads)  # the CLI sets its own
    return len(list(inputs.glob("*.jpg"))) * len(targets) / seconds


def build_parser() -> argparse.ArgumentParser:
    """The command line (bench/gpu_train.sh --dry-run checks its planned arguments with it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="paper-128", choices=["paper-128", "tiny"])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--targets", nargs="+", default=["Blond_Hair", "Male=0"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu",
                        help="where the Dask workers and the baseline translate: cpu (default), "
                        "cuda or auto, as translate-bulk's local cluster takes it")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="local cluster sizes measured, the first the base of the scaling "
                        "ratio (default: 1 2)")
    parser.add_argument("--against-cli", action="store_true",
                        help="also time `stargan translate` on the same images and device")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from stargan_core.devices import resolve_device

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
        write_celeba(folder / "celeba", num_images=args.images, seed=0)
        inputs = folder / "celeba" / "img_align_celeba"
        from stargan_core.registry import resolve_model

        model = resolve_model(register_untrained(args.preset, folder))
        targets = list(parse_targets(model, args.targets))

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        base, gflop = baseline(model.uri, sorted(inputs.glob("*.jpg")), targets,
                               args.batch_size, device)
        peaks = {}  # fp32 matmul peak of what a run computes on
        if cuda:
            peaks = dict.fromkeys(args.workers, matmul_peak(device, torch.float32, 8192))
        else:
            for n in sorted({1, *args.workers}):  # one thread per Dask worker
                torch.set_num_threads(n)
                peaks[n] = matmul_peak(device, torch.float32, 2048)
        torch.set_num_threads(threads)

        rates = {}
        for workers in args.workers:
            config = BulkConfig(str(inputs), job_url(str(folder / "out"), f"w{workers}", model),
                                model, tuple(targets), batch_size=args.batch_size,
                                files_per_partition=max(1, args.images // 8))
            rates[workers] = dask_rate(config, workers, args.device)
        cli = (cli_rate(folder / "generator.ckpt", inputs, args.targets, args.device,
                        args.batch_size, folder / "cli") if args.against_cli else None)

    where = torch.cuda.get_device_name(device) if cuda else f"{os.cpu_count()} cores"
    print(f"{args.preset}: {args.images} images x {len(targets)} targets, G: {gflop:.2f} GFLOP "
          f"per translation (D's domain classifier runs once per image on top), {where}")
    if cuda:
        print(f"matmul peak (fp32, 8192^2): {peaks[args.workers[0]]:.0f} GFLOP/s")
    else:
        print("matmul peak (fp32, 2048^2): " + ", ".join(
            f"{peak:.0f} GFLOP/s on {n} thread{'s' if n > 1 else ''}" for n, peak in peaks.items()))
    unit = "GPU" if cuda else "thread"
    print(f"{'run':42} {'translations/s':>14} {'images/s':>9} {'ratio':>7} {'G GFLOP/s':>10} "
          f"{'of peak':>8}")
    rows = [(f"baseline: forward passes, 1 {unit}", base, peaks[args.workers[0]])]
    rows += [(f"translate-bulk on Dask, {n} worker{'s' if n > 1 else ''}", rates[n], peaks[n])
             for n in args.workers]
    if cli is not None:
        rows.append(("stargan translate, this process", cli, None))
    for name, rate, peak in rows:
        share = f"{rate * gflop / peak:7.0%}" if peak else f"{'':>7}"
        print(f"{name:42} {rate:14.1f} {rate / len(targets):9.1f} {rate / base:6.2f}x "
              f"{rate * gflop:10.1f} {share}")
    for n in args.workers[1:]:
        print(f"scaling, {n} workers over {args.workers[0]}: "
              f"{rates[n] / rates[args.workers[0]]:.2f}x")


if __name__ == "__main__":
    main()
