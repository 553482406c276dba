r"""A fused whole-sequence kernel for the dense LSTM (no peepholes): ``LSTMCell``'s equations with
their backward pass written out, so training does not pay autograd's per-step bookkeeping.

Why: unrolled through autograd, every step records ~15 graph nodes and a per-step weight-gradient
matmul. Here the forward writes into preallocated buffers, and the backward does per step only
what the recurrence forces (five elementwise ops and ``dG_t U``); the per-gate factors are computed
for all steps at once, and the recurrent weight gradient is one matmul over all steps:

.. math::
    \delta c_t &= \delta c_{t+1} f_{t+1} + \delta h_t\, o_t (1 - \tanh^2 c_t) \\
    \delta a_i &= \delta c_t\, g_t\, i_t (1 - i_t), \quad
    \delta a_f = \delta c_t\, c_{t-1} f_t (1 - f_t), \quad
    \delta a_g = \delta c_t\, i_t (1 - g_t^2), \quad
    \delta a_o = \delta h_t \tanh(c_t)\, o_t (1 - o_t) \\
    \delta h_{t-1} &= \delta h^{out}_{t-1} + \delta a_t U, \qquad
    \delta U = \textstyle\sum_t \delta a_t^\top h_{t-1}

with ``a`` the gates' pre-activations (rows ``i, f, o, g`` as in ``LSTMCell``). The generic
per-step path stays the reference: tests hold both to the same outputs and gradients.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


class FusedLSTMSequence(torch.autograd.Function):
    """``(gx (T, B, 4H), h0 (B, H), c0 (B, H), weight_hh (4H, H)) -> (y (T, B, H), h_T, c_T)``;
    ``gx`` already holds both biases (``LSTMCell.project_input``)."""

    @staticmethod
    def forward(ctx, gx: Tensor, h0: Tensor, c0: Tensor,
                weight_hh: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        steps, batch, gate_rows = gx.shape
        n = gate_rows // 4
        hs = gx.new_empty(steps + 1, batch, n)              # h_0 .. h_T
        cs = gx.new_empty(steps + 1, batch, n)              # c_0 .. c_T
        acts = torch.empty_like(gx)                         # activated gates i, f, o, g
        tanh_cs = gx.new_empty(steps, batch, n)
        hs[0], cs[0] = h0, c0
        recurrent = weight_hh.t()
        # per-step views made once: indexing inside the loop costs more than the small ops
        # themselves
        gates = zip(gx.unbind(0), acts.unbind(0), *(part.unbind(0) for part in acts.split(n, 2)))
        for t, (gx_t, act, i, f, o, g) in enumerate(gates):
            torch.addmm(gx_t, hs[t], recurrent, out=act)
            act[:, :3 * n].sigmoid_()
            g.tanh_()
            torch.mul(f, cs[t], out=cs[t + 1]).addcmul_(i, g)
            torch.tanh(cs[t + 1], out=tanh_cs[t])
            torch.mul(o, tanh_cs[t], out=hs[t + 1])
        ctx.save_for_backward(hs, cs, acts, tanh_cs, weight_hh)
        return hs[1:], hs[steps].clone(), cs[steps].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor, dh_last: Tensor, dc_last: Tensor):
        hs, cs, acts, tanh_cs, weight_hh = ctx.saved_tensors
        steps, batch, n = tanh_cs.shape
        i, f, o, g = acts.split(n, 2)
        # factors d(pre-activation)/d(dc or dh) for every step at once: (T, B, 4, H),
        # rows i, f, o, g
        factors = acts.new_empty(steps, batch, 4, n)
        sigmoids = acts[..., :3 * n]
        sigmoid_slopes = torch.addcmul(sigmoids, sigmoids, sigmoids, value=-1)
        slope_i, slope_f, slope_o = sigmoid_slopes.split(n, 2)   # s (1 - s) per sigmoid gate
        torch.mul(slope_i, g, out=factors[:, :, 0])
        torch.mul(slope_f, cs[:-1], out=factors[:, :, 1])
        torch.mul(slope_o, tanh_cs, out=factors[:, :, 2])
        torch.addcmul(i, i, g * g, value=-1, out=factors[:, :, 3])            # i (1 - g^2)
        dc_from_dh = torch.addcmul(o, o, tanh_cs * tanh_cs, value=-1)          # o (1 - tanh^2 c)
        d_acts = torch.empty_like(acts)                                         # (T, B, 4H)
        dh = torch.zeros_like(hs[0]) if dh_last is None else dh_last.clone()
        dc = torch.zeros_like(cs[0]) if dc_last is None else dc_last.clone()
        if dy is not None:
            dh += dy[-1]
        dy_before = (None,) + (dy.unbind(0)[:-1] if dy is not None else (None,) * (steps - 1))
        per_step = zip(dy_before, dc_from_dh.unbind(0), factors.unbind(0),
                       d_acts.view(steps, batch, 4, n).unbind(0), d_acts.unbind(0), f.unbind(0))
        for dy_prev, dc_from_dh_t, factors_t, d_gate, d_act, f_t in reversed(list(per_step)):
            dc.addcmul_(dh, dc_from_dh_t)
            torch.mul(factors_t, dc.unsqueeze(1), out=d_gate)      # rows i, f, g use dc ...
            torch.mul(factors_t[:, 2], dh, out=d_gate[:, 2])       # ... row o uses dh
            dc = dc * f_t
            # dh for the step before: its own output gradient plus what flows back through U
            dh = (torch.mm(d_act, weight_hh) if dy_prev is None
                  else torch.addmm(dy_prev, d_act, weight_hh))
        d_weight_hh = d_acts.flatten(0, 1).t() @ hs[:-1].flatten(0, 1)
        return d_acts, dh, dc, d_weight_hh
