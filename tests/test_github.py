"""The GitHub side: action.yml and the example workflow against GitHub's published schemas (offline, with
check-jsonschema), and the sticky pull-request comment against a local stand-in for the REST API."""

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from auditor.diff import MARKER

ROOT = Path(__file__).resolve().parents[1]


def _check_jsonschema(schema: str, path: Path):
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    return subprocess.run([exe, "--builtin-schema", schema, str(path)], capture_output=True, text=True)


def test_action_validates_against_githubs_schema():
    result = _check_jsonschema("vendor.github-actions", ROOT / "action.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_workflow_validates_and_is_the_one_in_readme():
    path = ROOT / "docs" / "audit-workflow.yml"
    result = _check_jsonschema("vendor.github-workflows", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert path.read_text().strip() in (ROOT / "README.md").read_text()


def test_a_broken_action_is_rejected(tmp_path):
    broken = tmp_path / "action.yml"
    broken.write_text((ROOT / "action.yml").read_text().replace("using: composite", "using: compost"))
    assert _check_jsonschema("vendor.github-actions", broken).returncode != 0


class FakeGitHub(BaseHTTPRequestHandler):
    """Issue comments of one repository, paged 100 at a time with Link headers as api.github.com does."""

    comments: list[dict] = []
    requests: list[dict] = []

    def _reply(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                              "body": body})
        return body

    def do_GET(self):  # noqa: N802
        self._record()
        path, _, query = self.path.partition("?")
        params = dict(p.split("=") for p in query.split("&") if p)
        if path != "/repos/o/r/issues/7/comments":
            return self._reply(404, {"message": "Not Found"})
        page, per = int(params.get("page", 1)), int(params.get("per_page", 30))
        chunk = self.comments[(page - 1) * per: page * per]
        headers = []
        if page * per < len(self.comments):
            host = self.headers["Host"]
            headers.append(("Link", f'<http://{host}{path}?per_page={per}&page={page + 1}>; rel="next"'))
        self._reply(200, chunk, headers)

    def do_POST(self):  # noqa: N802
        body = self._record()
        comment = {"id": 1000 + len(self.comments), "body": body["body"]}
        self.comments.append(comment)
        self._reply(201, comment)

    def do_PATCH(self):  # noqa: N802
        body = self._record()
        cid = int(self.path.rsplit("/", 1)[1])
        comment = next(c for c in self.comments if c["id"] == cid)
        comment["body"] = body["body"]
        self._reply(200, comment)

    def log_message(self, *args):
        pass


@pytest.fixture
def github(tmp_path):
    FakeGitHub.comments = [{"id": i, "body": f"an unrelated comment {i}"} for i in range(130)]  # two pages
    FakeGitHub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGitHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7}}))
    env = {**os.environ, "GITHUB_API_URL": f"http://127.0.0.1:{server.server_address[1]}",
           "GITHUB_TOKEN": "t0ken", "GITHUB_REPOSITORY": "o/r", "GITHUB_EVENT_PATH": str(event),
           "GITHUB_RUN_ID": "42", "GITHUB_SERVER_URL": "https://github.example"}
    yield env
    server.shutdown()


def _comment(env, body_file):
    return subprocess.run([sys.executable, "-m", "auditor", "comment", str(body_file)], env=env,
                          capture_output=True, text=True, timeout=60)


def test_sticky_comment_is_created_once_then_updated(github, tmp_path):
    body = tmp_path / "report.md"
    body.write_text("## Training-run audit: errors\n\nfirst run\n")
    first = _comment(github, body)
    assert first.returncode == 0, first.stderr
    post = [r for r in FakeGitHub.requests if r["method"] == "POST"]
    assert len(post) == 1 and post[0]["path"] == "/repos/o/r/issues/7/comments"
    headers = {k.lower(): v for k, v in post[0]["headers"].items()}
    assert headers["authorization"] == "Bearer t0ken"
    assert headers["accept"] == "application/vnd.github+json"
    assert headers["x-github-api-version"] == "2022-11-28"
    assert post[0]["body"]["body"].startswith(MARKER) and "first run" in post[0]["body"]["body"]
    # Both pages of existing comments were read before deciding to create one.
    assert any("page=2" in r["path"] for r in FakeGitHub.requests if r["method"] == "GET")

    body.write_text("## Training-run audit: clean\n\nsecond run\n")
    second = _comment(github, body)
    assert second.returncode == 0, second.stderr
    patch = [r for r in FakeGitHub.requests if r["method"] == "PATCH"]
    assert len(patch) == 1 and patch[0]["path"] == "/repos/o/r/issues/comments/1130"  # the id the POST created
    mine = [c for c in FakeGitHub.comments if MARKER in c["body"]]
    assert len(mine) == 1 and "second run" in mine[0]["body"] and len(FakeGitHub.comments) == 131
    assert "updated pull-request comment 1130" in second.stderr


def test_a_long_body_is_folded_to_githubs_limit_with_a_link_to_the_run(github, tmp_path):
    body = tmp_path / "diff.md"
    body.write_text(MARKER + "\n## head\n\n" + "\n\n".join(
        f"<details>\n<summary>{i}</summary>\n\n{'y' * 5000}\n\n</details>" for i in range(30)))
    assert _comment(github, body).returncode == 0
    sent = [r for r in FakeGitHub.requests if r["method"] == "POST"][0]["body"]["body"]
    assert len(sent) <= 65_536 and "https://github.example/o/r/actions/runs/42" in sent


def test_errors_are_one_line(github, tmp_path):
    body = tmp_path / "report.md"
    body.write_text("x")
    env = dict(github)
    env["GITHUB_TOKEN"] = ""
    result = _comment(env, body)
    assert result.returncode == 2 and "GITHUB_TOKEN" in result.stderr and "Traceback" not in result.stderr
    env = dict(github, GITHUB_REPOSITORY="o/other")  # the fake answers 404 for any other repository
    result = _comment(env, body)
    assert result.returncode == 2 and "404" in result.stderr and len(result.stderr.strip().splitlines()) == 1
