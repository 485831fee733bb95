"""Runs ``scripts/pretrain.py`` with two test instruments around the real engine, for the kill-and-resume tests:

- a ledger: after each optimizer step, one json line {run, rank, step, batch: [sha1 of each trained sequence]}
  appended (and flushed) to ``--ledger``; a step killed before its line is written is simply not in it;
- a kill: ``--kill step_end:K`` (SIGKILL after step K, before any checkpoint of K), ``after_save:K`` (right after
  checkpoint-K is complete) or ``mid_save:K`` (inside checkpoint-K, after its weights, before its trainer state);
  ``--signal term`` sends SIGTERM there instead (what Slurm and ``timeout`` send: the run ends itself).

    python tests/train_driver.py --ledger L.jsonl --kill step_end:7 -- --config CAP.yaml --output_dir OUT ...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


SIGNAL = [signal.SIGKILL]


def _die():
    sys.stderr.flush()
    os.kill(os.getpid(), SIGNAL[0])


def instrument(ledger: Path | None, kill: str | None):
    from transformers import TrainerCallback

    import aurora_m.train.pretrain as pretrain

    when, _, at = (kill or "none:0").partition(":")
    at = int(at)
    run = uuid.uuid4().hex[:8]
    base_factory = pretrain.stream_trainer

    class Instrumented(TrainerCallback):
        def __init__(self):
            self.pending: list[str] = []

        def on_step_end(self, args, state, control, **kwargs):
            if ledger:
                line = {"run": run, "rank": args.process_index, "step": state.global_step, "batch": self.pending}
                with open(ledger, "a", encoding="utf-8") as f:
                    f.write(json.dumps(line) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            self.pending = []
            if when == "step_end" and state.global_step == at:
                _die()

        def on_save(self, args, state, control, **kwargs):
            if when == "after_save" and state.global_step == at:
                _die()

    def factory():
        base = base_factory()

        class DrivenTrainer(base):
            def __init__(self, *a, **k):
                super().__init__(*a, **k)
                self.instrument = Instrumented()
                self.add_callback(self.instrument)

            def training_step(self, model, inputs, num_items_in_batch=None):
                for row in inputs["input_ids"].cpu().numpy():
                    self.instrument.pending.append(hashlib.sha1(row.tobytes()).hexdigest()[:16])
                return super().training_step(model, inputs, num_items_in_batch)

            def _save_rng_state(self, output_dir):
                if when == "mid_save" and self.state.global_step == at:
                    _die()
                return super()._save_rng_state(output_dir)

        return DrivenTrainer

    pretrain.stream_trainer = factory


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ledger", type=Path)
    parser.add_argument("--kill")
    parser.add_argument("--signal", choices=("kill", "term"), default="kill")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    SIGNAL[0] = signal.SIGTERM if args.signal == "term" else signal.SIGKILL
    instrument(args.ledger, args.kill)
    import pretrain as script  # scripts/pretrain.py

    from aurora_m.scripting import run_script

    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    run_script(script.make_parser, script.main, rest)


if __name__ == "__main__":
    main()
