"""Many episodes → the dataset directory, and optionally a rosbag2 and a contact sheet.

The staging, worker pool, shards and progress bar are :mod:`sim.pipeline`'s; this module
says what a dodgeball episode, shard, manifest, bag and preview are.
"""
from __future__ import annotations

from dataclasses import asdict

from rnn_perception.data.dodgeball_dataset import (
    build_manifest, load_dodgeball_dataset, write_shard)
from sim import pipeline
from sim.dodgeball.bag_export import DodgeballBagRecorder
from sim.dodgeball.config import DodgeballConfig
from sim.dodgeball.episode import EpisodeSimulator, bag_camera, head_camera
from sim.dodgeball.preview import write_contact_sheet
from sim.dodgeball.robot import ROBOT
from sim.sharding import RunShard


def dodgeball_spec(config: DodgeballConfig) -> pipeline.SimulatorSpec:
    """How the dodgeball simulator plugs into :func:`sim.pipeline.generate`."""
    camera_info = head_camera(config).camera_info()
    parameters = {**config.dataset_parameters(), 'robot': asdict(ROBOT)}
    return pipeline.SimulatorSpec(
        name='dodgeball', simulator=EpisodeSimulator, write_shard=write_shard,
        manifest=lambda shards: build_manifest(
            shards, seed=config.seed, fps=config.camera.fps, has_depth=config.camera.depth,
            camera_info=camera_info, parameters=parameters),
        recorder=lambda writer: DodgeballBagRecorder(
            writer, (bag_camera(config) or head_camera(config)).camera_info(),
            config.output.bag_episode_gap_s, config.bag_camera),
        preview=lambda root, png: write_contact_sheet(load_dodgeball_dataset(root), png))


def generate(config: DodgeballConfig, *, progress: bool | None = None,
             shard: RunShard | None = None) -> dict:
    """Make the dataset (and bag, preview) that ``config`` asks for; return its manifest.

    ``progress``: show a progress bar (None: only on a terminal); ``shard``: make only that
    part of the run (see :func:`sim.pipeline.generate`).
    """
    return pipeline.generate(config, dodgeball_spec(config), progress=progress, shard=shard)
