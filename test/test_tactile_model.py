"""The tactile pose predictor: step == forward, the constant-velocity start, normalisation, and
its safetensors file (shared format with the collision model)."""
import numpy as np
import pytest
import torch

from rnn_perception.models.collision import CollisionPredictor, save_collision_model
from rnn_perception.models.tactile import (TactileConfig, TactilePredictor, load_tactile_model,
                                           save_tactile_model, tactile_features)
from rnn_perception.models.weights_file import ModelFileError

TINY = TactileConfig(hidden_size=8, num_layers=2, head_size=6, horizon=5)
NORMALISATION = {'tactile_mean': np.full(21, 2500.0), 'tactile_std': np.full(21, 50.0),
                 'pose_mean': [0.04, 0.0, -0.01, 0.3], 'pose_std': [0.02, 1e-6, 0.02, 0.5],
                 'velocity_std': [1e-4, 1e-6, 1e-4, 3e-3], 'residual_std': np.full((5, 4), 1e-3)}
METADATA = {'rate_hz': 100.0, 'training_command': 'test', 'dataset_manifest_sha256': '0' * 64,
            'validation_metrics': {'model_mae_deg': 0.1}}


def make_model(config=TINY, seed=0, zero_head=False):
    torch.manual_seed(seed)
    model = TactilePredictor(config)
    if not zero_head:  # the real init is a zero head: give it weights
        for parameter in model.head[-1].parameters():
            torch.nn.init.normal_(parameter, std=0.3)
    model.set_normalisation(NORMALISATION)
    return model.eval()


def stream(batch, steps, seed=1):
    generator = torch.Generator().manual_seed(seed)
    tactile = 2500 + 50 * torch.randn(batch, steps, 21, generator=generator)
    tactile[..., 20] = 100 * torch.rand(batch, steps, generator=generator)
    angle = torch.cumsum(0.003 * torch.randn(batch, steps, generator=generator), 1)
    pose = torch.stack(
        [0.04 + 0.01 * angle, torch.zeros_like(angle), -0.01 + 0.01 * angle, angle], -1
    )
    return tactile, pose


def test_step_by_step_equals_the_whole_sequence():
    model, (tactile, pose) = make_model(), stream(3, 11)
    with torch.no_grad():
        whole = model(tactile, pose)
        state, stepped = model.init_state(3), []
        for t in range(11):
            predicted, state = model.step(tactile[:, t], pose[:, t], state)
            stepped.append(predicted)
    assert whole.shape == (3, 11, 5, 4)
    torch.testing.assert_close(torch.stack(stepped, 1), whole, rtol=1e-5, atol=1e-6)


def test_padding_never_changes_the_samples_before_it():
    model, (tactile, pose) = make_model(), stream(2, 9)
    with torch.no_grad():
        short = model(tactile[:1, :6], pose[:1, :6])
        padded = model(tactile, pose, lengths=[6, 9])
    torch.testing.assert_close(padded[:1, :6], short, rtol=1e-5, atol=1e-6)


def test_an_untrained_model_is_the_constant_velocity_baseline():
    model, (tactile, pose) = make_model(zero_head=True), stream(1, 4)
    with torch.no_grad():
        predicted = model(tactile, pose)[0]
    velocity = pose[0, 2] - pose[0, 1]
    expected = pose[0, 2] + torch.arange(1, 6).view(-1, 1) * velocity
    torch.testing.assert_close(predicted[2], expected)
    torch.testing.assert_close(predicted[0], pose[0, :1].expand(5, 4))   # the first sample: v = 0


def test_pac_is_log_compressed_and_the_rest_passes_through():
    tactile = torch.arange(21, dtype=torch.float32).view(1, 21) * 10
    features = tactile_features(tactile)
    torch.testing.assert_close(features[:, :20], tactile[:, :20])
    assert features[0, 20] == pytest.approx(np.log1p(200.0))


def test_bad_shapes_are_refused_with_the_layout():
    model = make_model()
    with pytest.raises(ValueError, match=r'expected tactile \(B, 21\) and pose \(B, 4\)'):
        model.step(torch.zeros(1, 20), torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r'\(B, T, 21\)'):
        model(torch.zeros(1, 3, 21), torch.zeros(1, 2, 4))


# ------------------------------------------------------------------------------- weights file
def test_save_and_load_round_trip_with_metadata(tmp_path):
    model, (tactile, pose) = make_model(), stream(2, 6)
    path = tmp_path / 'tactile.safetensors'
    save_tactile_model(path, model, METADATA)
    loaded, metadata = load_tactile_model(path)
    assert metadata['kind'] == 'tactile' and metadata['schema_version'] == 2
    assert metadata['config'] == TINY.to_dict() and metadata['rate_hz'] == 100.0
    assert metadata['normalisation']['pose_std'] == pytest.approx(NORMALISATION['pose_std'])
    assert metadata['tactile_fields'][-2:] == ['pdc', 'pac']
    assert metadata['validation_metrics'] == METADATA['validation_metrics']
    with torch.no_grad():
        torch.testing.assert_close(loaded(tactile, pose), model(tactile, pose))
    assert not list(tmp_path.glob('.*tmp')), 'the file is written atomically'


def test_load_refuses_other_kinds_missing_files_and_mismatched_weights(tmp_path):
    collision = tmp_path / 'collision.safetensors'
    save_collision_model(collision, CollisionPredictor(), {'fps': 30.0})
    with pytest.raises(ModelFileError, match="holds a 'collision' model, not a 'tactile' one"):
        load_tactile_model(collision)
    with pytest.raises(ModelFileError, match='not found'):
        load_tactile_model(tmp_path / 'missing.safetensors')
    path = tmp_path / 'tactile.safetensors'
    save_tactile_model(path, make_model(), METADATA)
    from rnn_perception.files import load_checkpoint, save_checkpoint
    tensors, metadata = load_checkpoint(path)
    save_checkpoint(
        path, tensors, {**metadata, 'config': {**metadata['config'], 'hidden_size': 9}}
    )
    with pytest.raises(ModelFileError, match='weights do not match their metadata'):
        load_tactile_model(path)
