"""Training and fine-tuning: the loop, EMA, mixed precision, DDP, validation, checkpoints, resume.

Recipes (TOML, defaults, stages) are `recipes`; the run log (log.csv, curves.png) is `runlog`.

A run directory holds everything a run writes: `last.pt` (full state, atomic, every N iterations), `best.pth` and
`model.pth` (plain state dicts that `esr upscale --model` detects), `log.csv`, `curves.png`, `recipe.toml.json`.
A recipe with `[[stages]]` runs them in order, each in its own sub-directory and warm-started from the one before;
a stage with `prune = { channels = N }` prunes that network instead of training it (`esr_cli.pruning`), and the
stages after it train the smaller network.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import random
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from . import registry as registries
from .data import PatchDataset, PatchSpec, Sampler
from .degradations import Degradations, describe
from .engine import Upscaler
from .errors import EsrError, first_line
from .images import atomic_write, writable_folder
from .loaded import DTYPES, LoadedModel, resolve_device
from .losses import build_loss
from .recipes import stages_of, validated
from .runlog import Log

WINDOW = 50
"""Batches per epoch at least, when data.repeat = 0 (auto): small sets are repeated to fill an epoch."""


# ---- distributed ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Dist:
        """torchrun's RANK / WORLD_SIZE / LOCAL_RANK; joins the process group (NCCL on CUDA, else gloo)."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return cls(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(name: str, d: Dist) -> torch.device:
    device = resolve_device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", d.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


# ---- the trainer ---------------------------------------------------------------------------------

def lr_factor(schedule: Mapping, iters: int, base_lr: float):
    """Multiplier of the base LR at iteration i: linear warm-up, then constant, multistep or cosine to eta_min."""
    kind, warmup = schedule["type"], int(schedule["warmup"])
    if kind not in ("constant", "multistep", "cosine"):
        raise EsrError(f"schedule.type {kind!r}: choose constant, multistep or cosine")
    floor = schedule["eta_min"] / base_lr if base_lr else 0.0

    def factor(i: int) -> float:
        if i < warmup:
            return (i + 1) / warmup
        if kind == "multistep":
            return schedule["gamma"] ** sum(i >= m for m in schedule["milestones"])
        if kind == "cosine":
            t = min(1.0, (i - warmup) / max(1, iters - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
        return 1.0

    return factor


def make_optimizer(params, optim: Mapping) -> torch.optim.Optimizer:
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if optim["type"].lower() not in kinds:
        raise EsrError(f"optim.type {optim['type']!r}: choose Adam or AdamW")
    return kinds[optim["type"].lower()](params, lr=optim["lr"], betas=tuple(optim["betas"]),
                                        weight_decay=optim["weight_decay"])


def load_init(net: nn.Module, ref: str, arch, registry, match=None) -> None:
    """Warm start: weights of a previous stage, a file or a zoo name (or their `locate` match), loaded strictly."""
    from .models import locate

    if match is None:
        match, _ = locate(ref, registry=registry, quiet=True, arch=arch.name)
    try:
        net.load_state_dict(dict(match.state_dict), strict=True)
    except RuntimeError as e:
        raise EsrError(f"model.init {ref} does not fit the recipe's {arch.name} config: {first_line(e)}") from None


def build_network(arch, config, reparam: bool, init: str) -> nn.Module:
    """The network to train: the deploy graph, or with `reparam` the architecture's training-time variant (its
    re-parameterisable blocks are fused when the weights are exported)."""
    if not reparam:
        return arch.build(config)
    if arch.train_build is None:
        raise EsrError(f"model.reparam: {arch.name} declares no training-time variant (re-parameterisable blocks)")
    if init:
        raise EsrError("model.reparam = true trains the blocks from scratch: leave model.init empty (a stage with "
                       "model.reparam = false can warm-start from the fused weights)")
    return arch.train_build(config)


class Trainer:
    """The network, its EMA, loss, optimizer, schedule and counters; `backward` + `step` make one iteration."""

    def __init__(self, recipe: Mapping, registry=None, d: Dist = Dist(), init=None) -> None:
        """`init`: the `models.locate` match of model.init when the caller has read it already (finetune)."""
        self.recipe, self.dist = recipe, d
        registry = registry or registries.default_registry()
        model, train = recipe["model"], recipe["train"]
        torch.manual_seed(recipe["seed"])
        self.arch = registry.get(model["arch"])
        self.config = self.arch.config(**{**model["config"], "scale": model["scale"]})
        self.device = pick_device(train["device"], d)
        self.net = build_network(self.arch, self.config, model["reparam"], model["init"])
        if model["init"]:
            load_init(self.net, model["init"], self.arch, registry, init)
        self.precision = train["precision"]
        if self.precision not in DTYPES:
            raise EsrError(f"train.precision {self.precision!r}: choose fp32, bf16 or fp16")
        self.net.to(self.device).train()
        self.ema = copy.deepcopy(self.net).requires_grad_(False) if train["ema"] else None
        self.model = LoadedModel(self._wrap(self.net), self.arch, self.config, device=self.device,
                                 precision=self.precision)
        self.loss = build_loss(recipe["loss"]).to(self.device)
        self.optimizer = make_optimizer(self.net.parameters(), recipe["optim"])
        factor = lr_factor(recipe["schedule"], train["iters"], recipe["optim"]["lr"])
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.iteration = self.epoch = self.step_in_epoch = 0
        self.best = -math.inf

    def _wrap(self, net: nn.Module) -> nn.Module:
        if self.dist.world == 1:
            return net
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(net, device_ids=ids)

    def backward(self, lr: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
        """Forward (autocast as the recipe says), weighted loss, backward; returns each term and the total."""
        lr, hr = lr.to(self.device, non_blocking=True), hr.to(self.device, non_blocking=True)
        terms = self.loss.terms(self.model.train_forward(lr), hr, lr)
        total = sum(terms.values())
        if not torch.isfinite(total):
            raise EsrError(f"iteration {self.iteration + 1}: the loss is {float(total)} (lower optim.lr?)")
        self.scaler.scale(total).backward()
        return {"loss": float(total.detach()), **{k: float(v.detach()) for k, v in terms.items()}}

    def step(self) -> None:
        """Clip, optimizer and schedule step, EMA update; one iteration done."""
        clip = self.recipe["optim"]["grad_clip"]
        if clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.net.parameters(), clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            decay = self.recipe["train"]["ema"]
            with torch.no_grad():
                for e, p in zip(self.ema.state_dict().values(), self.net.state_dict().values()):
                    if e.is_floating_point():
                        e.lerp_(p, 1 - decay)
                    else:
                        e.copy_(p)
        self.iteration += 1

    @property
    def final(self) -> nn.Module:
        """What is validated and exported: the EMA weights when there are some."""
        return self.ema if self.ema is not None else self.net

    def state(self) -> dict:
        return {"iteration": self.iteration, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                "best": self.best, "net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "ema": None if self.ema is None else self.ema.state_dict(), "rng": rng_state(),
                "recipe": json.loads(json.dumps(self.recipe))}

    def load_state(self, state: Mapping) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        self.iteration, self.epoch, self.step_in_epoch = state["iteration"], state["epoch"], state["step_in_epoch"]
        self.best = state["best"]
        set_rng_state(state["rng"])


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- data ----------------------------------------------------------------------------------------

def make_dataset(recipe: Mapping, d: Dist) -> PatchDataset:
    data, scale = recipe["data"], recipe["model"]["scale"]
    if not data["train"]:
        raise EsrError("the recipe names no training data (data.train = [folders])")
    spec = PatchSpec(scale, data["patch"], data["flip"], data["rot90"], recipe["seed"])
    degrade = Degradations.from_table(recipe["degrade"])
    dataset = PatchDataset(data["train"], spec, data["lr"], degrade, data["cache"])
    per_epoch = d.world * data["batch"]
    dataset.repeat = data["repeat"] or max(1, math.ceil(WINDOW * per_epoch / dataset.images))
    if len(dataset) < per_epoch:
        raise EsrError(f"{dataset.images} images x repeat {dataset.repeat} cannot fill one batch of {per_epoch}")
    return dataset


def batches(trainer: Trainer, dataset: PatchDataset) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless batches, resuming at (epoch, step_in_epoch) and counting them on the trainer."""
    from torch.utils.data import DataLoader

    data = trainer.recipe["data"]
    sampler = Sampler(dataset, trainer.dist.rank, trainer.dist.world, trainer.recipe["seed"])
    loader = DataLoader(dataset, batch_size=data["batch"], sampler=sampler, num_workers=data["workers"],
                        drop_last=True, collate_fn=dataset.collate, pin_memory=trainer.device.type == "cuda",
                        persistent_workers=data["workers"] > 0)
    while True:
        sampler.set_epoch(trainer.epoch)
        sampler.start = trainer.step_in_epoch * data["batch"]
        for batch in loader:
            trainer.step_in_epoch += 1
            yield batch
        trainer.epoch, trainer.step_in_epoch = trainer.epoch + 1, 0


# ---- validation ----------------------------------------------------------------------------------

def validate(module: nn.Module, arch, config, folder: str | Path, degrade: Degradations | None = None,
             seed: int = 0, border: int = 0, device: str | torch.device = "cpu") -> tuple[float, float]:
    """Mean Y-PSNR / SSIM on a folder through `esr evaluate`'s loop, LR degraded per image with a fixed seed."""
    from .datasets import load_dataset
    from .evaluation import Protocol, evaluate_dataset

    upscaler = Upscaler(LoadedModel(copy.deepcopy(module), arch, config, device=torch.device(device)))

    def per_image(x: torch.Tensor, i: int) -> torch.Tensor:
        return degrade(x[0], torch.Generator().manual_seed(seed * 1000 + i))[None]

    [result] = evaluate_dataset([upscaler], load_dataset(folder, config.scale), config.scale,
                                Protocol(border=border or None),
                                degrade=per_image if degrade is not None and degrade.active else None)
    return result.psnr, result.ssim


# ---- files ---------------------------------------------------------------------------------------

def save_torch(obj, path: Path) -> None:
    """torch.save to a temporary file beside `path`, then an atomic rename."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(path, buf.getvalue())


def export(module: nn.Module, path: Path) -> None:
    """The plain state dict of `module`, its re-parameterisable blocks fused (the deploy layout)."""
    from .reparam import fused

    save_torch({k: v.detach().cpu().contiguous() for k, v in fused(module).state_dict().items()}, path)


# ---- running -------------------------------------------------------------------------------------

def say(d: Dist, message: str) -> None:
    if d.main:
        print(message, file=sys.stderr, flush=True)


def default_output(name: str, d: Dist) -> Path:
    """runs/<name>-<time>, the same on every rank."""
    stamp = [time.strftime("%Y%m%d-%H%M%S")]
    if d.world > 1:
        dist.broadcast_object_list(stamp, src=0)
    return Path("runs") / f"{name}-{stamp[0]}"


def run(recipe: Mapping, output: Path | None = None, resume: bool = False, registry=None, init=None) -> Path:
    """Run every stage of a recipe; returns the last stage's exported weights (run_dir/model.pth).
    `init`: the already located model.init of the first stage (`esr finetune` reads its weights once)."""
    d = Dist.from_env()
    output = Path(output) if output else default_output(recipe["name"], d)
    stages = [(name, validated(stage)) for name, stage in stages_of(recipe)]  # every stage checked before any runs
    previous = pruned = None
    for name, stage in stages:
        run_dir = output / name if name else output
        if previous is not None and not stage["model"]["init"]:
            stage["model"]["init"] = str(previous)  # warm start from the stage before
            if pruned is not None:  # ... which is (or descends from) a pruned network: its shape
                stage["model"]["config"] = pruned
        located = init if previous is None and stage["model"]["init"] == recipe["model"]["init"] else None
        if "prune" in stage:
            previous = prune_stage(stage, run_dir, resume, registry, d, located)
            pruned = config_table(stage, previous, registry)
        else:
            previous = train_stage(stage, run_dir, resume, registry, d, located)
    return previous


def prune_stage(recipe: Mapping, run_dir: Path, resume: bool, registry, d: Dist, init=None) -> Path:
    """A `prune` stage: the weights it starts from (the stage before's model.pth, or model.init) cut to
    prune.channels feature channels by the architecture's prune hook (`esr_cli.pruning`), written as its
    model.pth; nothing is trained. Skipped when already done (resume)."""
    from .models import locate
    from .pruning import prune

    final = run_dir / "model.pth"
    if final.exists():
        if resume:
            say(d, f"esr train: {run_dir} is finished; skipping")
            return final
        raise EsrError(f"{run_dir} holds a run already: pass --resume, or another -o")
    source = recipe["model"]["init"]
    if not source:
        raise EsrError("a prune stage cuts the weights it starts from: put a training stage before it, or set "
                       "model.init")
    if d.main:
        writable_folder(run_dir)
        match = init or locate(source, arch=recipe["model"]["arch"], registry=registry, quiet=True)[0]
        smaller = prune(match, recipe["prune"]["channels"], registry)
        atomic_write(run_dir / "recipe.json", json.dumps(recipe, indent=1).encode())
        save_torch(dict(smaller.state_dict), final)
        say(d, f"esr train: {source} pruned to {smaller.config}, written to {final}")
    if d.world > 1:
        dist.barrier()
    return final


def config_table(recipe: Mapping, weights: Path, registry) -> dict:
    """model.config (without the scale) of a weights file of the recipe's architecture, read off its shapes."""
    import dataclasses

    from .checkpoint import read_state_dict

    arch = (registry or registries.default_registry()).get(recipe["model"]["arch"])
    config = arch.read_config(read_state_dict(weights), recipe["model"]["scale"])
    return {k: v for k, v in dataclasses.asdict(config).items() if k != "scale"}


def train_stage(recipe: Mapping, run_dir: Path, resume: bool, registry, d: Dist, init=None) -> Path:
    """One stage: skipped when already finished (resume), else trained to `train.iters` and exported."""
    final = run_dir / "model.pth"
    if resume and final.exists():
        say(d, f"esr train: {run_dir} is finished; skipping")
        return final
    checkpoint = run_dir / "last.pt"
    if checkpoint.exists() and not resume:
        raise EsrError(f"{run_dir} holds a run already: pass --resume, or another -o")
    if d.main:
        writable_folder(run_dir)  # before the model is built or a batch is read
    trainer = Trainer(recipe, registry, d, init)
    if resume and checkpoint.exists():
        # our own file (it holds numpy's RNG state, which weights_only refuses)
        trainer.load_state(torch.load(checkpoint, map_location="cpu", weights_only=False))
        say(d, f"esr train: resuming {run_dir} at iteration {trainer.iteration}")
    elif resume:  # a preempted job restarts with the same --resume line, the first time too
        say(d, f"esr train: nothing to resume in {run_dir} (no last.pt): starting the run")
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir / "recipe.json", json.dumps(recipe, indent=1).encode())
    loop(trainer, make_dataset(recipe, d), run_dir)
    if d.main:
        export(trainer.final, final)
        say(d, f"esr train: weights written to {final}")
    if d.world > 1:
        dist.barrier()
    return final


def loop(trainer: Trainer, dataset: PatchDataset, run_dir: Path) -> None:
    """Iterate to train.iters: log every N, validate every N, checkpoint every N (rank 0 writes)."""
    recipe, d = trainer.recipe, trainer.dist
    train = recipe["train"]
    log = Log(run_dir, trainer.iteration) if d.main else None
    say(d, f"esr train: {trainer.arch.name} {trainer.config} on {dataset.images} images, "
           f"degradations: {describe(Degradations.from_table(recipe['degrade']))}, device {trainer.device}")
    start, window = time.monotonic(), []
    data = batches(trainer, dataset)
    while trainer.iteration < train["iters"]:
        lr, hr = next(data)
        window.append(trainer.backward(lr, hr))
        trainer.step()
        it = trainer.iteration
        if d.main and (it % train["log_every"] == 0 or it == train["iters"]):
            log_losses(trainer, log, window, time.monotonic() - start)
            window = []
        if recipe["val"]["folder"] and (it % recipe["val"]["every"] == 0 or it == train["iters"]):
            run_validation(trainer, log, run_dir, time.monotonic() - start)
        if d.main and (it % train["checkpoint_every"] == 0 or it == train["iters"]):
            save_torch(trainer.state(), run_dir / "last.pt")
    if d.main and (note := log.plot()):
        say(d, f"esr train: {note}")


def log_losses(trainer: Trainer, log: Log, window: list[dict], elapsed: float) -> None:
    mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
    terms = ";".join(f"{k}={v:.6g}" for k, v in mean.items() if k != "loss")
    lr = trainer.optimizer.param_groups[0]["lr"]
    log.add(iter=trainer.iteration, epoch=trainer.epoch, lr=f"{lr:.6g}", loss=f"{mean['loss']:.6g}", terms=terms,
            elapsed_s=f"{elapsed:.1f}")
    say(trainer.dist, f"iter {trainer.iteration:>7}  loss {mean['loss']:.5f}  lr {lr:.3g}  {elapsed:.0f}s")


def run_validation(trainer: Trainer, log: Log | None, run_dir: Path, elapsed: float) -> None:
    """Rank 0 validates the exported weights; a better PSNR writes best.pth."""
    if trainer.dist.main:
        val = trainer.recipe["val"]
        degrade = Degradations.from_table(trainer.recipe["degrade"]) if val["degrade"] else None
        value, s = validate(trainer.final, trainer.arch, trainer.config, val["folder"], degrade,
                            trainer.recipe["seed"], val["border"], trainer.device)
        if value > trainer.best:
            trainer.best = value
            export(trainer.final, run_dir / "best.pth")
        log.add(iter=trainer.iteration, epoch=trainer.epoch, val_psnr=f"{value:.4f}", val_ssim=f"{s:.4f}",
                elapsed_s=f"{elapsed:.1f}")
        say(trainer.dist, f"iter {trainer.iteration:>7}  val Y-PSNR {value:.4f} dB  SSIM {s:.4f}")
    if trainer.dist.world > 1:
        dist.barrier()
