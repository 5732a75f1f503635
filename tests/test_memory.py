"""The allocator setting of model-running jobs (patchlesion.engine.memory): fewer page faults, the
same arithmetic. Each case runs in a fresh interpreter, since the setting lasts for the process."""

import os
import platform
import subprocess
import sys
import textwrap

import pytest
import torch

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")

#: Ten training steps of a demo shape (Ordered-Crop, NC = 9, initial attention, 16 images of 48 px
#: crops); prints what keep_freed_memory returned and the page faults of the steps after two warm-up
#: steps, and saves the trained weights.
TRAIN = textwrap.dedent(
    """
    import resource, sys
    import torch
    from patchlesion.engine.memory import keep_freed_memory
    from patchlesion.engine.optim import Adam
    from patchlesion.method.model import PatchLesionModel
    kept = keep_freed_memory() if sys.argv[1] == "kept" else None
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = PatchLesionModel("tiny", 7, "mean", 9, attention="initial")
    optimizer = Adam(model.parameters(), lr=1e-3)
    initial = model.state_dict()["backbone.0.weight"].clone()

    def step(k):
        crops = torch.rand(16, 9, 3, 48, 48, generator=torch.Generator().manual_seed(k))
        loss = torch.nn.functional.cross_entropy(model(crops), torch.arange(16) % 7)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step(0), step(1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for k in range(2, 12):
        step(k)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert not torch.equal(initial, model.state_dict()["backbone.0.weight"])  # it trained
    torch.save(model.state_dict(), sys.argv[2])
    print(kept, faults)
    """
)


def _train(mode: str, weights, env: dict | None = None) -> tuple[str, int]:
    result = subprocess.run(
        [sys.executable, "-c", TRAIN, mode, str(weights)], capture_output=True, text=True, env=env, timeout=300, check=True
    )
    kept, faults = result.stdout.split()
    return kept, int(faults)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("memory")
    return {mode: (_train(mode, folder / f"{mode}.pt"), folder / f"{mode}.pt") for mode in ("kept", "default")}


def test_kept_memory_saves_the_page_faults_of_each_step(runs):
    """Measured here: about 66,000 faults in ten steps by default, about 1,000 kept. Either threshold
    alone makes it worse (79,000 with the mmap threshold only, 354,000 with the trim threshold only)."""
    (kept, kept_faults), _ = runs["kept"]
    (default, default_faults), _ = runs["default"]
    assert (kept, default) == ("True", "None")
    assert default_faults > 10_000  # glibc returns the freed blocks, and each step faults them in again
    assert kept_faults < default_faults / 10


def test_training_with_kept_memory_is_bit_identical(runs):
    kept, default = (torch.load(runs[mode][1], weights_only=True) for mode in ("kept", "default"))
    assert kept.keys() == default.keys() and all(torch.equal(kept[key], default[key]) for key in kept)


def test_the_user_s_own_malloc_tunables_are_left_alone(tmp_path):
    env = {**os.environ, "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1048576"}
    kept, _ = _train("kept", tmp_path / "w.pt", env=env)
    assert kept == "False"
