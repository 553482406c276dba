"""Many episodes → the dataset directory, and optionally a rosbag2 and a contact sheet.

Every output is built under a hidden staging name next to its target and renamed into place
only after everything succeeded (the dataset last, its manifest written last inside it), so
an error or Ctrl-C leaves nothing that looks complete. Episodes are simulated in order by
one process or by a pool of worker processes; either way episode ``i`` is the same, and
shards are cut by episode number, so the dataset does not depend on ``workers``.
"""
from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, closing
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from rnn_perception.data.bags import open_bag_writer, staged_path
from rnn_perception.data.dodgeball_dataset import (
    DodgeballEpisode, build_manifest, load_dodgeball_dataset, shard_file_name, write_manifest,
    write_shard)
from sim.dodgeball.bag_export import DodgeballBagRecorder
from sim.dodgeball.config import DodgeballConfig
from sim.dodgeball.episode import EpisodeSimulator, head_camera
from sim.dodgeball.preview import write_contact_sheet
from sim.dodgeball.robot import ROBOT
from sim.errors import SimError

_worker_simulator: EpisodeSimulator | None = None


def _start_worker(config: DodgeballConfig) -> None:
    """Pool initializer: one simulator per worker; Ctrl-C is the parent's to handle."""
    global _worker_simulator
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_simulator = EpisodeSimulator(config)


def _simulate_in_worker(index: int) -> DodgeballEpisode:
    """Pool task: episode ``index``."""
    return _worker_simulator(index)


def simulate_episodes(config: DodgeballConfig) -> Iterator[DodgeballEpisode]:
    """Episodes ``0 .. episodes-1`` in order, simulated by ``config.workers`` processes."""
    workers = min(config.workers, config.episodes)
    if workers == 1:
        with closing(EpisodeSimulator(config)) as simulator:
            yield from map(simulator, range(config.episodes))
        return
    # spawn, not fork: each worker gets its own fresh pybullet, whatever the parent imported.
    context = multiprocessing.get_context('spawn')
    with context.Pool(workers, initializer=_start_worker, initargs=(config,)) as pool:
        yield from pool.imap(_simulate_in_worker, range(config.episodes))


def generate(config: DodgeballConfig, *, progress: bool | None = None) -> dict:
    """Make the dataset (and bag, preview) that ``config`` asks for; return its manifest.

    ``progress``: show a progress bar (None: only on a terminal).
    """
    output = config.output
    if output.out is None:
        raise SimError('no output directory: pass --out DIR (or set output.out in the config)')
    camera_info = head_camera(config).camera_info()
    # Exits run in reverse: the simulation stops first, the dataset is renamed into place last.
    with ExitStack() as stack:
        dataset_dir = stack.enter_context(staged_path(output.out))
        dataset_dir.mkdir()
        recorder = None
        if output.bag is not None:
            writer = stack.enter_context(open_bag_writer(output.bag, output.storage))
            recorder = DodgeballBagRecorder(writer, camera_info, output.bag_episode_gap_s)
        preview_path = stack.enter_context(staged_path(output.preview)) if output.preview else None
        episodes = stack.enter_context(closing(simulate_episodes(config)))
        progress_bar = stack.enter_context(tqdm(
            episodes, total=config.episodes, unit='episode', desc='dodgeball',
            disable=None if progress is None else not progress))
        shards = write_shards(progress_bar, dataset_dir, config.episodes_per_shard, recorder)
        parameters = {**config.dataset_parameters(), 'robot': asdict(ROBOT)}
        manifest = build_manifest(shards, seed=config.seed, fps=config.camera.fps,
                                  has_depth=config.camera.depth, camera_info=camera_info,
                                  parameters=parameters)
        write_manifest(dataset_dir, manifest)
        if preview_path is not None:
            write_contact_sheet(load_dodgeball_dataset(dataset_dir), preview_path)
    return manifest


def write_shards(episodes: Iterable[DodgeballEpisode], dataset_dir: Path, episodes_per_shard: int,
                 recorder: DodgeballBagRecorder | None) -> list[dict]:
    """Write episodes (in order) into shards of ``episodes_per_shard``, and to the bag if any."""
    shards, pending = [], []

    def flush() -> None:
        shards.append(write_shard(dataset_dir / shard_file_name(len(shards)), pending))
        pending.clear()

    for episode in episodes:
        if recorder is not None:
            recorder.add(episode)
        pending.append(episode)
        if len(pending) == episodes_per_shard:
            flush()
    if pending:
        flush()
    return shards
