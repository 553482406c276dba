"""Tactile episodes → one rosbag2, so replaying the bag is an evaluation run.

Per sample, two messages share one bag time (the sim clock): the 21 tactile values as a
labelled ``std_msgs/msg/Float32MultiArray`` on ``/tactile/raw`` and the ground-truth pose as
``geometry_msgs/msg/PoseStamped`` on ``/object/pose`` with that time as its header stamp (the
layout is documented in ``rnn_perception.data.tactile_dataset``). Episodes follow one another
with a gap on the clock, so a node that resets its recurrent state on a stamp gap starts
every episode fresh.
"""
from __future__ import annotations

from rnn_perception.data.bags import (
    LABELLED_ARRAY_MSGTYPE, POSE_STAMPED_MSGTYPE, BagWriter, EpisodeTimeline,
    labelled_array_message, pose_stamped_message)
from rnn_perception.data.tactile_dataset import (
    POSE_TOPIC, TACTILE_FIELDS, TACTILE_TOPIC, TactileEpisode, angle_quaternion)


class TactileBagRecorder:
    """Appends episodes to a bag, one after another on the sim clock."""

    def __init__(self, writer: BagWriter, frame_id: str, episode_gap_s: float):
        self._writer = writer
        self._frame_id = frame_id
        self._timeline = EpisodeTimeline(episode_gap_s)
        writer.add_topic(TACTILE_TOPIC, LABELLED_ARRAY_MSGTYPE)
        writer.add_topic(POSE_TOPIC, POSE_STAMPED_MSGTYPE)

    def add(self, episode: TactileEpisode) -> None:
        """Write every sample of ``episode``; the next episode starts one gap after its last."""
        for frame, stamp_ns in enumerate(self._timeline.place(episode.stamp_s)):
            self._writer.write(TACTILE_TOPIC, stamp_ns, labelled_array_message(
                episode.tactile[frame], TACTILE_FIELDS))
            x, y, z, angle = episode.pose[frame].tolist()
            self._writer.write(POSE_TOPIC, stamp_ns, pose_stamped_message(
                (x, y, z), angle_quaternion(angle), stamp_ns, self._frame_id))
