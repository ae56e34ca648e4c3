"""`openhands-bot doctor`: check the configuration end to end and say what to fix for failures
(the checks of the agent's side are in `doctor_agent`)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from githubkit import GitHub
from githubkit.exception import RequestError, RequestFailed, RequestTimeout
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.config import MissingSetting, Settings
from bot.github.auth import AppJwt
from bot.github.client import AppJwtStrategy
from bot.ops import doctor_sandbox, local_redis
from bot.ops.checks import Check, _redact
from bot.ops.doctor_agent import (
    check_llm,
    check_trust_domain,
    check_workspace,
)

# What the bot's REST calls need (app-manifest.yml), and the events bot/intake/triggers.py routes.
NEEDED_PERMISSIONS = {
    "contents": "write",
    "issues": "write",
    "pull_requests": "write",
    "metadata": "read",
}
NEEDED_EVENTS = ("issue_comment", "issues", "pull_request", "pull_request_review_comment", "push")
LEVELS = {"read": 1, "write": 2, "admin": 3}
KEY_UNREADABLE_FIX = (
    "generate a private key on the App's settings page; point GITHUB_PRIVATE_KEY_PATH at the .pem"
)
JWT_REFUSED_FIX = (
    "GITHUB_APP_ID and the private key must belong to the same App: generate a new key "
    "on the App's settings page or fix GITHUB_APP_ID; also check this machine's clock"
)
REDIS_BY_SERVE = "REDIS_URL unset: `serve` starts a private {executable} with its data in {data}"
REDIS_DOWN_FIX = (
    "start Redis there, or set REDIS_URL to one that runs "
    "(unset, `serve` starts a private redis-server)"
)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}{port}"
    return parts._replace(netloc=netloc).geturl()


def load_settings() -> tuple[Settings | None, Check]:
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        return None, Check("settings", "FAIL", problems, "fix these values in .env or the env")
    try:
        settings.require_web()
    except MissingSetting as exc:
        return settings, Check(
            "settings", "FAIL", str(exc), "run `openhands-bot setup` to register a GitHub App"
        )
    return settings, Check("settings", "ok", f"App {settings.github_app_id}, webhook secret set")


def check_key(settings: Settings) -> Check:
    try:
        key = load_pem_private_key(settings.private_key_pem().encode(), password=None)
    except MissingSetting:
        return Check("private key", "skip", "none configured (see settings)")
    except (OSError, ValueError, TypeError) as exc:
        where = settings.github_private_key_path or "GITHUB_PRIVATE_KEY"
        return Check(
            "private key",
            "FAIL",
            f"{where}: {type(exc).__name__}: {_redact(str(exc))}",
            KEY_UNREADABLE_FIX,
        )
    if not isinstance(key, RSAPrivateKey):
        return Check("private key", "FAIL", "not an RSA key", "use the App's .pem private key")
    return Check("private key", "ok", f"RSA {key.key_size} bits")


def _app_problems(app: Any) -> list[str]:
    granted = (
        app.permissions.model_dump(exclude_none=True, exclude_unset=True) if app.permissions else {}
    )
    missing = [
        f"{name}:{level}"
        for name, level in NEEDED_PERMISSIONS.items()
        if LEVELS.get(str(granted.get(name)), 0) < LEVELS[level]
    ]
    return [f"missing permissions {', '.join(missing)}"] if missing else []


async def check_app(settings: Settings) -> list[Check]:
    """The JWT must be accepted by `GET /app`; then the App's permissions, events and slug."""
    assert settings.github_app_id is not None
    jwt = AppJwt(settings.github_app_id, settings.private_key_pem())
    github = GitHub(
        AppJwtStrategy(jwt),
        base_url=settings.github_api_url,
        user_agent="openhands-bot",
        timeout=15,
        auto_retry=False,
        http_cache=False,
    )
    try:
        app = (await github.rest.apps.async_get_authenticated()).parsed_data
    except RequestFailed as exc:
        message = _response_message(exc.response.raw_response)
        fix = JWT_REFUSED_FIX
        if exc.response.status_code != 401:
            fix = f"check GITHUB_API_URL ({settings.github_api_url})"
        return [
            Check(
                "GitHub App JWT",
                "FAIL",
                f"GET /app answered {exc.response.status_code}: {message}",
                fix,
            )
        ]
    except (RequestError, RequestTimeout) as exc:
        return [
            Check(
                "GitHub App JWT",
                "FAIL",
                f"{settings.github_api_url} unreachable ({type(exc).__name__})",
                "check GITHUB_API_URL and this machine's network",
            )
        ]
    if app is None:
        return [Check("GitHub App JWT", "FAIL", "GET /app answered nothing", "retry later")]
    checks = [Check("GitHub App JWT", "ok", f"accepted: App {app.slug} (id {app.id})")]
    checks.append(_app_settings(settings, app))
    return checks


def _app_settings(settings: Settings, app: Any) -> Check:
    problems = _app_problems(app)
    if problems:
        return Check(
            "App permissions",
            "FAIL",
            "; ".join(problems),
            "App settings → Permissions & events: grant them (see app-manifest.yml)",
        )
    if settings.github_app_slug and app.slug and settings.github_app_slug != app.slug:
        return Check(
            "App permissions",
            "FAIL",
            f"GITHUB_APP_SLUG is {settings.github_app_slug} but the App is {app.slug}",
            f"set GITHUB_APP_SLUG={app.slug}",
        )
    missing_events = [event for event in NEEDED_EVENTS if event not in (app.events or [])]
    installs = app.installations_count if isinstance(app.installations_count, int) else None
    if missing_events:
        return Check(
            "App permissions",
            "warn",
            f"not subscribed to {', '.join(missing_events)}: those triggers never arrive",
            "App settings → Permissions & events → Subscribe to events",
        )
    if installs == 0:
        return Check(
            "App permissions",
            "warn",
            "the App is installed nowhere yet",
            f"install it: {app.html_url}/installations/new",
        )
    return Check("App permissions", "ok", f"as needed; {installs} installation(s)")


def _response_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("message", body))[:200] if isinstance(body, dict) else str(body)[:200]


async def check_redis(
    settings: Settings, *, default_address: tuple[str, int] = local_redis.DEFAULT_ADDRESS
) -> Check:
    if "redis_url" not in settings.model_fields_set and not local_redis.answers(default_address):
        executable = shutil.which("redis-server")
        if executable is None:
            return Check("Redis", "FAIL", "REDIS_URL unset, none on :6379", local_redis.HOW_TO_GET)
        return Check(
            "Redis",
            "ok",
            REDIS_BY_SERVE.format(executable=executable, data=settings.state_dir / "redis"),
        )
    url = _without_password(settings.redis_url)
    password = urlsplit(settings.redis_url).password
    client = Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3)
    try:
        started = time.monotonic()
        await client.ping()
        elapsed = (time.monotonic() - started) * 1000
    except (RedisError, OSError) as exc:
        return Check(
            "Redis",
            "FAIL",
            f"{url}: {type(exc).__name__}: {_redact(str(exc), password)}",
            REDIS_DOWN_FIX,
        )
    finally:
        await client.aclose()
    return Check("Redis", "ok", f"{url} answers PING in {elapsed:.0f} ms")


async def _guarded(check: Callable[[], Awaitable[Check]], name: str) -> Check:
    try:
        return await check()
    except Exception as exc:  # a crashing check is a failed row, never a lost report
        return Check(name, "FAIL", f"{type(exc).__name__}: {_redact(str(exc))}", "see above")


async def run_checks(settings: Settings, *, full: bool = False) -> list[Check]:
    """Every check after `settings` loaded; the GitHub rows need a loadable key."""

    key = check_key(settings)
    checks = [key]
    if key.status == "ok" and settings.github_app_id is not None:
        checks.extend(await check_app(settings))
    else:
        checks.append(Check("GitHub App JWT", "skip", "needs GITHUB_APP_ID and a loadable key"))
    # One after another: importing litellm blocks the loop, and timings should be honest.
    checks.append(await _guarded(lambda: check_redis(settings), "Redis"))
    checks.append(await _guarded(lambda: check_workspace(settings, full=full), "workspace"))
    if (shared := check_trust_domain(settings)) is not None:
        checks.append(shared)
    checks.append(await _guarded(lambda: doctor_sandbox.check_sandbox(settings), "sandbox"))
    checks.append(await _guarded(lambda: check_llm(settings), "LLM"))
    return checks


def render(checks: list[Check]) -> str:
    """A plain table: one row per check, and a `fix:` line under each failure or warning."""
    width = max(len(check.name) for check in checks)
    lines = []
    for check in checks:
        lines.append(f"{check.status:<4}  {check.name:<{width}}  {check.detail}")
        if check.fix and check.status in {"FAIL", "warn"}:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {check.fix}")
    failed = sum(check.status == "FAIL" for check in checks)
    lines.append(f"{failed} check(s) failed" if failed else "all checks passed")
    return "\n".join(lines)


def failed(checks: list[Check]) -> bool:
    return any(check.status == "FAIL" for check in checks)
