"""The cell library: the seeds' worked examples, parity with torch.nn, equations, gradients,
shapes, cells as modules (call, hooks) and their docstring examples."""
import doctest
import inspect

import pytest
import torch
from torch import nn

import rnn_perception.cells
import rnn_perception.cells.base
import rnn_perception.cells.conv
import rnn_perception.cells.dense
from rnn_perception.cells import (CELL_TYPES, ConvGRUCell, ConvLSTMCell, ConvRNNCell, ElmanCell,
                                  FrozenConvStep, GRUCell, IntersectionCell, IRNNCell, LSTMCell,
                                  lstm_rows_from_ifog, RecurrentCell, SequenceRunner, UGRNNCell,
                                  load_torch_weights, make_cell_type)

DENSE_CELLS = [(cls, {}) for cls in CELL_TYPES.values()] + [(LSTMCell, {'peephole': True})]
CONV_CELLS = [(ConvRNNCell, {}), (ConvLSTMCell, {}), (ConvLSTMCell, {'peephole': True}),
              (ConvGRUCell, {})]


def cell_id(case):
    cls, kwargs = case
    return cls.__name__ + ('-peephole' if kwargs.get('peephole') else '')


# ------------------------------------------------------------------------------ seed examples
def test_seed_one_layer_relu_rnn():
    rnn = nn.RNN(1, 1, 1, nonlinearity='relu')
    with torch.no_grad():
        rnn.weight_ih_l0.fill_(1.0), rnn.weight_hh_l0.fill_(1.0)
        rnn.bias_ih_l0.zero_(), rnn.bias_hh_l0.zero_()
    runner = load_torch_weights(rnn)
    y, h = runner(torch.tensor([[[1.0]], [[2.0]], [[3.0]]]), torch.tensor([[[0.5]]]))
    assert y.flatten().tolist() == [1.5, 3.5, 6.5]
    assert h.flatten().tolist() == [6.5]


def test_seed_two_layer_relu_rnn_batched():
    rnn = nn.RNN(1, 1, 2, nonlinearity='relu')
    with torch.no_grad():
        for name, value in [('weight_ih_l0', 2.0), ('weight_hh_l0', 1.0), ('weight_ih_l1', 1.0),
                            ('weight_hh_l1', 0.5)]:
            getattr(rnn, name).fill_(value)
        for name in ('bias_ih_l0', 'bias_hh_l0', 'bias_ih_l1', 'bias_hh_l1'):
            getattr(rnn, name).zero_()
    runner = load_torch_weights(rnn)
    # second sequence = 10x the first
    x = torch.tensor([[[1.0], [10.0]], [[2.0], [20.0]], [[3.0], [30.0]]])
    h0 = torch.tensor([[[0.5], [5.0]], [[0.2], [2.0]]])
    y, _ = runner(x, h0)
    assert y[:, 0, 0].tolist() == pytest.approx([2.6, 7.8, 16.4])
    assert y[:, 1, 0].tolist() == pytest.approx([26.0, 78.0, 164.0])


# ------------------------------------------------------------------------------ torch parity
TORCH_MODULES = [
    ('rnn-tanh', lambda **kw: nn.RNN(nonlinearity='tanh', **kw)),
    ('rnn-relu', lambda **kw: nn.RNN(nonlinearity='relu', **kw)),
    ('lstm', lambda **kw: nn.LSTM(**kw)),
    ('gru', lambda **kw: nn.GRU(**kw)),
]


def _flat(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize('name,factory', TORCH_MODULES, ids=[m[0] for m in TORCH_MODULES])
@pytest.mark.parametrize('layers,bidirectional,batch_first,bias', [
    (1, False, False, True), (2, True, False, True), (3, False, True, False),
    (2, True, True, True)])
def test_matches_torch_outputs_and_gradients(name, factory, layers, bidirectional, batch_first,
                                             bias):
    torch.manual_seed(0)
    reference = factory(input_size=5, hidden_size=6, num_layers=layers,
                        bidirectional=bidirectional, batch_first=batch_first,
                        bias=bias).double()
    ours = load_torch_weights(reference)
    x = torch.randn(3, 7, 5, dtype=torch.float64)
    directions = 2 if bidirectional else 1
    state = tuple(torch.randn(layers * directions, 3, 6, dtype=torch.float64)           # batch 3
                  for _ in range(2 if name == 'lstm' else 1))
    if not batch_first:
        x = x.transpose(0, 1).contiguous()
    h0 = state if name == 'lstm' else state[0]

    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref, s_ref = reference(x_ref, h0)
    y_ours, s_ours = ours(x_ours, h0)
    torch.testing.assert_close(y_ours, y_ref, atol=1e-6, rtol=0)
    for a, b in zip(_flat(s_ours), _flat(s_ref)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)

    weights = torch.randn_like(y_ref)
    loss_ref = (y_ref * weights).sum() + sum(s.sum() for s in _flat(s_ref))
    loss_ours = (y_ours * weights).sum() + sum(s.sum() for s in _flat(s_ours))
    loss_ref.backward(), loss_ours.backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, atol=1e-6, rtol=0)
    for layer in range(layers):
        for direction in range(directions):
            cell = ours.cells[layer * directions + direction]
            suffix = f'_l{layer}' + ('_reverse' if direction else '')
            for param in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh'):
                if getattr(cell, param) is None:
                    continue
                expected = getattr(reference, param + suffix).grad
                torch.testing.assert_close(getattr(cell, param).grad, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize('factory', [nn.LSTM, nn.GRU, nn.RNN], ids=['lstm', 'gru', 'rnn'])
def test_variable_lengths_match_packed_sequences(factory):
    torch.manual_seed(1)
    reference = factory(3, 4, 2, bidirectional=True).double()
    ours = load_torch_weights(reference)
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 4, 1])
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    y_packed, s_ref = reference(packed)
    y_ref, _ = nn.utils.rnn.pad_packed_sequence(y_packed, total_length=6)
    y_ours, s_ours = ours(x, lengths=lengths)
    torch.testing.assert_close(y_ours, y_ref, atol=1e-9, rtol=0)
    for a, b in zip(_flat(s_ours), _flat(s_ref)):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=0)


def test_padding_never_leaks_into_final_state_or_outputs():
    torch.manual_seed(2)
    runner = SequenceRunner(LSTMCell, 3, 5, 2, bidirectional=True).double()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    lengths = torch.tensor([5, 3])
    noisy = x.clone()
    noisy[3:, 1] = 1e3                                  # garbage in the padding of sequence 1
    y_clean, (h_clean, c_clean) = runner(x, lengths=lengths)
    y_noisy, (h_noisy, c_noisy) = runner(noisy, lengths=lengths)
    torch.testing.assert_close(h_noisy, h_clean)
    torch.testing.assert_close(c_noisy, c_clean)
    torch.testing.assert_close(y_noisy, y_clean)
    assert torch.count_nonzero(y_clean[3:, 1]) == 0
    # and the short sequence's final state is what running it alone gives
    _, (h_alone, _) = runner(x[:3, 1:2])
    torch.testing.assert_close(h_clean[:, 1:2], h_alone)


def test_mask_equals_lengths_batch_first():
    torch.manual_seed(3)
    runner = SequenceRunner(GRUCell, 2, 4, batch_first=True)
    x = torch.randn(3, 6, 2)
    lengths = torch.tensor([6, 1, 4])
    mask = torch.arange(6).unsqueeze(0) < lengths.unsqueeze(1)          # (B, T)
    y_len, h_len = runner(x, lengths=lengths)
    y_mask, h_mask = runner(x, mask=mask)
    torch.testing.assert_close(y_mask, y_len)
    torch.testing.assert_close(h_mask, h_len)


# -------------------------------------------------------------------------- equations by hand
def _sig(x):
    return torch.sigmoid(x)


def test_peephole_lstm_follows_its_equations():
    torch.manual_seed(4)
    cell = LSTMCell(3, 4, peephole=True).double()
    with torch.no_grad():
        cell.weight_peephole.normal_()
    x, h, c = (torch.randn(2, n, dtype=torch.float64) for n in (3, 4, 4))
    W, U = cell.weight_ih.chunk(4), cell.weight_hh.chunk(4)          # i, f, g, o (torch's)
    b = (cell.bias_ih + cell.bias_hh).chunk(4)
    p_i, p_f, p_o = cell.weight_peephole
    i = _sig(x @ W[0].T + h @ U[0].T + p_i * c + b[0])
    f = _sig(x @ W[1].T + h @ U[1].T + p_f * c + b[1])
    g = torch.tanh(x @ W[2].T + h @ U[2].T + b[2])
    c_new = f * c + i * g
    o = _sig(x @ W[3].T + h @ U[3].T + p_o * c_new + b[3])
    y, (h_out, c_out) = cell.step(x, (h, c))
    torch.testing.assert_close(c_out, c_new)
    torch.testing.assert_close(h_out, o * torch.tanh(c_new))
    torch.testing.assert_close(y, h_out)


def test_ugrnn_follows_its_equations():
    torch.manual_seed(5)
    cell = UGRNNCell(3, 4).double()
    x, h = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    W, U = cell.weight_ih.chunk(2), cell.weight_hh.chunk(2)
    b = (cell.bias_ih + cell.bias_hh).chunk(2)
    g = _sig(x @ W[0].T + h @ U[0].T + b[0])
    c = torch.tanh(x @ W[1].T + h @ U[1].T + b[1])
    y, (h_out,) = cell.step(x, (h,))
    torch.testing.assert_close(h_out, g * h + (1 - g) * c)


@pytest.mark.parametrize('input_size', [4, 3], ids=['carry-x', 'projected-x'])
def test_intersection_rnn_follows_its_equations(input_size):
    torch.manual_seed(6)
    cell = IntersectionCell(input_size, 4).double()
    x, h = torch.randn(2, input_size, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    W, U = cell.weight_ih[:16].chunk(4), cell.weight_hh.chunk(4)      # g_y, g_h, y_in, h_in
    b = (cell.bias_ih[:16] + cell.bias_hh).chunk(4)
    pre = [x @ W[k].T + h @ U[k].T + b[k] for k in range(4)]
    g_y, g_h, y_in, h_in = _sig(pre[0]), _sig(pre[1]), torch.tanh(pre[2]), torch.tanh(pre[3])
    carry = x if input_size == 4 else x @ cell.weight_ih[16:].T + cell.bias_ih[16:]
    y, (h_out,) = cell.step(x, (h,))
    torch.testing.assert_close(y, g_y * carry + (1 - g_y) * y_in)
    torch.testing.assert_close(h_out, g_h * h + (1 - g_h) * h_in)
    assert cell.projects_input == (input_size != 4)


@pytest.mark.parametrize('dense,conv', [(ElmanCell, ConvRNNCell), (LSTMCell, ConvLSTMCell),
                                        (GRUCell, ConvGRUCell)], ids=['rnn', 'lstm', 'gru'])
def test_conv_cell_with_1x1_kernel_equals_dense_cell(dense, conv):
    """Conv and dense twins share their equations: a 1x1 conv on 1x1 maps is a matmul."""
    torch.manual_seed(7)
    conv_cell = conv(3, 5, kernel_size=1).double()
    dense_cell = dense(3, 5).double()
    with torch.no_grad():
        for name in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh'):
            dense_param = getattr(dense_cell, name)
            dense_param.copy_(getattr(conv_cell, name).reshape(dense_param.shape))
    x = torch.randn(2, 3, dtype=torch.float64)
    state = tuple(torch.randn(2, 5, dtype=torch.float64) for _ in dense_cell.state_names)
    y_dense, s_dense = dense_cell.step(x, state)
    y_conv, s_conv = conv_cell.step(x[..., None, None], tuple(s[..., None, None] for s in state))
    torch.testing.assert_close(y_conv[..., 0, 0], y_dense)
    for a, b in zip(s_conv, s_dense):
        torch.testing.assert_close(a[..., 0, 0], b)


# ------------------------------------------------------------------------------- gradcheck
@pytest.mark.parametrize('case', DENSE_CELLS, ids=cell_id)
def test_gradcheck_dense_cells(case):
    cls, kwargs = case
    torch.manual_seed(8)
    cell = cls(3, 4, **kwargs).double()
    if kwargs.get('peephole'):
        with torch.no_grad():
            cell.weight_peephole.normal_()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    state = tuple(torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
                  for _ in cell.state_names)
    params = tuple(cell.parameters())

    def run(x, *inputs):
        state = inputs[:len(cell.state_names)]
        y, new_state = cell.step(x, state)
        return (y, *new_state)
    assert torch.autograd.gradcheck(run, (x, *state))
    # parameters: gradcheck through a functional call
    names = [n for n, _ in cell.named_parameters()]

    def run_params(*values):
        y, new_state = torch.func.functional_call(
            cell, dict(zip(names, values)), (x.detach(), tuple(s.detach() for s in state)))
        return (y, *new_state)
    assert torch.autograd.gradcheck(
        run_params, tuple(p.detach().clone().requires_grad_() for p in params))


@pytest.mark.parametrize('case', CONV_CELLS, ids=cell_id)
def test_gradcheck_conv_cells(case):
    cls, kwargs = case
    torch.manual_seed(9)
    cell = cls(2, 3, kernel_size=3, stride=2, **kwargs).double()
    if kwargs.get('peephole'):
        with torch.no_grad():
            cell.weight_peephole.normal_()
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    state = tuple(torch.randn(1, 3, 3, 2, dtype=torch.float64, requires_grad=True)
                  for _ in cell.state_names)
    names = [n for n, _ in cell.named_parameters()]

    def run(x, *rest):
        state, values = rest[:len(cell.state_names)], rest[len(cell.state_names):]
        y, new_state = torch.func.functional_call(cell, dict(zip(names, values)), (x, state))
        return (y, *new_state)
    params = tuple(p.detach().clone().requires_grad_() for p in cell.parameters())
    assert torch.autograd.gradcheck(run, (x, *state, *params))


def test_gradcheck_runner_bidirectional_with_lengths():
    torch.manual_seed(10)
    runner = SequenceRunner(LSTMCell, 2, 3, 2, bidirectional=True, peephole=True).double()
    x = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([4, 2, 3])
    assert torch.autograd.gradcheck(lambda x: runner(x, lengths=lengths)[0], (x,))


# ---------------------------------------------------------------------------- shapes & state
@pytest.mark.parametrize('case', CONV_CELLS, ids=cell_id)
@pytest.mark.parametrize('stride,size,expected', [
    (1, (9, 7), (9, 7)), (2, (9, 7), (5, 4)), (3, (8, 8), (3, 3))])
def test_conv_state_shape_rule(case, stride, size, expected):
    cls, kwargs = case
    cell = cls(2, 6, kernel_size=3, stride=stride, **kwargs)
    y, state = cell.step(torch.randn(4, 2, *size))
    assert tuple(y.shape) == (4, 6, *expected)
    assert all(tuple(s.shape) == (4, 6, *expected) for s in state)
    assert cell.state_shape(4, size) == (4, 6, *expected)
    # h keeps its shape from step to step
    y2, state2 = cell.step(torch.randn(4, 2, *size), state)
    assert [s.shape for s in state2] == [s.shape for s in state]


@pytest.mark.parametrize('case', DENSE_CELLS + CONV_CELLS, ids=cell_id)
def test_initial_state_is_zeros_and_step_defaults_to_it(case):
    cls, kwargs = case
    torch.manual_seed(11)
    cell = cls(3, 4, **kwargs)
    spatial = (5, 5) if cell.is_conv else None
    state = cell.init_state(2, spatial=spatial)
    assert len(state) == len(cell.state_names)
    assert all(torch.count_nonzero(s) == 0 for s in state)
    x = torch.randn(2, 3, 5, 5) if cell.is_conv else torch.randn(2, 3)
    y_default, _ = cell.step(x)
    y_zero, _ = cell.step(x, state)
    torch.testing.assert_close(y_default, y_zero)


FROZEN_CASES = CONV_CELLS + [(UGRNNCell, {'kernel_size': 3}),
                             (ConvRNNCell, {'nonlinearity': 'relu', 'bias': False})]


@pytest.mark.parametrize('case', FROZEN_CASES,
                         ids=[cell_id(case) + ('-nobias' if 'bias' in case[1] else '')
                              for case in FROZEN_CASES])
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('constant_channels', [0, 2])
def test_frozen_conv_step_equals_step(case, stride, constant_channels):
    cls, kwargs = case
    torch.manual_seed(5)
    cell = cls(5, 4, stride=stride, **kwargs)
    with torch.no_grad():      # non-zero biases and peepholes, so that folding them is tried
        for parameter in cell.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
    constant = torch.randn(1, constant_channels, 7, 6)
    frozen = FrozenConvStep(cell, constant if constant_channels else None)
    # one convolution over [x, h] wherever x and h share a grid and the gates need only the sum
    assert frozen.fused == (stride == 1 and cls is not ConvGRUCell)
    state, frozen_state = None, cell.init_state(2, spatial=(7, 6))
    for _ in range(4):
        x = torch.randn(2, 5 - constant_channels, 7, 6)
        y, state = cell.step(torch.cat([x, constant.expand(2, -1, -1, -1)], 1), state)
        y_frozen, frozen_state = frozen(x, frozen_state)
        torch.testing.assert_close(y_frozen, y, rtol=1e-5, atol=1e-5)
        for tensor, frozen_tensor in zip(state, frozen_state):
            torch.testing.assert_close(frozen_tensor, tensor, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('cell,pattern', [(LSTMCell(3, 4), 'not a convolutional cell'),
                                          (IntersectionCell(3, 4, kernel_size=3), 'its own way')])
def test_frozen_conv_step_refuses_what_it_cannot_fold(cell, pattern):
    with pytest.raises(ValueError, match=pattern):
        FrozenConvStep(cell)


@pytest.mark.parametrize('cls,kwargs,shape', [
    (LSTMCell, {}, (5, 3)), (GRUCell, {}, (5, 3)), (IntersectionCell, {}, (5, 3)),
    (ConvLSTMCell, {'peephole': True}, (5, 3, 8, 8)), (ConvGRUCell, {'stride': 2}, (5, 3, 8, 8))])
def test_step_by_step_equals_whole_sequence(cls, kwargs, shape):
    torch.manual_seed(12)
    runner = SequenceRunner(cls, 3, 4, 2, **kwargs).eval()
    x = torch.randn(6, *shape)
    y_seq, state_seq = runner(x)
    state, ys = None, []
    for x_t in x:
        y_t, state = runner.step(x_t, state)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys), y_seq)
    for a, b in zip(_flat(state), _flat(state_seq)):
        for sa, sb in zip(a, b):                         # stacked tensor or per-layer list
            torch.testing.assert_close(sa, sb)


def test_strided_conv_stack_returns_per_layer_state_list_and_accepts_it_back():
    runner = SequenceRunner(ConvLSTMCell, 3, 4, 2, stride=2)
    y, (h, c) = runner(torch.randn(3, 2, 3, 16, 16))
    assert isinstance(h, list) and [tuple(t.shape) for t in h] == [(2, 4, 8, 8), (2, 4, 4, 4)]
    assert tuple(y.shape) == (3, 2, 4, 4, 4)
    y2, _ = runner(torch.randn(3, 2, 3, 16, 16), (h, c))
    assert tuple(y2.shape) == (3, 2, 4, 4, 4)
    zero = runner.init_state(2, spatial=(16, 16))
    assert [tuple(t.shape) for t in zero[0]] == [(2, 4, 8, 8), (2, 4, 4, 4)]


def test_dropout_between_layers_only_in_training():
    torch.manual_seed(13)
    runner = SequenceRunner(GRUCell, 3, 8, 3, dropout=0.5)
    x = torch.randn(4, 2, 3)
    runner.eval()
    torch.testing.assert_close(runner(x)[0], runner(x)[0])
    runner.train()
    assert not torch.equal(runner(x)[0], runner(x)[0])


# --------------------------------------------------------------------------- initialisation
def test_initialisers():
    cell = LSTMCell(5, 6, forget_bias=1.0)
    n = 6
    assert torch.all(cell.bias_ih[n:2 * n] == 1.0)
    assert torch.count_nonzero(cell.bias_hh) == 0
    for block in cell.weight_hh.chunk(4):                 # orthogonal per gate block
        torch.testing.assert_close(block @ block.T, torch.eye(n), atol=1e-5, rtol=0)
    irnn = IRNNCell(5, 6)
    torch.testing.assert_close(irnn.weight_hh, torch.eye(6))
    assert torch.count_nonzero(irnn.bias_ih) == 0 and irnn.nonlinearity == 'relu'
    assert make_cell_type('peephole') == (LSTMCell, {'peephole': True})


# ------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize('make_call,error,pattern', [
    (lambda: LSTMCell(3, 4).step(torch.randn(2, 5)), ValueError,
     r'expected input of shape \(B, 3\)'),
    (lambda: LSTMCell(3, 4).step(torch.randn(2, 3, dtype=torch.float64)), TypeError, 'dtype'),
    (lambda: LSTMCell(3, 4).step([1, 2, 3]), TypeError, 'torch.Tensor'),
    (lambda: ConvLSTMCell(3, 4).step(torch.randn(2, 3)), ValueError, r'\(B, 3, H, W\)'),
    (lambda: LSTMCell(3, 4).step(torch.randn(2, 3), (torch.zeros(2, 4),)), TypeError,
     r"\('h', 'c'\)"),
    (lambda: GRUCell(3, 4).step(torch.randn(2, 3), (torch.zeros(3, 4),)), ValueError,
     r'shape \(2, 4\)'),
    (lambda: LSTMCell(3, 4)(torch.randn(2, 5)), ValueError, r'expected input of shape \(B, 3\)'),
    (lambda: SequenceRunner(GRUCell, 3, 4, bidirectional=True).step(torch.randn(2, 3)),
     RuntimeError, 'bidirectional'),
    (lambda: SequenceRunner(GRUCell, 3, 4)(torch.randn(5, 2, 3), lengths=[6, 2]), ValueError,
     r'\[1, 5\]'),
    (lambda: SequenceRunner(GRUCell, 3, 4)(torch.randn(5, 2, 3),
                                           mask=torch.tensor([[1, 0, 1, 1, 1]] * 2).T),
     ValueError, 'prefix'),
    (lambda: SequenceRunner(GRUCell, 3, 4)(torch.randn(5, 2, 4)), ValueError, r'\(T, B, 3\)'),
    (lambda: SequenceRunner(LSTMCell, 3, 4, 2)(torch.randn(5, 2, 3), torch.zeros(2, 2, 4)),
     TypeError, 'component'),
    (lambda: ConvLSTMCell(3, 4, kernel_size=2), ValueError, 'odd'),
    (lambda: make_cell_type('transformer'), ValueError, 'unknown cell type'),
    (lambda: load_torch_weights(nn.Linear(2, 2)), TypeError, 'nn.RNN'),
    (lambda: load_torch_weights(nn.LSTM(2, 4, proj_size=2)), ValueError, 'proj_size'),
])
def test_bad_input_raises_clear_error(make_call, error, pattern):
    with pytest.raises(error, match=pattern):
        make_call()


def test_wrong_device_is_named():
    if not torch.cuda.is_available():
        pytest.skip('needs a CUDA device to put the input on another device than the weights')
    with pytest.raises(ValueError, match='cuda'):
        LSTMCell(3, 4).step(torch.randn(2, 3, device='cuda'))


@pytest.mark.parametrize('use', ['output', 'final-h', 'final-c', 'all'])
def test_lstm_kernel_equals_a_zero_peephole_loop(use):
    """Dense LSTMs run torch's LSTM kernel; a peephole LSTM with zero peepholes has the same
    equations but runs the library's own loop, so the two must agree exactly."""
    torch.manual_seed(14)
    fused = SequenceRunner(LSTMCell, 3, 5, 2).double()
    generic = SequenceRunner(LSTMCell, 3, 5, 2, peephole=True).double()
    generic.load_state_dict(fused.state_dict(), strict=False)
    x = torch.randn(7, 4, 3, dtype=torch.float64)
    state = tuple(torch.randn(2, 4, 5, dtype=torch.float64) for _ in range(2))
    results = []
    for runner in (fused, generic):
        runner.zero_grad()
        xs = x.clone().requires_grad_()
        s0 = tuple(s.clone().requires_grad_() for s in state)
        y, (h, c) = runner(xs, s0)
        loss = {'output': y.sum(), 'final-h': h.pow(2).sum(), 'final-c': c.sum(),
                'all': y.pow(2).sum() + h.sum() + c.pow(3).sum()}[use]
        loss.backward()
        results.append((y, h, c, xs.grad, s0[0].grad, s0[1].grad,
                        *(p.grad for name, p in runner.named_parameters()
                          if 'peephole' not in name)))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


# --------------------------------------------------------------------- cells as torch modules
MODULE_CELLS = (DENSE_CELLS + CONV_CELLS
                + [(IntersectionCell, {'kernel_size': 3}), (IRNNCell, {'kernel_size': 3})])


def _cell_and_input(case, seed):
    """A cell with non-zero weights everywhere (biases, peepholes), an input and a random state."""
    cls, kwargs = case
    torch.manual_seed(seed)
    cell = cls(3, 4, **kwargs).double()
    with torch.no_grad():
        for parameter in cell.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
    shape = (2, 3, 6, 5) if cell.is_conv else (2, 3)
    x = torch.randn(*shape, dtype=torch.float64)
    spatial = shape[-2:] if cell.is_conv else None
    state = tuple(torch.randn(cell.state_shape(2, spatial), dtype=torch.float64)
                  for _ in cell.state_names)
    return cell, x, state


def module_id(case):
    return cell_id(case) + ('-conv' if 'kernel_size' in case[1] else '')


@pytest.mark.parametrize('case', MODULE_CELLS, ids=[module_id(c) for c in MODULE_CELLS])
def test_calling_the_cell_equals_step(case):
    cell, x, state = _cell_and_input(case, 20)
    y_call, s_call = cell(x, state)
    y_step, s_step = cell.step(x, state)
    assert torch.equal(y_call, y_step)
    assert len(s_call) == len(s_step) == len(cell.state_names)
    assert all(torch.equal(a, b) for a, b in zip(s_call, s_step))
    # and the state moved: the call really stepped (not, e.g., returned its inputs)
    assert not all(torch.equal(a, b) for a, b in zip(s_call, state))
    # state None: zeros, by either name
    y_none, _ = cell(x)
    assert torch.equal(y_none, cell.step(x)[0])
    assert torch.equal(y_none, cell(x, cell.init_state(2, spatial=x.shape[-2:] if cell.is_conv
                                                       else None))[0])


@pytest.mark.parametrize('case', MODULE_CELLS, ids=[module_id(c) for c in MODULE_CELLS])
def test_forward_hooks_fire_once_per_call_and_per_step(case):
    cell, x, state = _cell_and_input(case, 21)
    calls = []
    handle = cell.register_forward_hook(lambda module, args, output: calls.append(
        (module, args, output)))
    pre_calls = []
    pre_handle = cell.register_forward_pre_hook(lambda module, args: pre_calls.append(args))
    y, new_state = cell(x, state)
    assert len(calls) == 1 and len(pre_calls) == 1
    module, args, output = calls[0]
    assert module is cell
    assert args[0] is x and args[1] is state
    assert output[0] is y and output[1] is new_state
    y2, _ = cell.step(x, new_state)             # the package's name goes through the hooks too
    assert len(calls) == 2 and len(pre_calls) == 2
    assert calls[1][1][0] is x and calls[1][1][1] is new_state and calls[1][2][0] is y2
    handle.remove()
    pre_handle.remove()
    cell(x, state)
    cell.step(x, state)
    assert len(calls) == 2 and len(pre_calls) == 2


def test_a_forward_hook_can_replace_what_step_returns():
    """``step`` returns what the module call returns, hooks applied, as ``cell(...)`` does."""
    cell = GRUCell(3, 4)
    x = torch.randn(2, 3)
    marker = torch.full((2, 4), 7.0)
    cell.register_forward_hook(lambda module, args, output: (marker, (marker,)))
    assert cell(x)[0] is marker
    assert cell.step(x)[0] is marker


def test_runner_does_not_call_cell_hooks_but_is_a_module_itself():
    runner = SequenceRunner(LSTMCell, 3, 4, 2)
    cell_calls, runner_calls = [], []
    for cell in runner.cells:
        cell.register_forward_hook(lambda *args: cell_calls.append(args))
    runner.register_forward_hook(lambda *args: runner_calls.append(args))
    x = torch.randn(5, 2, 3)
    y, (h, c) = runner(x)
    runner.step(x[0])
    assert len(runner_calls) == 1 and cell_calls == []
    assert tuple(y.shape) == (5, 2, 4) and tuple(h.shape) == (2, 2, 4)


# ------------------------------------------------------------------------------ docstrings
@pytest.mark.parametrize('module', [rnn_perception.cells.base, rnn_perception.cells.dense,
                                    rnn_perception.cells.conv], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0


PUBLIC_CELLS = [ElmanCell, IRNNCell, LSTMCell, GRUCell, UGRNNCell, IntersectionCell, ConvRNNCell,
                ConvLSTMCell, ConvGRUCell]


def _section(doc, title):
    """The text of a torch-style section (``Args:``) up to the next blank line."""
    start = doc.index(f'\n    {title}')
    end = doc.find('\n\n', start + 1)
    return doc[start:end if end != -1 else None]


@pytest.mark.parametrize('cls', PUBLIC_CELLS, ids=lambda c: c.__name__)
def test_every_cell_documents_args_shapes_and_a_running_example(cls):
    doc = cls.__doc__
    for title in ('Args:', 'Inputs:', 'Outputs:', 'Example::'):
        assert f'\n    {title}' in doc, f'{cls.__name__}: no {title} section'
    args = _section(doc, 'Args:')
    # extra_input_rows: RecurrentCell's knob for subclasses (documented there), not the user's
    names = [n for n, p in inspect.signature(cls.__init__).parameters.items()
             if n not in ('self', 'extra_input_rows') and p.kind is not p.VAR_KEYWORD]
    names += ['bias', 'kernel_size', 'stride']          # dense cells: reached through **kwargs
    for name in names:
        assert f'\n        {name}:' in args, f'{cls.__name__}: argument {name} not in Args'
    examples = doctest.DocTestFinder().find(cls, cls.__name__, globs={})[0].examples
    assert any(cls.__name__ + '(' in example.source for example in examples)
    assert any('cell(' in example.source for example in examples), 'example calls the cell'
    for line in doc.splitlines():
        assert len(line) <= 99, line


@pytest.mark.parametrize('cls', [RecurrentCell, *PUBLIC_CELLS], ids=lambda c: c.__name__)
def test_docstrings_do_not_claim_torch_initialisation(cls):
    """Our init is Xavier/orthogonal/zero biases; torch's is U(-1/sqrt(H), 1/sqrt(H))."""
    assert "reproduces torch's initial distribution" not in cls.__doc__


def test_lstm_initialisation_is_what_its_docstring_says():
    torch.manual_seed(22)
    cell = LSTMCell(5, 6, forget_bias=0.0)
    assert torch.count_nonzero(cell.bias_ih) == 0 and torch.count_nonzero(cell.bias_hh) == 0
    # not torch's U(-1/sqrt(H), 1/sqrt(H)): the rows of an orthogonal block have unit norm (so
    # some entry exceeds 1/sqrt(H)); torch's rows would have norm about sqrt(H / (3H)) = 0.58
    bound = 6 ** -0.5
    for block in cell.weight_hh.chunk(4):
        torch.testing.assert_close(block.norm(dim=1), torch.ones(6), atol=1e-5, rtol=0)
    assert cell.weight_hh.abs().max() > bound
    limit = (6 / (5 + 6)) ** 0.5                      # Xavier-uniform per (H, I) gate block
    assert cell.weight_ih.abs().max() <= limit
    peephole = LSTMCell(5, 6, peephole=True, forget_bias=2.0)
    assert torch.all(peephole.bias_ih[6:12] == 2.0) and torch.count_nonzero(peephole.bias_hh) == 0
    assert torch.count_nonzero(peephole.weight_peephole) == 0
    assert LSTMCell(5, 6, bias=False, forget_bias=1.0).bias_ih is None


def test_conv_intersection_cell_with_stride_projects_its_carry():
    """With stride > 1, ``x`` is not on ``h``'s grid even when the widths match, so the carry is
    the learned projection ``P`` (as the docstring says), not ``x`` itself."""
    cell = IntersectionCell(4, 4, kernel_size=3, stride=2)
    assert cell.projects_input
    y, (h,) = cell(torch.randn(2, 4, 7, 6))
    assert tuple(y.shape) == tuple(h.shape) == (2, 4, 4, 3)
    assert not IntersectionCell(4, 4, kernel_size=3).projects_input


# ------------------------------------------------------------------------ torch's own kernels
KERNEL_CELLS = [('lstm', LSTMCell, {}), ('gru', GRUCell, {}),
                ('rnn_tanh', ElmanCell, {}), ('rnn_relu', IRNNCell, {})]


@pytest.mark.parametrize('kernel, cell_type, kwargs', KERNEL_CELLS)
@pytest.mark.parametrize('layers, bidirectional, batch_first, ragged', [
    (1, False, False, False), (2, True, False, False), (2, False, True, True),
    (1, True, True, True)])
def test_torch_kernel_equals_the_cell_loop(kernel, cell_type, kwargs, layers, bidirectional,
                                           batch_first, ragged):
    """Outputs, final state and every gradient of the kernel path equal the library's own loop
    (the reference) within 1e-5: same parameters, same layouts, padding and all."""
    torch.manual_seed(7)
    runner = SequenceRunner(cell_type, 5, 6, layers, bidirectional=bidirectional,
                            batch_first=batch_first, **kwargs)
    assert runner.torch_kernel == kernel
    steps, batch = 9, 4
    shape = (batch, steps, 5) if batch_first else (steps, batch, 5)
    x = torch.randn(shape)
    lengths = torch.tensor([9, 3, 7, 1]) if ragged else None
    state = runner.init_state(batch)
    state = (tuple(torch.randn_like(s) for s in state) if isinstance(state, tuple)
             else torch.randn_like(state))
    results = []
    for path in (kernel, None):
        runner.torch_kernel = path
        runner.zero_grad()
        inputs = x.clone().requires_grad_()
        y, final = runner(inputs, state, lengths=lengths)
        loss = (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum() + sum(
            s.square().sum() for s in _flat(final))
        loss.backward()
        results.append((y, _flat(final), inputs.grad,
                        [p.grad.clone() for p in runner.parameters()]))
    (y_k, s_k, gx_k, gp_k), (y_l, s_l, gx_l, gp_l) = results
    # 1e-5, relative where values are large (IRNN's unbounded ReLU grows gradients of ~100)
    close = dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y_k, y_l, **close)
    for a, b in zip(s_k, s_l):
        torch.testing.assert_close(a, b, **close)
    torch.testing.assert_close(gx_k, gx_l, **close)
    for a, b in zip(gp_k, gp_l):
        torch.testing.assert_close(a, b, **close)


def test_the_kernel_gets_the_cells_own_parameters(monkeypatch):
    """No copy per call: the tensors torch's kernel receives are the cells' parameters."""
    runner = SequenceRunner(LSTMCell, 3, 4, 2)
    seen = []
    real = torch.lstm

    def spy(*args):
        seen.append(args[2])
        return real(*args)

    monkeypatch.setattr(torch, 'lstm', spy)
    runner(torch.randn(5, 2, 3))
    expected = [p for cell in runner.cells
                for p in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]
    assert len(seen) == 1 and all(a is b for a, b in zip(seen[0], expected))


@pytest.mark.parametrize('cell_type, kwargs', [
    (LSTMCell, {'peephole': True}), (UGRNNCell, {}), (IntersectionCell, {}),
    (ConvLSTMCell, {'kernel_size': 3})])
def test_cells_torch_has_no_kernel_for_run_the_library_loop(cell_type, kwargs):
    assert SequenceRunner(cell_type, 3, 4, **kwargs).torch_kernel is None


def test_older_lstm_weights_are_converted_to_torchs_gate_order():
    """A state_dict saved with the rows (i, f, o, g) gives the same outputs once converted."""
    torch.manual_seed(3)
    runner = SequenceRunner(LSTMCell, 3, 4, 2)
    legacy = {}
    for name, tensor in runner.state_dict().items():
        blocks = tensor.chunk(4, 0)                  # i, f, g, o -> the older i, f, o, g
        legacy[name] = torch.cat([blocks[0], blocks[1], blocks[3], blocks[2]])
    restored = SequenceRunner(LSTMCell, 3, 4, 2)
    restored.load_state_dict(lstm_rows_from_ifog(legacy, restored))
    x = torch.randn(6, 2, 3)
    torch.testing.assert_close(restored(x)[0], runner(x)[0])
