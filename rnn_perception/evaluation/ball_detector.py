"""Find and track the balls in an episode's camera frames, as a roboticist would first try:
background subtraction with OpenCV, frame by frame, using only the frames seen so far.

The robot stands still, so its camera sees a still scene with one or two balls (the thrown one,
sometimes a distractor) moving through it. The background of frame ``t`` is the per-pixel median
of frames ``0..t`` (a moving ball is on any one pixel for only a few of them); pixels whose colour
differs from it by more than :data:`DIFFERENCE_THRESHOLD` are foreground, grouped into blobs by
``cv2.connectedComponentsWithStats``. A blob touching the image border is cut off by it and left
out (its centre and size would be wrong). A blob's centre is its difference-weighted centroid,
its apparent radius ``sqrt(area / pi)``.

Blobs are linked into tracks, one per ball: each live track, longest first, takes the blob
nearest where its image motion so far puts it, within :data:`TRACK_GATE_PX` plus the blob's
radius; a blob no track takes starts a track; a track that finds nothing for
:data:`TRACK_LOST_FRAMES` frames ends. Which track is the thrown ball is not decided here: the
baseline asks each whether it will hit.

What this costs: until the ball has left the pixels it started on, the median still holds it
and nothing is found (the first frames of a throw from afar), and when it has left, the median
holds its ghost there for a while (a still track, which no flight fits); a ball the size of a
pixel comes and goes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import cv2
import numpy as np

DIFFERENCE_THRESHOLD = 30      # summed |RGB - background| over the 3 channels, of 765
TRACK_GATE_PX = 4.0            # how far a ball may stray from its track's image motion
TRACK_LOST_FRAMES = 3          # frames without its ball after which a track ends
MIN_BACKGROUND_FRAMES = 2      # no background, no detection: frame 0 is never searched
CONNECTIVITY = 8


@dataclass(frozen=True)
class BallDetections:
    """One ball's track, per frame of an episode: ``found`` (T,), the ball's centre ``pixels``
    (T, 2) as (u right, v down) with pixel centres at integer coordinates (ROS), and its
    apparent ``radius_px`` (T,); ``nan`` where it was not found."""

    found: np.ndarray
    pixels: np.ndarray
    radius_px: np.ndarray


@dataclass
class _Blob:
    """A foreground blob: its centre (u, v) and apparent radius."""

    centre: np.ndarray
    radius_px: float


class _Track:
    """One ball's detections so far, and where its image motion puts it next."""

    def __init__(self, frames: int):
        self.detections = BallDetections(np.zeros(frames, dtype=bool),
                                         np.full((frames, 2), np.nan), np.full(frames, np.nan))
        self._seen: list = []          # (frame, centre) of its last two detections

    def alive(self, frame: int) -> bool:
        """Whether the track may still take a blob at ``frame``."""
        return frame - self._seen[-1][0] <= TRACK_LOST_FRAMES

    def predicted(self, frame: int) -> np.ndarray:
        """Where constant image velocity puts the ball at ``frame``."""
        last_frame, last = self._seen[-1]
        if len(self._seen) < 2:
            return last
        first_frame, first = self._seen[0]
        return last + (last - first) / (last_frame - first_frame) * (frame - last_frame)

    def add(self, frame: int, blob: _Blob) -> None:
        """Take ``blob`` as the ball at ``frame``."""
        self._seen = [*self._seen[-1:], (frame, blob.centre)]
        self.detections.found[frame] = True
        self.detections.pixels[frame] = blob.centre
        self.detections.radius_px[frame] = blob.radius_px


def track_balls(frames: np.ndarray) -> List[BallDetections]:
    """Every ball's track through an episode's (T, H, W, 3) uint8 RGB frames, each frame's
    detections from that frame and the ones before it only; in the order the tracks began."""
    frames = np.asarray(frames)
    tracks: List[_Track] = []
    for index in range(MIN_BACKGROUND_FRAMES - 1, len(frames)):
        background = np.median(frames[:index + 1], axis=0)
        difference = np.abs(frames[index].astype(np.float32) - background).sum(axis=-1)
        blobs = _blobs(difference)
        live = sorted((track for track in tracks if track.alive(index)),
                      key=lambda track: -int(track.detections.found.sum()))
        for track in live:
            if not blobs:
                break
            predicted = track.predicted(index)
            misses = [np.linalg.norm(blob.centre - predicted) - blob.radius_px for blob in blobs]
            nearest = int(np.argmin(misses))
            if misses[nearest] <= TRACK_GATE_PX:
                track.add(index, blobs.pop(nearest))
        for blob in blobs:
            tracks.append(_Track(len(frames)))
            tracks[-1].add(index, blob)
    return [track.detections for track in tracks]


def _blobs(difference: np.ndarray) -> List[_Blob]:
    """Every foreground blob of a difference image that is clear of the border."""
    mask = (difference > DIFFERENCE_THRESHOLD).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=CONNECTIVITY)
    height, width = difference.shape
    blobs = []
    for label in range(1, count):
        left, top, box_width, box_height, area = stats[label]
        if left == 0 or top == 0 or left + box_width == width or top + box_height == height:
            continue
        rows, columns = np.nonzero(labels[top:top + box_height, left:left + box_width] == label)
        weights = difference[top + rows, left + columns]
        centre = np.array([left + np.average(columns, weights=weights),
                           top + np.average(rows, weights=weights)])
        blobs.append(_Blob(centre, float(np.sqrt(area / np.pi))))
    return blobs
