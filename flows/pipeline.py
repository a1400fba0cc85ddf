"""stargan-pipeline: the whole pipeline in one flow, on the embedded defaults or a stack.

    (synthetic CelebA) -> preprocess-dataset -> train-stargan (train, evaluate, review against
    the champion, register; promote when the review allows it and `auto_promote` is on)
    -> translate-bulk (the held-out split, with the champion) -> contact sheet

Each step is the flow of its own file, run here as a subflow. `python -m flows.pipeline` runs
it from the command line (what `make demo` does).
"""

from __future__ import annotations

import argparse
import os
from typing import Annotated, Any, Literal

import mlflow
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from flows.common import storage_options
from flows.preprocess import preprocess_dataset
from flows.train import train_stargan
from flows.translate_bulk import translate_bulk
from stargan_core.bulk.job import CONTACT_SHEET
from stargan_core.config import DEFAULT_CPU_PRESET, PRESETS, PresetName
from stargan_core.config import preset as preset_config
from stargan_core.data.prepare import dataset_url
from stargan_core.evaluation import summarize
from stargan_core.jobs import Evaluation, TrainJob, TrainOptions
from stargan_core.registry import champion_version
from stargan_core.storage import StorageAccess, Url, default_root, join, redact
from stargan_core.synthetic import synthetic_celeba_at

Positive = Annotated[int, Field(gt=0)]


@task(name="synthesize", cache_policy=NO_CACHE)
def synthesize_task(url: str, images: int, options: dict[str, Any] | None) -> str:
    return synthetic_celeba_at(url, images, storage_options=options)


@flow(name="stargan-pipeline", log_prints=True)
def stargan_pipeline(
    source_url: Url | None = None,
    synthetic_images: Positive = 2000,
    dataset: str | None = None,
    version: str = "v1",
    model_name: str | None = None,
    output_root: Url | None = None,
    preset: PresetName = DEFAULT_CPU_PRESET,
    options: TrainOptions | None = None,  # type: ignore[valid-type]
    evaluation: Evaluation | None = None,
    targets: list[str] | None = None,
    translate_split: str = "test",
    workers: Annotated[int, Field(ge=1, le=1024)] | None = None,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    auto_promote: bool = True,
    storage: StorageAccess | None = None,
) -> dict[str, Any]:
    """Prepare, train, evaluate, register, promote and translate in one run.

    source_url: a raw CelebA / RaFD / ImageFolder data set; default: `synthetic_images`
        synthetic CelebA faces written once under <output_root>/raw/synthetic-celeba.
    dataset, model_name: the prepared data set's and the registered model's names (default:
        the source folder's name and train-stargan's; for synthetic faces synthetic-celeba and
        stargan-demo, so that a demo never competes with a real model).
    output_root: the storage root (default: $STARGAN_STORAGE_URL, else ./stargan-storage).
    preset, options, evaluation: training (train-stargan's job: options replace the preset's
        values, e.g. {"num_iters": 1000, "batch_size": 8}).
    targets: translate-bulk's targets (default: every single-domain target).
    translate_split: the prepared data set's split to translate (held-out faces: test).
    auto_promote: make the new version champion when its review against the champion allows
        it (train-stargan's auto_promote); off: the champion stays until a reviewer promotes.
    storage: how every step reaches S3, by reference (see preprocess-dataset).
    """
    root = output_root or default_root()
    synthetic = source_url is None
    source = synthesize_task(join(root, "raw", "synthetic-celeba"), synthetic_images,
                             storage_options(storage)) \
        if synthetic else source_url
    dataset = dataset or source.rstrip("/").rsplit("/", 1)[-1]
    model_name = model_name or ("stargan-demo" if synthetic else None)
    prepared = dataset_url(root, dataset, version)
    preprocess_dataset(source_url=source, format="celeba" if synthetic else "auto",
                       output_root=root, name=dataset, version=version,
                       # Stored at twice the model's size, as the paper's 128 px from 178.
                       image_size=2 * preset_config(preset).image_size, storage=storage)
    job = TrainJob(data=[prepared], preset=preset, options=options or TrainOptions(),
                   evaluation=evaluation or Evaluation(), device=device, storage=storage)
    trained = train_stargan(job, model_name=model_name, auto_promote=auto_promote)
    name, new, promoted = trained["model_name"], trained["version"], trained["promoted"]
    champion = champion_version(name)
    if champion is None:
        raise RuntimeError(f"{name} has no champion to translate with: promote a version "
                           f"(stargan promote {name} {new})")
    translated = translate_bulk(input_url=prepared, model_uri=f"models:/{name}@champion",
                                targets=targets, output_root=root, split=translate_split,
                                workers=workers, device=device, storage=storage)
    return {
        "model_name": name, "version": new, "promoted": promoted, "review": trained["review"],
        "champion": champion,
        "metrics": trained["metrics"],
        "run_id": trained["run_id"], "dataset": prepared,
        "translations": translated["output"], "rows": translated["rows"],
        "contact_sheet": join(translated["output"], CONTACT_SHEET),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.pipeline",
        description="Run the whole StarGAN pipeline (synthetic faces by default): prepare "
        "shards, train, evaluate, register and promote in MLflow, translate the held-out faces "
        "on a local Dask cluster. Storage: $STARGAN_STORAGE_URL (default ./stargan-storage); "
        "tracking: $MLFLOW_TRACKING_URI (default ./mlflow.db); Prefect: $PREFECT_API_URL "
        "(default: a temporary local server).")
    parser.add_argument("--source", help="a raw data set (default: synthetic CelebA)")
    parser.add_argument("--images", type=int, default=2000, help="synthetic faces to draw")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_CPU_PRESET,
                        help=f"training preset (default: {DEFAULT_CPU_PRESET})")
    parser.add_argument("--num-iters", type=int, help="training steps (default: the preset's)")
    parser.add_argument("--workers", type=int, help="Dask workers (default: one per core)")
    args = parser.parse_args(argv)
    result = stargan_pipeline(source_url=args.source, synthetic_images=args.images,
                              preset=args.preset, options=TrainOptions(num_iters=args.num_iters),
                              workers=args.workers)
    tracking = redact(mlflow.get_tracking_uri())
    review = (f"mlflow ui --backend-store-uri {tracking}" if not tracking.startswith("http")
              else tracking)
    print(f"\n{summarize(result['metrics'])}")
    print(f"{result['model_name']} version {result['version']}, champion: version "
          f"{result['champion']}")
    print(f"contact sheet (held-out faces x every target): {result['contact_sheet']}")
    print(f"translations ({result['rows']}): {result['translations']}")
    print(f"review and promote versions in MLflow: {review}")
    if os.environ.get("PREFECT_API_URL"):
        print(f"flow runs: {os.environ['PREFECT_API_URL'].removesuffix('/api')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
