"""The optimizer of every training job: PyTorch's Adam (Sec. II-G; docs/method.md §6), used without
importing ``torch._dynamo``.

``torch.optim.Optimizer`` wraps ``add_param_group``, ``zero_grad``, ``state_dict`` and
``load_state_dict`` in ``torch._disable_dynamo``, and ``Adam.step`` in
``_use_grad_for_differentiable``; each wrapper imports ``torch._dynamo`` on its first call. That
import takes about 1.2 s, a third of a demo training job's start-up (docs/performance.md §10), and in
eager mode the wrappers do nothing else: ``torch._dynamo.disable`` matters only while ``torch.compile``
traces, and ``torch._dynamo.graph_break()`` is a no-op outside tracing, so ``step`` reduces to the
grad mode it sets (gradients on only with ``differentiable=True``).

:class:`Adam` therefore calls PyTorch's own functions beneath those wrappers while ``torch._dynamo``
is not loaded, and PyTorch's wrapped methods once it is (``compile: true`` loads it, and so may a
user's code): the arithmetic is PyTorch's in both cases, so the parameters, the moments and the
``state_dict`` are bit-identical to ``torch.optim.Adam``'s (tests/test_optim.py). Should a PyTorch
release drop the ``__wrapped__`` attribute that :func:`inspect.unwrap` follows, the methods fall back
to the wrapped ones (correct, only slower to start); tests/test_optim.py then fails on the import.
"""

from __future__ import annotations

import inspect
import sys

import torch

__all__ = ["Adam"]


def _unwrapped(method):
    """``method`` beneath its decorators, or None where it has none (then the decorated one is used)."""
    inner = inspect.unwrap(method)
    return None if inner is method else inner


_ADD_PARAM_GROUP = _unwrapped(torch.optim.Optimizer.add_param_group)
_ZERO_GRAD = _unwrapped(torch.optim.Optimizer.zero_grad)
_STATE_DICT = _unwrapped(torch.optim.Optimizer.state_dict)
_LOAD_STATE_DICT = _unwrapped(torch.optim.Optimizer.load_state_dict)
_STEP = _unwrapped(torch.optim.Adam.step)


def _direct(inner) -> bool:
    """Whether to call ``inner`` rather than PyTorch's wrapped method: it exists and dynamo is not loaded."""
    return inner is not None and "torch._dynamo" not in sys.modules


class Adam(torch.optim.Adam):
    """``torch.optim.Adam`` (same arguments, state and arithmetic) that does not import ``torch._dynamo``."""

    def add_param_group(self, param_group: dict) -> None:
        if _direct(_ADD_PARAM_GROUP):
            return _ADD_PARAM_GROUP(self, param_group)
        return super().add_param_group(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        if _direct(_ZERO_GRAD):
            return _ZERO_GRAD(self, set_to_none)
        return super().zero_grad(set_to_none)

    def state_dict(self) -> dict:
        if _direct(_STATE_DICT):
            return _STATE_DICT(self)
        return super().state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        if _direct(_LOAD_STATE_DICT):
            return _LOAD_STATE_DICT(self, state_dict)
        return super().load_state_dict(state_dict)

    def step(self, closure=None):
        if _direct(_STEP):
            # What _use_grad_for_differentiable does around the step, less its dynamo graph breaks.
            with torch.set_grad_enabled(self.defaults["differentiable"]):
                return _STEP(self, closure)
        return super().step(closure)
