"""The training jobs' Adam (patchlesion.engine.optim): PyTorch's arithmetic, bit for bit, without the
1.2 s import of torch._dynamo (docs/performance.md §10)."""

import copy
import subprocess
import sys
import textwrap

import pytest
import torch

from patchlesion.engine import optim
from patchlesion.engine.optim import Adam


def _train(optimizer_class, steps=12, state=None):
    """A small network trained ``steps`` steps with the halving schedule of the training loop; its
    parameters and the optimizer's state_dict. ``state``: an optimizer state_dict to start from."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    optimizer = optimizer_class(model.parameters(), lr=1e-2)
    if state is not None:  # a copy: load_state_dict keeps the given moment tensors, which the steps then change
        state = copy.deepcopy(state)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[3, 6], gamma=0.5)
    data = torch.Generator().manual_seed(1)
    for _ in range(steps):
        loss = model(torch.randn(4, 5, generator=data)).pow(2).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return [p.detach().clone() for p in model.parameters()], optimizer.state_dict(), model.state_dict()


def _assert_same_state(ours, theirs):
    assert ours["param_groups"] == theirs["param_groups"]
    assert ours["state"].keys() == theirs["state"].keys()
    for key, values in ours["state"].items():
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(values[name], theirs["state"][key][name]), (key, name)


@pytest.mark.parametrize("direct", [True, False], ids=["dynamo-not-loaded", "dynamo-loaded"])
def test_adam_is_bit_identical_to_pytorchs_adam(monkeypatch, direct):
    """Both of its paths: PyTorch's functions beneath the wrappers, and the wrapped methods once
    torch._dynamo is loaded (forced here, whatever other tests in this process imported)."""
    reference, reference_state, _ = _train(torch.optim.Adam)
    monkeypatch.setattr(optim, "_direct", lambda inner: direct)
    parameters, state, _ = _train(Adam)
    assert all(torch.equal(ours, theirs) for ours, theirs in zip(parameters, reference))
    _assert_same_state(state, reference_state)
    assert not torch.equal(parameters[0], _train(torch.optim.Adam, steps=11)[0][0])  # a step changes the weights


def test_adam_resumes_from_a_pytorch_adam_checkpoint_and_back(monkeypatch):
    """Checkpoints are interchangeable: 6 steps of one, resumed for 6 steps by the other, equal
    PyTorch's Adam resumed the same way (on the path without dynamo, which the reference loads)."""
    monkeypatch.setattr(optim, "_direct", lambda inner: inner is not None)
    for first, second in ((torch.optim.Adam, Adam), (Adam, torch.optim.Adam)):
        _, state, model = _train(first, steps=6)
        # the second half starts its schedule again at step 0, so compare against the same split with PyTorch's
        expected, expected_state, _ = _train(torch.optim.Adam, steps=6, state={"model": model, "optimizer": state})
        parameters, resumed_state, _ = _train(second, steps=6, state={"model": model, "optimizer": state})
        assert all(torch.equal(ours, theirs) for ours, theirs in zip(parameters, expected))
        _assert_same_state(resumed_state, expected_state)
        assert resumed_state["state"][0]["step"] == 12


def test_adam_step_keeps_the_grad_mode_and_runs_a_closure(monkeypatch):
    monkeypatch.setattr(optim, "_direct", lambda inner: inner is not None)  # the path without dynamo
    model = torch.nn.Linear(2, 1)
    optimizer = Adam(model.parameters(), lr=0.1)
    inputs = torch.ones(3, 2)

    def closure():
        optimizer.zero_grad()
        loss = model(inputs).sum()
        loss.backward()  # needs grad mode inside the step
        return loss

    assert torch.is_grad_enabled()
    loss = optimizer.step(closure)
    assert torch.is_grad_enabled() and loss.requires_grad
    with torch.no_grad():
        optimizer.step(closure=None)
        assert not torch.is_grad_enabled()


def test_a_training_process_never_imports_torch_dynamo():
    """The training loop's imports, its optimizer's whole life (construct, steps, zero_grad,
    state_dict, load_state_dict) and the schedule, in a fresh interpreter: no torch._dynamo."""
    script = textwrap.dedent(
        """
        import sys
        import torch
        import patchlesion.engine.training
        from patchlesion.engine.optim import Adam
        model = torch.nn.Linear(3, 2)
        optimizer = Adam(model.parameters(), lr=1e-3)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[1], gamma=0.5)
        for _ in range(2):
            optimizer.zero_grad()
            model(torch.ones(1, 3)).sum().backward()
            optimizer.step()
            scheduler.step()
        optimizer.load_state_dict(optimizer.state_dict())
        print(sorted(name for name in sys.modules if name.startswith("torch._dynamo")))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout
