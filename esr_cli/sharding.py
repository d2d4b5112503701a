"""One command's work shared by processes that a launcher started: torchrun, SLURM's srun, a Kubernetes indexed Job
or `--shard I/N` given by hand. No scheduler of our own: each process works out which share is its own from the
launcher's variables and takes it, deterministically (every process computes the same split).

Under torchrun (or when the caller already joined a process group) results are gathered over torch.distributed
(gloo on CPU, NCCL on CUDA); plain processes (`--shard`, srun, Kubernetes) combine through files instead: the last
one to finish finds every share's file and writes the whole result (`combine_files`).

torch is imported inside the functions: `esr --help` imports this module's parse function only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import EsrError

COUNT_VARIABLE = "ESR_SHARDS"
"""How many shards a Kubernetes indexed Job has (its `completions`): the Job gives each pod JOB_COMPLETION_INDEX
only, so its spec sets this variable too."""


@dataclass(frozen=True)
class Shard:
    """Share `index` (0 to count - 1) of `count`; `local_rank` picks the GPU on its machine."""

    index: int = 0
    count: int = 1
    local_rank: int = 0
    launcher: str = "none"
    """option (`--shard`), torchrun, slurm, kubernetes, or none."""

    @property
    def sharded(self) -> bool:
        return self.count > 1

    @property
    def main(self) -> bool:
        return self.index == 0

    @property
    def label(self) -> str:
        return f"shard {self.index}/{self.count}"


def parse(text: str) -> tuple[int, int]:
    """`I/N` -> (I, N) with 0 <= I < N; ValueError with a message that fits after the option's name."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"{text!r}: give I/N, e.g. 0/4 (share I, counted from 0, of N)") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"{text!r}: N must be at least 1 and I from 0 to N - 1")
    return index, count


def detect(option: str | None = None, env: Mapping[str, str] | None = None) -> Shard:
    """This process's shard: `--shard I/N`, else torchrun (RANK, WORLD_SIZE, LOCAL_RANK), else SLURM (SLURM_PROCID,
    SLURM_NTASKS, SLURM_LOCALID), else a Kubernetes indexed Job (JOB_COMPLETION_INDEX and ESR_SHARDS), else 0/1."""
    env = os.environ if env is None else env
    if option:
        try:
            index, count = parse(option)
        except ValueError as e:
            raise EsrError(f"--shard {e}") from None
        return Shard(index, count, _int(env, "LOCAL_RANK", 0), "option")
    if "RANK" in env and "WORLD_SIZE" in env:
        return _checked(_int(env, "RANK"), _int(env, "WORLD_SIZE"), _int(env, "LOCAL_RANK", 0), "torchrun")
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        return _checked(_int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS"), _int(env, "SLURM_LOCALID", 0), "slurm")
    if "JOB_COMPLETION_INDEX" in env:
        if COUNT_VARIABLE not in env:
            raise EsrError(f"JOB_COMPLETION_INDEX is set (a Kubernetes indexed Job) but {COUNT_VARIABLE} is not: "
                           f"set {COUNT_VARIABLE} to the Job's completions, or give --shard I/N")
        return _checked(_int(env, "JOB_COMPLETION_INDEX"), _int(env, COUNT_VARIABLE), 0, "kubernetes")
    return Shard()


def _int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    value = env.get(name)
    if value is None and default is not None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise EsrError(f"{name}={value!r}: not a whole number") from None


def _checked(index: int, count: int, local_rank: int, launcher: str) -> Shard:
    if count < 1 or not 0 <= index < count:
        raise EsrError(f"{launcher}: shard {index} of {count} is not a share (0 to {count - 1})")
    return Shard(index, count, local_rank, launcher)


def device_for(device: str, shard: Shard) -> str:
    """`cuda:LOCAL_RANK` for a sharded run asked for `auto` or `cuda` when CUDA is there; else `device` as given."""
    if not shard.sharded or device not in ("auto", "cuda"):
        return device
    import torch

    return f"cuda:{shard.local_rank}" if torch.cuda.is_available() else device


# ---- splitting -------------------------------------------------------------------------------------

def balance(weights: Sequence[float], count: int) -> list[int]:
    """The shard of each item: largest first, each onto the lightest shard so far (ties: the lower index), so
    the heaviest shard exceeds the mean by less than the largest item. The same on every process."""
    owner, load = [0] * len(weights), [0.0] * count
    for i in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        k = min(range(count), key=lambda k: (load[k], k))
        owner[i] = k
        load[k] += weights[i]
    return owner


def share(items: Sequence, weights: Sequence[float], shard: Shard) -> list:
    """The items of this shard, in their original order."""
    if not shard.sharded:
        return list(items)
    owner = balance(weights, shard.count)
    return [item for item, k in zip(items, owner) if k == shard.index]


def block(n: int, shard: Shard) -> range:
    """Contiguous share of n equal items (a video's segments: one decoder per shard)."""
    return range(n * shard.index // shard.count, n * (shard.index + 1) // shard.count)


# ---- torch.distributed -----------------------------------------------------------------------------

def distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


@contextlib.contextmanager
def process_group(shard: Shard, device: str = "cpu") -> Iterator[bool]:
    """Join torchrun's process group for the duration (gloo on CPU, NCCL on CUDA), unless one is up already;
    yields whether results can be gathered. Plain shards (`--shard`, srun, Kubernetes) join none."""
    if shard.launcher != "torchrun" or not shard.sharded:
        yield shard.sharded and distributed()
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        yield True
        return
    cuda = device.startswith("cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group("nccl" if cuda else "gloo")
    ok = False
    try:
        yield True
        ok = True
    finally:
        if ok:
            dist.barrier()  # neither rank tears the group down while another still uses it
        dist.destroy_process_group()


def gather(obj) -> list | None:
    """`obj` of every rank, in rank order, when a process group is up; else None."""
    if not distributed():
        return None
    import torch.distributed as dist

    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, obj)
    return parts


# ---- plain processes: combining through files ------------------------------------------------------

@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created), released when the holder ends, even killed."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def combine_files(target: Path, shard: Shard, payload) -> list | None:
    """Write this shard's JSON `payload` beside `target` (`.NAME.shard-I-of-N.json`); the shard that then finds
    all N there gets them in shard order (and removes them), the others None."""
    from .images import atomic_write

    parts = [target.with_name(f".{target.name}.shard-{k}-of-{shard.count}.json") for k in range(shard.count)]
    atomic_write(parts[shard.index], json.dumps(payload).encode())
    lock = target.with_name(f".{target.name}.shards.lock")
    with locked(lock):
        if not all(p.is_file() for p in parts):
            return None  # a later shard combines (or another one already did)
        found = [json.loads(p.read_text()) for p in parts]
        for p in parts:
            p.unlink()
        lock.unlink(missing_ok=True)
        return found
