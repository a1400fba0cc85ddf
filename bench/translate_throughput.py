"""Bulk translation throughput: translations/s (one image into one target is one translation)
through the Dask path of translate-bulk with 1 and 2 workers, and the scaling ratio.

Measured in the same run:
- the baseline: the registered model's own forward passes (D's domain classifier once per
  image, G once per target) in this process on one thread, inputs decoded beforehand: what a
  one-thread Dask worker would reach if decoding, encoding and storage cost nothing;
- the generator's achieved GFLOP/s (G's FLOPs per translation, counted with
  torch.utils.flop_counter's formulas, times translations/s) against an fp32 matrix-multiply
  peak on as many threads as the run uses.

The Dask runs do the whole job of a partition: read the JPEGs, decode, translate, encode, write
Parquet shards to a local folder. Worker start-up and model loading are not timed.

    python bench/translate_throughput.py                   # paper-128, 64 images x 2 targets
    python bench/translate_throughput.py --preset tiny --images 512
"""

from __future__ import annotations

import argparse
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
from stargan_core.data.images import read_rgb
from stargan_core.domains import DomainSpec
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


def baseline(model_uri: str, files: list[Path], targets: list, batch: int
             ) -> tuple[float, float]:
    """(translations/s of the bare forward passes on one thread, G's GFLOP per translation)."""
    from stargan_core.editing import source_labels, translate_batch
    from stargan_core.serving import load_registered

    model = load_registered(model_uri, "cpu")
    g, d, spec = model.editor.g, model.editor.d, model.spec
    images = torch.stack([model.editor.preprocessing(read_rgb(str(f))) for f in files])
    batches = list(images.split(batch))

    def forward(x: torch.Tensor) -> None:
        translate_batch(g, spec, x, source_labels(d, spec, x), targets)

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


def dask_rate(config: BulkConfig, workers: int) -> float:
    """translations/s of a whole job on a LocalCluster of `workers` one-thread processes."""
    plan = plan_job(config)
    with connect(workers=workers, device="cpu") as client:
        client.wait_for_workers(workers)
        plugin = load_model(client, config, "cpu")  # not timed
        start = time.perf_counter()
        results = run_partitions(client, plan, plugin)
        seconds = time.perf_counter() - start
    return sum(r.rows for r in results) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="paper-128", choices=["paper-128", "tiny"])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--targets", nargs="+", default=["Blond_Hair", "Male=0"])
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
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
                               args.batch_size)
        peaks = {}
        for n in (1, 2):  # one thread per Dask worker
            torch.set_num_threads(n)
            peaks[n] = matmul_peak(torch.device("cpu"), torch.float32, 2048)
        torch.set_num_threads(threads)

        rates = {}
        for workers in (1, 2):
            config = BulkConfig(str(inputs), job_url(str(folder / "out"), f"w{workers}", model),
                                model, tuple(targets), batch_size=args.batch_size,
                                files_per_partition=max(1, args.images // 8))
            rates[workers] = dask_rate(config, workers)

    print(f"{args.preset}: {args.images} images x {len(targets)} targets, G: {gflop:.2f} GFLOP "
          f"per translation (D's domain classifier runs once per image on top), "
          f"{os.cpu_count()} cores")
    print(f"matmul peak (fp32, 2048^2): {peaks[1]:.0f} GFLOP/s on 1 thread, "
          f"{peaks[2]:.0f} GFLOP/s on 2")
    print(f"{'run':42} {'translations/s':>14} {'ratio':>7} {'G GFLOP/s':>10} {'of peak':>8}")
    rows = [("baseline: forward passes, 1 thread", base, peaks[1]),
            ("translate-bulk on Dask, 1 worker", rates[1], peaks[1]),
            ("translate-bulk on Dask, 2 workers", rates[2], peaks[2])]
    for name, rate, peak in rows:
        print(f"{name:42} {rate:14.1f} {rate / base:6.2f}x {rate * gflop:10.1f} "
              f"{rate * gflop / peak:7.0%}")
    print(f"scaling, 2 workers over 1: {rates[2] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
