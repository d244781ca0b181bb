"""``urbanbrain dashboards push`` against a stub Grafana (http.server in a thread)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from urbanbrain.dashboards.build import build
from urbanbrain.dashboards.cli import app
from urbanbrain.dashboards.push import PushError, push
from urbanbrain.localstack import free_port

TOKEN = "glsa_test_token"


class StubGrafana:
    """Records requests; answers like Grafana's folder and dashboard API."""

    def __init__(self, token: str = TOKEN, folder_exists: bool = False) -> None:
        self.token, self.requests = token, []
        self.folders: dict[str, dict] = (
            {"urbanbrain": {"uid": "urbanbrain", "title": "old title", "version": 3}}
            if folder_exists else {})
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def _reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n)) if n else None
                stub.requests.append((self.command, self.path, body,
                                      self.headers.get("Authorization")))
                if self.headers.get("Authorization") != f"Bearer {stub.token}":
                    return self._reply(401, {"message": "invalid API key"})
                if self.command == "GET" and self.path.startswith("/api/folders/"):
                    uid = self.path.rsplit("/", 1)[1]
                    if uid in stub.folders:
                        return self._reply(200, stub.folders[uid])
                    return self._reply(404, {"message": "folder not found"})
                if self.command == "POST" and self.path == "/api/folders":
                    stub.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"]}
                    return self._reply(200, stub.folders[body["uid"]])
                if self.command == "PUT" and self.path.startswith("/api/folders/"):
                    uid = self.path.rsplit("/", 1)[1]
                    stub.folders[uid]["title"] = body["title"]
                    return self._reply(200, stub.folders[uid])
                if self.command == "POST" and self.path == "/api/dashboards/db":
                    if body.get("folderUid") not in stub.folders:
                        return self._reply(400, {"message": "folder not found"})
                    uid = body["dashboard"]["uid"]
                    return self._reply(200, {"status": "success", "uid": uid, "version": 1})
                return self._reply(404, {"message": "not found"})

            do_GET = do_POST = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def posted(self) -> list[dict]:
        return [b for m, p, b, _ in self.requests if m == "POST" and p == "/api/dashboards/db"]


@pytest.fixture
def grafana() -> Iterator[StubGrafana]:
    g = StubGrafana()
    g.thread.start()
    yield g
    g.server.shutdown()
    g.server.server_close()


def test_push_creates_folder_and_posts_every_dashboard(grafana):
    models = build()
    res = push(grafana.url, TOKEN, models)
    assert res.folder_created and res.folder_uid == "urbanbrain"
    assert all(auth == f"Bearer {TOKEN}" for *_, auth in grafana.requests)
    creates = [b for m, p, b, _ in grafana.requests if m == "POST" and p == "/api/folders"]
    assert creates == [{"title": "urbanbrain", "uid": "urbanbrain"}]
    posted = grafana.posted()
    assert [b["dashboard"]["uid"] for b in posted] == [m["uid"] for m in models.values()]
    for b in posted:
        assert b["overwrite"] is True and b["folderUid"] == "urbanbrain"
        assert b["dashboard"]["id"] is None and b["dashboard"]["panels"]
    # pushing again updates in place: no second folder, same uids
    res2 = push(grafana.url, TOKEN, models)
    assert not res2.folder_created and res2.dashboards == res.dashboards
    assert len([1 for m, p, *_ in grafana.requests if m == "POST" and p == "/api/folders"]) == 1


def test_push_renames_an_existing_folder():
    g = StubGrafana(folder_exists=True)
    g.thread.start()
    try:
        push(g.url, TOKEN, build())
        puts = [(p, b) for m, p, b, _ in g.requests if m == "PUT"]
        assert puts and puts[0][0] == "/api/folders/urbanbrain"
        assert puts[0][1]["title"] == "urbanbrain" and puts[0][1]["overwrite"] is True
    finally:
        g.server.shutdown()
        g.server.server_close()


def test_push_refused_token_is_a_clear_error(grafana):
    with pytest.raises(PushError, match="401"):
        push(grafana.url, "wrong", build())
    assert not grafana.posted()
    result = CliRunner().invoke(app, ["push", "--url", grafana.url, "--token", "wrong"])
    assert result.exit_code == 1
    assert "refused the credentials" in result.output and "Traceback" not in result.output


def test_push_unreachable_grafana_is_a_clear_error():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(PushError, match="unreachable"):
        push(url, TOKEN, build(), timeout=2)
    result = CliRunner().invoke(app, ["push", "--url", url, "--token", TOKEN, "--timeout", "2"])
    assert result.exit_code == 1 and "unreachable" in result.output


def test_cli_push_reports_success(grafana):
    result = CliRunner().invoke(app, ["push", "--url", grafana.url, "--token", TOKEN])
    assert result.exit_code == 0, result.output
    assert "pushed 7 dashboards" in result.output
