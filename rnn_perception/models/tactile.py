r"""The tactile pose predictor: an LSTM over the tactile stream and the current pose, with a
direct multi-horizon head giving the grasped object's next ``horizon`` (20) poses at every step.

Per sample ``t`` (one message of each stream) the model reads

* the 21 tactile values ``s_t`` (electrodes 0..18, PDC, PAC; see
  :mod:`rnn_perception.data.tactile_dataset`), PAC as ``log(1 + max(PAC, 0))`` (its RMS spans
  three decades: a slip burst must not drown the rest);
* the current pose ``p_t = (x, y, z, angle)`` and its last change ``v_t = p_t - p_{t-1}``
  (``v_0 = 0``), so the state needs the previous pose beside the LSTM's ``(h, c)``.

Each input is standardised with statistics of the training set stored in the model (buffers,
saved with the weights): ``u_t = [(s_t - mu_s)/sigma_s, (p_t - mu_p)/sigma_p, v_t/sigma_v]``.

.. math::
    h_t, c_t &= \mathrm{LSTM}(u_t, (h_{t-1}, c_{t-1}))              \\
    r_t &= W_2\,\mathrm{ReLU}(W_1 [h_t; u_t] + b_1) + b_2 \in \mathbb{R}^{H \times 4} \\
    \hat p_{t+k} &= p_t + k\,v_t + \sigma_{r,k} \odot r_{t,k}, \qquad k = 1..H

**Why the current pose is an input.** A tactile sensor feels forces, not where the object is:
the angle the bar starts at is not observable from the skin to the hundredth of a degree that
short horizons need (constant-velocity extrapolation is off by ~0.01 deg one step ahead), so a
model without it loses to the simplest baseline before it starts. With it, the question the
network answers is the one tactile data can answer: how will the motion *change*, given how
hard the grip is (PDC), whether the contact is slipping (PAC bursts) and how the load shifts
on the skin (electrodes). The node therefore takes the pose estimate too (the bag's
``/object/pose``, or any estimator's).

**Why residuals of constant-velocity extrapolation.** The head predicts what ``p_t + k v_t``
gets wrong, scaled per horizon step and pose component by ``sigma_r`` (the std of that error on
the training set). A zero head *is* the constant-velocity baseline; training only has to learn
the accelerations (slip onsets, re-grips, stops), and every horizon step weighs the same in
the loss whatever its size. Direct (all 20 steps at once) rather than sequence-to-sequence: one
matmul per step instead of 20 decoder steps, and no compounding of its own errors.

Shapes: ``step`` takes ``tactile (B, 21)`` and ``pose (B, 4)`` -> poses ``(B, H, 4)``;
``forward`` takes ``(B, T, 21)`` and ``(B, T, 4)`` -> ``(B, T, H, 4)``; both agree (test).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..cells import lstm_rows_from_ifog, LSTMCell, SequenceRunner
from ..data.tactile_dataset import PAC_INDEX, POSE_FIELDS, TACTILE_FIELDS
from .weights_file import load_model_file, save_model_file, shipped_model_path

KIND = 'tactile'
# 2: LSTM gate rows in torch's order (i, f, g, o) (version 1 files are converted on loading)
SCHEMA_VERSION = 2
UPGRADES = {1: lstm_rows_from_ifog}
NUM_TACTILE = len(TACTILE_FIELDS)
NUM_POSE = len(POSE_FIELDS)
MAX_RATE_HZ = 100_000        # a sample rate in the metadata must be below this
ANGLE = POSE_FIELDS.index('angle_rad')
POSITION = [POSE_FIELDS.index(name) for name in ('x', 'y', 'z')]


@dataclass
class TactileConfig:
    """Architecture hyper-parameters; stored in the weights file so a node can rebuild the
    model."""

    hidden_size: int = 64
    num_layers: int = 1
    head_size: int = 64
    horizon: int = 20

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> 'TactileConfig':
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f'unknown tactile model hyper-parameters {sorted(unknown)}')
        return cls(**values)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


class TactileState(NamedTuple):
    """What ``step`` carries: the LSTM runner's ``(h, c)``, each ``(L, B, hidden)``, and the last
    pose."""

    recurrent: Tuple[Tensor, Tensor]
    previous_pose: Tensor      # (B, 4)


def tactile_features(tactile: Tensor) -> Tensor:
    """Raw tactile values ``(..., 21)`` -> the model's tactile input, PAC log-compressed."""
    pac = torch.log1p(tactile[..., PAC_INDEX:PAC_INDEX + 1].clamp(min=0))
    return torch.cat([tactile[..., :PAC_INDEX], pac, tactile[..., PAC_INDEX + 1:]], -1)


class TactilePredictor(nn.Module):
    """LSTM tactile pose predictor (see the module docstring)."""

    NORMALISATION = (
        'tactile_mean',
        'tactile_std',
        'pose_mean',
        'pose_std',
        'velocity_std',
        'residual_std',
    )

    def __init__(self, config: Optional[TactileConfig] = None):
        super().__init__()
        self.config = cfg = config or TactileConfig()
        inputs = NUM_TACTILE + 2 * NUM_POSE
        self.recurrent = SequenceRunner(
            LSTMCell, inputs, cfg.hidden_size, cfg.num_layers, batch_first=True
        )
        self.head = nn.Sequential(nn.Linear(cfg.hidden_size + inputs, cfg.head_size), nn.ReLU(),
                                  nn.Linear(cfg.head_size, cfg.horizon * NUM_POSE))
        nn.init.zeros_(self.head[-1].weight)          # start as the constant-velocity baseline
        nn.init.zeros_(self.head[-1].bias)
        self.register_buffer('tactile_mean', torch.zeros(NUM_TACTILE))
        self.register_buffer('tactile_std', torch.ones(NUM_TACTILE))
        self.register_buffer('pose_mean', torch.zeros(NUM_POSE))
        self.register_buffer('pose_std', torch.ones(NUM_POSE))
        self.register_buffer('velocity_std', torch.ones(NUM_POSE))
        self.register_buffer('residual_std', torch.ones(cfg.horizon, NUM_POSE))
        self.register_buffer(
            'steps_ahead',
            torch.arange(1, cfg.horizon + 1, dtype=torch.float32).view(-1, 1),
            persistent=False,
        )

    def set_normalisation(self, values: Dict[str, Any]) -> None:
        """Set the statistics named in :attr:`NORMALISATION` (tactile in model-input units,
        i.e. after :func:`tactile_features`)."""
        with torch.no_grad():
            for name in self.NORMALISATION:
                buffer = getattr(self, name)
                buffer.copy_(torch.as_tensor(values[name], dtype=buffer.dtype).view(buffer.shape))

    def normalisation(self) -> Dict[str, Any]:
        """The statistics as nested lists (for the weights file's metadata)."""
        return {name: getattr(self, name).tolist() for name in self.NORMALISATION}

    # ------------------------------------------------------------------------------ running
    def _check(self, tactile: Tensor, pose: Tensor, dims: int) -> None:
        if (tactile.dim() != dims or pose.dim() != dims or tactile.shape[-1] != NUM_TACTILE
                or pose.shape[-1] != NUM_POSE or tactile.shape[:-1] != pose.shape[:-1]):
            layout = '(B, ' if dims == 2 else '(B, T, '
            raise ValueError(
                f'TactilePredictor: expected tactile {layout}{NUM_TACTILE}) and pose '
                f'{layout}{NUM_POSE}), got {tuple(tactile.shape)} and {tuple(pose.shape)}'
            )

    def inputs(self, tactile: Tensor, pose: Tensor, velocity: Tensor) -> Tensor:
        """``u_t``: the standardised tactile values, pose and pose change, ``(..., 29)``."""
        return torch.cat(
            [
                (tactile_features(tactile) - self.tactile_mean) / self.tactile_std,
                (pose - self.pose_mean) / self.pose_std,
                velocity / self.velocity_std,
            ],
            -1,
        )

    def residuals(self, h: Tensor, u: Tensor) -> Tensor:
        """Head: ``[h_t; u_t] (..., hidden + 29)`` -> standardised residuals
        ``r_t (..., H, 4)``."""
        return self.head(torch.cat([h, u], -1)).unflatten(-1, (self.config.horizon, NUM_POSE))

    def extrapolate(self, pose: Tensor, velocity: Tensor) -> Tensor:
        """Constant-velocity extrapolation ``p_t + k v_t``, ``(..., 4)`` -> ``(..., H, 4)``."""
        return pose.unsqueeze(-2) + self.steps_ahead * velocity.unsqueeze(-2)

    def compose(self, pose: Tensor, velocity: Tensor, residuals: Tensor) -> Tensor:
        """Predicted poses ``p_t + k v_t + sigma_r * r_t`` ``(..., H, 4)``."""
        return self.extrapolate(pose, velocity) + self.residual_std * residuals

    def init_state(self, batch: int, device=None, dtype=None) -> TactileState:
        """Zero LSTM state; the previous pose is NaN until the first sample, which then has
        ``v = 0``."""
        recurrent = self.recurrent.init_state(batch, device, dtype)
        return TactileState(
            recurrent, torch.full((batch, NUM_POSE), float('nan'), device=device, dtype=dtype)
        )

    def step(self, tactile: Tensor, pose: Tensor,
             state: Optional[TactileState] = None) -> Tuple[Tensor, TactileState]:
        """One sample ``tactile (B, 21)``, ``pose (B, 4)`` with carried state ->
        ``(poses (B, H, 4), state)``."""
        self._check(tactile, pose, 2)
        state = (
            state if state is not None else self.init_state(pose.shape[0], pose.device, pose.dtype)
        )
        previous = torch.where(torch.isnan(state.previous_pose), pose, state.previous_pose)
        velocity = pose - previous
        u = self.inputs(tactile, pose, velocity)
        h, recurrent = self.recurrent.step(u, state.recurrent)
        return self.compose(pose, velocity, self.residuals(h, u)), TactileState(recurrent, pose)

    def velocities(self, pose: Tensor) -> Tensor:
        """``v_t = p_t - p_{t-1}`` of whole sequences ``(B, T, 4)``, ``v_0 = 0``."""
        return pose - torch.cat([pose[:, :1], pose[:, :-1]], 1)

    def forward_residuals(self, tactile: Tensor, pose: Tensor,
                          lengths: Optional[Sequence[int]] = None) -> Tuple[Tensor, Tensor]:
        """Whole sequences -> ``(r (B, T, H, 4), v (B, T, 4))``: what training scores. Padded
        steps (past ``lengths``) give garbage that the caller masks out."""
        self._check(tactile, pose, 3)
        velocity = self.velocities(pose)
        u = self.inputs(tactile, pose, velocity)
        h, _ = self.recurrent(u, lengths=lengths)
        return self.residuals(h, u), velocity

    def forward(
        self, tactile: Tensor, pose: Tensor, lengths: Optional[Sequence[int]] = None
    ) -> Tensor:
        """Whole sequences ``tactile (B, T, 21)``, ``pose (B, T, 4)`` -> poses ``(B, T, H, 4)``."""
        residuals, velocity = self.forward_residuals(tactile, pose, lengths)
        return self.compose(pose, velocity, residuals)


# ---------------------------------------------------------------------------------- weights file
def save_tactile_model(path, model: TactilePredictor, metadata: Dict[str, Any]) -> None:
    """Write ``model`` as safetensors (atomically) with ``config``, ``normalisation`` and the
    field layouts added to ``metadata`` (which should hold ``rate_hz``, the training command,
    the dataset hash, metrics...)."""
    header = dict(metadata, config=model.config.to_dict(), normalisation=model.normalisation(),
                  tactile_fields=list(TACTILE_FIELDS), pose_fields=list(POSE_FIELDS))
    save_model_file(path, model, KIND, SCHEMA_VERSION, header)


def default_weights_path() -> Path:
    """The shipped default tactile model, inside the installed package."""
    return shipped_model_path('tactile.safetensors')


def metadata_problem(metadata: Dict[str, Any]) -> Optional[str]:
    """What is wrong with the metadata the users of a tactile model read (``rate_hz``,
    ``tactile_fields``), or ``None``."""
    rate = metadata.get('rate_hz')
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 < rate < MAX_RATE_HZ:
        return f'metadata rate_hz {rate!r} is not a sample rate'
    if metadata.get('tactile_fields') != list(TACTILE_FIELDS):
        return (f'metadata tactile_fields {metadata.get("tactile_fields")!r} are '
                f'not the {NUM_TACTILE} fields of /tactile/raw')
    return None


def load_tactile_model(path, device='cpu') -> Tuple[TactilePredictor, Dict[str, Any]]:
    """Rebuild a ``TactilePredictor`` from a safetensors file (no pickle anywhere) and check the
    metadata its users read (:func:`metadata_problem`); every problem raises
    ``ModelFileError`` naming the file and what is wrong with it."""
    return load_model_file(path, KIND, SCHEMA_VERSION,
                           lambda config: TactilePredictor(TactileConfig.from_dict(config)),
                           device, metadata_problem, UPGRADES)
