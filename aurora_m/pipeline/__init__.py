"""The pipeline: running stages in order (core), fingerprints and markers, the run lock, summary and lineage,
and publishing a variant of a finished run once it is fresh."""

from .core import Pipeline

__all__ = ["Pipeline"]
