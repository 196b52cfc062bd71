"""The one door to torch's private names: all present in this torch, each doing what
dropkit reads it for, and no other module reaching past it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

from dropkit import _torch_compat as compat

SRC = Path(__file__).parent.parent / "src" / "dropkit"
# torch._X, torch.<module>._X, `from torch... import _X`, and "torch._X" looked up by name
PRIVATE = re.compile(r"\btorch(\.[a-z_]+)*\._[A-Za-z]|from torch[\w.]* import _[A-Za-z]"
                     r"|[\"']torch\._")


def test_every_private_name_is_in_this_torch() -> None:
    assert compat.MISSING == {}, (
        f"torch {torch.__version__} lacks private names dropkit reads: {compat.MISSING}")


def test_no_other_module_reaches_a_private_torch_name() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "_torch_compat.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if PRIVATE.search(code) and not code.strip().startswith(('"', "'")):
                offenders.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert offenders == []


def test_functorch_state_is_read() -> None:
    assert not compat.functorch_transforms_active() and compat.functorch_interpreter_idle()
    inside = torch.func.vmap(lambda x: torch.tensor(
        [compat.functorch_transforms_active(), compat.functorch_interpreter_idle()]) + x * 0)(
        torch.zeros(2))
    assert inside[0].tolist() == [1.0, 0.0]


def test_the_backward_pass_and_saved_tensor_hooks_are_seen() -> None:
    assert compat.graph_task_id() == -1 and not compat.saved_tensor_hooks_active()
    ids = []
    x = torch.ones(2, requires_grad=True)
    y = x * 2
    y.register_hook(lambda g: ids.append(compat.graph_task_id()))
    y.sum().backward()
    assert ids and ids[0] != -1
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
        assert compat.saved_tensor_hooks_active()


def test_checkpoint_regions_are_found_from_their_frames() -> None:
    from torch.utils.checkpoint import checkpoint

    seen = []

    def region(x: torch.Tensor) -> torch.Tensor:
        frame = sys._getframe(1)
        while frame is not None:
            found = compat.checkpoint_region(frame)
            if found is not None:
                seen.append(found[1])  # None in the forward, the pass's id in the recompute
                break
            frame = frame.f_back
        return x.sin()  # saves x: the backward needs the recompute

    for reentrant in (True, False):
        seen.clear()
        x = torch.ones(3, requires_grad=True)
        checkpoint(region, x * 1, use_reentrant=reentrant).sum().backward()
        assert len(seen) == 2 and seen[0] is None and seen[1] is not None, reentrant
    assert compat.checkpoint_region(sys._getframe()) is None


def test_the_base_classes_are_torch_s() -> None:
    assert isinstance(torch.nn.BatchNorm1d(3), compat.BatchNormBase)
    assert isinstance(torch.nn.LayerNorm(3), torch.nn.Module)
    assert isinstance(torch.nn.InstanceNorm1d(3), compat.NormBase)
    assert isinstance(torch.nn.Dropout2d(0.5), compat.DropoutNd)


def test_graph_ops_and_their_arguments_are_read() -> None:
    op = torch.ops.aten.scaled_dot_product_attention.default
    assert isinstance(op, compat.OpOverload) and not isinstance(torch.sin, compat.OpOverload)
    assert compat.argument_names(op)[:5] == ["query", "key", "value", "attn_mask", "dropout_p"]


def test_a_functional_body_runs_under_the_mode() -> None:
    seen = []

    class Watch(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            seen.append(getattr(func, "__name__", ""))
            if func is torch.nn.functional.multi_head_attention_forward:
                return compat.body_under_mode(self, func, args, dict(kwargs or {}))
            return func(*args, **(kwargs or {}))

    mha = torch.nn.MultiheadAttention(4, 2, dropout=0.5).train()
    x = torch.randn(3, 1, 4)
    with Watch():
        mha(x, x, x)
    assert "dropout" in seen  # the nested call reached the mode
    assert torch.nn.functional.has_torch_function is torch.overrides.has_torch_function


def test_a_missing_name_is_an_error_naming_the_torch_version(monkeypatch) -> None:
    monkeypatch.setattr(compat, "_GRAPH_TASK_ID", None)
    monkeypatch.setitem(compat.MISSING, "torch._C._current_graph_task_id", "AttributeError")
    with pytest.raises(RuntimeError, match=rf"torch {re.escape(torch.__version__)} does not "
                                           r"have \(AttributeError\)"):
        compat.graph_task_id()
