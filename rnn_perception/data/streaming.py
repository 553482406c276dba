"""A sharded dataset's episodes streamed a few shards at a time, for datasets larger than memory.

What a trainer needs of every episode before it trains (its label for the split and its length
for the batches) comes from an **index** (:func:`episode_refs`): small per-shard arrays read
without decompressing any frames. The episodes themselves come from a :class:`ShardStream`,
which reads the shards a *plan* needs (a list of batches of :class:`EpisodeRef`, made from the
index), prepares their episodes (the trainer's ``prepare``: resizing, targets) and hands them
out batch by batch, never holding more than ``shards_in_memory`` shards at once:

- a background thread reads the shards in the order the plan first needs them (zlib
  decompression releases the GIL, so reading overlaps training), each once a *slot* is free;
- a shard's slot is freed once the plan has taken the last of its episodes (each episode is
  taken once per plan), so the next shard is read while the last batches of the current ones
  train;
- the plan must never need more than ``shards_in_memory`` shards at a time, or the reader could
  wait for a slot the consumer never frees: :meth:`ShardStream.batches` checks it, and
  :func:`shard_windows` makes plans that keep to it (the shards in a random order, cut into
  windows of ``shards_in_memory``, whose episodes are then shuffled within the window).

``shards_in_memory`` None (``all``), or at least the dataset's shard count, is the in-memory
case: every shard is read once, all its episodes prepared and kept, and later plans are served
from memory; :func:`shard_windows` then draws nothing from the random stream, so a trainer's
batches are exactly those of holding every episode in a list.

A stream prepares only the episodes of its plans (all of a shard's when it keeps them), so a
rank of a data-parallel run whose plan holds only its shares of the global batches prepares and
holds only those (:meth:`~rnn_perception.training.distributed.Ranks.steps`). It still reads
and decompresses every shard its plan touches whole: an npz member (a shard's frames) is one
deflated stream, so the rows of a few episodes cannot be read without the rest.

:attr:`ShardStream.resident` counts the shards held (read or being read, and not yet fully
taken), :attr:`ShardStream.peak_resident` its highest value, :attr:`ShardStream.shard_reads`
the shards read and :attr:`ShardStream.prepared` the episodes prepared: what the tests check
the bounds with. A batch the consumer holds is not counted.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, Optional

import numpy as np

from .shards import episode_fields, load_shard, ShardedDataset

ALL = 'all'


class EpisodeRef(NamedTuple):
    """Where an episode is and what a trainer knows of it without its frames."""

    shard: int      # position in the dataset's ``shard_files``
    row: int        # episode number within its shard
    index: int      # global episode index
    label: bool     # the split stratifies by it (hit, slipped)
    length: int     # what batches bucket by (frames a trainer runs)


def index_arrays(dataset: ShardedDataset, members: Sequence[str]
                 ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Each shard's number and its arrays ``members`` only (plus ``episode_offsets`` and
    ``episode_index``), in shard order: what an index is made of."""
    for shard, (root, entry) in enumerate(dataset.shard_files):
        yield shard, load_shard(root, entry, members)


def shard_refs(shard: int, arrays: dict[str, np.ndarray],
               described: Iterable[tuple[bool, int]]) -> list[EpisodeRef]:
    """The references of shard ``shard``'s episodes, from its :func:`index_arrays` and each
    episode's ``(label, length)`` in shard order."""
    starts = arrays['episode_offsets'][:-1]
    return [EpisodeRef(shard, row, int(arrays['episode_index'][starts[row]]), bool(label),
                       int(length)) for row, (label, length) in enumerate(described)]


def episode_refs(dataset: ShardedDataset, members: Sequence[str],
                 describe: Callable[[dict], Iterable[tuple[bool, int]]]) -> list[EpisodeRef]:
    """Every episode of ``dataset`` in episode order, from the shards' :func:`index_arrays`:
    ``describe(arrays)`` gives each episode's ``(label, length)`` in shard order."""
    return [ref for shard, arrays in index_arrays(dataset, members)
            for ref in shard_refs(shard, arrays, describe(arrays))]


def parse_shards_in_memory(text: str) -> Optional[int]:
    """``--shards-in-memory``: a positive count, or ``all`` (None)."""
    if text == ALL:
        return None
    count = int(text)
    if count < 1:
        raise ValueError(f'shards in memory must be at least 1 or "{ALL}", got {text}')
    return count


def holds_all(shards_in_memory: Optional[int], shard_count: int) -> bool:
    """Whether ``shards_in_memory`` keeps the whole dataset of ``shard_count`` shards."""
    return shards_in_memory is None or shards_in_memory >= shard_count


def shard_windows(refs: Sequence[EpisodeRef], shards_in_memory: Optional[int],
                  rng: np.random.Generator) -> list[list[EpisodeRef]]:
    """``refs`` cut into windows of at most ``shards_in_memory`` shards, the shards in an order
    drawn from ``rng``; each window keeps the order of ``refs``. When every shard of ``refs``
    fits, one window, ``refs`` itself, and nothing is drawn."""
    shards = sorted({ref.shard for ref in refs})
    if holds_all(shards_in_memory, len(shards)):
        return [list(refs)]
    return cut_by_shards(refs, [shards[i] for i in rng.permutation(len(shards))],
                         shards_in_memory)


def shard_groups(refs: Sequence[EpisodeRef], shards_in_memory: Optional[int]
                 ) -> list[list[EpisodeRef]]:
    """``refs`` in groups of at most ``shards_in_memory`` shards in shard order, each group in
    the order of ``refs`` (one group, ``refs`` itself, when all fit): a plan for a pass that
    needs every episode once in any order (validation, statistics)."""
    shards = sorted({ref.shard for ref in refs})
    if holds_all(shards_in_memory, len(shards)):
        return [list(refs)]
    return cut_by_shards(refs, shards, shards_in_memory)


def windowed_plan(refs: Sequence[EpisodeRef], shards_in_memory: Optional[int],
                  rng: np.random.Generator,
                  cut: Callable[[list[EpisodeRef], np.random.Generator], list[list[EpisodeRef]]]
                  ) -> list[list[EpisodeRef]]:
    """One epoch's batches of training ``refs``: each of the :func:`shard_windows` cut into
    batches by ``cut(window, rng)`` (the trainer's batching), the windows in their random
    order. With all shards in one window, ``cut(refs, rng)``: a trainer's batches of holding
    every episode in a list."""
    return [batch for window in shard_windows(refs, shards_in_memory, rng)
            for batch in cut(window, rng)]


def most_batches(refs: Sequence[EpisodeRef], shards_in_memory: Optional[int],
                 batch_size: int) -> int:
    """The most batches of ``batch_size`` a :func:`windowed_plan` of ``refs`` holds (what a
    learning-rate schedule is sized by): a window's last batch may be short, so at most one
    batch more per window than a single shuffle makes, and exactly its count when all shards
    are held."""
    return -(-len(refs) // batch_size) + len(shard_groups(refs, shards_in_memory)) - 1


def cut_by_shards(refs: Sequence[EpisodeRef], order: Sequence[int], size: int
                  ) -> list[list[EpisodeRef]]:
    """``refs`` in parts of the episodes of ``size`` shards each, the shards taken in
    ``order``; each part keeps the order of ``refs``."""
    parts = []
    for start in range(0, len(order), size):
        chosen = set(order[start:start + size])
        parts.append([ref for ref in refs if ref.shard in chosen])
    return parts


class StreamedBatches:
    """The batches of one plan: iterate once; ``len`` is the plan's number of batches."""

    def __init__(self, stream: 'ShardStream', plan: Sequence[Sequence[EpisodeRef]]):
        self.stream, self.plan = stream, plan

    def __len__(self) -> int:
        return len(self.plan)

    def __iter__(self) -> Iterator[list]:
        return self.stream._iterate(self.plan)


class ShardStream:
    """The prepared episodes of ``dataset`` for plans of :class:`EpisodeRef` (module
    docstring). ``prepare`` turns a dataset episode (``dataset.make_episode``) into what the
    trainer holds; it runs on the reader thread."""

    def __init__(self, dataset: ShardedDataset, prepare: Callable[[Any], Any],
                 shards_in_memory: Optional[int]):
        self.dataset, self.prepare = dataset, prepare
        shard_count = len(dataset.shard_files)
        self.keep = holds_all(shards_in_memory, shard_count)
        self.limit = shard_count if self.keep else shards_in_memory
        self.resident = self.peak_resident = self.shard_reads = self.prepared = 0
        self._kept: dict[int, dict[int, Any]] = {}
        self._lock = threading.Condition()

    def describe(self) -> str:
        """How the dataset is held, for a trainer's opening line."""
        shards = len(self.dataset.shard_files)
        if self.keep:
            return f'all {shards} shards in memory'
        return f'streaming {shards} shards, {self.limit} at a time'

    def batches(self, plan: Sequence[Sequence[EpisodeRef]]) -> StreamedBatches:
        """The prepared episodes of ``plan``, batch by batch.

        Raises:
            ValueError: the plan takes an episode twice or needs more than the limit's shards
                at a time.
        """
        self._check(plan)
        return StreamedBatches(self, plan)

    def _check(self, plan: Sequence[Sequence[EpisodeRef]]) -> None:
        remaining: dict[int, int] = {}
        seen = set()
        for batch in plan:
            for ref in batch:
                if (ref.shard, ref.row) in seen:
                    raise ValueError(f'the plan takes episode {ref.index} twice')
                seen.add((ref.shard, ref.row))
                remaining[ref.shard] = remaining.get(ref.shard, 0) + 1
        live: set[int] = set()
        for batch in plan:
            for ref in batch:
                live.add(ref.shard)
                if len(live) > self.limit:
                    raise ValueError(f'the plan needs {len(live)} shards at a time, more than '
                                     f'the {self.limit} it may hold')
                remaining[ref.shard] -= 1
                if not remaining[ref.shard]:
                    live.discard(ref.shard)

    def _read(self, shard: int, rows: Optional[set]) -> dict[int, Any]:
        """Shard ``shard``'s prepared episodes (those of ``rows``; None: all)."""
        root, entry = self.dataset.shard_files[shard]
        arrays = load_shard(root, entry)
        dataset = self.dataset
        chosen = range(entry['episodes']) if rows is None else sorted(rows)
        episodes = {row: self.prepare(dataset.make_episode(episode_fields(
            arrays, row, dataset.FRAME_DTYPES, dataset.EPISODE_DTYPES))) for row in chosen}
        self.shard_reads += 1
        self.prepared += len(episodes)
        return episodes

    def _count(self, change: int) -> None:
        self.resident += change
        self.peak_resident = max(self.peak_resident, self.resident)

    def _iterate(self, plan: Sequence[Sequence[EpisodeRef]]) -> Iterator[list]:
        rows: dict[int, set] = {}
        for batch in plan:
            for ref in batch:
                rows.setdefault(ref.shard, set()).add(ref.row)
        remaining = {shard: len(chosen) for shard, chosen in rows.items()}
        held = self._kept if self.keep else {}
        to_read = [shard for shard in rows if shard not in held]  # dicts keep first-need order
        slots = threading.Semaphore(self.limit)
        stop, failure = threading.Event(), []

        def reader() -> None:
            try:
                for shard in to_read:
                    slots.acquire()
                    if stop.is_set():
                        return
                    with self._lock:
                        self._count(1)
                    episodes = self._read(shard, None if self.keep else rows[shard])
                    with self._lock:
                        held[shard] = episodes
                        self._lock.notify_all()
            except BaseException as error:  # handed to the consumer, raised there
                with self._lock:
                    failure.append(error)
                    self._lock.notify_all()

        thread = threading.Thread(target=reader, name='shard-reader', daemon=True)
        thread.start()
        try:
            for batch in plan:
                yield [self._take(ref, held, remaining, slots, failure) for ref in batch]
        finally:
            stop.set()
            for _ in to_read:
                slots.release()   # a reader waiting for a slot sees ``stop``
            thread.join()
            if not self.keep:
                with self._lock:
                    self._count(-len(held))
                    held.clear()

    def _take(self, ref: EpisodeRef, held: dict, remaining: dict, slots: threading.Semaphore,
              failure: list) -> Any:
        with self._lock:
            self._lock.wait_for(lambda: ref.shard in held or failure)
            if failure:
                raise failure[0]
            if self.keep:
                return held[ref.shard][ref.row]
            episodes = held[ref.shard]
            episode = episodes.pop(ref.row)
            remaining[ref.shard] -= 1
            if not remaining[ref.shard]:
                del held[ref.shard]
                self._count(-1)
                slots.release()
            return episode
