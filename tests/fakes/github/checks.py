"""Check runs (the Checks API): create and update the App's runs on a commit, as GitHub answers."""

from __future__ import annotations

import copy
from typing import Any

from tests.fakes.github.calls import _R, Handler, _Call, _not_found, _Reply, _validation_failed
from tests.fakes.github.repos import ReposMixin
from tests.fakes.github.shapes import HTML_BASE, _iso, _node_id, _now

STATUSES = {"queued", "in_progress", "completed", "waiting", "requested", "pending"}
CONCLUSIONS = {
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "success",
    "skipped",
    "stale",
    "timed_out",
}


class ChecksMixin(ReposMixin):
    """Check runs kept per repo: `check_runs` lists them with every update they received."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._check_runs: dict[int, dict[str, Any]] = {}

    @property
    def check_runs(self) -> list[dict[str, Any]]:
        """Each run as it is now, with `history`: the status of each write, in order."""
        with self._lock:
            return copy.deepcopy(list(self._check_runs.values()))

    def _checks_routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", rf"{_R}/check-runs", self._create_check_run),
            ("PATCH", rf"{_R}/check-runs/(?P<id>\d+)", self._update_check_run),
            ("GET", rf"{_R}/check-runs/(?P<id>\d+)", self._get_check_run),
        ]

    # ------------------------------------------------------------------ endpoints

    def _create_check_run(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call, ("checks",))
        body = call.body
        for name in ("name", "head_sha"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise _validation_failed(
                    {"resource": "CheckRun", "field": name, "code": "missing_field"}
                )
        run_id = self._new_id()
        run: dict[str, Any] = {
            "id": run_id,
            "repo": repo.full_name,
            "name": body["name"],
            "head_sha": body["head_sha"],
            "status": "queued",
            "conclusion": None,
            "details_url": None,
            "external_id": None,
            "started_at": _iso(_now()),
            "completed_at": None,
            "output": {"title": None, "summary": None, "text": None},
            "history": [],
        }
        self._apply_check_update(run, body)
        self._check_runs[run_id] = run
        return _Reply(201, self._check_run_json(run, call.api_base))

    def _update_check_run(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call, ("checks",))
        run = self._check_runs.get(call.int_param("id"))
        if run is None or run["repo"] != repo.full_name:
            raise _not_found()
        self._apply_check_update(run, call.body)
        return _Reply(200, self._check_run_json(run, call.api_base))

    def _get_check_run(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call, read=("checks",))
        run = self._check_runs.get(call.int_param("id"))
        if run is None or run["repo"] != repo.full_name:
            raise _not_found()
        return _Reply(200, self._check_run_json(run, call.api_base))

    def _apply_check_update(self, run: dict[str, Any], body: dict[str, Any]) -> None:
        """GitHub's rules: a conclusion completes the run; `completed` needs a conclusion; an
        output needs a title and a summary (65,535 characters at most)."""
        status = body.get("status", run["status"])
        conclusion = body.get("conclusion", run["conclusion"])
        if status not in STATUSES or (conclusion is not None and conclusion not in CONCLUSIONS):
            raise _validation_failed({"resource": "CheckRun", "field": "status", "code": "invalid"})
        if "conclusion" in body and body["conclusion"] is not None:
            status = "completed"
        if status == "completed" and conclusion is None:
            raise _validation_failed(
                {"resource": "CheckRun", "field": "conclusion", "code": "missing_field"}
            )
        output = body.get("output")
        if output is not None:
            if not isinstance(output.get("title"), str) or not isinstance(
                output.get("summary"), str
            ):
                raise _validation_failed(
                    {"resource": "CheckRun", "field": "output", "code": "missing_field"}
                )
            if len(output["summary"]) > 65_535 or len(output.get("text") or "") > 65_535:
                raise _validation_failed(
                    {"resource": "CheckRun", "field": "output", "code": "too_long"}
                )
            run["output"] = {
                "title": output["title"],
                "summary": output["summary"],
                "text": output.get("text"),
            }
        for name in ("details_url", "external_id", "started_at", "name"):
            if name in body:
                run[name] = body[name]
        run["status"], run["conclusion"] = status, conclusion
        if status == "completed" and run["completed_at"] is None:
            run["completed_at"] = body.get("completed_at") or _iso(_now())
        run["history"].append(
            {"status": status, "conclusion": conclusion, "title": run["output"]["title"]}
        )

    # ------------------------------------------------------------------ renderers

    def _check_run_json(self, run: dict[str, Any], api_base: str) -> dict[str, Any]:
        repo = run["repo"]
        url = f"{api_base}/repos/{repo}/check-runs/{run['id']}"
        stamp = "2024-01-01T00:00:00Z"
        return {
            "id": run["id"],
            "head_sha": run["head_sha"],
            "node_id": _node_id("08:CheckRun", run["id"]),
            "external_id": run["external_id"],
            "url": url,
            "html_url": f"{HTML_BASE}/{repo}/runs/{run['id']}",
            "details_url": run["details_url"],
            "status": run["status"],
            "conclusion": run["conclusion"],
            "started_at": run["started_at"],
            "completed_at": run["completed_at"],
            "output": {
                **run["output"],
                "annotations_count": 0,
                "annotations_url": f"{url}/annotations",
            },
            "name": run["name"],
            "check_suite": {"id": run["id"] + 1},
            "app": {
                "id": self.app_id,
                "slug": self.app_slug,
                "node_id": _node_id("03:Integration", self.app_id),
                "client_id": f"Iv1.fake{self.app_id}",
                "owner": self._user(self.app_owner, api_base),
                "name": self.app_slug.replace("-", " ").title(),
                "description": "A fake GitHub App",
                "external_url": f"{HTML_BASE}/{self.app_owner}",
                "html_url": f"{HTML_BASE}/apps/{self.app_slug}",
                "created_at": stamp,
                "updated_at": stamp,
                "permissions": {"checks": "write"},
                "events": [],
            },
            "pull_requests": [],
        }
