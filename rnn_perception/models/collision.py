"""The collision predictor: a strided-conv encoder, stacked ConvLSTM cells, a small head.

One logit per frame = log-odds that the ball in view will hit the robot. Causal by construction
(the encoder and head see one frame; only the ConvLSTM carries time), so the node runs ``step``
once per frame with carried state and gets what ``forward`` gives on the whole sequence.

Shapes (defaults, 64x64 input): frame ``(B, 3, 64, 64)`` -> encoder, three stride-2 convs,
``(B, 32, 8, 8)`` -> with ``coordinates`` two maps of each cell's (x, y) stacked on,
``(B, 34, 8, 8)`` -> ConvLSTM ``(B, 32, 8, 8)`` -> head, reading the ConvLSTM output stacked
with the encoder output (``encoder_skip``), ``(B, 64, 8, 8)`` -> 1x1 conv ``(B, 16, 8, 8)`` ->
linear ``(B,)``. The recurrence runs on the coarse grid, where it is cheap (about 8 M
multiply-adds per frame in all); the encoder keeps a ball of a pixel or two visible down to it.

Per-frame inference (the node, ``eval --bag``) steps :class:`FrozenCollisionPredictor`, a snapshot
with the constants folded and the convolutions fused: the same outputs, faster.

Input: RGB in ``[0, 1]``, channels first; the model normalises with its own stored mean/std.
Camera images of another size are brought to ``config.image_size`` by :func:`resize_frames`
(centre crop to the model's aspect ratio, then area averaging when shrinking, bilinear when
enlarging), the same in training, evaluation and the node, so the model always sees pixels made
the way it was trained on, and a 4:3 or 16:9 camera with the training camera's vertical field of
view shows it the same scene, not a squashed one.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..cells import ConvLSTMCell, FrozenConv, FrozenConvStep, lstm_rows_from_ifog, State
from .weights_file import load_model_file, save_model_file, shipped_model_path

KIND = 'collision'
# 2: leaky ReLU in encoder and head (version 1 files were ReLU, refused); 3: ConvLSTM gate rows
# in torch's order (i, f, g, o) (version 2 files are converted on loading)
SCHEMA_VERSION = 3
UPGRADES = {2: lstm_rows_from_ifog}
DEFAULT_THRESHOLD = 0.5     # the decision threshold of weights whose metadata has none
MAX_FPS = 1000              # a frame rate in the metadata must be below this
# Leaky ReLU, not ReLU, in the encoder and the head: with ReLU, about half of our training runs
# had the encoder die within two epochs (all outputs 0), leaving every episode the same output.
NEGATIVE_SLOPE = 0.1


@dataclass
class CollisionConfig:
    """Architecture hyper-parameters; stored in the weights file so a node can rebuild the
    model."""

    image_size: Tuple[int, int] = (64, 64)  # (height, width) the model reads
    encoder_channels: List[int] = field(
        default_factory=lambda: [16, 32, 32]
    )  # each conv strides 2
    recurrent_channels: List[int] = field(default_factory=lambda: [32])
    recurrent_strides: List[int] = field(default_factory=lambda: [1])
    kernel_size: int = 3
    peephole: bool = False
    head_channels: int = 16
    encoder_skip: bool = True       # the head also sees the encoder's output of the current frame
    coordinates: bool = True        # the first ConvLSTM also reads each cell's (x, y) in [-1, 1]
    frame_difference: bool = False  # the encoder also reads the change since the previous frame

    def __post_init__(self):
        self.image_size = tuple(int(n) for n in self.image_size)
        if len(self.recurrent_channels) != len(self.recurrent_strides):
            raise ValueError(
                'CollisionConfig: recurrent_channels and recurrent_strides differ in length'
            )

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> 'CollisionConfig':
        known = {name for name in cls.__dataclass_fields__}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f'unknown collision model hyper-parameters {sorted(unknown)}')
        return cls(**values)

    def to_dict(self) -> Dict[str, Any]:
        values = asdict(self)
        values['image_size'] = list(self.image_size)
        return values


class CollisionPredictor(nn.Module):
    """ConvLSTM collision predictor (see the module docstring)."""

    def __init__(self, config: Optional[CollisionConfig] = None):
        super().__init__()
        self.config = config or CollisionConfig()
        cfg = self.config
        layers, channels = [], input_channels(cfg)
        for out in cfg.encoder_channels:
            layers += [
                nn.Conv2d(
                    channels, out, 5 if not layers else 3, stride=2, padding=2 if not layers else 1
                ),
                nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True),
            ]
            channels = out
        self.encoder = nn.Sequential(*layers)
        for conv in layers[::2]:
            # He initialisation: torch's default shrinks the signal about 2.5x per layer, which
            # leaves a few-pixel ball too faint at the encoder's output for training to find it
            nn.init.kaiming_normal_(conv.weight, a=NEGATIVE_SLOPE, nonlinearity='leaky_relu')
            nn.init.zeros_(conv.bias)
        self.recurrent = nn.ModuleList()
        if cfg.coordinates:
            # CoordConv (Liu et al. 2018): convolutions cannot tell where in the image they are;
            # whether a ball's motion heads for the robot depends on where the ball is.
            height, width = self.encoded_size()
            ys, xs = torch.meshgrid(
                torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing='ij'
            )
            self.register_buffer(
                'coordinate_maps', torch.stack([xs, ys]).unsqueeze(0), persistent=False
            )
            channels += 2
        for out, stride in zip(cfg.recurrent_channels, cfg.recurrent_strides):
            self.recurrent.append(ConvLSTMCell(channels, out, cfg.kernel_size, stride=stride,
                                               peephole=cfg.peephole))
            channels = out
        if cfg.encoder_skip:
            channels += cfg.encoder_channels[-1]
        self.head_conv = nn.Conv2d(channels, cfg.head_channels, 1)
        height, width = self.feature_size()
        self.head = nn.Linear(cfg.head_channels * height * width, 1)
        self.register_buffer('mean', torch.tensor([0.5, 0.5, 0.5]).view(3, 1, 1))
        self.register_buffer('std', torch.tensor([0.25, 0.25, 0.25]).view(3, 1, 1))

    def encoded_size(self) -> Tuple[int, int]:
        """Spatial size of the encoder's output (each encoder conv halves, rounding up)."""
        height, width = self.config.image_size
        for _ in self.config.encoder_channels:
            height, width = (height + 1) // 2, (width + 1) // 2
        return height, width

    def feature_size(self) -> Tuple[int, int]:
        """Spatial size of the last ConvLSTM state."""
        height, width = self.encoded_size()
        for stride in self.config.recurrent_strides:
            height, width = -(-height // stride), -(-width // stride)
        return height, width

    def set_normalisation(self, mean, std) -> None:
        """Per-channel RGB mean/std of the training frames (in [0, 1] units)."""
        with torch.no_grad():
            self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype).view(3, 1, 1))
            self.std.copy_(torch.as_tensor(std, dtype=self.std.dtype).view(3, 1, 1))

    # ------------------------------------------------------------------------------ running
    def check_frames(self, frames: Tensor) -> None:
        """Raise a clear error unless ``frames`` is ``(N, 3, H, W)`` at the model's image size."""
        expected = (3, *self.config.image_size)
        if frames.dim() != 4 or tuple(frames.shape[1:]) != expected:
            raise ValueError(
                f'CollisionPredictor: expected frames (N, {expected[0]}, {expected[1]}, '
                f'{expected[2]}), got {tuple(frames.shape)}'
            )

    def encode(self, frames: Tensor, previous: Optional[Tensor] = None) -> Tensor:
        """``(N, 3, H, W)`` RGB in [0, 1] (and with ``frame_difference`` the frames before
        them, the same shape) -> encoder features ``(N, C, h, w)``."""
        self.check_frames(frames)
        normalised = (frames - self.mean) / self.std
        if self.config.frame_difference:
            # the change since the previous frame, in the same units: on a still camera the
            # background cancels and what moves (the ball) is all that is left
            normalised = torch.cat([normalised, (frames - previous) / self.std], 1)  # (N, 6, H, W)
        return self.encoder(normalised)

    def recurrent_input(self, encoded: Tensor) -> Tensor:
        """The first ConvLSTM's input: the encoder's output ``(N, C, h, w)``, with ``coordinates``
        stacked with the coordinate maps ``(N, C + 2, h, w)``."""
        if not self.config.coordinates:
            return encoded
        return torch.cat([encoded, self.coordinate_maps.expand(encoded.shape[0], -1, -1, -1)], 1)

    def head_input(self, h: Tensor, encoded: Tensor) -> Tensor:
        """What the head reads: the last ConvLSTM output, with ``encoder_skip`` stacked with the
        encoder's output (average-pooled to its size). The skip hands the head this frame's
        evidence directly, so the ConvLSTMs only have to learn what the past adds."""
        if not self.config.encoder_skip:
            return h
        if encoded.shape[-2:] != h.shape[-2:]:
            encoded = F.adaptive_avg_pool2d(encoded, h.shape[-2:])
        return torch.cat([h, encoded], 1)

    def classify(self, features: Tensor) -> Tensor:
        """Head input ``(N, C, h, w)`` -> logits ``(N,)``."""
        return self.head(
            F.leaky_relu(self.head_conv(features), NEGATIVE_SLOPE).flatten(1)
        ).squeeze(1)

    def init_state(self, batch: int, device=None, dtype=None) -> List[State]:
        """Zero state: one ``(h, c)`` per ConvLSTM layer; with ``frame_difference`` then the
        previous frame ``(B, 3, H, W)``, NaN before the first (whose change is taken as none)."""
        states, size = [], self.encoded_size()
        for cell in self.recurrent:
            states.append(cell.init_state(batch, device, dtype, size))
            size = states[-1][0].shape[-2:]
        if self.config.frame_difference:
            states.append(torch.full((batch, 3, *self.config.image_size), float('nan'),
                                     device=device, dtype=dtype))
        return states

    def previous_frame(self, frame: Tensor, state: Optional[List[State]]) -> Optional[Tensor]:
        """The frame before ``frame`` from the carried state (``frame`` itself at the first),
        or ``None`` without ``frame_difference``."""
        if not self.config.frame_difference:
            return None
        if state is None:
            return frame
        previous = state[-1]
        return torch.where(torch.isnan(previous), frame, previous)

    def step(
        self, frame: Tensor, state: Optional[List[State]] = None
    ) -> Tuple[Tensor, List[State]]:
        """One frame ``(B, 3, H, W)`` with carried state -> ``(logits (B,), new state)``.
        (The node and ``eval --bag`` step :meth:`frozen`, the same outputs faster.)"""
        encoded = self.encode(frame, self.previous_frame(frame, state))
        return self.step_from(
            encoded, self.recurrent_input(encoded), [cell.step for cell in self.recurrent], state,
            frame
        )

    def step_from(self, encoded: Tensor, y: Tensor, cell_steps, state: Optional[List[State]],
                  frame: Tensor) -> Tuple[Tensor, List[State]]:
        """The rest of a step once ``frame`` is encoded: ``y`` (the first ConvLSTM's input)
        through ``cell_steps`` (one ``(x, state) -> (y, state)`` per layer), then the head."""
        if state is None:
            state = self.init_state(encoded.shape[0], encoded.device, encoded.dtype)
        new_state = []
        for cell_step, cell_state in zip(cell_steps, state):
            y, cell_state = cell_step(y, cell_state)
            new_state.append(cell_state)
        if self.config.frame_difference:
            new_state.append(frame)
        return self.classify(self.head_input(y, encoded)), new_state

    def frozen(self) -> 'FrozenCollisionPredictor':
        """A snapshot of this model for per-frame inference (see
        :class:`FrozenCollisionPredictor`)."""
        return FrozenCollisionPredictor(self)

    def features(self, frames: Tensor) -> Tensor:
        """Whole sequences ``(B, T, 3, H, W)`` -> the head's input ``(B, T, C, h, w)`` per frame;
        encoder and input convolutions run on all B*T frames at once, only the recurrence loops
        over time."""
        batch, steps = frames.shape[:2]
        previous = (torch.cat([frames[:, :1], frames[:, :-1]], 1).flatten(0, 1)
                    if self.config.frame_difference else None)
        encoded = self.encode(frames.flatten(0, 1), previous)  # (B*T, C, h, w)
        y = (
            self.recurrent_input(encoded).unflatten(0, (batch, steps)).transpose(0, 1)
        )  # (T, B, C', h, w)
        for cell, state in zip(
            self.recurrent, self.init_state(batch, frames.device, frames.dtype)
        ):
            gx = cell.project_input(y.flatten(0, 1)).unflatten(0, (steps, batch))
            y, _ = cell.unroll(gx, state)
        y = y.transpose(0, 1).flatten(0, 1)                             # (B*T, C, h, w)
        return self.head_input(y, encoded).unflatten(0, (batch, steps))

    def forward(self, frames: Tensor) -> Tensor:
        """Whole sequences ``(B, T, 3, H, W)`` -> logits ``(B, T)``."""
        features = self.features(frames)
        return self.classify(features.flatten(0, 1)).view(features.shape[:2])


def input_channels(config: CollisionConfig) -> int:
    """The encoder's input channels: RGB, and with ``frame_difference`` its change too."""
    return 6 if config.frame_difference else 3


# Frames come channels-last in memory (frames_to_tensor views the camera's HWC bytes); convolution
# weights in the same layout spare each call a reorder of its weights or its input.
FROZEN_LAYOUT = torch.channels_last


class FrozenCollisionPredictor:
    """:meth:`CollisionPredictor.step` with the weights fixed, for the node and ``eval --bag``:
    the same outputs within float rounding, faster per frame (``benchmarks/bench_collision_node.py
    --variants``), by computing once what is the same from frame to frame:

    - the input normalisation, folded into the first convolution: ``conv(W, (x - m) / s) =
      conv(W / s, x) - conv(W / s, m)``, the second term a map computed once (a map, not a
      constant: at the borders the zero padding leaves out taps);
    - each ConvLSTM as a :class:`~rnn_perception.cells.FrozenConvStep`: coordinate maps and
      biases folded into one gate map, input and recurrent convolutions fused into one;
    - every convolution's weights laid out channels-last, as the frames come
      (:data:`FROZEN_LAYOUT`).

    A snapshot: freeze the model again after its weights change or move to another device.
    """

    def __init__(self, model: CollisionPredictor):
        self.model = model
        first = model.encoder[0]
        std, mean = model.std.view(1, 3, 1, 1), model.mean.view(1, 3, 1, 1)
        if model.config.frame_difference:        # the change: divided by std, no mean taken
            std, mean = torch.cat([std, std], 1), torch.cat([mean, torch.zeros_like(mean)], 1)
        with torch.no_grad():
            first_weight = first.weight / std
            mean_frame = mean.expand(1, -1, *model.config.image_size)
            first_map = (first.bias.view(1, -1, 1, 1)               # (1, C0, H0, W0)
                         - F.conv2d(mean_frame, first_weight, None, first.stride, first.padding))
        self._encoder = [
            FrozenConv(first_weight, None, first.stride, first.padding, first_map, FROZEN_LAYOUT)
        ]
        self._encoder += [
            FrozenConv(
                layer.weight, layer.bias, layer.stride, layer.padding, memory_format=FROZEN_LAYOUT
            )
            if isinstance(layer, nn.Conv2d)
            else layer
            for layer in model.encoder[1:]
        ]
        coordinates = model.coordinate_maps if model.config.coordinates else None
        self._cell_steps = [
            FrozenConvStep(cell, coordinates if index == 0 else None, FROZEN_LAYOUT)
            for index, cell in enumerate(model.recurrent)
        ]

    def step(
        self, frame: Tensor, state: Optional[List[State]] = None
    ) -> Tuple[Tensor, List[State]]:
        """One frame ``(B, 3, H, W)`` RGB in [0, 1] with carried state ->
        ``(logits (B,), new state)``."""
        self.model.check_frames(frame)
        previous = self.model.previous_frame(frame, state)
        encoded = frame if previous is None else torch.cat([frame, frame - previous], 1)
        for layer in self._encoder:
            encoded = layer(encoded)
        return self.model.step_from(encoded, encoded, self._cell_steps, state, frame)


# ---------------------------------------------------------------------------------- input frames
def centre_crop(frames: np.ndarray, aspect: Sequence[int]) -> np.ndarray:
    """The largest centred ``(N, H', W', 3)`` view of ``(N, H, W, 3)`` frames whose
    ``H' : W'`` is ``aspect`` ``(height, width)`` (to the nearest pixel); no copy."""
    rows, columns = frames.shape[1:3]
    aspect_height, aspect_width = aspect
    if rows * aspect_width > columns * aspect_height:          # too tall: crop rows
        keep = round(columns * aspect_height / aspect_width)
        top = (rows - keep) // 2
        return frames[:, top:top + keep]
    keep = round(rows * aspect_width / aspect_height)          # too wide (or exact): columns
    left = (columns - keep) // 2
    return frames[:, :, left:left + keep]


def resize_frames(frames: np.ndarray, image_size: Sequence[int]) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 RGB -> ``(N, h, w, 3)`` uint8 with ``(h, w) = image_size``: cropped
    to the centre at the model's aspect ratio (:func:`centre_crop`), then area averaging when
    shrinking (a far ball stays a faint blob instead of vanishing between samples), bilinear when
    enlarging; returned unchanged when already that size."""
    height, width = image_size
    if frames.shape[1:3] == (height, width):
        return frames
    frames = centre_crop(frames, image_size)
    shrinking = frames.shape[1] * frames.shape[2] > height * width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return np.stack(
        [cv2.resize(frame, (width, height), interpolation=interpolation) for frame in frames]
    )


def frame_input(frames: Tensor) -> Tensor:
    """``(..., H, W, 3)`` uint8 RGB -> ``(..., 3, H, W)`` float32 in [0, 1], the model's input
    (channels-last in memory, as the frozen step wants it)."""
    return frames.movedim(-1, -3).float().div_(255.0)


def frames_to_tensor(frames: np.ndarray, device=None) -> Tensor:
    """``(..., H, W, 3)`` uint8 RGB numpy -> the model's input on ``device``
    (:func:`frame_input`)."""
    return frame_input(torch.from_numpy(np.ascontiguousarray(frames)).to(device))


# ---------------------------------------------------------------------------------- weights file
def save_collision_model(path, model: CollisionPredictor, metadata: Dict[str, Any]) -> None:
    """Write ``model`` as safetensors (atomically) with everything a node needs to rebuild it:
    ``kind``, ``schema_version``, ``config`` and ``normalisation`` are added to ``metadata``
    (which should hold ``fps``, ``channel_order``, the training command, dataset hash,
    metrics...)."""
    header = dict(
        metadata,
        config=model.config.to_dict(),
        channel_order='rgb',
        input_range=[0.0, 1.0],
        normalisation={'mean': model.mean.flatten().tolist(), 'std': model.std.flatten().tolist()},
    )
    save_model_file(path, model, KIND, SCHEMA_VERSION, header)


def default_weights_path() -> Path:
    """The shipped default collision model, inside the installed package."""
    return shipped_model_path('collision.safetensors')


def model_threshold(metadata: Dict[str, Any]) -> float:
    """The decision threshold stored with the weights (:data:`DEFAULT_THRESHOLD` without one)."""
    return float(metadata.get('threshold', DEFAULT_THRESHOLD))


def metadata_problem(metadata: Dict[str, Any]) -> Optional[str]:
    """What is wrong with the metadata every user of a collision model reads (``fps``,
    ``threshold``, ``channel_order``), or ``None``."""
    fps = metadata.get('fps')
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not 0 < fps < MAX_FPS:
        return f'metadata fps {fps!r} is not a frame rate (need a number in (0, {MAX_FPS}))'
    threshold = metadata.get('threshold', DEFAULT_THRESHOLD)
    if not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        return f'metadata threshold {threshold!r} is not a probability'
    if metadata.get('channel_order', 'rgb') != 'rgb':
        return (f'metadata channel_order {metadata["channel_order"]!r} '
                "is not the 'rgb' the model is fed")
    return None


def load_collision_model(path, device='cpu') -> Tuple[CollisionPredictor, Dict[str, Any]]:
    """Rebuild a ``CollisionPredictor`` from a safetensors file (no pickle anywhere) and check the
    metadata every user of it reads (:func:`metadata_problem`); every problem raises
    ``ModelFileError`` naming the file and what is wrong with it."""
    return load_model_file(path, KIND, SCHEMA_VERSION,
                           lambda config: CollisionPredictor(CollisionConfig.from_dict(config)),
                           device, metadata_problem, UPGRADES)
