"""Bags as robots record them: a compressed camera at a camera's own resolution, several camera
topics, zstd-compressed rosbag2 files and messages, and mcap chunks compressed by another writer
(the official ``mcap`` library) are read, and evaluated, as the node would see them."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import CompressionFormat, CompressionMode, Reader, StoragePlugin, Writer

from rnn_perception.data.bags import (BagError, COMPRESSED_IMAGE_MSGTYPE, IMAGE_MSGTYPE,
                                      open_bag_writer, read_bag, typestore)
from rnn_perception.data.dodgeball_bag import episodes_from_bag
from rnn_perception.data.dodgeball_dataset import load_dodgeball_dataset
from rnn_perception.evaluation.collision import evaluate_bag
from rnn_perception.models.collision import resize_frames
from sim.dodgeball.config import load_dodgeball_config
from sim.dodgeball.generate import generate

import test_collision_node

IMAGE_TOPIC, COMPRESSED_TOPIC = '/camera/image_raw', '/camera/image_raw/compressed'
SEED, EPISODES = 3, 3


def simulate(root: Path, name: str, storage: str = 'mcap', **bag_camera) -> Path:
    """Dataset ``root/name`` and its bag ``root/name.bag``; the same throws for every name."""
    config = load_dodgeball_config(overrides={
        'episodes': EPISODES, 'seed': SEED, 'bag_camera': bag_camera,
        'output': {'out': str(root / name), 'bag': str(root / f'{name}.bag'),
                   'storage': storage}})
    generate(config, progress=False)
    return root / f'{name}.bag'


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp('field_bags')
    return root, {
        'raw': simulate(root, 'raw'),
        'jpeg_4_3': simulate(root, 'jpeg_4_3', image='jpeg', resolution=[96, 72]),
        'png': simulate(root, 'png', image='png'),
    }


# untrained collision weights: a fixture of another test module, assigned, not imported by name
weights = test_collision_node.weights


def dataset_frames(bags, name: str):
    root, _ = bags
    return [episode.frames for episode in load_dodgeball_dataset(root / name).episodes()]


def first_message(bag: Path, topic: str):
    return next(record.message for record in read_bag(bag, [topic]))


# -------------------------------------------------------------------------- what the sim records
def test_a_compressed_bag_holds_what_image_transport_publishes(bags):
    _, paths = bags
    bag = paths['jpeg_4_3']
    topics = {record.topic: record.msgtype for record in read_bag(bag)}
    assert topics[COMPRESSED_TOPIC] == COMPRESSED_IMAGE_MSGTYPE and IMAGE_TOPIC not in topics
    image = first_message(bag, COMPRESSED_TOPIC)
    assert image.format == 'rgb8; jpeg compressed bgr8'
    decoded = cv2.imdecode(np.frombuffer(image.data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (72, 96, 3)
    info = first_message(bag, '/camera/camera_info')
    assert (info.width, info.height) == (96, 72) and info.k[2] == 48.0
    assert info.header.stamp == image.header.stamp


def test_png_frames_come_back_exactly(bags):
    _, paths = bags
    episodes = list(episodes_from_bag(paths['png']))
    assert len(episodes) == EPISODES
    for episode, frames in zip(episodes, dataset_frames(bags, 'png')):
        np.testing.assert_array_equal(np.stack(episode.frames), frames)


def test_a_wider_camera_shows_the_model_the_datasets_view(bags):
    """Rendered at 96x72 with the head camera's vertical field of view, the centre crop the
    model takes is the dataset's 64x64 view (up to resampling and JPEG); squashing the whole
    frame instead would not be."""
    _, paths = bags
    for episode, frames in zip(episodes_from_bag(paths['jpeg_4_3']),
                               dataset_frames(bags, 'jpeg_4_3')):
        camera = np.stack(episode.frames)
        assert camera.shape[1:] == (72, 96, 3)
        cropped = np.abs(resize_frames(camera, (64, 64)).astype(float) - frames).mean()
        squashed = np.stack([cv2.resize(frame, (64, 64), interpolation=cv2.INTER_AREA)
                             for frame in camera])
        assert cropped < 6 and cropped < 0.6 * np.abs(squashed.astype(float) - frames).mean()


def test_the_bag_camera_never_changes_the_dataset(bags):
    for raw, jpeg in zip(dataset_frames(bags, 'raw'), dataset_frames(bags, 'jpeg_4_3')):
        np.testing.assert_array_equal(raw, jpeg)


def test_eval_decodes_compressed_frames_as_the_node_does(bags, weights):
    """``eval --bag`` on the JPEG bag steps the frames the node's decoder makes (libjpeg's
    reduced decoding for a model this small), close to the raw bag's answers."""
    from rnn_perception.data.compressed_image import CompressedImageDecoder
    import torch

    from rnn_perception.evaluation.collision import stepped_probabilities
    from rnn_perception.models.collision import load_collision_model
    from rnn_perception.models.torch_engine import CollisionTorchEngine

    _, paths = bags
    traces, metrics = evaluate_bag(weights, paths['jpeg_4_3'])
    raw_traces, _ = evaluate_bag(weights, paths['raw'])
    assert metrics['episodes'] == EPISODES
    model, _ = load_collision_model(weights)
    decoder = CompressedImageDecoder(model.config.image_size)
    messages = [record.message for record in read_bag(paths['jpeg_4_3'], [COMPRESSED_TOPIC])]
    node_frames = [decoder(message)[0] for message in messages]
    assert decoder.scale == 1  # 96x72 / 2 is under 64 rows: decoded in full
    expected = stepped_probabilities(CollisionTorchEngine(model, torch.device('cpu')),
                                     model.config.image_size,
                                     node_frames[:len(traces[0].probabilities)])
    np.testing.assert_allclose(traces[0].probabilities, expected, atol=1e-6)
    for trace, raw in zip(traces, raw_traces):
        np.testing.assert_allclose(trace.probabilities, raw.probabilities, atol=0.05)


# ------------------------------------------------------------------------ compressed bag files
def rewrite_with_rosbags(source: Path, target: Path, storage: str,
                         mode: CompressionMode) -> None:
    """``source``'s records, byte for byte, in a new bag compressed with zstd in ``mode``."""
    writer = Writer(target, version=Writer.VERSION_LATEST,
                    storage_plugin=StoragePlugin[storage.upper()])
    writer.set_compression(mode, CompressionFormat.ZSTD)
    with Reader(source) as reader, writer:
        connections = {connection.id: writer.add_connection(connection.topic,
                                                            connection.msgtype,
                                                            typestore=typestore())
                       for connection in reader.connections}
        for connection, stamp_ns, data in reader.messages():
            writer.write(connections[connection.id], stamp_ns, data)


def rewrite_with_the_mcap_library(source: Path, target: Path) -> None:
    """``source`` (an mcap bag) with its mcap file written again by the ``mcap`` library in
    lz4-compressed chunks; ``metadata.yaml`` still describes it (same topics and counts)."""
    from mcap.writer import CompressionType, Writer as McapWriter

    shutil.copytree(source, target)
    (mcap_file,) = target.glob('*.mcap')
    with Reader(source) as reader, mcap_file.open('wb') as stream:
        writer = McapWriter(stream, compression=CompressionType.LZ4, chunk_size=32 * 1024)
        writer.start(profile='ros2', library='test_field_bags')
        channels = {}
        for connection in reader.connections:
            schema = writer.register_schema(
                name=connection.msgtype, encoding='ros2msg',
                data=typestore().generate_msgdef(connection.msgtype, ros_version=2)[0].encode())
            channels[connection.id] = writer.register_channel(
                topic=connection.topic, message_encoding='cdr', schema_id=schema)
        for connection, stamp_ns, data in reader.messages():
            writer.add_message(channels[connection.id], log_time=stamp_ns, data=data,
                               publish_time=stamp_ns)
        writer.finish()


def chunk_compressions(bag: Path) -> set:
    from mcap.reader import make_reader

    (mcap_file,) = bag.glob('*.mcap')
    with mcap_file.open('rb') as stream:
        return {index.compression for index in make_reader(stream).get_summary().chunk_indexes}


@pytest.mark.parametrize('kind', ['sqlite3 zstd file', 'sqlite3 zstd message',
                                  'mcap zstd chunks', 'mcap lz4 chunks, mcap library'])
def test_compressed_bags_read_exactly_like_the_plain_one(bags, tmp_path, kind):
    _, paths = bags
    source, target = paths['jpeg_4_3'], tmp_path / 'bag'
    if kind == 'mcap lz4 chunks, mcap library':
        rewrite_with_the_mcap_library(source, target)
        assert chunk_compressions(target) == {'lz4'}
    else:
        storage, _, mode = kind.partition(' zstd ')
        rewrite_with_rosbags(source, target, storage, {
            'file': CompressionMode.FILE, 'message': CompressionMode.MESSAGE,
            'chunks': CompressionMode.STORAGE}[mode])
        if mode == 'chunks':
            assert chunk_compressions(target) == {'zstd'}
        else:
            with Reader(target) as reader:
                assert (reader.compression_format, reader.compression_mode) == ('zstd', mode)
    for episode, expected in zip(episodes_from_bag(target), episodes_from_bag(source),
                                 strict=True):
        np.testing.assert_array_equal(episode.header_stamps_ns, expected.header_stamps_ns)
        np.testing.assert_array_equal(np.stack(episode.frames), np.stack(expected.frames))


# ------------------------------------------------------------------------ choosing the camera
@pytest.fixture(scope='module')
def two_camera_bag(bags):
    """The raw bag with the JPEG bag's camera beside it, as ``ros2 bag record -a`` keeps a
    camera's raw and compressed topics."""
    root, paths = bags
    target = root / 'two_cameras.bag'
    declared = set()
    with open_bag_writer(target) as writer:
        for source in (paths['raw'], paths['jpeg_4_3']):
            for record in read_bag(source):
                if source == paths['raw'] or record.topic == COMPRESSED_TOPIC:
                    if record.topic not in declared:
                        writer.add_topic(record.topic, record.msgtype)
                        declared.add(record.topic)
                    writer.write(record.topic, record.stamp_ns, record.message)
    return target


def test_a_bag_with_two_cameras_needs_the_topic_named(two_camera_bag, bags):
    _, paths = bags
    with pytest.raises(BagError, match=f'several camera topics \\({IMAGE_TOPIC}, '
                                       f'{COMPRESSED_TOPIC}\\); name one with --image-topic'):
        next(episodes_from_bag(two_camera_bag))
    for topic, single in ((IMAGE_TOPIC, 'raw'), (COMPRESSED_TOPIC, 'jpeg_4_3')):
        chosen = next(episodes_from_bag(two_camera_bag, topic))
        expected = next(episodes_from_bag(paths[single]))
        np.testing.assert_array_equal(np.stack(chosen.frames), np.stack(expected.frames))
    with pytest.raises(BagError, match='no topic /nope \\(image topics: '):
        next(episodes_from_bag(two_camera_bag, '/nope'))
    with pytest.raises(BagError, match=f'/camera/camera_info carries sensor_msgs/msg/CameraInfo, '
                                       f'not {IMAGE_MSGTYPE} or {COMPRESSED_IMAGE_MSGTYPE}'):
        next(episodes_from_bag(two_camera_bag, '/camera/camera_info'))


def test_eval_command_takes_the_image_topic(two_camera_bag, weights, tmp_path, capsys):
    from rnn_perception.commands import main

    command = ['eval', 'collision', '--weights', str(weights)]
    assert main([*command, '--bag', str(two_camera_bag), '--image-topic', COMPRESSED_TOPIC,
                 '--json']) == 0
    assert '"episodes": 3' in capsys.readouterr().out
    assert main([*command, '--data', str(tmp_path), '--image-topic', COMPRESSED_TOPIC]) == 2
    assert capsys.readouterr().err.strip() == (
        'eval collision: error: --image-topic reads a bag: give --bag, not --data (see --help)')
