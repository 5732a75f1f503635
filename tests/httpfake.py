"""A loopback HTTP server for download tests: static files with HTTP Range, errors, cut connections,
and a fake Harvard Dataverse (native API file list + access API). Nothing here touches the internet."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field


@dataclass
class Route:
    """What the server answers for one path: ``body`` bytes or an HTTP ``status``.

    ``cut_after``: on the first ``cut_times`` requests, send the headers for the full answer but
    only this many bytes, then hang up. ``honour_range``: answer ``Range: bytes=N-`` with 206.
    ``content_length``: ``True`` announces the true length; ``None`` sends none (the body ends when the
    server hangs up); a number announces that many bytes, whatever is sent.
    """

    body: bytes = b""
    status: int = 200
    cut_after: int | None = None
    cut_times: int = 1
    honour_range: bool = True
    content_type: str = "application/octet-stream"
    content_length: bool | int | None = True


@dataclass
class Request:
    path: str
    query: dict
    headers: dict = field(default_factory=dict)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (http.server API)
        server = self.server
        parsed = urllib.parse.urlsplit(self.path)
        request = Request(parsed.path, dict(urllib.parse.parse_qsl(parsed.query)), dict(self.headers.items()))
        server.requests.append(request)
        route = server.lookup(request)
        if route is None or route.status != 200:
            status = 404 if route is None else route.status
            body = json.dumps({"status": "ERROR", "message": f"status {status}"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        body, start = route.body, 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match and route.honour_range:
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        part = body[start:]
        self.send_header("Content-Type", route.content_type)
        if route.content_length is not None:
            self.send_header("Content-Length", str(len(part) if route.content_length is True else route.content_length))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if route.content_length is not True:
            self.close_connection = True
        served = server.served.get(request.path, 0)
        server.served[request.path] = served + 1
        if route.cut_after is not None and served < route.cut_times:
            self.wfile.write(part[: route.cut_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(part)

    def log_message(self, *args):
        pass


class FakeServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self.served: dict[str, int] = {}
        self.base = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(target=self.serve_forever, args=(0.01,), daemon=True)

    def lookup(self, request: Request) -> Route | None:
        if request.path == "/api/datasets/:persistentId/" and "persistentId" in request.query:
            return self.routes.get(f"{request.path}?persistentId={request.query['persistentId']}")
        return self.routes.get(request.path)

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def requests_for(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]


DOI = "doi:10.7910/DVN/TEST01"


class FakeDataverse:
    """Files published on a fake Dataverse record served by a :class:`FakeServer`."""

    def __init__(self, server: FakeServer, doi: str = DOI):
        self.server, self.doi, self.files = server, doi, []
        self._publish()

    def add(self, filename: str, body: bytes, *, md5: str | None = None, tabular_original: str | None = None,
            checksum_style: str = "md5", served: bytes | None = None, **route) -> int:  # fmt: skip
        """Publish ``body`` as ``filename``; ``served`` (default ``body``) is what the access API sends."""
        file_id = 1000 + len(self.files)
        digest = md5 or hashlib.md5(body).hexdigest()
        data_file = {"id": file_id, "filename": filename, "filesize": len(body), "contentType": "application/zip"}
        if checksum_style == "md5":
            data_file["md5"] = digest
        else:
            data_file["checksum"] = {"type": "MD5", "value": digest}
        if tabular_original:
            data_file.update(originalFileName=tabular_original, originalFileSize=len(body), originalFileFormat="text/csv")
            data_file["filesize"] = len(body) + 17  # the .tab differs from the uploaded original
        self.files.append({"label": filename, "dataFile": data_file})
        self.server.routes[f"/api/access/datafile/{file_id}"] = Route(body=served if served is not None else body, **route)
        self._publish()
        return file_id

    def _publish(self) -> None:
        document = {"status": "OK", "data": {"latestVersion": {"versionNumber": 4, "files": self.files}}}
        key = f"/api/datasets/:persistentId/?persistentId={self.doi}"
        self.server.routes[key] = Route(body=json.dumps(document).encode(), content_type="application/json")
