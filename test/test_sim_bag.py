"""The dodgeball rosbag2 round-trips through rosbags, for both storage plugins."""
from collections import defaultdict

import numpy as np
import pytest
import yaml

from rnn_perception.data.bags import labelled_array_fields, read_bag, stamp_to_ns
from rnn_perception.data.image_conversion import image_to_rgb
from rnn_perception.data.dodgeball_dataset import (CAMERA_INFO_TOPIC, GROUND_TRUTH_FIELDS,
                                                   GROUND_TRUTH_TOPIC, IMAGE_TOPIC,
                                                   load_dodgeball_dataset)
from sim.dodgeball.config import load_dodgeball_config
from sim.dodgeball.generate import generate

GAP_S = 0.5


@pytest.fixture(scope='module', params=['mcap', 'sqlite3'])
def bag_and_dataset(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    config = load_dodgeball_config(overrides={
        'episodes': 4, 'seed': 5, 'camera': {'image_size': 16},
        'output': {'out': str(root / 'dataset'), 'bag': str(root / 'bag'),
                   'storage': request.param, 'bag_episode_gap_s': GAP_S}})
    generate(config, progress=False)
    messages = defaultdict(list)
    for message in read_bag(root / 'bag'):
        messages[message.topic].append(message)
    return request.param, root / 'bag', messages, load_dodgeball_dataset(root / 'dataset')


def test_bag_uses_the_requested_storage(bag_and_dataset):
    storage, bag, _, _ = bag_and_dataset
    metadata = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert metadata['storage_identifier'] == storage
    storage_suffix = {'mcap': '.mcap', 'sqlite3': '.db3'}[storage]
    assert {path.suffix for path in bag.iterdir()} == {'.yaml', storage_suffix}


def test_one_message_per_frame_on_each_topic(bag_and_dataset):
    _, _, messages, dataset = bag_and_dataset
    assert set(messages) == {IMAGE_TOPIC, CAMERA_INFO_TOPIC, GROUND_TRUTH_TOPIC}
    for topic_messages in messages.values():
        assert len(topic_messages) == dataset.num_frames


def test_stamps_are_sim_time_monotonic_with_gaps_between_episodes(bag_and_dataset):
    _, _, messages, dataset = bag_and_dataset
    for topic in (IMAGE_TOPIC, CAMERA_INFO_TOPIC):
        header_stamps = np.array([stamp_to_ns(m.message.header.stamp) for m in messages[topic]])
        bag_stamps = np.array([m.stamp_ns for m in messages[topic]])
        np.testing.assert_array_equal(header_stamps, bag_stamps)
        assert np.all(np.diff(bag_stamps) > 0)
    stamps_s = np.array([m.stamp_ns for m in messages[IMAGE_TOPIC]]) / 1e9
    steps = np.diff(stamps_s)
    frame_period = 1.0 / dataset.fps
    episode_changes = np.diff(dataset.arrays()['episode_index']) != 0
    np.testing.assert_allclose(steps[~episode_changes], frame_period, atol=1e-9)
    np.testing.assert_allclose(steps[episode_changes], GAP_S, atol=1e-9)
    gt_stamps = [m.stamp_ns for m in messages[GROUND_TRUTH_TOPIC]]
    assert gt_stamps == [m.stamp_ns for m in messages[IMAGE_TOPIC]]


def test_images_are_the_dataset_frames(bag_and_dataset):
    _, _, messages, dataset = bag_and_dataset
    frames = dataset.arrays()['frames']
    for message, frame in zip(messages[IMAGE_TOPIC], frames, strict=True):
        assert message.msgtype == 'sensor_msgs/msg/Image'
        assert message.message.encoding == 'rgb8'
        assert message.message.header.frame_id == dataset.camera_info['frame_id']
        np.testing.assert_array_equal(image_to_rgb(message.message), frame)


def test_camera_info_carries_the_manifest_intrinsics(bag_and_dataset):
    _, _, messages, dataset = bag_and_dataset
    info = messages[CAMERA_INFO_TOPIC][0].message
    manifest_info = dataset.camera_info
    assert (info.width, info.height) == (manifest_info['width'], manifest_info['height'])
    np.testing.assert_allclose(info.k.reshape(3, 3), manifest_info['k'])
    assert info.distortion_model == 'plumb_bob' and not info.d.any()


def test_ground_truth_matches_the_dataset_labels(bag_and_dataset):
    _, _, messages, dataset = bag_and_dataset
    arrays = dataset.arrays()
    rows = [labelled_array_fields(m.message) for m in messages[GROUND_TRUTH_TOPIC]]
    assert list(rows[0]) == list(GROUND_TRUTH_FIELDS)
    np.testing.assert_array_equal([row['episode'] for row in rows], arrays['episode_index'])
    np.testing.assert_array_equal([row['frame'] for row in rows], arrays['frame_index'])
    np.testing.assert_allclose([row['time_to_contact_s'] for row in rows],
                               arrays['time_to_contact_s'], rtol=1e-6)
    np.testing.assert_allclose([[row[k] for k in ('px', 'py', 'pz')] for row in rows],
                               arrays['ball_position'], rtol=1e-6)
    hits = arrays['hit'][arrays['episode_index']]
    np.testing.assert_array_equal([row['hit'] == 1.0 for row in rows], hits)
