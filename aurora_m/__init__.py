"""aurora-m: continual pre-training, safety tuning, evaluation and publishing of Aurora-M style models."""

__version__ = "0.1.0"
