"""Prefect flows that wire `stargan_core` into the batch pipeline (docs/design.md)."""
