"""A Google Drive stand-in on loopback, for the download tests (no network here).

``FakeDrive`` is a real HTTP server in a thread that answers as Drive does for a large
public file: ``drive.google.com/uc?id=ID`` redirects to ``drive.usercontent.google.com``,
which serves the "virus scan warning" confirmation page (a form with ``confirm`` and
``uuid`` fields), and the form's submission serves the file. ``scenario`` selects what
the file request gets instead: a quota page, a truncated body, other bytes, or an HTML
page sent as an attachment.

``route_google_to(port)`` makes every ``requests`` session send its google.com requests
to that server (the host name travels in ``X-Forwarded-Host``), so gdown, torchvision
and torchmeta run unchanged on real sockets.
"""
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit, urlunsplit

import requests

CONFIRMATION = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>
<meta http-equiv="content-type" content="text/html; charset=utf-8"/></head><body>
<div class="uc-main"><div id="uc-text"><p class="uc-warning-caption">Google Drive can't scan
this file for viruses.</p><p class="uc-warning-subcaption">{name} is too large for Google to
scan for viruses. Would you still like to download this file?</p>
<form id="download-form" action="https://drive.usercontent.google.com/download" method="get">\
<input type="submit" id="uc-download-link" value="Download anyway"/>\
<input type="hidden" name="id" value="{id}"><input type="hidden" name="export" value="download">\
<input type="hidden" name="confirm" value="t">\
<input type="hidden" name="uuid" value="2b1f5c9e-0d3a-4c1e-9f7a-5d6e7f8a9b0c"></form>
</div></div></body></html>
"""

QUOTA = """<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title>
<meta http-equiv="content-type" content="text/html; charset=utf-8"/></head><body>
<div class="uc-main"><div id="uc-text">
<p class="uc-error-caption">Sorry, you can&#39;t view or download this file at this time.</p>
<p class="uc-error-subcaption">Too many users have viewed or downloaded this file recently. \
Please try accessing the file again later.</p>
</div></div></body></html>
"""

SCENARIOS = ("file", "quota", "truncated", "other_bytes", "html_attachment")


class FakeDrive:
    """Serves ``files`` {file id: (name, bytes)} as Drive would, per ``scenario``."""

    def __init__(self, files, scenario="file"):
        assert scenario in SCENARIOS
        self.files, self.scenario, self.requests = files, scenario, []
        drive = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                drive.requests.append((self.headers.get("X-Forwarded-Host"), self.path))
                drive.answer(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    def answer(self, handler):
        host = handler.headers.get("X-Forwarded-Host")
        url = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        file_id = query.get("id")
        if file_id not in self.files:
            return self.send(handler, 404, b"Not Found", "text/html")
        name, data = self.files[file_id]
        if host == "drive.google.com" and url.path == "/uc":
            location = ("https://drive.usercontent.google.com/download?id="
                        f"{file_id}&export=download")
            return self.send(handler, 303, b"", "text/html", {"Location": location})
        if host != "drive.usercontent.google.com" or url.path != "/download":
            return self.send(handler, 404, b"Not Found", "text/html")
        if query.get("confirm") != "t":
            page = CONFIRMATION.format(name=name, id=file_id).encode()
            return self.send(handler, 200, page, "text/html; charset=utf-8")
        if self.scenario == "quota":
            return self.send(handler, 200, QUOTA.encode(), "text/html; charset=utf-8")
        attachment = {"Content-Disposition": f'attachment; filename="{name}"'}
        if self.scenario == "html_attachment":
            return self.send(handler, 200, QUOTA.encode(), "text/html", attachment)
        if self.scenario == "other_bytes":
            data = data[: len(data) // 2]
        body, length = data, len(data)
        if self.scenario == "truncated":     # announces every byte, sends a third
            body = data[: len(data) // 3]
        self.send(handler, 200, body, "application/octet-stream", attachment, length)

    @staticmethod
    def send(handler, status, body, content_type, headers=None, length=None):
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body) if length is None else length))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(body)
        handler.wfile.flush()
        handler.close_connection = True

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class LoopbackAdapter(requests.adapters.HTTPAdapter):
    """Sends each request to 127.0.0.1:port over plain HTTP, keeping the host in a header."""

    def __init__(self, port):
        super().__init__()
        self.port = port

    def send(self, request, **kwargs):
        original = request.url
        parts = urlsplit(original)
        request.headers["X-Forwarded-Host"] = parts.hostname
        request.url = urlunsplit(("http", f"127.0.0.1:{self.port}", parts.path, parts.query, ""))
        response = super().send(request, **kwargs)
        response.url = original
        return response


def route_google_to(port, monkeypatch=None):
    """Send every requests session's google.com traffic to the loopback ``port``
    (with ``monkeypatch``: undone after the test; without: for this process)."""
    adapter = LoopbackAdapter(port)
    real = requests.Session.get_adapter

    def get_adapter(self, url):
        host = urlsplit(url).hostname or ""
        return adapter if host.endswith("google.com") else real(self, url)

    if monkeypatch is None:
        requests.Session.get_adapter = get_adapter
    else:
        monkeypatch.setattr(requests.Session, "get_adapter", get_adapter)
