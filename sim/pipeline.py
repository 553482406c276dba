"""What every simulator's generation shares: seeding, workers, shards, bag, preview, progress.

A simulator describes itself with a :class:`SimulatorSpec` and calls :func:`generate`.

Every output is built under a hidden staging name next to its target and renamed into place
only after everything succeeded (the dataset last, its manifest written last inside it), so
an error or Ctrl-C leaves nothing that looks complete. Episodes are simulated in order by
one process or by a pool of worker processes; either way episode ``i`` is the same (it draws
from :func:`episode_rng` of the seed and ``i`` alone), and shards are cut by episode number,
so the dataset does not depend on ``workers``. With a :class:`~sim.sharding.RunShard` (``--shard
K/N``) only that block of episode indices is made, each episode as the whole run makes it.
"""
from __future__ import annotations

import multiprocessing
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from rnn_perception.data.bags import BagWriter, open_bag_writer, staged_path
from rnn_perception.data.shards import shard_file_name, write_manifest
from sim.errors import SimError
from sim.sharding import RunShard


def episode_rng(seed: int, index: int) -> np.random.Generator:
    """Episode ``index``'s generator: ``SeedSequence(seed, spawn_key=(index,))``, the
    ``index``-th child of ``SeedSequence(seed).spawn(...)``, so episodes are independent of
    each other and of which process (or machine, :mod:`sim.sharding`) simulates them."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


class EpisodeRecorder(Protocol):
    """Writes episodes into a bag, in order."""

    def add(self, episode: Any) -> None:
        """Append one episode."""


class SimulationConfig(Protocol):
    """The part of a simulator's config the pipeline reads."""

    episodes: int
    workers: int
    episodes_per_shard: int
    output: Any  # out, bag, storage, preview


@dataclass(frozen=True)
class SimulatorSpec:
    """How one simulator plugs into :func:`generate`.

    ``simulator``: a picklable callable ``simulator(config)`` returning an object that maps an
    episode index to an episode and has ``close()``. ``write_shard(path, episodes)`` writes a
    shard and returns its manifest entry; ``manifest(shards)`` builds the manifest;
    ``recorder(writer)`` declares the bag topics and returns an :class:`EpisodeRecorder`;
    ``preview(dataset_dir, png_path)`` draws the finished dataset.
    """

    name: str
    simulator: Callable[[Any], Any]
    write_shard: Callable[[Path, list], dict]
    manifest: Callable[[list[dict]], dict]
    recorder: Callable[[BagWriter], EpisodeRecorder]
    preview: Callable[[Path, Path], None]


_worker_simulator = None
_stop_requested = threading.Event()

# Episodes handed to the pool ahead of the one being written, per worker: enough to keep every
# worker busy, few enough that the pool's task pipe never fills. With a long backlog queued
# (``imap`` over every episode), ``Pool.terminate()`` on Ctrl-C/SIGTERM can wait forever on a
# task handler blocked writing to that full pipe (cpython #78178, #96995; `sim` hung on SIGTERM
# once in a loaded stress run).
EPISODES_AHEAD_PER_WORKER = 2


def request_stop(signum=None, frame=None) -> None:
    """Signal handler (the CLI installs it for SIGINT and SIGTERM): stop after the episode in
    hand, by a ``KeyboardInterrupt`` raised from the episode loop. Raised from the handler
    itself it could land inside ``multiprocessing``'s locks, where the pool's shutdown then
    waits forever for the lock it holds (seen once in CI with 2 workers)."""
    _stop_requested.set()


def _raise_if_stop_requested() -> None:
    if _stop_requested.is_set():
        raise KeyboardInterrupt


def _start_worker(simulator: Callable, config) -> None:
    """Pool initializer: one simulator per worker; Ctrl-C is the parent's to handle."""
    global _worker_simulator
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_simulator = simulator(config)


def _simulate_in_worker(index: int):
    """Pool task: episode ``index``."""
    return _worker_simulator(index)


def simulate_episodes(simulator: Callable, config: SimulationConfig,
                      indices: range | None = None) -> Iterator:
    """Episodes ``indices`` (default ``0 .. episodes-1``) in order, simulated by
    ``config.workers`` processes."""
    indices = range(config.episodes) if indices is None else indices
    workers = min(config.workers, len(indices))
    if workers == 1:
        with closing(simulator(config)) as instance:
            yield from map(instance, indices)
        return
    # spawn, not fork: each worker starts fresh (its own pybullet), whatever the parent imported.
    context = multiprocessing.get_context('spawn')
    with context.Pool(workers, initializer=_start_worker, initargs=(simulator, config)) as pool:
        yield from imap_bounded(pool, _simulate_in_worker, indices,
                                ahead=workers * EPISODES_AHEAD_PER_WORKER)


def imap_bounded(pool, function: Callable, items: Iterable, ahead: int) -> Iterator:
    """``pool.imap(function, items)`` with at most ``ahead`` items submitted and not yet
    taken by the caller, so stopping never leaves a backlog for ``pool.terminate()``."""
    items = iter(items)
    in_flight = deque(pool.apply_async(function, (item,)) for item in islice(items, ahead))
    while in_flight:
        result = in_flight.popleft().get()
        # Keep `ahead` submitted beyond the results handed out.
        in_flight.extend(pool.apply_async(function, (item,)) for item in islice(items, 1))
        yield result


def write_shards(episodes: Iterable, dataset_dir: Path, episodes_per_shard: int,
                 write_shard: Callable[[Path, list], dict],
                 recorder: EpisodeRecorder | None = None) -> list[dict]:
    """Write episodes (in order) into shards of ``episodes_per_shard``, and to the bag if any."""
    shards, pending = [], []

    def flush() -> None:
        shards.append(write_shard(dataset_dir / shard_file_name(len(shards)), pending))
        pending.clear()

    for episode in episodes:
        _raise_if_stop_requested()
        if recorder is not None:
            recorder.add(episode)
        pending.append(episode)
        if len(pending) == episodes_per_shard:
            flush()
    if pending:
        flush()
    return shards


def generate(config: SimulationConfig, spec: SimulatorSpec, *,
             progress: bool | None = None, shard: RunShard | None = None) -> dict:
    """Make the dataset (and bag, preview) that ``config`` asks for; return its manifest.

    ``progress``: show a progress bar (None: only on a terminal). ``shard``: make only that
    part of the run; its manifest says which (``shard``: index, count, ``episodes`` [start,
    stop)), and an unsharded run's manifest has no such key.
    """
    _stop_requested.clear()
    output = config.output
    if output.out is None:
        raise SimError('no output directory: pass --out DIR (or set output.out in the config)')
    indices = range(config.episodes) if shard is None else shard.episodes(config.episodes)
    # Exits run in reverse: the simulation stops first, the dataset is renamed into place last.
    with ExitStack() as stack:
        dataset_dir = stack.enter_context(staged_path(output.out))
        dataset_dir.mkdir()
        recorder = None
        if output.bag is not None:
            recorder = spec.recorder(stack.enter_context(
                open_bag_writer(output.bag, output.storage)))
        preview_path = stack.enter_context(staged_path(output.preview)) if output.preview else None
        episodes = stack.enter_context(
            closing(simulate_episodes(spec.simulator, config, indices)))
        progress_bar = stack.enter_context(tqdm(
            episodes, total=len(indices), unit='episode',
            desc=spec.name if shard is None else f'{spec.name} {shard}',
            disable=None if progress is None else not progress))
        shards = write_shards(progress_bar, dataset_dir, config.episodes_per_shard,
                              spec.write_shard, recorder)
        manifest = spec.manifest(shards)
        if shard is not None:
            manifest['shard'] = shard.manifest_entry(config.episodes)
        write_manifest(dataset_dir, manifest)
        if preview_path is not None:
            spec.preview(dataset_dir, preview_path)
    return manifest
