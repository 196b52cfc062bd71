"""Variational recurrent dropout (Gal & Ghahramani 2016): LSTM and GRU whose inputs and
recurrent state are dropped with masks drawn once and reused at every time step.

Paper: Gal & Ghahramani 2016, "A Theoretically Grounded Application of Dropout in
Recurrent Neural Networks". Learned from: Keras' ``LSTM(dropout=, recurrent_dropout=)``,
AWD-LSTM's ``WeightDrop`` (Merity et al. 2018), torch's ``nn.LSTM``/``nn.GRU``.

Two ways to share a mask:

- ``mask_per="sequence"``, the paper's method: every sequence of the batch has its own
  masks, reused at all of its time steps. The recurrent mask multiplies ``h_{t-1}``
  inside the recurrence, so the time steps run in a loop (torch's fused LSTM cell for
  tied masks; otherwise the input projections of all steps in one product outside it).
- ``mask_per="batch"``: one mask for the whole mini-batch. Then
  ``(h * m) @ W_hh.T == h @ (W_hh * m).T``: dropping entries of ``h`` is dropping the
  matching *columns* of ``W_hh`` (and of ``W_ih`` for the input), so the weights are
  dropped once per batch and the sequence runs through torch's fused ``nn.LSTM`` /
  ``nn.GRU`` kernel. The same masks, only shared by more sequences.

``mask_per="step"`` draws fresh masks at every time step: the naive recurrent dropout
that the paper argues against (Zaremba et al. 2014 drop only the non-recurrent
connections for that reason), here for comparison.

``tied=True`` uses one mask for all gates; ``tied=False`` one mask per gate (the
paper's "untied" variant: 4 for the LSTM, 3 for the GRU). Inverted scaling: kept
entries are multiplied by ``1 / (1 - p)``, so eval needs no rescaling and equals
torch's module with the same weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence

from dropkit._checks import check_probability
from dropkit.errors import UsageError, UsageTypeError
from dropkit.mask import bernoulli_dropout, bernoulli_mask

__all__ = ["VariationalLSTM", "VariationalGRU", "MASK_PER"]

MASK_PER = ("sequence", "batch", "step")


class _Rate:
    """A drop probability in [0, 1), checked on every assignment, kept in ``__dict__``."""

    def __init__(self, zero_in_torch_call: bool = False) -> None:
        self.zero_in_torch_call = zero_in_torch_call

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> float:
        if obj is None:
            return self  # type: ignore[return-value]
        if self.zero_in_torch_call and obj.__dict__.get("_torch_call"):
            return 0.0
        return obj.__dict__[f"_{self.name}"]

    def __set__(self, obj: Any, value: float) -> None:
        check_probability(type(obj).__name__, value, name=self.name, allow_one=False)
        obj.__dict__[f"_{self.name}"] = value


class _Variational:
    """What the LSTM and the GRU share: rates, masks, and the two ways to run."""

    # the registry of dropout sites (dropkit.tools.sites): three rates, each a site
    rate_attributes = ("dropout", "recurrent_dropout", "output_dropout")
    _gates: int
    _mode: str  # "LSTM" or "GRU"

    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    bidirectional: bool
    training: bool

    def _build(self, rnn_init: Any, sizes: tuple[Any, ...], bidirectional: bool, device: Any,
               dtype: torch.dtype | None, rates: tuple[float, float, float], tied: bool,
               mask_per: str, generator: torch.Generator | None, proj_size: int) -> None:
        """Check every argument, build torch's module (without its own dropout between
        layers), then set the rates."""
        self._check(type(self).__name__, *rates, tied, mask_per, proj_size)
        self.__dict__["_torch_call"] = False
        self.__dict__["_dropout"] = 0.0
        rnn_init(self, *sizes, 0.0, bidirectional, device=device, dtype=dtype)
        self.dropout, self.recurrent_dropout, self.output_dropout = rates
        self.tied, self.mask_per, self.generator = tied, mask_per, generator

    def forward(self, input: Any, hx: Any = None) -> Any:
        if self.__dict__.get("_torch_call") or not self._active():
            return super().forward(input, hx)  # type: ignore[misc]
        if self.mask_per == "batch":
            output, state = self._by_weights(input, hx)
        else:
            output, state = self._by_steps(input, hx)
        return self._drop_output(output), state

    @staticmethod
    def _check(name: str, dropout: float, recurrent_dropout: float, output_dropout: float,
               tied: object, mask_per: object, proj_size: int) -> None:
        for label, value in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout),
                             ("output_dropout", output_dropout)):
            check_probability(name, value, name=label, allow_one=False)
        if not isinstance(tied, bool):
            raise UsageTypeError(f"{name}: expected `tied` to be a bool, got {type(tied).__name__}")
        if mask_per not in MASK_PER:
            raise UsageError(f"{name}: expected `mask_per` to be one of {MASK_PER}, got "
                             f"mask_per={mask_per!r}")
        if proj_size:
            raise UsageError(f"{name}: `proj_size` is not supported (got proj_size="
                             f"{proj_size}); use torch.nn.LSTM with DropConnect for it")

    # Rates, validated on every assignment as dropkit's other modules do. `dropout` is
    # the input dropout of every layer, never torch's dropout between layers, which the
    # fused kernel must not apply on top: it reads 0 while torch's forward runs.
    dropout = _Rate(zero_in_torch_call=True)
    recurrent_dropout = _Rate()
    output_dropout = _Rate()

    @property
    def shares_noise_across_batch(self) -> bool:
        """With ``mask_per="batch"`` one draw serves the whole batch (Monte Carlo samples
        cannot come from replicating the input along the batch)."""
        return self.mask_per == "batch"

    def extra_repr(self) -> str:
        parts = [f"{self.input_size}, {self.hidden_size}"]
        defaults = {"num_layers": 1, "bias": True, "batch_first": False, "bidirectional": False,
                    "dropout": 0.0, "recurrent_dropout": 0.0, "output_dropout": 0.0,
                    "tied": True, "mask_per": "sequence"}
        for name, default in defaults.items():
            value = getattr(self, name)
            if value != default:
                parts.append(f"{name}={value!r}")
        return ", ".join(parts)

    def _active(self) -> bool:
        return self.training and (self.dropout > 0 or self.recurrent_dropout > 0
                                  or self.output_dropout > 0)

    def _suffixes(self) -> list[str]:
        return ["", "_reverse"] if self.bidirectional else [""]

    def _weight_masked(self, weight: Tensor, p: float) -> Tensor:
        """``weight`` with columns dropped (one mask for all gates, or one per gate)."""
        if p == 0:
            return weight
        g = self._gates
        view = weight.view(g, weight.shape[0] // g, weight.shape[1])  # (gates, H, in)
        dims = (0, 1) if self.tied else (1,)
        # a weight has no batch: one draw serves it (batch_dim None)
        return bernoulli_dropout(view, p, True, False, dims, self.generator,
                                 batch_dim=None).view_as(weight)

    def _by_weights(self, input: Any, hx: Any) -> Any:
        module: Any = self
        weights = {}
        for layer in range(self.num_layers):
            for sfx in self._suffixes():
                w_ih = f"weight_ih_l{layer}{sfx}"
                w_hh = f"weight_hh_l{layer}{sfx}"
                weights[w_ih] = self._weight_masked(module.get_parameter(w_ih), self.dropout)
                weights[w_hh] = self._weight_masked(module.get_parameter(w_hh),
                                                    self.recurrent_dropout)
        self.__dict__["_torch_call"] = True
        try:
            return functional_call(module, weights, (input, hx))
        finally:
            self.__dict__["_torch_call"] = False

    def _mask(self, like: Tensor, p: float) -> Tensor | None:
        """A per-sequence mask ``(N, F)`` (tied) or ``(gates, N, F)``, scaled; None at 0."""
        if p == 0:
            return None
        shape = like.shape if self.tied else (self._gates, *like.shape)
        base = like if self.tied else like.expand(shape)
        # the batch: second to last ((N, F), (T, N, F) per step, a gate dim in front)
        return bernoulli_mask(base, 1.0 - p, generator=self.generator,
                              batch_dim=base.dim() - 2).div_(1.0 - p)

    def _cell(self, gates_x: Tensor, h: Tensor, c: Tensor | None, w_hh: Tensor,
              b_hh: Tensor | None, m_h: Tensor | None) -> tuple[Tensor, Tensor | None]:
        g, hidden = self._gates, h.shape[-1]
        lstm = self._mode == "LSTM"
        # the LSTM's b_hh is already in gates_x (added outside the loop); the GRU's
        # enters its new gate inside r * (...), so it stays with the recurrent product
        base = gates_x if lstm else b_hh
        if m_h is None or self.tied:
            hm = h if m_h is None else h * m_h
            rec = hm @ w_hh.T if base is None else torch.addmm(base, hm, w_hh.T)
        else:  # one mask per gate: (gates, N, H) against (gates, H_out, H)
            rec = torch.einsum("gnh,gkh->ngk", h * m_h, w_hh.view(g, hidden, hidden))
            rec = rec.reshape(h.shape[0], g * hidden)
            rec = rec if base is None else rec + base
        if lstm:  # torch's gate order: input, forget, candidate, output
            act = torch.sigmoid(rec)
            i, f, o = act[:, :hidden], act[:, hidden:2 * hidden], act[:, 3 * hidden:]
            cand = torch.tanh(rec[:, 2 * hidden:3 * hidden])
            assert c is not None
            c = torch.addcmul(f * c, i, cand)
            return o * torch.tanh(c), c
        xr, xz, xn = gates_x.chunk(3, 1)
        hr, hz, hn = rec.chunk(3, 1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h, None

    def _direction(self, x: Tensor, h: Tensor, c: Tensor | None, layer: int, sfx: str
                   ) -> tuple[Tensor, Tensor, Tensor | None]:
        """One layer in one direction over ``x`` (T, N, in): outputs, last h and c."""
        module: Any = self
        w_ih = module.get_parameter(f"weight_ih_l{layer}{sfx}")
        w_hh = module.get_parameter(f"weight_hh_l{layer}{sfx}")
        b_ih = module.get_parameter(f"bias_ih_l{layer}{sfx}") if self.bias else None
        b_hh = module.get_parameter(f"bias_hh_l{layer}{sfx}") if self.bias else None
        fresh = self.mask_per == "step"  # a new mask at every step: the naive method
        m_x = self._mask(x if fresh else x[0], self.dropout)
        if fresh and m_x is not None and not self.tied:
            m_x = m_x.transpose(0, 1)  # (T, gates, N, F), as x.unsqueeze(1) broadcasts
        m_h = self._mask(h, self.recurrent_dropout)
        g, hidden = self._gates, self.hidden_size
        steps = range(x.shape[0] - 1, -1, -1) if sfx else range(x.shape[0])
        outs: list[Tensor] = [x.new_empty(0)] * x.shape[0]
        if self._mode == "LSTM" and self.tied:
            # torch's fused cell: h enters only the gates (c carries), so a masked h is
            # the paper's recurrent dropout; faster than the step below in separate ops,
            # even with its input products hoisted (benchmarks/bench_variational_rnn.py)
            # unbind, not xm[t]: the backward of each index would add a zero tensor of
            # the whole sequence's size, T times over
            xs = (x if m_x is None else x * m_x).unbind(0)
            assert c is not None
            for t in steps:
                if fresh and t != steps[0]:
                    m_h = self._mask(h, self.recurrent_dropout)
                h, c = torch.lstm_cell(xs[t], (h if m_h is None else h * m_h, c), w_ih, w_hh,
                                       b_ih, b_hh)
                outs[t] = h
            return torch.stack(outs), h, c
        if m_x is None or self.tied:  # every step's input projection in one product
            gates_x = (x if m_x is None else x * m_x) @ w_ih.T
        else:
            gates_x = torch.einsum("tgni,gki->tngk", x.unsqueeze(1) * m_x,
                                   w_ih.view(g, hidden, -1)).reshape(*x.shape[:2], g * hidden)
        if b_ih is not None:
            gates_x = gates_x + b_ih
        if self._mode == "LSTM" and b_hh is not None:
            gates_x = gates_x + b_hh  # once for all steps, not once per step
        gates = gates_x.unbind(0)  # as above: one backward for all steps
        for t in steps:
            if fresh and t != steps[0]:
                m_h = self._mask(h, self.recurrent_dropout)
            h, c = self._cell(gates[t], h, c, w_hh, b_hh, m_h)
            outs[t] = h
        return torch.stack(outs), h, c

    def _by_steps(self, input: Tensor, hx: Any) -> tuple[Tensor, Any]:
        if isinstance(input, PackedSequence):
            raise UsageError(
                f"{type(self).__name__}: mask_per='sequence' takes padded (T, N, F) tensors, "
                "not a PackedSequence; pad it (torch.nn.utils.rnn.pad_packed_sequence) or "
                "use mask_per='batch', which runs packed sequences through torch's kernel")
        unbatched = input.dim() == 2
        x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if self.batch_first
                                                  else input)
        dirs, n = len(self._suffixes()), x.shape[1]
        zeros = x.new_zeros(self.num_layers * dirs, n, self.hidden_size)
        lstm = self._mode == "LSTM"
        if hx is None:
            h0, c0 = zeros, (zeros if lstm else None)
        elif lstm:
            h0, c0 = (t.unsqueeze(1) if unbatched else t for t in hx)
        else:
            h0, c0 = (hx.unsqueeze(1) if unbatched else hx), None
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outs = []
            for d, sfx in enumerate(self._suffixes()):
                k = layer * dirs + d
                out, h, c = self._direction(x, h0[k], c0[k] if c0 is not None else None,
                                            layer, sfx)
                outs.append(out)
                h_n.append(h)
                c_n.append(c)
            x = torch.cat(outs, -1) if dirs > 1 else outs[0]
        output = x.squeeze(1) if unbatched else (x.transpose(0, 1) if self.batch_first else x)
        hn = torch.stack(h_n)
        hn = hn.squeeze(1) if unbatched else hn
        if not lstm:
            return output, hn
        cn = torch.stack([t for t in c_n if t is not None])
        return output, (hn, cn.squeeze(1) if unbatched else cn)

    def _drop_output(self, output: Any) -> Any:
        p = self.output_dropout
        if p == 0:
            return output
        if isinstance(output, PackedSequence):  # the packed rows mix time and batch
            data = bernoulli_dropout(output.data, p, True, False, (0,), self.generator,
                                     batch_dim=None)  # one mask for every row already
            return output._replace(data=data)
        time = 1 if self.batch_first and output.dim() == 3 else 0
        if self.mask_per == "step":
            dims: tuple[int, ...] = ()
        else:
            dims = (0, 1) if self.mask_per == "batch" or output.dim() == 2 else (time,)
        batch = None if output.dim() == 2 else 1 - time  # unbatched (T, F): none
        return bernoulli_dropout(output, p, True, False, dims, self.generator, batch_dim=batch)


class VariationalLSTM(_Variational, nn.LSTM):
    """An LSTM with variational dropout on its inputs, recurrent state and output.

    A drop-in for :class:`torch.nn.LSTM`: the same constructor (``proj_size`` aside),
    call, outputs ``output, (h_n, c_n)``, parameters and ``state_dict`` keys, so weights
    load both ways; in eval, or with every rate 0, it computes exactly ``nn.LSTM``.

    Args:
        input_size, hidden_size, num_layers, bias: as :class:`torch.nn.LSTM`.
        batch_first, bidirectional, device, dtype: as :class:`torch.nn.LSTM`.
        dropout: drop probability of every layer's input (the paper's ``p_x`` for layer
            0, between layers after). Not torch's dropout between layers.
        recurrent_dropout: drop probability of ``h_{t-1}`` in every gate (``p_h``).
        output_dropout: drop probability of the last layer's output sequence, one mask
            per sequence (or batch) over all time steps.
        tied: one mask for all four gates (True) or one per gate (the paper's untied
            variant). Default: True.
        mask_per: ``"sequence"`` (the paper: a mask per sequence, a step loop),
            ``"batch"`` (a mask per mini-batch: dropped weights and torch's fused
            kernel; packed sequences), or ``"step"`` (fresh masks at every step, the
            naive method, for comparison). Default: ``"sequence"``.
        generator: keyword-only source of randomness.
    """

    _gates, _mode = 4, "LSTM"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device: Any = None,
                 dtype: torch.dtype | None = None, *, recurrent_dropout: float = 0.0,
                 output_dropout: float = 0.0, tied: bool = True, mask_per: str = "sequence",
                 generator: torch.Generator | None = None) -> None:
        self._build(nn.LSTM.__init__, (input_size, hidden_size, num_layers, bias, batch_first),
                    bidirectional, device, dtype, (dropout, recurrent_dropout, output_dropout),
                    tied, mask_per, generator, proj_size=proj_size)


class VariationalGRU(_Variational, nn.GRU):
    """A GRU with variational dropout on its inputs, recurrent state and output.

    A drop-in for :class:`torch.nn.GRU` (outputs ``output, h_n``); arguments as
    :class:`VariationalLSTM`, with three gates (reset, update, new) instead of four. The
    recurrent mask drops ``h_{t-1}`` where it enters the gates, never the ``z * h``
    carry.
    """

    _gates, _mode = 3, "GRU"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device: Any = None,
                 dtype: torch.dtype | None = None, *, recurrent_dropout: float = 0.0,
                 output_dropout: float = 0.0, tied: bool = True, mask_per: str = "sequence",
                 generator: torch.Generator | None = None) -> None:
        self._build(nn.GRU.__init__, (input_size, hidden_size, num_layers, bias, batch_first),
                    bidirectional, device, dtype, (dropout, recurrent_dropout, output_dropout),
                    tied, mask_per, generator, proj_size=0)
