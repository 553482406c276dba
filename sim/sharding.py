"""``--shard K/N``: which episodes of a run one of N machines simulates.

Shard ``K`` of ``N`` (1-based, as SLURM's ``--array=1-N`` numbers its tasks) makes the
contiguous block of episode indices ``[(K-1)·E // N, K·E // N)`` of a run of ``E`` episodes:
the blocks cover ``0 .. E-1`` exactly once and differ in size by at most one episode.

Why contiguous blocks rather than every N-th episode: a shard's dataset is then an ordinary
dataset whose shard files hold consecutive episodes (the format's promise,
:mod:`rnn_perception.data.shards`), the parts of a run put side by side in block order *are*
the unsharded run in episode order, and a dataset grows by simulating a later block (a larger
``--episodes`` with ``--shard 2/2``) without touching what exists. Episodes cost about the same
whatever their index, so blocks balance as well as a stride would. Each episode draws from its
own seed (:func:`sim.pipeline.episode_rng` of the seed and its index), so the same seed gives
the same episode whichever shard, worker or machine made it.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from sim.errors import SimError

_SHARD_PATTERN = re.compile(r'(\d+)/(\d+)')


@dataclass(frozen=True)
class RunShard:
    """Shard ``index`` (1-based) of ``count`` of a run (not a ``shard_XXXXX.npz`` file)."""

    index: int
    count: int

    def episodes(self, total: int) -> range:
        """The episode indices this shard makes of a run of ``total`` episodes.

        Raises:
            SimError: the run has fewer episodes than shards, so some shard would be empty.
        """
        if self.count > total:
            raise SimError(f'--shard {self}: {self.count} shards of {total} episodes would leave '
                           'some empty; use at most as many shards as episodes')
        return range((self.index - 1) * total // self.count, self.index * total // self.count)

    def manifest_entry(self, total: int) -> dict:
        """What a sharded dataset's manifest records about its part of the run."""
        block = self.episodes(total)
        return {'index': self.index, 'count': self.count,
                'episodes': [block.start, block.stop]}

    def __str__(self) -> str:
        return f'{self.index}/{self.count}'


def parse_shard(text: str) -> RunShard:
    """An argparse type: ``K/N`` with ``1 <= K <= N``."""
    match = _SHARD_PATTERN.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f'expected K/N such as 3/8, got {text!r}')
    index, count = int(match[1]), int(match[2])
    if count < 1:
        raise argparse.ArgumentTypeError(f'the shard count N must be at least 1, got {text!r}')
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(
            f'the shard number K must be between 1 and N={count}, got {text!r}')
    return RunShard(index, count)
