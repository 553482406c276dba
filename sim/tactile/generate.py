"""Many grasps → the dataset directory, and optionally a rosbag2 and a preview PNG.

The staging, worker pool, shards and progress bar are :mod:`sim.pipeline`'s; this module
says what a tactile episode, shard, manifest, bag and preview are.
"""
from __future__ import annotations

from rnn_perception.data.tactile_dataset import (
    build_manifest, load_tactile_dataset, write_shard)
from sim import pipeline
from sim.tactile.bag_export import TactileBagRecorder
from sim.tactile.config import TactileConfig
from sim.tactile.episode import EpisodeSimulator
from sim.tactile.preview import write_preview
from sim.sharding import RunShard


def tactile_spec(config: TactileConfig) -> pipeline.SimulatorSpec:
    """How the tactile simulator plugs into :func:`sim.pipeline.generate`."""
    episode = config.episode
    return pipeline.SimulatorSpec(
        name='tactile', simulator=EpisodeSimulator, write_shard=write_shard,
        manifest=lambda shards: build_manifest(
            shards, seed=config.seed, rate_hz=episode.rate_hz, frame_id=episode.frame_id,
            parameters=config.dataset_parameters()),
        recorder=lambda writer: TactileBagRecorder(
            writer, episode.frame_id, config.output.bag_episode_gap_s),
        preview=lambda root, png: write_preview(load_tactile_dataset(root), png))


def generate(config: TactileConfig, *, progress: bool | None = None,
             shard: RunShard | None = None) -> dict:
    """Make the dataset (and bag, preview) that ``config`` asks for; return its manifest.

    ``progress``: show a progress bar (None: only on a terminal); ``shard``: make only that
    part of the run (see :func:`sim.pipeline.generate`).
    """
    return pipeline.generate(config, tactile_spec(config), progress=progress, shard=shard)
