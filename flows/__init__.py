"""Prefect flows that wire `stargan_core` into the batch pipeline (see ../shared/DESIGN.md)."""
