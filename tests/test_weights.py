"""The pretrained-weight cache: download, verification, retries, loading (loopback server only)."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading

import pytest
import torch

from patchlesion.data.acquire import weights as fetching
from patchlesion.data.acquire.weights import fetch_weights
from patchlesion.errors import PatchlesionError
from patchlesion.method import weights
from patchlesion.method.weights import WeightFile, load_pretrained_state, weights_path

PAYLOAD = b"x" * 1000


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server API)
        server = self.server
        server.requests.append((self.path, self.headers.get("User-Agent")))
        action = server.routes.get(self.path, 404)
        if callable(action):
            action = action(self, len([p for p, _ in server.requests if p == self.path]))
            if action is None:
                return
        if isinstance(action, int):
            self.send_error(action)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(action)))
        self.end_headers()
        self.wfile.write(action)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A loopback HTTP server; set ``server.routes[path]`` to bytes, a status code or a callable."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.routes = {}
    httpd.requests = []
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def entry(server, monkeypatch):
    """Register backbone ``fake`` served at ``/fake-<prefix>.pth`` with PAYLOAD's hash prefix."""
    prefix = hashlib.sha256(PAYLOAD).hexdigest()[:8]
    file = f"fake-{prefix}.pth"
    wf = WeightFile(url=f"{server.base}/{file}", file=file, hash_prefix=prefix)
    server.routes[f"/{file}"] = PAYLOAD
    monkeypatch.setitem(weights.PRETRAINED, "fake", wf)
    monkeypatch.setattr(fetching, "BACKOFF_BASE", 0.01)
    monkeypatch.delenv("TORCH_HOME", raising=False)
    return wf


def _leftovers(path):
    return sorted(p.name for p in path.parent.iterdir()) if path.parent.exists() else []


def test_real_entries_follow_the_torch_hub_convention():
    for name, wf in weights.PRETRAINED.items():
        assert wf.file in wf.url, name
        assert f"-{wf.hash_prefix}." in wf.file, name
        assert wf.sha256 is None or wf.sha256.startswith(wf.hash_prefix)
    assert set(weights.PRETRAINED) == {"densenet121", "inception_v3", "se_resnext50"}


def test_good_file_is_placed_and_cached(entry, server, tmp_path):
    path = fetch_weights("fake", home=tmp_path)
    assert path == tmp_path / "hub" / "checkpoints" / entry.file
    assert path.read_bytes() == PAYLOAD
    assert _leftovers(path) == [entry.file]  # no .partial left behind
    assert len(server.requests) == 1
    assert server.requests[0][1] == f"patchlesion/{fetching.__version__}"

    assert fetch_weights("fake", home=tmp_path) == path
    assert len(server.requests) == 1  # served from the cache, no network


def test_full_sha256_is_checked_when_known(entry, server, tmp_path, monkeypatch):
    wrong_full = entry.hash_prefix + "0" * 56
    monkeypatch.setitem(
        weights.PRETRAINED, "fake", WeightFile(entry.url, entry.file, entry.hash_prefix, wrong_full)
    )
    with pytest.raises(PatchlesionError, match="SHA-256 mismatch"):
        fetch_weights("fake", home=tmp_path)
    good_full = hashlib.sha256(PAYLOAD).hexdigest()
    monkeypatch.setitem(
        weights.PRETRAINED, "fake", WeightFile(entry.url, entry.file, entry.hash_prefix, good_full)
    )
    assert fetch_weights("fake", home=tmp_path).read_bytes() == PAYLOAD


def test_hash_mismatch_is_refused_and_leaves_nothing(entry, server, tmp_path):
    server.routes[f"/{entry.file}"] = b"y" * 1000
    with pytest.raises(PatchlesionError) as info:
        fetch_weights("fake", home=tmp_path)
    message = str(info.value)
    assert entry.file in message and entry.hash_prefix in message
    assert hashlib.sha256(b"y" * 1000).hexdigest() in message
    target = weights_path("fake", tmp_path)
    assert _leftovers(target) == []
    assert len(server.requests) == 1  # a wrong file is not retried


def test_corrupted_cached_file_is_replaced(entry, server, tmp_path):
    target = weights_path("fake", tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"truncated")
    assert fetch_weights("fake", home=tmp_path).read_bytes() == PAYLOAD
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [403, 404])
def test_http_client_errors_name_url_status_and_manual_path(entry, server, tmp_path, status):
    server.routes[f"/{entry.file}"] = status
    with pytest.raises(PatchlesionError) as info:
        fetch_weights("fake", home=tmp_path)
    message = str(info.value)
    assert str(status) in message and entry.url in message
    assert str(weights_path("fake", tmp_path)) in message
    assert len(server.requests) == 1  # not retried
    assert _leftovers(weights_path("fake", tmp_path)) == []


def test_url_override(entry, server, tmp_path):
    server.routes["/mirror.pth"] = PAYLOAD
    server.routes[f"/{entry.file}"] = 404
    path = fetch_weights("fake", home=tmp_path, url=f"{server.base}/mirror.pth")
    assert path.read_bytes() == PAYLOAD and path.name == entry.file


def _drop_first(handler, n):
    if n == 1:  # close the connection without answering
        handler.close_connection = True
        return None
    return PAYLOAD


def _truncate_first(handler, n):
    if n == 1:  # announce 1000 bytes, send 10, hang up
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(PAYLOAD)))
        handler.end_headers()
        handler.wfile.write(PAYLOAD[:10])
        handler.close_connection = True
        return None
    return PAYLOAD


@pytest.mark.parametrize("behaviour", [_drop_first, _truncate_first])
def test_dropped_connection_is_retried(entry, server, tmp_path, behaviour):
    server.routes[f"/{entry.file}"] = behaviour
    path = fetch_weights("fake", home=tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert len(server.requests) == 2
    assert _leftovers(path) == [entry.file]


def test_server_errors_exhaust_retries(entry, server, tmp_path):
    server.routes[f"/{entry.file}"] = 503
    with pytest.raises(PatchlesionError, match="after 3 attempts"):
        fetch_weights("fake", home=tmp_path, retries=2)
    assert len(server.requests) == 3
    assert _leftovers(weights_path("fake", tmp_path)) == []


def test_unknown_backbone(tmp_path):
    with pytest.raises(PatchlesionError, match="densenet121"):
        weights_path("resnet9000", tmp_path)


def test_load_missing_file_names_the_path(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCH_HOME", raising=False)
    with pytest.raises(PatchlesionError) as info:
        load_pretrained_state("densenet121", home=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "hub" / "checkpoints" / "densenet121-a639ec97.pth") in message
    assert "fetch-weights densenet121" in message


def _torch_bytes(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def test_load_valid_state_dict(server, tmp_path, monkeypatch):
    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(3)}
    blob = _torch_bytes(state)
    prefix = hashlib.sha256(blob).hexdigest()[:8]
    wf = WeightFile(f"{server.base}/tiny-{prefix}.pth", f"tiny-{prefix}.pth", prefix)
    server.routes[f"/{wf.file}"] = blob
    monkeypatch.setitem(weights.PRETRAINED, "tiny", wf)

    fetch_weights("tiny", home=tmp_path)
    loaded = load_pretrained_state("tiny", home=tmp_path)
    assert set(loaded) == {"w", "b"}
    for key, tensor in state.items():
        assert torch.equal(loaded[key], tensor)
        assert loaded[key].device.type == "cpu"


def test_load_refuses_corrupted_file(tmp_path, monkeypatch):
    blob = _torch_bytes({"w": torch.zeros(2)})
    prefix = hashlib.sha256(blob).hexdigest()[:8]
    monkeypatch.setitem(weights.PRETRAINED, "tiny", WeightFile("http://unused", "t.pth", prefix))
    path = weights_path("tiny", tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(blob[:-5] + b"\0" * 5)
    with pytest.raises(PatchlesionError, match="SHA-256 mismatch") as info:
        load_pretrained_state("tiny", home=tmp_path)
    assert str(path) in str(info.value) and prefix in str(info.value)


def test_torch_home_env_var(entry, server, tmp_path, monkeypatch):
    assert weights.torch_home() == weights.Path("resources/torch")
    assert weights.torch_home("elsewhere") == weights.Path("elsewhere")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert weights.torch_home() == tmp_path / "th"
    assert weights_path("fake") == tmp_path / "th" / "hub" / "checkpoints" / entry.file
    path = fetch_weights("fake")
    assert path.parent == tmp_path / "th" / "hub" / "checkpoints"
    assert path.read_bytes() == PAYLOAD


def test_main_fetch(entry, server, tmp_path, capsys):
    fetching.main_fetch(["fake"], home=tmp_path)
    assert str(weights_path("fake", tmp_path)) in capsys.readouterr().out
