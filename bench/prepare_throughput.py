"""Preparation throughput (images/s): raw synthetic CelebA -> Parquet shards + manifest.

Baseline, measured in the same run: a plain single-process PIL loop that decodes, crops,
resizes and JPEG-encodes every image into memory (no validation, no Parquet, no storage).
Then `prepare_dataset` (what `stargan preprocess` runs) with 1 and 2 worker processes, and
the preprocess-dataset flow (Prefect tasks on a thread pool of 1 and 2) unless --no-flow.

    python bench/prepare_throughput.py [--images 2000] [--image-size 256]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from stargan_core.data.prepare import PrepareConfig, prepare_dataset
from stargan_core.io.celeba import CROP, IMAGE_DIR
from stargan_core.io.images import ImageRule
from stargan_core.synthetic import write_celeba


def pil_loop(images: list[Path], size: int) -> None:
    for path in images:
        with Image.open(path) as image:
            image = image.convert("RGB")
            left, top = (image.width - CROP) // 2, (image.height - CROP) // 2
            image = image.crop((left, top, left + CROP, top + CROP))
            image = image.resize((size, size), Image.Resampling.LANCZOS)
            image.save(io.BytesIO(), "JPEG", quality=95, subsampling=0)


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--rows-per-shard", type=int, default=250)
    parser.add_argument("--no-flow", action="store_true", help="skip the Prefect flow")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "celeba"
        write_celeba(source, args.images, seed=0)
        files = sorted((source / IMAGE_DIR).glob("*.jpg"))
        pil_loop(files[:50], args.image_size)  # warm the page cache
        n = len(files)
        results = [("PIL loop, 1 process (baseline)", timed(lambda: pil_loop(files,
                                                                              args.image_size)))]
        rule = ImageRule(args.image_size)
        for workers in (1, 2):
            out = Path(tmp) / f"core-{workers}"
            config = PrepareConfig(str(source), str(out), rule=rule,
                                   rows_per_shard=args.rows_per_shard)
            results.append((f"prepare_dataset, {workers} worker(s)",
                            timed(lambda c=config, w=workers: prepare_dataset(c, w))))
        if not args.no_flow:
            os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
            os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
            from flows.preprocess import preprocess_dataset

            def flow(output: str, workers: int) -> None:
                preprocess_dataset(source_url=str(source), output_root=str(Path(tmp) / output),
                                   image_size=args.image_size,
                                   rows_per_shard=args.rows_per_shard, workers=workers)

            flow("warm-up", 2)  # starts Prefect's temporary local server: not timed
            for workers in (1, 2):
                results.append((f"preprocess-dataset flow, {workers} thread(s)",
                                timed(lambda w=workers: flow(f"flow-{w}", w))))

    base = n / results[0][1]
    print(f"{n} synthetic CelebA images (178x218 JPEG) -> {args.image_size}px JPEG q95, "
          f"{os.cpu_count()} CPUs")
    for name, seconds in results:
        rate = n / seconds
        print(f"{name:40s} {rate:8.1f} images/s  x{rate / base:5.2f}  ({seconds:.1f} s)")


if __name__ == "__main__":
    main()
