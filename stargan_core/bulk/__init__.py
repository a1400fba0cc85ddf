"""Bulk translation of an image collection into a list of targets (docs/design.md, "Bulk
translation on Dask").

    <output>/part-00000.parquet     one per input partition: a row per (input, target)
    <output>/<target>/<input name>  the same translations as files (output format files, both)
    <output>/rejected.parquet       inputs that could not be read as images, with the reason
    <output>/contact-sheet.png      inputs x targets for a sample of the job, for review
    <output>/manifest.json          written last: the commit marker

plan.py cuts the input into partitions: the shards of a prepared data set, or chunks of a
folder's sorted files. partition.py translates one partition into one output shard, which
records the fingerprint of its inputs, the model version, the targets and the format in its
footer: a re-run skips every complete partition, and a lost worker costs only the partitions
it held. job.py finishes a job (rejected list, contact sheet, manifest). cluster.py runs the
partitions on Dask; the rest needs neither Dask nor a server.
"""

from stargan_core.bulk.job import committed_job, contact_sheet, finish_job
from stargan_core.bulk.partition import PartitionResult, translate_partition
from stargan_core.bulk.plan import (
    BulkConfig,
    BulkPlan,
    Partition,
    default_job,
    job_url,
    parse_targets,
    plan_job,
)

__all__ = ["BulkConfig", "BulkPlan", "Partition", "PartitionResult", "committed_job",
           "contact_sheet", "default_job", "finish_job", "job_url", "parse_targets", "plan_job",
           "translate_partition"]
