"""`GET /metrics` in Prometheus text format: deliveries counted in this web process, runs, queue
depth and GitHub rate limits counted in Redis so that every worker process contributes.

Format: https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Iterable, Sequence
from typing import cast

import httpx
from arq.constants import default_queue_name
from fastapi import FastAPI, Request, Response
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from bot import keys
from bot.config import Settings
from bot.runs.store import RunRecord

log = logging.getLogger(__name__)

RUNS_KEY = keys.METRICS_PREFIX + "runs-finished"  # hash: "kind|status" → count
DENIED_KEY = keys.METRICS_PREFIX + "requests-denied"  # hash: kind → count
DURATION_KEY = (
    keys.METRICS_PREFIX + "run-duration-seconds"
)  # hash: "kind|le", "kind|sum", "kind|count"
COST_KEY = keys.METRICS_PREFIX + "run-cost-usd"  # the same layout
RATE_LIMIT_KEY = (
    keys.METRICS_PREFIX + "github-rate-limit"
)  # hash: "installation|resource" → "rem lim reset t"
DURATION_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
COST_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
RATE_LIMIT_STALE_SECONDS = 24 * 3600  # an installation not called for a day is no longer shown
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_RESOURCE = re.compile(r"^[a-z_]{1,32}$")

# Webhook deliveries by (event, outcome). The intake only increments it: a dict operation.
# The event label is the X-GitHub-Event header only once the signature verified it, so
# unsigned requests cannot grow the label set.
Deliveries = Counter[tuple[str, str]]
UNVERIFIED = "unverified"  # the event of a delivery rejected before its signature was checked
INVALID = "invalid"  # a signed delivery whose X-GitHub-Event header is missing or malformed


async def count_finished(redis: Redis, record: RunRecord) -> None:
    """Count a run that reached its final status; observe its duration and cost if it started."""
    try:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(RUNS_KEY, f"{record.kind}|{record.status.value}", 1)
            duration = record.duration
            if duration is not None:
                _observe(pipe, DURATION_KEY, DURATION_BUCKETS, record.kind, max(duration, 0.0))
                _observe(pipe, COST_KEY, COST_BUCKETS, record.kind, max(record.cost, 0.0))
            await pipe.execute()
    except (RedisError, OSError) as exc:  # a lost sample must never fail a run's finalization
        log.warning("could not count finished run: %s", exc, extra={"run_id": record.run_id})


async def count_denied(redis: Redis, kind: str) -> None:
    """Count a request refused because its sender may not write (it never became a run)."""
    try:
        await cast(Awaitable[int], redis.hincrby(DENIED_KEY, kind, 1))
    except (RedisError, OSError) as exc:  # a lost sample must never fail the gate
        log.warning("could not count a denied request: %s", exc)


def _observe(pipe: Pipeline, key: str, buckets: Sequence[float], kind: str, value: float) -> None:
    """Histogram buckets are stored cumulative: every bucket whose bound holds the value."""
    for bound in buckets:
        if value <= bound:
            pipe.hincrby(key, f"{kind}|{_number(bound)}", 1)
    pipe.hincrbyfloat(key, f"{kind}|sum", value)
    pipe.hincrby(key, f"{kind}|count", 1)


class RateLimitRecorder:
    """An httpx response hook: keep the last `x-ratelimit-*` values GitHub sent per installation
    (or "app" for the App's JWT) and resource, in Redis."""

    def __init__(self, redis: Redis, installation: str) -> None:
        self._redis = redis
        self._installation = installation

    async def __call__(self, response: httpx.Response) -> None:
        headers = response.headers
        remaining = headers.get("x-ratelimit-remaining")
        limit = headers.get("x-ratelimit-limit")
        if remaining is None or limit is None:  # GHES with rate limits off sends none
            return
        resource = headers.get("x-ratelimit-resource", "core")
        if not _RESOURCE.match(resource):
            resource = "unknown"
        try:
            values = [int(remaining), int(limit), int(headers.get("x-ratelimit-reset", "0"))]
        except ValueError:
            return
        value = " ".join(str(v) for v in [*values, int(time.time())])
        try:
            await cast(
                Awaitable[int],
                self._redis.hset(RATE_LIMIT_KEY, f"{self._installation}|{resource}", value),
            )
        except (RedisError, OSError) as exc:  # a metric must never fail a GitHub call
            log.warning("could not record the GitHub rate limit: %s", exc)


# ----------------------------------------------------------------------------- exposition


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(int(value)) if value == int(value) else repr(value)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _sample(name: str, labels: dict[str, str], value: float) -> str:
    inner = ",".join(f'{key}="{_label(val)}"' for key, val in labels.items())
    return f"{name}{{{inner}}} {_number(value)}" if inner else f"{name} {_number(value)}"


def _family(name: str, kind: str, help_text: str, samples: Iterable[str]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]


def _decode(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {key.decode(): value.decode() for key, value in raw.items()}


def _histogram(
    name: str, help_text: str, raw: dict[str, str], bounds: Sequence[float]
) -> list[str]:
    kinds = sorted({field.split("|", 1)[0] for field in raw if field.endswith("|count")})
    samples: list[str] = []
    for kind in kinds:
        for bound in bounds:
            count = int(raw.get(f"{kind}|{_number(bound)}", "0"))
            samples.append(_sample(f"{name}_bucket", {"kind": kind, "le": _number(bound)}, count))
        total = int(raw[f"{kind}|count"])
        samples.append(_sample(f"{name}_bucket", {"kind": kind, "le": "+Inf"}, total))
        samples.append(_sample(f"{name}_sum", {"kind": kind}, float(raw.get(f"{kind}|sum", "0"))))
        samples.append(_sample(f"{name}_count", {"kind": kind}, total))
    return _family(name, "histogram", help_text, samples)


def _rate_limits(raw: dict[str, str], now: float) -> list[str]:
    remaining: list[str] = []
    limits: list[str] = []
    for field, value in sorted(raw.items()):
        installation, _, resource = field.partition("|")
        try:
            left, limit, reset, seen = (int(part) for part in value.split())
        except ValueError:
            continue
        if now - seen > RATE_LIMIT_STALE_SECONDS:
            continue
        if reset and now >= reset:  # the window GitHub reported is over: the budget is whole
            left = limit
        labels = {"installation": installation, "resource": resource}
        remaining.append(_sample("openhands_bot_github_rate_limit_remaining", labels, left))
        limits.append(_sample("openhands_bot_github_rate_limit_limit", labels, limit))
    return [
        *_family(
            "openhands_bot_github_rate_limit_remaining",
            "gauge",
            "Requests left in GitHub's current rate-limit window, as its last response said.",
            remaining,
        ),
        *_family(
            "openhands_bot_github_rate_limit_limit",
            "gauge",
            "Requests allowed per GitHub rate-limit window, as its last response said.",
            limits,
        ),
    ]


def _delivery_lines(deliveries: Deliveries) -> list[str]:
    samples = [
        _sample("openhands_bot_webhook_deliveries_total", {"event": e, "outcome": o}, n)
        for (e, o), n in sorted(deliveries.items())
    ]
    return _family(
        "openhands_bot_webhook_deliveries_total",
        "counter",
        "Webhook deliveries by event and outcome, since this web process started.",
        samples,
    )


async def _redis_lines(redis: Redis) -> list[str]:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(RUNS_KEY)
        pipe.hgetall(DURATION_KEY)
        pipe.hgetall(COST_KEY)
        pipe.hgetall(RATE_LIMIT_KEY)
        pipe.zcard(default_queue_name)
        pipe.hgetall(DENIED_KEY)
        runs, duration, cost, rate_limits, depth, denied = await pipe.execute()
    run_samples = []
    for field, count in sorted(_decode(runs).items()):
        kind, _, status = field.partition("|")
        labels = {"kind": kind, "status": status}
        run_samples.append(_sample("openhands_bot_runs_finished_total", labels, int(count)))
    denied_samples = [
        _sample("openhands_bot_requests_denied_total", {"kind": kind}, int(count))
        for kind, count in sorted(_decode(denied).items())
    ]
    return [
        *_family(
            "openhands_bot_runs_finished_total",
            "counter",
            "Runs that reached a final status, by kind and status (all workers).",
            run_samples,
        ),
        *_family(
            "openhands_bot_requests_denied_total",
            "counter",
            "Requests refused because the sender may not write to the repository, by kind.",
            denied_samples,
        ),
        *_histogram(
            "openhands_bot_run_duration_seconds",
            "Wall-clock time of finished runs that started, by kind.",
            _decode(duration),
            DURATION_BUCKETS,
        ),
        *_histogram(
            "openhands_bot_run_cost_usd",
            "LLM cost in US dollars of finished runs that started, by kind.",
            _decode(cost),
            COST_BUCKETS,
        ),
        *_family(
            "openhands_bot_queue_depth",
            "gauge",
            f"Jobs in arq's queue ({default_queue_name}), waiting or deferred.",
            [_sample("openhands_bot_queue_depth", {}, int(depth))],
        ),
        *_rate_limits(_decode(rate_limits), time.time()),
    ]


async def exposition(redis: Redis, deliveries: Deliveries) -> str:
    """The whole scrape; the Redis-backed part is left out (redis_up 0) when Redis is down."""
    lines = _delivery_lines(deliveries)
    try:
        lines += await _redis_lines(redis)
        up = 1
    except (RedisError, OSError) as exc:
        log.warning("metrics without Redis: %s", exc)
        up = 0
    lines += _family(
        "openhands_bot_redis_up",
        "gauge",
        "Whether this scrape could read the Redis-backed metrics.",
        [_sample("openhands_bot_redis_up", {}, up)],
    )
    return "\n".join(lines) + "\n"


def install(app: FastAPI, settings: Settings, deliveries: Deliveries) -> None:
    """Add `GET /metrics`: open, or behind `Authorization: Bearer $METRICS_TOKEN` when set."""
    token = settings.metrics_token.get_secret_value().encode() if settings.metrics_token else None

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        if token is not None:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token):
                return Response(
                    "missing or wrong bearer token (METRICS_TOKEN)\n",
                    status_code=401,
                    media_type="text/plain",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        text = await exposition(request.app.state.redis, deliveries)
        return Response(text, media_type=CONTENT_TYPE)
