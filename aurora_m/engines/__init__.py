"""Training engines other than transformers' Trainer. Each subpackage is the only place its library is imported."""
