"""``python -m sim dodgeball``: the command-line face of the dodgeball simulator."""
from __future__ import annotations

import argparse

from sim.config import ConfigOption, add_simulator, overrides_from_args, run_options
from sim.dodgeball.config import DEFAULTS_PATH, load_dodgeball_config

OPTIONS = (
    *run_options('throws', 'image, camera info, ground truth',
                 'contact sheet (sample frames of hits and misses)'),
    ConfigOption('--image-size', ('camera', 'image_size'), int, 'square image side in pixels',
                 metavar='PX'),
    ConfigOption('--fps', ('camera', 'fps'), float, 'camera rate in Hz', metavar='HZ'),
    ConfigOption('--depth', ('camera', 'depth'), bool, 'also store metric depth per frame'),
)

DESCRIPTION = """\
Throw balls at a robot in PyBullet and record its head camera with exact labels (hit,
contact time, time to contact per frame, ball position and velocity). Writes a dataset
directory (compressed numpy shards + manifest.json, read with
rnn_perception.data.dodgeball_dataset.load_dodgeball_dataset), optionally a rosbag2 and a
contact sheet. Every parameter can also come from a YAML file (--config); flags win.
"""


def register(subcommands) -> None:
    """Add the ``dodgeball`` subcommand to ``python -m sim``."""
    add_simulator(
        subcommands,
        'dodgeball',
        'ball-throwing collision data (camera frames + labels)',
        DESCRIPTION,
        DEFAULTS_PATH,
        OPTIONS,
        run,
    )


def run(args: argparse.Namespace) -> None:
    """Generate what the arguments ask for and print a one-line summary."""
    config = load_dodgeball_config(args.config, overrides_from_args(args, OPTIONS))
    from sim.dodgeball.generate import generate  # imports pybullet: only once the input is valid

    manifest = generate(config)
    extras = ''.join(f', {name} {path}' for name, path in
                     (('bag', config.output.bag), ('preview', config.output.preview)) if path)
    print(f'wrote {manifest["num_episodes"]} episodes ({manifest["num_frames"]} frames, '
          f'hit ratio {manifest["hit_ratio"]:.2f}) to {config.output.out}{extras}')
