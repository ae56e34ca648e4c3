"""The runs page: recent runs and one run's phases and log as plain server-rendered HTML that a
browser opens with the API token (basic auth: any user name, the token as password)."""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import time
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Request, Response

from bot.config import Settings
from bot.runs.store import FINAL, RunRecord, RunStatus, RunStore, UnreadableRecord

log = logging.getLogger(__name__)

LIST_LIMIT = 100
LIST_REFRESH_SECONDS = 15
RUN_REFRESH_SECONDS = 5  # while the run is not final
PAGE_OFF = (
    "The runs page is off. Set BOT_API_TOKEN to turn it on, then sign in with any user name "
    "and the token as password (or send Authorization: Bearer <token>)."
)
PAGE_DENIED = (
    "Sign in with any user name and the BOT_API_TOKEN as password "
    "(or send Authorization: Bearer <token>)."
)
CHALLENGE = 'Basic realm="openhands-bot runs", charset="UTF-8"'
# Every run field is untrusted text: it is escaped, and the page may load nothing at all.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5rem 2rem;color:#1f2328;background:#fff}
h1{font-size:1.4rem;margin:0 0 .25rem}h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
a{color:#0969da;text-decoration:none}a:hover{text-decoration:underline}
.muted{color:#656d76}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #d0d7de;vertical-align:top}
th{background:#f6f8fa;font-weight:600}td.num{text-align:right;white-space:nowrap}
.badge{display:inline-block;padding:0 .5rem;border-radius:1rem;font-size:12px;font-weight:600}
.PENDING{background:#eaeef2}.RUNNING{background:#ddf4ff;color:#0550ae}
.COMPLETED{background:#dafbe1;color:#116329}.FAILED{background:#ffebe9;color:#a40e26}
.CANCELLED{background:#fff8c5;color:#7d4e00}
nav{margin:.5rem 0 1rem}nav a{margin-right:.75rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}
dt{color:#656d76}dd{margin:0}code,.log td.m{font-family:ui-monospace,monospace;font-size:13px}
.log td.m{white-space:pre-wrap;word-break:break-word}.log td.num{width:4.5rem}
"""


def credential(header: str) -> str | None:
    """The token a request offers: a bearer token, or a basic-auth password."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    return None


def github_web_url(api_url: str) -> str:
    """github.com for api.github.com, the host for GHES (`https://HOST/api/v3`)."""
    url = api_url.rstrip("/")
    if url == "https://api.github.com":
        return "https://github.com"
    return url.removesuffix("/api/v3")


def _link(url: str | None, text: str) -> str:
    """An anchor only for http(s) URLs: a stored `javascript:` link must never become one."""
    if url and url.lower().startswith(("https://", "http://")):
        return f'<a href="{escape(url)}" rel="noreferrer">{escape(text)}</a>'
    return escape(text)


def _when(stamp: float | None) -> str:
    if stamp is None:
        return '<span class="muted">—</span>'
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))
    return f'<time datetime="{iso}">{time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stamp))}</time>'


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _cost(cost: float) -> str:
    return f"${cost:.4f}" if cost < 1 else f"${cost:.2f}"


def _badge(status: RunStatus) -> str:
    return f'<span class="badge {status.value}">{status.value}</span>'


def _links(record: RunRecord, web: str) -> str:
    parts = [_link(url, name.replace("_", " ")) for name, url in sorted(record.links.items())]
    if record.number is not None:
        issue = f"{web}/{quote(record.repo)}/issues/{record.number}"
        parts.insert(0, _link(issue, f"#{record.number}"))
    return " · ".join(parts) or '<span class="muted">—</span>'


def _run_href(run_id: str) -> str:
    return "/runs/" + quote(run_id, safe="")


def _page(title: str, body: str, refresh: int | None = None) -> str:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"{meta}<title>{escape(title)} · openhands-bot</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>"
    )


def render_list(records: list[RunRecord], filters: dict[str, str], web: str) -> str:
    chips = ['<a href="/runs">all</a>']
    for status in RunStatus:
        chips.append(f'<a href="/runs?{urlencode({"status": status.value})}">{status.value}</a>')
    rows = []
    for r in records:
        repo = f'<a href="/runs?{escape(urlencode({"repo": r.repo}))}">{escape(r.repo)}</a>'
        rows.append(
            f'<tr data-run-id="{escape(r.run_id)}">'
            f'<td><a href="{escape(_run_href(r.run_id))}"><code>{escape(r.run_id)}</code></a></td>'
            f"<td>{repo}</td><td>{escape(r.kind)}<br><span class='muted'>"
            f"{escape(r.trigger)}</span></td><td>{_badge(r.status)}</td>"
            f"<td>{_when(r.created_at)}</td><td class='num'>{_duration(r.duration)}</td>"
            f"<td class='num'>{_cost(r.cost)}</td><td>{_links(r, web)}</td></tr>"
        )
    shown = ", ".join(f"{k} {v}" for k, v in filters.items() if v)
    empty = '<tr><td colspan="8" class="muted">No runs yet.</td></tr>'
    body = (
        f"<h1>Runs</h1><p class='muted'>Newest first{', ' + escape(shown) if shown else ''}; "
        f"{len(records)} shown; this page refreshes every {LIST_REFRESH_SECONDS} s.</p>"
        f"<nav>{''.join(chips)}</nav><table><thead><tr><th>Run</th><th>Repository</th>"
        "<th>Kind / trigger</th><th>Status</th><th>Queued (UTC)</th><th>Duration</th>"
        f"<th>Cost</th><th>Links</th></tr></thead><tbody>{''.join(rows) or empty}</tbody></table>"
    )
    return _page("Runs", body, LIST_REFRESH_SECONDS)


def render_run(record: RunRecord, log: list[dict[str, Any]], web: str) -> str:
    r = record
    queued = None if r.started_at is None else r.started_at - r.created_at
    phases = [("queued", r.created_at, ""), ("started", r.started_at, _waited(queued))]
    if r.finished_at is not None:
        phases.append((r.status.value.lower(), r.finished_at, _waited(r.duration)))
    steps = "".join(
        f"<li>{escape(name)} {_when(at)} <span class='muted'>{escape(note)}</span></li>"
        for name, at, note in phases
    )
    facts = [
        ("Repository", _link(f"{web}/{quote(r.repo)}", r.repo)),
        ("Kind / trigger", escape(f"{r.kind} / {r.trigger}")),
        ("Automation", escape(r.automation or "—")),
        ("Sender", escape(r.sender or "—")),
        ("Outcome", escape(r.outcome or "—")),
        ("Error", escape(f"{r.error.code}: {r.error.detail}") if r.error else "—"),
        ("Duration", _duration(r.duration)),
        ("Cost", _cost(r.cost)),
        ("Links", _links(r, web)),
        ("Conversation", escape(r.conversation_id or "—")),
        ("Callback", escape(r.callback_status or "—")),
    ]
    start = log[0]["t"] if log else r.created_at
    lines = "".join(
        f"<tr><td class='num'>+{float(line['t']) - start:.1f} s</td>"
        f"<td class='m'>{escape(str(line['m']))}</td></tr>"
        for line in log
    )
    body = (
        f'<p><a href="/runs">← all runs</a></p><h1>Run <code>{escape(r.run_id)}</code> '
        f"{_badge(r.status)}</h1><dl>{''.join(f'<dt>{k}</dt><dd>{v}</dd>' for k, v in facts)}</dl>"
        f"<h2>Phases</h2><ol>{steps}</ol><h2>Log</h2><table class='log'><tbody>"
        f"{lines or '<tr><td class=muted>No log lines yet.</td></tr>'}</tbody></table>"
    )
    return _page(f"Run {r.run_id}", body, None if r.status in FINAL else RUN_REFRESH_SECONDS)


def _waited(seconds: float | None) -> str:
    return "" if seconds is None else f"after {_duration(max(seconds, 0.0))}"


def _html(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        text, status_code=status, media_type="text/html", headers=HEADERS | (headers or {})
    )


def install(app: FastAPI, settings: Settings) -> None:
    """Add `GET /runs` and `GET /runs/{run_id}` (the page `Settings.run_url` links to)."""
    token = settings.bot_api_token.get_secret_value().encode() if settings.bot_api_token else None
    web = github_web_url(settings.github_api_url)

    def refused(request: Request) -> Response | None:
        if token is None:
            page = _page("Runs page off", f"<h1>Runs page off</h1><p>{escape(PAGE_OFF)}</p>")
            return _html(401, page, {"WWW-Authenticate": "Bearer"})
        given = credential(request.headers.get("authorization", ""))
        if given is None or not hmac.compare_digest(given.encode(), token):
            page = _page("Sign in", f"<h1>Sign in</h1><p>{escape(PAGE_DENIED)}</p>")
            return _html(401, page, {"WWW-Authenticate": CHALLENGE})
        return None

    @app.get("/runs")
    async def runs_list(
        request: Request, repo: str = "", status: str = "", kind: str = ""
    ) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        if status and status.upper() not in RunStatus.__members__:
            status = ""
        store: RunStore = request.app.state.runs
        records = await store.recent(
            repo=repo or None, status=status or None, kind=kind or None, limit=LIST_LIMIT
        )
        filters = {"repo": repo, "status": status.upper(), "kind": kind}
        return _html(200, render_list(records, filters, web))

    @app.get("/runs/{run_id}")
    async def run_page(request: Request, run_id: str) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        store: RunStore = request.app.state.runs
        try:
            record = await store.get_or_queued(run_id)
        except UnreadableRecord as exc:
            log.warning("run %s has an unreadable record: %s", run_id, exc)
            text = "Its stored record cannot be read."
            return _html(404, _page("Unreadable run", f"<h1>Run {escape(run_id)}</h1><p>{text}"))
        if record is None:
            page = _page("No such run", f"<h1>No run {escape(run_id)}</h1><p>It may have expired.")
            return _html(404, page)
        return _html(200, render_run(record, await store.read_log(run_id), web))
