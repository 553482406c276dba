"""Data-parallel training under ``torchrun``: one process per rank, DistributedDataParallel.

``torchrun --nproc-per-node N -m rnn_perception train tactile ...`` (or a launcher that sets
the same environment: SLURM's ``srun`` through ``torchrun``, a Kubernetes PyTorchJob) gives
every process ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`data_parallel` reads them and joins the process group (gloo on the CPU, NCCL on CUDA,
one GPU per local rank). Without them a trainer runs in one process, as before.

How a step is split, so that N ranks compute what one process computes: every rank draws the
same global batch (the same seed, the same random stream: a plan of episode references), runs
its share of it, ``batch[rank::world_size]`` (:meth:`Ranks.share`), and backpropagates its
share's *sum* of losses over the *global* batch's count, times the world size
(:meth:`Ranks.scale`). A rank prepares the episodes of its shares only (:meth:`Ranks.steps`):
what it needs of the others' (the batch's size, lengths, loss weights) comes from their
references and the index, and random draws made per episode are made for the whole batch.
DistributedDataParallel averages the ranks' gradients, which then is exactly the gradient of the
global batch's mean loss: after K steps the weights are a one-process run's of the same command,
up to the order of float sums. ``--batch-size`` stays the global batch. A rank whose share is
empty (a last batch smaller than the world) still joins the gradient all-reduce, with a zero
loss (:meth:`Ranks.share` hands it the batch's first item to weigh 0). Rank 0 alone validates
and writes (weights, per-epoch metrics, plots, the resume checkpoint); the others go on to the
next step and wait for it there.
"""
from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, List, NamedTuple, Sequence, Tuple, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

T = TypeVar('T')


@dataclass(frozen=True)
class Ranks:
    """This process's place among the ranks of a run (one rank: not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that validates and writes."""
        return self.rank == 0

    def share(self, batch: Sequence[T]) -> Tuple[List[T], float]:
        """This rank's part of a global batch and the weight of its loss: 1, or 0 when the part
        is empty and the batch's first item stands in so that the rank still joins the
        all-reduce."""
        part = list(batch[self.rank::self.world_size])
        return (part, 1.0) if part else ([batch[0]], 0.0)

    def plan(self, plan: Sequence[Sequence[T]]) -> List[List[T]]:
        """This rank's share of each batch of ``plan`` (an empty one's stand-in included): what
        it prepares."""
        return [self.share(batch)[0] for batch in plan]

    def steps(self, plan: Sequence[Sequence[T]],
              prepare: Callable[[List[List[T]]], Iterable[Sequence[Any]]]) -> 'RankSteps':
        """The steps of ``plan`` (global batches of references) as this rank trains them, its
        shares' episodes from ``prepare(self.plan(plan))`` (a stream's ``batches``)."""
        return RankSteps(plan, prepare(self.plan(plan)), self)

    def scale(self) -> float:
        """What a share's loss (its sum over the global batch's count) is multiplied by:
        DistributedDataParallel divides the summed gradients by the world size."""
        return float(self.world_size)

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """``module`` in DistributedDataParallel when distributed; itself otherwise."""
        if not self.distributed:
            return module
        device_ids = [device.index] if device.type == 'cuda' else None
        return DistributedDataParallel(module, device_ids=device_ids, forward_sync_buffers=False)

    def sum(self, values: Sequence[float]) -> List[float]:
        """``values`` summed over the ranks (float64; unchanged in one process)."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(list(values), dtype=torch.float64)
        if dist.get_backend() == dist.Backend.NCCL:
            tensor = tensor.cuda()
        dist.all_reduce(tensor)
        return tensor.cpu().tolist()


class RankStep(NamedTuple):
    """One optimiser step of a rank: the whole global batch's references, this rank's rows of
    it and their loss weight (:meth:`Ranks.share`), and the episodes of those rows."""

    batch: Sequence[Any]
    rows: List[int]
    weight: float
    episodes: List[Any]


class RankSteps:
    """The :class:`RankStep` of each batch of a plan: iterate once; ``len`` is the plan's
    number of batches."""

    def __init__(self, plan: Sequence[Sequence[Any]], shares: Iterable[Sequence[Any]],
                 ranks: Ranks):
        self.plan, self.shares, self.ranks = plan, shares, ranks

    def __len__(self) -> int:
        return len(self.plan)

    def __iter__(self) -> Iterator[RankStep]:
        # the shares first: zip then runs them to their end (a stream's clean-up) before it
        # finds the plan's
        for episodes, batch in zip(self.shares, self.plan):
            rows, weight = self.ranks.share(range(len(batch)))
            yield RankStep(batch, rows, weight, list(episodes))


def ranks_from_environment() -> Ranks:
    """The ranks torchrun describes in the environment; one rank without it."""
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    if world_size <= 1:
        return Ranks()
    return Ranks(int(os.environ['RANK']), world_size, int(os.environ.get('LOCAL_RANK', '0')))


@contextmanager
def data_parallel(device: torch.device) -> Iterator[Tuple[Ranks, torch.device]]:
    """Join torchrun's process group for the block (gloo on the CPU, NCCL on CUDA); yield the
    ranks and this rank's device (``cuda:LOCAL_RANK`` on CUDA).

    A group the caller already joined (a script running several trainings in one torchrun
    launch: under torchrun a process can join its group only once) is used and left open.
    """
    ranks = ranks_from_environment()
    if not ranks.distributed:
        yield ranks, device
        return
    if device.type == 'cuda':
        device = torch.device('cuda', ranks.local_rank)
        torch.cuda.set_device(device)
    if dist.is_initialized():
        yield ranks, device
        return
    dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo')
    yield ranks, device
    leave_process_group()


def leave_process_group() -> None:
    """Free what still holds the group, wait until every rank is done, then tear the group down.

    The DistributedDataParallel wrappers of the trainings are in reference cycles, so they
    would otherwise be freed by the interpreter's final collection, after the group is gone
    and while the interpreter is being torn down: their gloo work then aborts the process
    ("terminate called without an active exception", SIGABRT, seen in CI runs). Rank 0
    validates and writes after the others finished their last step, hence the barrier. Only on
    success: after an error the others may never arrive, and the launcher stops them all."""
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()
