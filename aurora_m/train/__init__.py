"""Training stages on transformers' Trainer (CAP, CAT) and TRL's SFTTrainer (safety SFT)."""
