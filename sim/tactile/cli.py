"""``python -m sim tactile``: the command-line face of the tactile slip simulator."""
from __future__ import annotations

import argparse

from sim.config import ConfigOption, add_simulator, overrides_from_args, run_options
from sim.tactile.config import DEFAULTS_PATH, load_tactile_config

OPTIONS = (
    *run_options('grasps', '/tactile/raw and the ground truth on /object/pose',
                 'preview (tactile channels and angle of sample episodes)'),
    ConfigOption('--duration', ('episode', 'duration_s'), float, 'length of every episode',
                 metavar='SECONDS'),
    ConfigOption('--rate', ('episode', 'rate_hz'), float, 'sensor sample rate in Hz',
                 metavar='HZ'),
)

DESCRIPTION = """\
Simulate a bar held in a two-finger grasp whose grip loosens and tightens at random: it
pivots and slips (Coulomb friction on a soft-finger limit surface), and a BioTac-like
fingertip (19 electrodes, PDC, PAC) feels it. Writes a dataset directory (compressed numpy
shards + manifest.json, read with rnn_perception.data.tactile_dataset.load_tactile_dataset),
optionally a rosbag2 (/tactile/raw, /object/pose) and a preview PNG. Every parameter can also
come from a YAML file (--config); flags win.
"""


def register(subcommands) -> None:
    """Add the ``tactile`` subcommand to ``python -m sim``."""
    add_simulator(subcommands, 'tactile', 'grasp slip data (tactile stream + object pose)',
                  DESCRIPTION, DEFAULTS_PATH, OPTIONS, run)


def run(args: argparse.Namespace) -> None:
    """Generate what the arguments ask for and print a one-line summary."""
    config = load_tactile_config(args.config, overrides_from_args(args, OPTIONS))
    from sim.tactile.generate import generate

    manifest = generate(config, shard=args.shard)
    extras = ''.join(f', {name} {path}' for name, path in
                     (('bag', config.output.bag), ('preview', config.output.preview)) if path)
    print(f'wrote {manifest["num_episodes"]} episodes ({manifest["num_frames"]} samples, '
          f'slip ratio {manifest["slip_ratio"]:.2f}) to {config.output.out}{extras}')
