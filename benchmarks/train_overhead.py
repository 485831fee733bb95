"""Per-step cost of our CAP engine next to a plain transformers Trainer and a bare PyTorch loop, in one run.

    python benchmarks/train_overhead.py [--steps 60] [--warmup 3] [--batch-size 8] [--seq-length 128]
        [--n-embd 320] [--n-layer 8] [--n-head 8] [--dataset-dir DIR] [--profile ours]

The tiny CAP recipe (``recipes/aurora-m-tiny/cap.yaml``) gives the trainer settings (AdamW, its lr,
betas, weight decay, schedule with warm-up, clipping, ``logging_steps: 1``); its dataset is built
once with the project's data step (``scripts/data.py``, in a subprocess) unless ``--dataset-dir``
names a built one. The model is a GPTBigCode of ~10M parameters (multi-query, learned positions, the
tiny tokenizer's 4k vocabulary) written as a config.json; dropout is 0, so the same init, data and
optimizer give the same losses, and the run checks that they do.

Three engines train it, each from the same init on the same stream positions 0, 1, 2, ...:

a. ours: ``aurora_m.train.pretrain.build_trainer`` then ``train_and_save`` (what ``train_pretrain`` runs):
   our Trainer subclass, the packed memory-mapped ``PackedStream`` in index order, ``packed_collator``,
   our callbacks (logging through ``logging``, stream position, curves plot, checkpoint permissions:
   the output lists them) and transformers' default ones;
b. trainer: a plain ``transformers.Trainer`` with the same model, stream, collator and arguments
   (``train_sampling_strategy: sequential`` for the same order), no subclass or callback of ours;
c. bare: a PyTorch loop over a ``DataLoader`` of the same stream and collator: torch AdamW on the
   Trainer's two parameter groups (no decay on biases and LayerNorms) with the same lr, betas, eps,
   weight decay and ``fused`` setting, ``clip_grad_norm_``, ``transformers.get_scheduler`` with the
   same schedule and warm-up, and ``loss.item()`` every step (as the engines' per-step logging does).

Each engine runs in its own process, all three at once but taking turns one optimizer step at a time,
in a shuffled order each step (ABC, CAB, BCA, ...): the drift of a shared, noisy machine falls on all
of them alike and each step is compared with its neighbours in time. A step's seconds run from its
turn to the end of its optimizer step (``on_step_end`` for the Trainers), so they hold data loading,
forward, backward, clipping, optimizer, scheduler, the callbacks and the previous step's logging; the
other two processes sleep meanwhile. ``--warmup`` steps are not timed; the stage's schedule stays the
recipe's (the runs stop after warmup + ``--steps``). Evaluation and checkpoint saving are off
(``eval_strategy: no``, ``eval_on_start: false``, ``save_strategy: no``: the held-out and forgetting
evaluations the recipe runs every ``eval_steps`` are not measured here); ours writes its final
model after the last timed step, untimed. ``--profile ours`` (or trainer, bare) then runs that
engine alone with cProfile over its timed steps and prints where the time goes.

Ends with ``overhead_ms_per_step: X`` (the median over steps of ours' step time minus the bare loop's, in
ms: the glue's fixed cost, which on a GPU sits beside a much shorter step; its range and quartiles are printed
above it) and ``overhead_ratio: X``, the median over steps of ours' step time over the bare loop's (above 1:
ours is slower); ratios of mean step times (they keep rare slow steps) and of the fastest steps are printed
too. Each process uses torch's default threads (the cores); on a machine busy with
other work, ``--threads 1`` keeps a descheduled OpenMP thread from stalling every step.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import json
import logging
import multiprocessing
import os
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "aurora-m-tiny" / "cap.yaml"
ENGINES = ("ours", "trainer", "bare")
LOSS_TOLERANCE = 1e-3  # same init, data and optimizer: float32 losses agree far closer than this
TITLE = "CAP overhead benchmark"

logger = logging.getLogger("train_overhead")


# ----------------------------------------------------------------------------- set-up
def write_model_config(path: Path, n_embd: int, n_layer: int, n_head: int, n_positions: int) -> Path:
    """A StarCoderPlus-shaped config (multi-query, learned positions) at benchmark size, dropout off."""
    from aurora_m.patches import read_config_json

    if n_embd % n_head:
        raise SystemExit(f"--n-embd {n_embd} is not divisible by --n-head {n_head}")
    config = read_config_json("starcoderplus")
    config.update(
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        n_inner=4 * n_embd,
        n_positions=n_positions,
        attn_pdrop=0.0,
        embd_pdrop=0.0,
        resid_pdrop=0.0,
    )
    path.write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return path


def budget_overrides(batch_size: int, seq_length: int) -> list[str]:
    """The recipe's step count at this batch and length: the token budget follows (the tiny corpus repeats)."""
    from aurora_m.overrides import read_yaml

    steps = int(read_yaml(RECIPE)["max_steps"])
    return [
        "--per_device_train_batch_size",
        str(batch_size),
        "--seq_length",
        str(seq_length),
        "--train_tokens",
        str(steps * batch_size * seq_length),
        "--max_epochs",
        "1000",
    ]


def build_dataset(out: Path, overrides: list[str]) -> Path:
    """The project's data step on the tiny CAP recipe, in its own process (datatrove's workers stay out of ours)."""
    from aurora_m.layout import StageDir

    data = StageDir(out).data.root
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "data.py"),
        "--config",
        str(RECIPE),
        "--output_dir",
        str(out),
        "--dataset_dir",
        str(data),
        *overrides,
    ]
    logger.info("building the tiny CAP dataset: %s", " ".join(cmd))
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"data step failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return data


def stage_arguments(spec: dict):
    """The tiny CAP's dataclasses with the benchmark's model, dataset and a fresh output folder."""
    from aurora_m.stage_checks import parse_stage

    model_args, mix_args, training_args = parse_stage(
        RECIPE,
        "pretrain",
        [
            *spec["overrides"],
            "--output_dir",
            spec["output_dir"],
            "--save_strategy",
            "no",
            "--eval_strategy",
            "no",
            "--eval_on_start",
            "false",
            "--logging_steps",
            "1",
        ],
    )
    # set after parsing: validation keeps base_config inside the recipe folder, and this one is a temp file
    model_args.base_config = spec["config_json"]
    model_args.config_patches = [
        p for p in model_args.config_patches if p in ("aurora_m", "tokenizer_vocab") or p.startswith("dtype:")
    ]
    model_args.config_patches.append(f"attn:{spec['attn']}")
    mix_args.dataset_dir = spec["dataset_dir"]
    return model_args, mix_args, training_args


# ----------------------------------------------------------------------------- turn-taking (worker side)
class Baton:
    """A worker's side of the turns: wait for its turn, train one step, report the step's seconds."""

    def __init__(self, conn, profile: bool, warmup: int):
        self.conn, self.warmup = conn, warmup
        self.profiler = cProfile.Profile() if profile else None
        self.turn_start = None
        self.step = 0

    def begin(self) -> None:
        """Before the first step: the engine is built; wait for the first turn."""
        self.conn.send(("ready",))
        self._wait()

    def step_end(self, step: int) -> bool:
        """At the end of each optimizer step (1-based); True when the driver says stop."""
        seconds = time.perf_counter() - self.turn_start
        if self.profiler and step > self.warmup:
            self.profiler.disable()
        self.step = step
        self.conn.send(("step", step, seconds))
        return self._wait()

    def _wait(self) -> bool:
        stop = self.conn.recv() == "stop"
        if self.profiler and not stop and self.step >= self.warmup:
            self.profiler.enable()
        self.turn_start = time.perf_counter()
        return stop


def baton_callback(baton: Baton):
    from transformers import TrainerCallback

    class TakeTurns(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            baton.begin()

        def on_step_end(self, args, state, control, **kwargs):
            if baton.step_end(state.global_step):
                control.should_training_stop = True

    return TakeTurns()


def callback_names(trainer) -> list[str]:
    """The Trainer's callbacks, less the benchmark's own turn-taking."""
    return [type(c).__name__ for c in trainer.callback_handler.callbacks if type(c).__name__ != "TakeTurns"]


def trainer_losses(trainer) -> list[float]:
    return [e["loss"] for e in trainer.state.log_history if "loss" in e and "step" in e]


# ----------------------------------------------------------------------------- the engines
def run_ours(stage, baton: Baton) -> tuple[list[float], object, list[str]]:
    from aurora_m.layout import StageDir
    from aurora_m.train.common import train_and_save
    from aurora_m.train.pretrain import build_trainer

    model_args, mix_args, training_args = stage
    trainer = build_trainer(model_args, mix_args, training_args, RECIPE, TITLE)
    trainer.add_callback(baton_callback(baton))
    train_and_save(trainer, StageDir(training_args.output_dir), TITLE)
    return trainer_losses(trainer), trainer.model, callback_names(trainer)


def run_trainer(stage, baton: Baton) -> tuple[list[float], object, list[str]]:
    from transformers import AutoTokenizer, Trainer

    from aurora_m.data.mixture import packed_collator
    from aurora_m.data.stream import open_stream
    from aurora_m.layout import DatasetDir
    from aurora_m.train.model import load_model

    model_args, mix_args, training_args = stage
    data = DatasetDir(mix_args.dataset_dir)
    tokenizer = AutoTokenizer.from_pretrained(data.tokenizer)
    args = dataclasses.replace(training_args, train_sampling_strategy="sequential")
    trainer = Trainer(
        model=load_model(model_args, tokenizer),
        args=args,
        train_dataset=open_stream(data),
        data_collator=packed_collator,
        processing_class=tokenizer,
        callbacks=[baton_callback(baton)],
    )
    trainer.train()
    return trainer_losses(trainer), trainer.model, callback_names(trainer)


def run_bare(stage, baton: Baton) -> tuple[list[float], object, list[str]]:
    import torch
    from transformers import AutoTokenizer, get_scheduler
    from transformers.trainer_pt_utils import get_parameter_names

    from aurora_m.data.mixture import packed_collator
    from aurora_m.data.stream import open_stream
    from aurora_m.layout import DatasetDir
    from aurora_m.train.model import load_model

    model_args, mix_args, args = stage
    data = DatasetDir(mix_args.dataset_dir)
    tokenizer = AutoTokenizer.from_pretrained(data.tokenizer)
    device = args.device
    model = load_model(model_args, tokenizer).to(device)
    model.train()
    stream = open_stream(data)
    loader = torch.utils.data.DataLoader(
        stream,
        batch_size=args.per_device_train_batch_size,
        sampler=torch.utils.data.SequentialSampler(stream),
        collate_fn=packed_collator,
        num_workers=args.dataloader_num_workers,
        drop_last=args.dataloader_drop_last,
    )
    # the Trainer's groups (Trainer.get_decay_parameter_names): no weight decay on biases and LayerNorm weights
    decay = set(
        get_parameter_names(
            model, [torch.nn.LayerNorm], [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
        )
    )
    groups = [
        {"params": [p for n, p in model.named_parameters() if n in decay], "weight_decay": args.weight_decay},
        {"params": [p for n, p in model.named_parameters() if n not in decay], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(
        groups,
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        fused=args.optim == "adamw_torch_fused",
    )
    scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer,
        num_warmup_steps=args.get_warmup_steps(args.max_steps),
        num_training_steps=args.max_steps,
        scheduler_specific_kwargs=args.lr_scheduler_kwargs,
    )
    accumulation = args.gradient_accumulation_steps
    losses, step, running = [], 0, 0.0
    baton.begin()
    for micro, batch in enumerate(loader, start=1):
        batch = {k: v.to(device) for k, v in batch.items()}
        loss = model(**batch).loss / accumulation
        loss.backward()
        running += loss.item()
        if micro % accumulation:
            continue
        if args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(running)
        running, step = 0.0, step + 1
        if baton.step_end(step):
            break
    return losses, model, []


RUNNERS = {"ours": run_ours, "trainer": run_trainer, "bare": run_bare}


def worker(engine: str, spec: dict, conn, profile: bool, warmup: int) -> None:
    """One engine in its own process; ends by sending its losses (and profile), or the error."""
    sys.stdout = sys.stderr  # the plain Trainer prints every log dict; the result lines are the driver's
    if spec["threads"]:
        import torch

        torch.set_num_threads(spec["threads"])
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {engine}: %(message)s", stream=sys.stderr)
    from aurora_m.logs import setup_logging

    setup_logging()  # ours logs every step through it, as a real run does
    try:
        baton = Baton(conn, profile, warmup)
        losses, model, callbacks = RUNNERS[engine](stage_arguments(spec), baton)
        if baton.profiler:
            baton.profiler.dump_stats(spec["profile_file"])
        embeddings = model.transformer.wte.weight.numel() + model.transformer.wpe.weight.numel()
        conn.send(("done", losses, (sum(p.numel() for p in model.parameters()), embeddings), callbacks))
    except BaseException:  # noqa: BLE001 - sent to the driver, which names the engine and exits
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


# ----------------------------------------------------------------------------- the driver
def drive(specs: dict[str, dict], warmup: int, steps: int, seed: int, profile: str | None = None):
    """Start one worker per engine, give them turns step by step.

    Returns, by engine: seconds of each timed step, losses of every step, (parameters, embedding parameters),
    the Trainer's callbacks (class names; none for the bare loop)."""
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no state shared by fork
    conns, procs = {}, {}
    for engine, spec in specs.items():
        parent, child = ctx.Pipe()
        procs[engine] = ctx.Process(target=worker, args=(engine, spec, child, engine == profile, warmup))
        procs[engine].start()
        child.close()
        conns[engine] = parent

    def receive(engine: str, expected: str):
        try:
            msg = conns[engine].recv()
        except EOFError:
            procs[engine].join()
            raise SystemExit(f"{engine}: worker died (exit {procs[engine].exitcode})") from None
        if msg[0] == "error":
            raise SystemExit(f"{engine} failed:\n{msg[1]}")
        if msg[0] != expected:
            raise SystemExit(f"{engine}: expected {expected!r}, got {msg!r} (training ended early?)")
        return msg

    try:
        for engine in specs:
            receive(engine, "ready")
        seconds = {e: [] for e in specs}
        rng = random.Random(seed)
        for step in range(1, warmup + steps + 1):
            order = list(specs)
            rng.shuffle(order)
            for engine in order:
                conns[engine].send("go")
                _, done_step, s = receive(engine, "step")
                if done_step != step:
                    raise SystemExit(f"{engine}: reported step {done_step}, expected {step}")
                if step > warmup:
                    seconds[engine].append(s)
        losses, sizes, callbacks = {}, {}, {}
        for engine in specs:
            conns[engine].send("stop")
            _, losses[engine], sizes[engine], callbacks[engine] = receive(engine, "done")
            procs[engine].join()
        return seconds, losses, sizes, callbacks
    finally:
        for proc in procs.values():
            if proc.is_alive():
                proc.terminate()
                proc.join()


def profile_report(profile_file: Path, top: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(str(profile_file), stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="timed optimizer steps of each engine")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per step (the tiny CAP's 8)")
    parser.add_argument("--seq-length", type=int, default=128, help="tokens per sequence (the tiny CAP's 128)")
    parser.add_argument("--n-embd", type=int, default=320)
    parser.add_argument("--n-layer", type=int, default=8)
    parser.add_argument("--n-head", type=int, default=8)
    parser.add_argument("--attn", default="sdpa", choices=("sdpa", "eager", "flash_attention_2"))
    parser.add_argument(
        "--dataset-dir",
        default=None,
        help="a built tiny CAP dataset folder (its seq_length wins); default: build one in a temp dir",
    )
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset of ours,trainer,bare")
    parser.add_argument("--seed", type=int, default=0, help="seed of the turn order")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads of each engine (0: torch's default, the cores); 1 is steadier on a "
        "machine shared with other work",
    )
    parser.add_argument(
        "--profile",
        choices=ENGINES,
        default=None,
        help="after the timing, run this engine alone under cProfile and print the top functions",
    )
    parser.add_argument("--profile-top", type=int, default=25, help="functions listed by --profile")
    parser.add_argument("--profile-file", default=None, help="also keep --profile's pstats here (snakeviz, pstats)")
    parser.add_argument("--workdir", default=None, help="keep the dataset and runs here (default: a temp dir)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    engines = [e for e in args.engines.split(",") if e]
    if unknown := set(engines) - set(ENGINES):
        raise SystemExit(f"--engines: unknown {', '.join(sorted(unknown))} (known: {', '.join(ENGINES)})")
    if args.steps < 1 or args.warmup < 1:
        raise SystemExit("--steps and --warmup must be at least 1")
    from aurora_m.layout import DatasetDir
    from aurora_m.patches import AURORA_M_CONTEXT

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp_name:
        tmp = Path(tmp_name)
        overrides = budget_overrides(args.batch_size, args.seq_length)
        dataset_dir = Path(args.dataset_dir) if args.dataset_dir else build_dataset(tmp / "data-step", overrides)
        seq_length = int(json.loads(DatasetDir(dataset_dir).mixture_json.read_text())["seq_length"])
        if seq_length != args.seq_length:
            overrides = budget_overrides(args.batch_size, seq_length)
        config_json = write_model_config(
            tmp / "config.json", args.n_embd, args.n_layer, args.n_head, max(AURORA_M_CONTEXT, seq_length)
        )

        def spec(name: str) -> dict:
            return {
                "dataset_dir": str(dataset_dir),
                "config_json": str(config_json),
                "attn": args.attn,
                "overrides": overrides,
                "output_dir": str(tmp / name),
                "threads": args.threads,
            }

        logger.info("timing %s, one step each in turn", ", ".join(engines))
        seconds, losses, sizes, callbacks = drive({e: spec(e) for e in engines}, args.warmup, args.steps, args.seed)
        profiled = None
        if args.profile:
            logger.info("profiling %s alone", args.profile)
            profile_file = Path(args.profile_file or tmp / "profile.pstats").resolve()
            profile_spec = {**spec(f"{args.profile}-profiled"), "profile_file": str(profile_file)}
            drive({args.profile: profile_spec}, args.warmup, args.steps, args.seed, profile=args.profile)
            profiled = profile_report(profile_file, args.profile_top)

        if len(set(sizes.values())) != 1:
            raise SystemExit(f"the engines trained models of different sizes: {sizes}")
        params, embeddings = next(iter(sizes.values()))
        import torch

        tokens = args.batch_size * seq_length
        print(
            f"model: GPTBigCode {params / 1e6:.1f}M parameters ({(params - embeddings) / 1e6:.1f}M without "
            f"embeddings; n_embd {args.n_embd}, n_layer {args.n_layer}, n_head {args.n_head}, multi-query, "
            f"{args.attn}); {args.batch_size} x {seq_length} = {tokens} tokens a step; "
            f"torch threads {args.threads or torch.get_num_threads()} in each engine's process"
        )
        print(
            f"timing: {args.steps} steps of each engine after {args.warmup} warm-up steps, the engines taking "
            f"turns step by step in shuffled order; eval and saving off"
        )
        for engine in (e for e in engines if callbacks[e]):
            print(f"{engine} callbacks: {', '.join(callbacks[engine])}")
        if profiled:
            print(f"--- cProfile of {args.profile} alone, its {args.steps} timed steps ---")
            print(profiled.rstrip())
        for engine in engines:
            median, mean = statistics.median(seconds[engine]), statistics.fmean(seconds[engine])
            print(
                f"{engine:8s}: {tokens / median:9,.0f} tokens/s  step median {median * 1e3:7.1f} ms  "
                f"mean {mean * 1e3:7.1f} ms  min {min(seconds[engine]) * 1e3:7.1f} ms"
            )
        if "bare" in losses:
            for engine in (e for e in engines if e != "bare"):
                diff = max(abs(a - b) for a, b in zip(losses[engine], losses["bare"]))
                agree = "agree" if diff < LOSS_TOLERANCE else "DIFFER: not the same computation"
                print(f"losses {engine} vs bare over {len(losses['bare'])} steps: max |diff| {diff:.2e} ({agree})")

        def median_ratio(a: str, b: str) -> float:
            return statistics.median(x / y for x, y in zip(seconds[a], seconds[b]))

        def mean_ratio(a: str, b: str) -> float:
            return statistics.fmean(seconds[a]) / statistics.fmean(seconds[b])

        pairs = [
            (a, b)
            for a, b in (("trainer", "bare"), ("ours", "trainer"), ("ours", "bare"))
            if a in seconds and b in seconds
        ]
        for a, b in pairs:
            print(
                f"{a} / {b}: median of step ratios {median_ratio(a, b):.3f}, ratio of means {mean_ratio(a, b):.3f}, "
                f"of fastest steps {min(seconds[a]) / min(seconds[b]):.3f}"
            )
        if ("trainer", "bare") in pairs:
            print(f"trainer_over_bare: {median_ratio('trainer', 'bare'):.3f}")
        if ("ours", "trainer") in pairs:
            print(f"ours_over_trainer: {median_ratio('ours', 'trainer'):.3f}")
        if ("ours", "bare") in pairs:
            # the glue's fixed cost in milliseconds, the figure that carries over to a GPU: there the same cost
            # sits beside a much shorter step, so the ratio above says little about it
            extra = [(x - y) * 1e3 for x, y in zip(seconds["ours"], seconds["bare"])]
            ratios = [x / y for x, y in zip(seconds["ours"], seconds["bare"])]
            q1, _, q3 = statistics.quantiles(extra, n=4, method="inclusive") if len(extra) > 1 else (extra[0],) * 3
            print(
                f"ours - bare per step: median {statistics.median(extra):+.1f} ms (range {min(extra):+.1f} to "
                f"{max(extra):+.1f}, quartiles {q1:+.1f} to {q3:+.1f}, {len(extra)} steps); step ratio range "
                f"{min(ratios):.3f} to {max(ratios):.3f}"
            )
            print(f"overhead_ms_per_step: {statistics.median(extra):.1f}")
            print(f"overhead_ratio: {median_ratio('ours', 'bare'):.3f}")


if __name__ == "__main__":
    main()
