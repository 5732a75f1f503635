"""A timm backbone's ImageNet weights: fetched into the cache with their SHA-256 recorded, checked on
every load, loaded by timm without the network (loopback HTTP server only, tests/httpfake.py)."""

from __future__ import annotations

import hashlib
import io
import socket

import pytest
import torch

from httpfake import Route
from patchlesion.cli import main
from patchlesion.data.acquire.weights import fetch_weights
from patchlesion.errors import PatchlesionError
from patchlesion.method.weights import backbone_of_target, has_weights, load_pretrained_state, weights_path, weights_target

timm = pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")

BACKBONE = "timm:test_resnet"
#: Where timm says test_resnet's weights are: the Hugging Face Hub repository of its default tag.
HUB_PATH = "/timm/test_resnet.r160_in1k/resolve/main"


@pytest.fixture
def published(server, monkeypatch):
    """test_resnet's weights (random, seeded) as safetensors at the fake Hub's address; HF_ENDPOINT points there."""
    monkeypatch.setenv("HF_ENDPOINT", server.base)
    torch.manual_seed(0)
    state = timm.create_model("test_resnet").state_dict()
    body = safetensors_torch.save(state)
    server.routes[f"{HUB_PATH}/model.safetensors"] = Route(body)
    return state, body


def _sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def test_fetched_weights_are_recorded_and_loaded_into_the_backbone_without_the_network(published, server, tmp_path, monkeypatch):
    from patchlesion.method.backbones import build_backbone

    state, body = published
    path = fetch_weights(BACKBONE, home=tmp_path)
    assert path == tmp_path / "timm" / "test_resnet.safetensors" and path.read_bytes() == body
    record = tmp_path / "timm" / "test_resnet.sha256"
    assert record.read_text() == f"{_sha256(body)}  test_resnet.safetensors\n"  # sha256sum's format
    assert weights_target(BACKBONE, tmp_path) == record and weights_path(BACKBONE, tmp_path) == path
    assert fetch_weights(BACKBONE, home=tmp_path) == path and len(server.requests) == 1  # cached: nothing fetched again

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(socket.socket, "connect", lambda *a: pytest.fail("the network was used while building"))
    backbone, n_features = build_backbone(BACKBONE, pretrained=True)
    loaded = backbone.state_dict()
    assert n_features == 96 and set(loaded) == set(state) - {"fc.weight", "fc.bias"}  # the classifier is dropped
    assert all(torch.equal(loaded[key], state[key]) for key in loaded)


def test_a_record_that_exists_pins_the_download(published, tmp_path):
    record = tmp_path / "timm" / "test_resnet.sha256"
    record.parent.mkdir()
    record.write_text(f"{_sha256(b'other weights')}  test_resnet.safetensors\n")
    with pytest.raises(PatchlesionError, match=r"SHA-256 mismatch.*the download was discarded"):
        fetch_weights(BACKBONE, home=tmp_path)
    assert sorted(p.name for p in record.parent.iterdir()) == ["test_resnet.sha256"]  # nothing half-written
    record.write_text(f"{_sha256(published[1])}  test_resnet.safetensors\n")
    assert fetch_weights(BACKBONE, home=tmp_path).read_bytes() == published[1]


def test_without_safetensors_on_the_hub_the_pytorch_file_is_fetched(server, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", server.base)
    state = timm.create_model("test_resnet").state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    server.routes[f"{HUB_PATH}/pytorch_model.bin"] = Route(buffer.getvalue())  # model.safetensors: 404
    assert fetch_weights(BACKBONE, home=tmp_path) == tmp_path / "timm" / "test_resnet.bin"
    loaded = load_pretrained_state(BACKBONE, home=tmp_path)  # torch.load(weights_only=True)
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


def test_a_release_file_name_carries_the_hash_prefix_that_is_checked(server, tmp_path):
    body = safetensors_torch.save({"w": torch.ones(3)})
    good, bad = f"/releases/test_resnet-{_sha256(body)[:8]}.pth", "/releases/test_resnet-deadbeef.pth"
    server.routes[good] = server.routes[bad] = Route(body)
    with pytest.raises(PatchlesionError, match=r"expected SHA-256 deadbeef\.\.\. \(prefix\)"):
        fetch_weights(BACKBONE, home=tmp_path, url=server.base + bad, retries=0)
    assert fetch_weights(BACKBONE, home=tmp_path, url=server.base + good) == tmp_path / "timm" / "test_resnet.pth"
    with pytest.raises(PatchlesionError, match=r"not in a format the cache reads"):
        fetch_weights("timm:test_vit", home=tmp_path, url=server.base + "/jax/weights.npz")


def test_missing_or_wrong_weights_name_the_file_and_the_command_that_fetches_them(published, tmp_path):
    record = tmp_path / "timm" / "test_resnet.sha256"
    with pytest.raises(PatchlesionError) as missing:
        load_pretrained_state(BACKBONE, home=tmp_path)
    message = str(missing.value)
    assert f"no record {record}" in message and f"`patchlesion fetch-weights {BACKBONE} --torch-home {tmp_path}`" in message
    assert f"`snakemake {record}`" in message

    path = fetch_weights(BACKBONE, home=tmp_path)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(PatchlesionError, match=rf"{path}: SHA-256 mismatch .* expected {_sha256(published[1])}"):
        load_pretrained_state(BACKBONE, home=tmp_path)
    path.unlink()
    with pytest.raises(PatchlesionError, match=rf"not found at {path}\."):
        load_pretrained_state(BACKBONE, home=tmp_path)
    record.write_text("not a record\n")
    with pytest.raises(PatchlesionError, match=rf"{record}: not a SHA-256 record"):
        load_pretrained_state(BACKBONE, home=tmp_path)


def test_the_command_fetches_a_timm_backbone(published, tmp_path, capsys):
    assert main(["fetch-weights", BACKBONE, "--torch-home", str(tmp_path)]) == 0
    assert (tmp_path / "timm" / "test_resnet.sha256").is_file()
    assert main(["fetch-weights", "timm:test_resnet180", "--torch-home", str(tmp_path)]) == 2
    assert "unknown timm model 'test_resnet180'" in capsys.readouterr().err


def test_the_workflow_finds_the_backbone_of_a_cache_file():
    for backbone in ("densenet121", "se_resnext50", BACKBONE, "timm:resnet50.a1_in1k"):
        target = weights_target(backbone, "resources/torch")
        assert backbone_of_target(str(target.relative_to("resources/torch"))) == backbone
    assert has_weights(BACKBONE) and has_weights("inception_v3") and not has_weights("tiny")
