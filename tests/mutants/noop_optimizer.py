"""pytest plugin: every torch.optim optimizer step becomes a no-op (a mutant applied from outside).

A test suite that still passes with this plugin does not notice that the model never learns. Run
the fast training tests with it; tests/test_learning.py (at least) must fail::

    PYTHONPATH=src:tests/mutants pytest -p noop_optimizer -m "not slow" tests/test_training.py tests/test_learning.py

(``PYTHONPATH=src`` so that the checkout's own package is imported; ``tests/mutants`` so that
``-p noop_optimizer`` finds this module. It patches the pytest process only: training in a
subprocess, such as the CLI runs of tests/test_resume.py, is not affected.)

``step`` is replaced on ``torch.optim.Optimizer`` and on every optimizer class that defines its own
``step`` (Adam, SGD, ... override it): each class in ``torch.optim`` and every subclass of
``Optimizer`` defined anywhere at the time pytest configures. The originals are put back when
pytest unconfigures.
"""

from __future__ import annotations

import torch

_ORIGINAL_STEPS: dict[type, object] = {}


def _noop_step(self, closure=None):
    """Does nothing: the parameters, and the optimizer's state, stay as they are."""
    return None


def _optimizer_classes() -> set[type]:
    base = torch.optim.Optimizer
    classes = {c for c in vars(torch.optim).values() if isinstance(c, type) and issubclass(c, base)}
    pending = [base]
    while pending:  # every subclass, also those outside torch.optim's namespace
        cls = pending.pop()
        classes.add(cls)
        pending.extend(cls.__subclasses__())
    return classes


def patch() -> list[str]:
    """Make every optimizer's step a no-op; returns the names of the patched classes."""
    for cls in _optimizer_classes():
        if "step" in vars(cls) and cls not in _ORIGINAL_STEPS:
            _ORIGINAL_STEPS[cls] = vars(cls)["step"]
            cls.step = _noop_step
    return sorted(cls.__name__ for cls in _ORIGINAL_STEPS)


def unpatch() -> None:
    """Put the original steps back."""
    for cls, step in _ORIGINAL_STEPS.items():
        cls.step = step
    _ORIGINAL_STEPS.clear()


def pytest_configure(config):
    patch()


def pytest_report_header(config):
    return f"noop_optimizer mutant: step() is a no-op on {', '.join(sorted(c.__name__ for c in _ORIGINAL_STEPS))}"


def pytest_unconfigure(config):
    unpatch()
