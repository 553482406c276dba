"""Dodgeball episodes → one rosbag2, so replaying the bag is an evaluation run.

Per frame, three messages share one bag time and header stamp (the sim clock): the camera
image, ``sensor_msgs/msg/CameraInfo`` on ``/camera/camera_info`` and the ground truth as a
labelled ``std_msgs/msg/Float32MultiArray`` on ``/dodgeball/ground_truth`` (see
``rnn_perception.data.dodgeball_dataset``). The image is what a camera driver and
``ros2 bag record`` would leave (``bag_camera`` in the config): ``sensor_msgs/msg/Image`` (rgb8)
on ``/camera/image_raw``, or JPEG/PNG ``sensor_msgs/msg/CompressedImage`` on
``/camera/image_raw/compressed`` as ``image_transport``'s compressed transport publishes it; at
the dataset's size or at the bag camera's own resolution. Episodes follow one another with a gap
on the clock, so a node that resets its recurrent state on a stamp gap starts every episode
fresh.
"""
from __future__ import annotations

from rnn_perception.data.bags import (
    CAMERA_INFO_MSGTYPE, COMPRESSED_IMAGE_MSGTYPE, IMAGE_MSGTYPE, LABELLED_ARRAY_MSGTYPE,
    BagWriter, EpisodeTimeline, camera_info_message, compressed_image_message,
    labelled_array_message, rgb_image_message)
from rnn_perception.data.dodgeball_dataset import (
    CAMERA_INFO_TOPIC, GROUND_TRUTH_FIELDS, GROUND_TRUTH_TOPIC, IMAGE_TOPIC, DodgeballEpisode)
from sim.dodgeball.config import BagCameraConfig

RAW_IMAGE = 'raw'
COMPRESSED_IMAGE_TOPIC = f'{IMAGE_TOPIC}/compressed'   # image_transport's name for it


def ground_truth_values(episode: DodgeballEpisode, frame: int) -> list[float]:
    """The :data:`GROUND_TRUTH_FIELDS` of one frame, in order."""
    return [episode.index, frame, episode.stamp_s[frame], float(episode.hit),
            episode.time_to_contact_s[frame], *episode.ball_position[frame],
            *episode.ball_velocity[frame]]


class DodgeballBagRecorder:
    """Appends episodes to a bag, one after another on the sim clock."""

    def __init__(self, writer: BagWriter, camera_info: dict, episode_gap_s: float,
                 bag_camera: BagCameraConfig):
        """``camera_info``: the camera the bag records (:meth:`PinholeCamera.camera_info`)."""
        self._writer = writer
        self._camera_info = camera_info
        self._timeline = EpisodeTimeline(episode_gap_s)
        self._bag_camera = bag_camera
        if bag_camera.image == RAW_IMAGE:
            self._image_topic = IMAGE_TOPIC
            writer.add_topic(IMAGE_TOPIC, IMAGE_MSGTYPE)
        else:
            self._image_topic = COMPRESSED_IMAGE_TOPIC
            writer.add_topic(COMPRESSED_IMAGE_TOPIC, COMPRESSED_IMAGE_MSGTYPE)
        writer.add_topic(CAMERA_INFO_TOPIC, CAMERA_INFO_MSGTYPE)
        writer.add_topic(GROUND_TRUTH_TOPIC, LABELLED_ARRAY_MSGTYPE)

    def _image_message(self, rgb, stamp_ns: int, frame_id: str):
        bag_camera = self._bag_camera
        if bag_camera.image == RAW_IMAGE:
            return rgb_image_message(rgb, stamp_ns, frame_id)
        return compressed_image_message(rgb, bag_camera.image, bag_camera.jpeg_quality,
                                        stamp_ns, frame_id)

    def add(self, episode: DodgeballEpisode) -> None:
        """Write every frame of ``episode``; the next episode starts one gap after its last."""
        info, frame_id = self._camera_info, self._camera_info['frame_id']
        frames = episode.frames if episode.bag_frames is None else episode.bag_frames
        for frame, stamp_ns in enumerate(self._timeline.place(episode.stamp_s)):
            self._writer.write(self._image_topic, stamp_ns,
                               self._image_message(frames[frame], stamp_ns, frame_id))
            self._writer.write(CAMERA_INFO_TOPIC, stamp_ns, camera_info_message(
                info['width'], info['height'], info['k'], stamp_ns, frame_id))
            self._writer.write(GROUND_TRUTH_TOPIC, stamp_ns, labelled_array_message(
                ground_truth_values(episode, frame), GROUND_TRUTH_FIELDS))
