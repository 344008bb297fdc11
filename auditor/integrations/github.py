"""One sticky pull-request comment, created once and updated on every later run, through GitHub's REST API.

The comment is found again by a hidden marker in its body (auditor.diff.MARKER), so re-runs of a workflow edit
it in place instead of adding one comment per push. Only the standard library: the action installs nothing
else, and urllib speaks to a test's local server as it speaks to api.github.com.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from ..diff import MARKER
from ..errors import AuditError
from ..report.markdown import GITHUB_COMMENT_LIMIT, fit

API_VERSION = "2022-11-28"


class GitHub:
    def __init__(self, token: str, api_url: str = "https://api.github.com"):
        if not token:
            raise AuditError("no GitHub token: set GITHUB_TOKEN (in a workflow: `env: GITHUB_TOKEN: "
                             "${{ github.token }}`, with `permissions: pull-requests: write`)")
        self.token, self.api_url = token, api_url.rstrip("/")

    def request(self, method: str, url: str, body: dict | None = None) -> tuple[object, dict]:
        url = url if url.startswith("http") else self.api_url + url
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self.token}",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "training-run-auditor",
            **({"Content-Type": "application/json"} if data is not None else {}),
        })
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"null"), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:200]
            raise AuditError(f"GitHub API: {method} {url} answered {exc.code} {exc.reason}: {detail}") from None
        except urllib.error.URLError as exc:
            raise AuditError(f"GitHub API: {method} {url} could not be reached: {exc.reason}") from None

    def comments(self, repo: str, number: int):
        url = f"/repos/{repo}/issues/{number}/comments?per_page=100"
        while url:
            page, headers = self.request("GET", url)
            yield from page
            url = _next_link(headers.get("Link") or headers.get("link") or "")


def _next_link(header: str) -> str | None:
    match = re.search(r'<([^>]+)>;\s*rel="next"', header)
    return match.group(1) if match else None


def sticky_comment(body: str, repo: str, number: int, gh: GitHub, more: str = "") -> tuple[str, int]:
    """Create or update the one comment holding MARKER on pull request `number`; returns (action, id)."""
    if MARKER not in body:
        body = f"{MARKER}\n{body}"
    body = fit(body, GITHUB_COMMENT_LIMIT, more)
    mine = next((c for c in gh.comments(repo, number) if MARKER in (c.get("body") or "")), None)
    if mine is None:
        made, _ = gh.request("POST", f"/repos/{repo}/issues/{number}/comments", {"body": body})
        return "created", made["id"]
    gh.request("PATCH", f"/repos/{repo}/issues/comments/{mine['id']}", {"body": body})
    return "updated", mine["id"]


def pull_request_number(event_path: str | None) -> int | None:
    """The pull request a workflow run is for, from the event payload GitHub writes to GITHUB_EVENT_PATH."""
    if not event_path or not Path(event_path).is_file():
        return None
    event = json.loads(Path(event_path).read_text())
    pr = event.get("pull_request") or {}
    return pr.get("number") or (event.get("issue") or {}).get("number")


def comment_from_env(body_file: str, number: int | None = None) -> tuple[str, int]:
    """`audit comment FILE`: everything else from the variables GitHub Actions sets."""
    env = os.environ
    repo = env.get("GITHUB_REPOSITORY")
    if not repo:
        raise AuditError("GITHUB_REPOSITORY is not set: `audit comment` runs inside a GitHub Actions job")
    number = number or pull_request_number(env.get("GITHUB_EVENT_PATH"))
    if not number:
        raise AuditError("no pull request to comment on: this run is not for a pull request (pass --pr N)")
    path = Path(body_file)
    if not path.is_file():
        raise AuditError(f"{body_file}: no such file; pass the report.md or diff.md the audit wrote")
    run_url = ""
    if env.get("GITHUB_RUN_ID"):
        run_url = f"{env.get('GITHUB_SERVER_URL', 'https://github.com')}/{repo}/actions/runs/{env['GITHUB_RUN_ID']}"
    gh = GitHub(env.get("GITHUB_TOKEN", ""), env.get("GITHUB_API_URL", "https://api.github.com"))
    return sticky_comment(path.read_text(encoding="utf-8"), repo, number, gh, more=run_url)
