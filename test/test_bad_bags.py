"""Bad bags through ``play``, ``eval collision --bag`` and ``eval tactile --bag``: each exits
non-zero with ONE line naming the bag and the problem, never a traceback.

The bags are real rosbag2 directories (mcap and sqlite3) written with ``rosbags`` through the
package's own writer, then broken the way disks and people break them. Every case runs through
``rnn_perception.commands.main`` in-process (what ``python -m rnn_perception`` runs); each command
also runs as a real ``python -m rnn_perception`` process on two of the cases, for what only a
process shows (warnings or log spew at start-up, the exit status).
"""
from __future__ import annotations

import re
import sqlite3
import subprocess
from pathlib import Path
from typing import Callable, Dict, NamedTuple

import numpy as np
import pytest
from rosbags.rosbag2 import Writer

from ros_helpers import PYTHON
from test_weights_file import KINDS

from rnn_perception.commands import main
from rnn_perception.data.bags import (COMPRESSED_IMAGE_MSGTYPE, IMAGE_MSGTYPE,
                                      LABELLED_ARRAY_MSGTYPE, POSE_STAMPED_MSGTYPE,
                                      labelled_array_message, pose_stamped_message,
                                      rgb_image_message, storage_plugin, typestore)
from rnn_perception.data.dodgeball_dataset import (
    GROUND_TRUTH_FIELDS,
    GROUND_TRUTH_TOPIC,
    IMAGE_TOPIC,
)
from rnn_perception.data.tactile_dataset import POSE_TOPIC, TACTILE_FIELDS, TACTILE_TOPIC

pytestmark = pytest.mark.dds

REPO = Path(__file__).resolve().parent.parent
FRAMES = 6
STRING_MSGTYPE = 'std_msgs/msg/String'


def stamp(i: int) -> int:
    return 1_000_000_000 + i * 33_000_000


def string_message():
    return typestore().types[STRING_MSGTYPE](data='not what you expected')


# --------------------------------------------------------------------------------- good bags
def write_bag(path: Path, storage: str, records) -> Path:
    """A rosbag2 of ``(topic, msgtype, stamp_ns, message)`` records, one connection per topic
    and type."""
    with Writer(
        path, version=Writer.VERSION_LATEST, storage_plugin=storage_plugin(storage)
    ) as writer:
        connections = {}
        for topic, msgtype, stamp_ns, message in records:
            if (topic, msgtype) not in connections:
                connections[topic, msgtype] = writer.add_connection(
                    topic, msgtype, typestore=typestore()
                )
            writer.write(
                connections[topic, msgtype], stamp_ns, typestore().serialize_cdr(message, msgtype)
            )
    return path


def dodgeball_bag(
    path: Path, storage: str, image_type: str = IMAGE_MSGTYPE, extra_string: bool = False
) -> Path:
    """``FRAMES`` labelled frames; with another ``image_type`` the "images" are strings; with
    ``extra_string`` the image topic is also recorded once as a string (two types, one topic)."""
    records = []
    for i in range(FRAMES):
        image = (rgb_image_message(np.full((16, 16, 3), 40 * i, np.uint8), stamp(i), 'camera')
                 if image_type == IMAGE_MSGTYPE else string_message())
        truth = labelled_array_message(
            [0, i, i / 30, 1, 1.0, 0, 0, 0, 0, 0, 0], GROUND_TRUTH_FIELDS
        )
        records += [(IMAGE_TOPIC, image_type, stamp(i), image),
                    (GROUND_TRUTH_TOPIC, LABELLED_ARRAY_MSGTYPE, stamp(i), truth)]
    if extra_string:
        records.append((IMAGE_TOPIC, STRING_MSGTYPE, stamp(FRAMES), string_message()))
    return write_bag(path, storage, records)


def tactile_bag(path: Path, storage: str, tactile_type: str = LABELLED_ARRAY_MSGTYPE,
                extra_string: bool = False) -> Path:
    records = []
    for i in range(FRAMES):
        tactile = (labelled_array_message(np.zeros(len(TACTILE_FIELDS)), TACTILE_FIELDS)
                   if tactile_type == LABELLED_ARRAY_MSGTYPE else string_message())
        pose = pose_stamped_message((0, 0, i * 1e-3), (0, 0, 0, 1), stamp(i), 'world')
        records += [(TACTILE_TOPIC, tactile_type, stamp(i), tactile),
                    (POSE_TOPIC, POSE_STAMPED_MSGTYPE, stamp(i), pose)]
    if extra_string:
        records.append((TACTILE_TOPIC, STRING_MSGTYPE, stamp(FRAMES), string_message()))
    return write_bag(path, storage, records)


class Command(NamedTuple):
    argv: Callable[[Path, Dict[str, Path]], list]
    prefix: str
    status: int
    make_bag: Callable


COMMANDS = {
    'play': Command(
        lambda bag, weights: ['play', '--bag', str(bag), '--start-delay', '0'],
        'play',
        1,
        dodgeball_bag,
    ),
    'eval collision': Command(
        lambda bag, weights: [
            'eval',
            'collision',
            '--weights',
            str(weights['collision']),
            '--bag',
            str(bag),
        ],
        'eval collision',
        1,
        dodgeball_bag,
    ),
    'eval tactile': Command(
        lambda bag, weights: [
            'eval',
            'tactile',
            '--weights',
            str(weights['tactile']),
            '--bag',
            str(bag),
        ],
        'eval tactile',
        1,
        tactile_bag,
    ),
}


# ---------------------------------------------------------------------------------- bad bags
def only_file(bag: Path, suffix: str) -> Path:
    (file,) = bag.glob(f'*{suffix}')
    return file


def nonexistent(tmp, make_bag):
    return tmp / 'nowhere'


def empty_directory(tmp, make_bag):
    (tmp / 'empty').mkdir()
    return tmp / 'empty'


def metadata_missing(tmp, make_bag):
    bag = make_bag(tmp / 'bag', 'mcap')
    (bag / 'metadata.yaml').unlink()
    return bag


def truncated_mcap(tmp, make_bag):
    bag = make_bag(tmp / 'bag', 'mcap')
    file = only_file(bag, '.mcap')
    file.write_bytes(file.read_bytes()[:file.stat().st_size // 2])
    return bag


def truncated_sqlite3(tmp, make_bag):
    bag = make_bag(tmp / 'bag', 'sqlite3')
    file = only_file(bag, '.db3')
    file.write_bytes(file.read_bytes()[:file.stat().st_size // 2])
    return bag


def sqlite3_missing_table(tmp, make_bag):
    bag = make_bag(tmp / 'bag', 'sqlite3')
    with sqlite3.connect(only_file(bag, '.db3')) as database:
        database.execute('DROP TABLE messages')
    return bag


def two_types_on_one_topic(tmp, make_bag):
    return make_bag(tmp / 'bag', 'sqlite3', extra_string=True)


def corrupt_message(tmp, make_bag):
    """Each message's CDR replaced by 8 bytes claiming a 4 GB first field."""
    bag = make_bag(tmp / 'bag', 'sqlite3')
    with sqlite3.connect(only_file(bag, '.db3')) as database:
        database.execute('UPDATE messages SET data = ?', (b'\x00\x01\x00\x00\xff\xff\xff\xff',))
    return bag


def topic_of(command: str) -> str:
    return TACTILE_TOPIC if command == 'eval tactile' else IMAGE_TOPIC


# case -> the one line after "<command>: error: ", {path} and {topic} filled in
CASES = {
    nonexistent: r'^bag {path} not found$',
    empty_directory: r'^{path} is not a rosbag2 directory \(no metadata.yaml\)$',
    metadata_missing: r'^{path} is not a rosbag2 directory \(no metadata.yaml\)$',
    truncated_mcap: r'^{path}: cannot read the bag \(File end magic is invalid.\)$',
    truncated_sqlite3: (r'^{path}: cannot read the bag '
                        r'\(Cannot open database .*: database disk image is malformed\)$'),
    sqlite3_missing_table: (r'^{path}: cannot read the bag '
                            r'\(Cannot open database .* or database missing tables.\)$'),
    two_types_on_one_topic: (r'^{path}: {topic} (is recorded with 2 message types'
                             r'|carries std_msgs/msg/String, not)'),
    corrupt_message: r'^{path}: corrupt {topic} message at bag time 1.000 s \(',
}


@pytest.fixture(scope='module')
def weights(tmp_path_factory) -> Dict[str, Path]:
    root = tmp_path_factory.mktemp('weights')
    paths = {name: root / f'{name}.safetensors' for name in KINDS}
    for name, path in paths.items():
        KINDS[name].save_good(path)
    return paths


def assert_one_line_error(stderr: str, command: str, path: Path, case) -> None:
    # rclpy's own log lines (the player's "[INFO] ... playing <bag>") are progress, not the error
    lines = [line for line in stderr.strip().splitlines() if not line.startswith('[INFO] ')]
    assert len(lines) == 1 and 'Traceback' not in stderr, stderr
    prefix = f'{COMMANDS[command].prefix}: error: '
    assert lines[0].startswith(prefix), lines[0]
    pattern = CASES[case].format(path=re.escape(str(path)), topic=re.escape(topic_of(command)))
    assert re.search(pattern, lines[0][len(prefix):]), f'{pattern!r} not in {lines[0]!r}'


@pytest.mark.parametrize('command', COMMANDS)
@pytest.mark.parametrize('case', CASES, ids=[case.__name__ for case in CASES])
def test_every_bad_bag_is_one_clear_line(tmp_path, capfd, weights, command, case):
    bag = case(tmp_path, COMMANDS[command].make_bag)
    assert main(COMMANDS[command].argv(bag, weights)) == COMMANDS[command].status
    assert_one_line_error(capfd.readouterr().err, command, bag, case)


@pytest.mark.parametrize('command', COMMANDS)
def test_the_real_commands_print_one_line_and_exit_non_zero(tmp_path, weights, command):
    cases = (truncated_mcap, two_types_on_one_topic)
    bags = []
    for case in cases:
        (tmp_path / case.__name__).mkdir()
        bags.append(case(tmp_path / case.__name__, COMMANDS[command].make_bag))
    processes = [
        subprocess.Popen(
            [PYTHON, '-m', 'rnn_perception', *COMMANDS[command].argv(bag, weights)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for bag in bags
    ]
    for case, bag, process in zip(cases, bags, processes):
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == COMMANDS[command].status, stderr
        assert_one_line_error(stderr, command, bag, case)


@pytest.mark.parametrize(
    'make_bag,topic,expected',
    [
        (dodgeball_bag, IMAGE_TOPIC, f'{IMAGE_MSGTYPE} or {COMPRESSED_IMAGE_MSGTYPE}'),
        (tactile_bag, TACTILE_TOPIC, f'the {LABELLED_ARRAY_MSGTYPE} expected there'),
    ],
)
def test_eval_refuses_the_wrong_message_type_on_its_topic(
    tmp_path, capfd, weights, make_bag, topic, expected
):
    command = 'eval tactile' if make_bag is tactile_bag else 'eval collision'
    bag = make_bag(tmp_path / 'bag', 'mcap', STRING_MSGTYPE)
    assert main(COMMANDS[command].argv(bag, weights)) == 1
    line = capfd.readouterr().err.strip()
    assert (
        line
        == f'{command}: error: {bag}: {topic} carries {STRING_MSGTYPE}, not {expected}'
    )


def test_play_plays_any_type_on_any_topic_like_ros2_bag_play(tmp_path, capfd):
    """A generic player has no expected types: strings on the image topic are published as
    strings (DDS never matches them to an Image subscriber)."""
    bag = dodgeball_bag(tmp_path / 'bag', 'mcap', STRING_MSGTYPE)
    assert main(['play', '--bag', str(bag), '--start-delay', '0']) == 0
    assert 'error' not in capfd.readouterr().err


def test_a_good_bag_of_each_storage_still_evaluates(tmp_path, capfd, weights):
    for storage in ('mcap', 'sqlite3'):
        for command, make_bag in (
            ('eval collision', dodgeball_bag),
            ('eval tactile', tactile_bag),
        ):
            bag = make_bag(tmp_path / f'{command.split()[1]}_{storage}', storage)
            assert main([*COMMANDS[command].argv(bag, weights), '--json']) == 0, (
                capfd.readouterr().err
            )
