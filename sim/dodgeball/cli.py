"""``python -m sim dodgeball``: the command-line face of the dodgeball simulator."""
from __future__ import annotations

import argparse

from sim.config import ConfigOption, add_simulator, overrides_from_args, run_options
from sim.dodgeball.config import BAG_IMAGE_FORMATS, DEFAULTS_PATH, load_dodgeball_config
from sim.dodgeball.randomisation import SCENE_PRESETS


def resolution(text: str) -> list[int]:
    """``'640x480'`` -> ``[640, 480]`` (width, height)."""
    width, separator, height = text.lower().partition('x')
    if not (separator and width.isdigit() and height.isdigit()):
        raise argparse.ArgumentTypeError(f'expected WIDTHxHEIGHT such as 640x480, got {text!r}')
    return [int(width), int(height)]


OPTIONS = (
    *run_options('throws', 'image, camera info, ground truth',
                 'contact sheet (sample frames of hits and misses)'),
    ConfigOption('--image-size', ('camera', 'image_size'), int, 'square image side in pixels',
                 metavar='PX'),
    ConfigOption('--fps', ('camera', 'fps'), float, 'camera rate in Hz', metavar='HZ'),
    ConfigOption('--depth', ('camera', 'depth'), bool, 'also store metric depth per frame'),
    ConfigOption('--randomise', ('randomisation', 'scene'), str,
                 'domain randomisation of the scene: plain, train (textures, tinted light, '
                 'clutter, camera jitter) or held_out (other textures and light, for evaluation '
                 'only)', choices=SCENE_PRESETS),
    ConfigOption('--bag-image', ('bag_camera', 'image'), str,
                 'camera message in the bag: raw (sensor_msgs/Image) or jpeg/png '
                 '(sensor_msgs/CompressedImage on /camera/image_raw/compressed, as '
                 'image_transport records it)', choices=BAG_IMAGE_FORMATS),
    ConfigOption('--bag-resolution', ('bag_camera', 'resolution'), resolution,
                 "the bag's camera resolution, e.g. 640x480, rendered with the head camera's "
                 "vertical field of view (the dataset keeps --image-size)", metavar='WxH'),
    ConfigOption('--bag-jpeg-quality', ('bag_camera', 'jpeg_quality'), int,
                 'JPEG quality of --bag-image jpeg (1-100)', metavar='Q'),
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

    manifest = generate(config, shard=args.shard)
    extras = ''.join(f', {name} {path}' for name, path in
                     (('bag', config.output.bag), ('preview', config.output.preview)) if path)
    print(f'wrote {manifest["num_episodes"]} episodes ({manifest["num_frames"]} frames, '
          f'hit ratio {manifest["hit_ratio"]:.2f}) to {config.output.out}{extras}')
