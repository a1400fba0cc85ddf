"""One partition of a job -> one output shard (and its image files): the unit of work, of
retries and of resumption."""

from __future__ import annotations

import posixpath
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import torch
from torchvision.transforms.v2.functional import to_pil_image

from stargan_core.bulk.plan import BulkConfig, Partition, input_framing, read_inputs
from stargan_core.editing import Editor
from stargan_core.evaluation.verdicts import Judge, Verdict, verdicts
from stargan_core.io.images import RejectedImage, decode_rgb, encode, output_name
from stargan_core.io.parquet import ShardWriter, image_schema
from stargan_core.sharded import Rejection, ShardOutcome, finished_shard
from stargan_core.storage import write_files

SCHEMA = image_schema([("image_id", pa.string()), ("source", pa.string()),
                       ("target", pa.string()), ("model_name", pa.string()),
                       ("model_version", pa.string()), ("height", pa.int32()),
                       ("width", pa.int32()),
                       # The output's verdict (`verdicts.Verdict`); the judge's are null for a
                       # version without one.
                       ("target_probability", pa.float32()), ("kept_probability", pa.float32()),
                       ("confidence", pa.float32()), ("changed_share", pa.float32()),
                       ("doubtful", pa.bool_())])
DOUBTFUL_FOLDER = "doubtful"  # image files of outputs under min_confidence: doubtful/<target>/


@dataclass(frozen=True, kw_only=True)
class PartitionResult(ShardOutcome):
    """What a partition's task wrote (or found already written), with its count of inputs,
    the time it took and the worker that ran it."""

    inputs: int
    seconds: float = 0.0
    worker: str = ""


def _batches(config: BulkConfig, partition: Partition, editor: Editor,
             rejected: list[Rejection]
             ) -> Iterator[tuple[list[str], list[str], list[torch.Tensor], list[list]]]:
    """Decoded inputs in batches of (ids, sources, photos, where the model looks in each);
    undecodable ones, and with face framing photos without a face, go to `rejected`."""
    ids, sources, photos, regions = [], [], [], []
    for image_id, source, data in read_inputs(partition, config.batch_size, config.source):
        try:
            photo = decode_rgb(data, editor.min_side)
            regions.append(editor.locate(photo))
        except RejectedImage as error:
            rejected.append(Rejection(source, partition.split, error.reason, error.detail))
            continue
        photos.append(photo)
        ids.append(image_id)
        sources.append(source)
        if len(photos) == config.batch_size:
            yield ids, sources, photos, regions
            ids, sources, photos, regions = [], [], [], []
    if photos:
        yield ids, sources, photos, regions


def _rows(config: BulkConfig, ids: list[str], sources: list[str],
          edited: list[list[torch.Tensor]], judged: list[list[Verdict]]
          ) -> Iterator[tuple[dict[str, Any], bytes]]:
    """(output row, encoded image) per (target, input) of a batch's translations."""
    for target, images, found in zip(config.targets, edited, judged, strict=True):
        for image_id, source, pixels, verdict in zip(ids, sources, images, found, strict=True):
            # Each translation keeps its input's name and type, or takes the asked-for type.
            name = output_name(image_id, config.file_format)
            data = encode(to_pil_image(pixels), posixpath.splitext(name)[1], config.quality)
            doubtful = verdict.doubtful(config.min_confidence)
            folder = f"{DOUBTFUL_FOLDER}/{target.slug}" if doubtful else target.slug
            image = {"bytes": None if config.output_format == "files" else data,
                     "path": f"{folder}/{name}"}
            yield {"image": image, "image_id": image_id, "source": source, "target": target.text,
                   "model_name": config.model.name, "model_version": config.model.version,
                   "height": pixels.shape[-2], "width": pixels.shape[-1],
                   "target_probability": verdict.target_probability,
                   "kept_probability": verdict.kept_probability,
                   "confidence": verdict.confidence, "changed_share": verdict.changed_share,
                   "doubtful": doubtful}, data


def translate_partition(config: BulkConfig, partition: Partition, editor: Editor,
                        judge: Judge | None = None) -> PartitionResult:
    """Translate a partition into every target with `editor`, which frames photos as
    `input_framing(config, partition)` says, with each output's verdict by `judge` (the
    version's; None: the changed share alone), and publish its shard (after its files, when
    asked for); a partition whose shard is complete already is left as it is."""
    found = finished_shard(config.out, partition.path, partition.fingerprint)
    if found is not None:
        record, facts = found
        return PartitionResult(path=partition.path, **asdict(facts),
                               rejected=[Rejection(**r) for r in record["rejected"]],
                               written=False, inputs=record["inputs"])
    framing = input_framing(config, partition)
    if editor.framer.framing != framing:
        raise ValueError(f"{partition.path} is framed '{framing}', the editor given frames "
                         f"'{editor.framer.framing}'")
    start = time.perf_counter()
    rejected: list[Rejection] = []
    translated = 0
    with ShardWriter(SCHEMA, config.row_group_rows) as writer:
        for ids, sources, photos, regions in _batches(config, partition, editor, rejected):
            translated += len(ids)
            done = editor.translate(photos, config.targets, config.output_size,
                                    regions=regions, strength=config.strength)
            judged = verdicts(judge, done, list(config.targets))
            rows = list(_rows(config, ids, sources, done.outputs, judged))
            if config.writes_files:
                write_files(config.out.fs, {config.out.join(row["image"]["path"]): data
                                            for row, data in rows})
            writer.add([row for row, _ in rows])
        record = {"fingerprint": partition.fingerprint, "inputs": translated + len(rejected),
                  "rejected": [asdict(r) for r in rejected]}
        facts = writer.publish(config.out.fs, config.out.join(partition.path), record)
    return PartitionResult(path=partition.path, **asdict(facts), rejected=rejected,
                           written=True, inputs=record["inputs"],
                           seconds=time.perf_counter() - start)
