"""The collision predictor: causality, step == forward, input frames, and its safetensors file."""
import os
import pickle
import stat

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from rnn_perception.models.collision import (centre_crop, CollisionConfig, CollisionPredictor,
                                             frames_to_tensor, load_collision_model,
                                             resize_frames, save_collision_model)
from rnn_perception.models.weights_file import ModelFileError
from rnn_perception.files import save_checkpoint

TINY = CollisionConfig(image_size=(20, 24), encoder_channels=[4, 6], recurrent_channels=[5, 7],
                       recurrent_strides=[1, 2], head_channels=3)
METADATA = {
    'fps': 30.0,
    'threshold': 0.5,
    'training_command': 'test',
    'dataset_manifest_sha256': '0' * 64,
    'validation_metrics': {'auroc': 1.0},
}


def make_model(config=TINY, peephole=False, seed=0):
    torch.manual_seed(seed)
    config = CollisionConfig.from_dict({**config.to_dict(), 'peephole': peephole})
    model = CollisionPredictor(config).eval()
    model.set_normalisation([0.4, 0.5, 0.6], [0.2, 0.25, 0.3])
    return model


def frames(batch, steps, config=TINY, seed=1):
    return torch.rand(
        batch, steps, 3, *config.image_size, generator=torch.Generator().manual_seed(seed)
    )


# ----------------------------------------------------------------------------------- running
@pytest.mark.parametrize('peephole,coordinates', [(False, False), (True, False), (False, True)])
def test_step_by_step_equals_the_whole_sequence(peephole, coordinates):
    config = CollisionConfig.from_dict({**TINY.to_dict(), 'coordinates': coordinates})
    model, clip = make_model(config, peephole=peephole), frames(3, 9)
    with torch.no_grad():
        whole = model(clip)
        state, stepped = None, []
        for t in range(clip.shape[1]):
            logits, state = model.step(clip[:, t], state)
            stepped.append(logits)
    assert whole.shape == (3, 9)
    torch.testing.assert_close(torch.stack(stepped, 1), whole, rtol=1e-5, atol=1e-5)


def test_default_architecture_steps_like_it_runs_whole_sequences():
    config = CollisionConfig()
    model, clip = make_model(config), frames(2, 5, config)
    with torch.no_grad():
        state = model.init_state(2)
        stepped = []
        for t in range(5):
            logits, state = model.step(clip[:, t], state)
            stepped.append(logits)
        torch.testing.assert_close(torch.stack(stepped, 1), model(clip), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('config', [
    TINY,                                                                        # strides 1 then 2
    CollisionConfig.from_dict({**TINY.to_dict(), 'peephole': True, 'recurrent_strides': [2, 1]}),
    CollisionConfig.from_dict({**TINY.to_dict(), 'coordinates': False, 'encoder_skip': False}),
    CollisionConfig.from_dict({**TINY.to_dict(), 'image_size': [21, 27]}),   # odd: uneven borders
    CollisionConfig.from_dict({**TINY.to_dict(), 'frame_difference': True}),
    CollisionConfig(),
], ids=['tiny', 'peephole-stride2-first', 'bare', 'odd-size', 'frame-difference', 'default'])
def test_frozen_model_steps_like_the_whole_sequence(config):
    """The snapshot the node steps (normalisation folded into the first convolution, coordinate
    maps and biases into the gate map, convolutions fused) gives what ``forward`` gives."""
    model, clip = make_model(config, seed=3), frames(2, 6, config)
    with torch.no_grad():
        for parameter in model.parameters():      # non-zero biases everywhere
            parameter.add_(torch.randn_like(parameter) * 0.05)
        frozen, state, stepped = model.frozen(), None, []
        for t in range(clip.shape[1]):
            logits, state = frozen.step(clip[:, t], state)
            stepped.append(logits)
        torch.testing.assert_close(torch.stack(stepped, 1), model(clip), rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match=r'expected frames \(N, 3'):
            frozen.step(clip[:, 0, :, 1:])


def test_frame_difference_steps_like_the_whole_sequence_and_reads_the_change():
    config = CollisionConfig.from_dict({**TINY.to_dict(), 'frame_difference': True})
    model, clip = make_model(config), frames(2, 7, config)
    assert model.encoder[0].in_channels == 6
    with torch.no_grad():
        state, stepped = None, []
        for t in range(clip.shape[1]):
            logits, state = model.step(clip[:, t], state)
            stepped.append(logits)
        torch.testing.assert_close(torch.stack(stepped, 1), model(clip), rtol=1e-5, atol=1e-5)
        # the state carries the last frame; before the first there is none (NaN), no change
        torch.testing.assert_close(state[-1], clip[:, -1])
        assert torch.isnan(model.init_state(2)[-1]).all()
        # the same frame after another one answers otherwise: the model sees what changed
        still, moved = model(clip[:, [0, 0]]), model(clip[:, [1, 0]])
        torch.testing.assert_close(still[:, 0], model(clip[:, [0]])[:, 0])
        assert (still[:, 1] - moved[:, 1]).abs().min() > 1e-4


def test_coordinate_maps_feed_the_first_convlstm():
    config = CollisionConfig.from_dict({**TINY.to_dict(), 'coordinates': True})
    model = make_model(config)
    assert model.recurrent[0].input_size == config.encoder_channels[-1] + 2
    assert 'coordinate_maps' not in model.state_dict()  # rebuilt from the config on load
    encoded = torch.zeros(2, config.encoder_channels[-1], *model.encoded_size())
    inputs = model.recurrent_input(encoded)
    assert inputs.shape[1] == config.encoder_channels[-1] + 2
    assert inputs[0, -2, 0, 0] == -1 and inputs[0, -2, 0, -1] == 1   # x runs left to right
    assert inputs[0, -1, 0, 0] == -1 and inputs[0, -1, -1, 0] == 1   # y runs top to bottom


def test_output_depends_only_on_frames_so_far():
    model, clip = make_model(), frames(2, 8)
    changed = clip.clone()
    changed[:, 5:] = torch.rand_like(changed[:, 5:])
    with torch.no_grad():
        before, after = model(clip), model(changed)
    torch.testing.assert_close(before[:, :5], after[:, :5])
    assert not torch.allclose(before[:, 5:], after[:, 5:])


def test_frames_of_the_wrong_size_are_refused():
    with pytest.raises(ValueError, match='expected frames'):
        make_model()(torch.rand(1, 2, 3, 32, 32))


def test_resize_frames_averages_areas_when_shrinking_and_keeps_the_right_size():
    checker = np.zeros((1, 4, 4, 3), np.uint8)
    checker[0, ::2, ::2] = checker[0, 1::2, 1::2] = 200
    assert resize_frames(checker, (2, 2)).tolist() == np.full((1, 2, 2, 3), 100).tolist()
    assert resize_frames(checker, (4, 4)) is checker
    assert resize_frames(checker, (8, 6)).shape == (1, 8, 6, 3)


@pytest.mark.parametrize('height, width', [(480, 640), (720, 1280), (90, 64), (61, 64)])
def test_resize_frames_keeps_the_centre_at_the_models_aspect_ratio(height, width):
    # Grey inside the centred square, red bands outside it: a camera with the training camera's
    # vertical field of view and another aspect shows the model the grey square, not the bands.
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    frame = np.zeros((1, height, width, 3), np.uint8)
    frame[..., 0] = 255
    frame[0, top:top + side, left:left + side] = 128
    assert (resize_frames(frame, (64, 64)) == 128).all()
    assert centre_crop(frame, (64, 64)).shape[1:3] == (side, side)
    assert centre_crop(frame, (3, 4)).shape[1] * 4 == pytest.approx(
        centre_crop(frame, (3, 4)).shape[2] * 3, abs=4)


def test_frames_to_tensor_is_channels_first_in_unit_range():
    rgb = np.zeros((2, 3, 4, 3), np.uint8)
    rgb[..., 1] = 255
    tensor = frames_to_tensor(rgb)
    assert tensor.shape == (2, 3, 3, 4) and tensor.dtype == torch.float32
    assert tensor[:, 1].eq(1).all() and tensor[:, 0].eq(0).all()


# ------------------------------------------------------------------------------ weights file
def test_save_load_round_trip_rebuilds_an_identical_model(tmp_path):
    model, path = make_model(peephole=True), tmp_path / 'model.safetensors'
    save_collision_model(path, model, METADATA)
    loaded, metadata = load_collision_model(path)
    assert loaded.config == model.config
    clip = frames(2, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded(clip), model(clip), rtol=0, atol=0)
    for key in (
        'kind',
        'schema_version',
        'config',
        'normalisation',
        'channel_order',
        'input_range',
        *METADATA,
    ):
        assert key in metadata, key
    assert metadata['channel_order'] == 'rgb' and metadata['input_range'] == [0.0, 1.0]
    assert metadata['normalisation']['mean'] == pytest.approx([0.4, 0.5, 0.6])
    assert metadata['config']['image_size'] == [20, 24]
    assert {key: metadata[key] for key in METADATA} == METADATA


def assert_refused(path, match):
    with pytest.raises(ModelFileError, match=match) as raised:
        load_collision_model(path)
    assert str(path) in str(raised.value)


def test_loading_refuses_a_missing_file(tmp_path):
    assert_refused(tmp_path / 'absent.safetensors', 'not found')


def test_loading_refuses_a_truncated_file(tmp_path):
    path = tmp_path / 'model.safetensors'
    save_collision_model(path, make_model(), METADATA)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    assert_refused(path, 'not a readable checkpoint')


def test_loading_refuses_a_file_with_the_wrong_tensors(tmp_path):
    path = tmp_path / 'model.safetensors'
    save_collision_model(path, make_model(), METADATA)
    other = CollisionConfig.from_dict({**TINY.to_dict(), 'recurrent_channels': [5, 9]})
    tensors = CollisionPredictor(other).state_dict()          # shapes of another architecture ...
    _, metadata = load_collision_model(path)
    save_checkpoint(path, tensors, metadata)                  # ... under this file's metadata
    assert_refused(path, 'do not match')
    save_checkpoint(path, {'weight': torch.zeros(3)}, metadata)
    assert_refused(path, 'do not match')


def test_loading_refuses_a_model_of_another_kind(tmp_path):
    path = tmp_path / 'model.safetensors'
    save_checkpoint(path, make_model().state_dict(), {'kind': 'tactile_pose', 'schema_version': 1})
    assert_refused(path, "'tactile_pose' model")
    save_file({'x': torch.zeros(1)}, str(path))  # plain safetensors, no metadata at all
    assert_refused(path, 'unknown')


class _Payload:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_loading_refuses_a_pickle_renamed_safetensors_and_runs_none_of_it(tmp_path):
    marker = tmp_path / 'code_ran'
    path = tmp_path / 'model.safetensors'
    path.write_bytes(pickle.dumps({'state_dict': _Payload(marker)}))
    torch.save({'weight': torch.zeros(2)}, tmp_path / 'torch.pt')
    assert_refused(path, 'not a readable checkpoint')
    os.replace(tmp_path / 'torch.pt', path)                   # a torch.save zip, renamed
    assert_refused(path, 'not a readable checkpoint')
    assert not marker.exists()


def test_a_weights_file_is_readable_by_other_users_as_any_new_file(tmp_path):
    """safetensors writes owner-only files; a node running as another user must read them."""
    path = tmp_path / 'model.safetensors'
    save_collision_model(path, make_model(), {'fps': 30.0})
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
