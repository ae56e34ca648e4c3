"""`openhands-bot`: run the web app, the worker, or both in one process (the embedded default);
register the GitHub App (`setup`), check the configuration (`doctor`), replay a delivery."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from bot import logs
from bot.config import MissingSetting, Settings
from bot.intake.app import create_app
from bot.intake.serving import uvicorn_config
from bot.jobs.worker import make_worker
from bot.ops import doctor, replay
from bot.ops.app_manifest import (
    CREDENTIAL_KEYS,
    GitHubHost,
    Registered,
    SetupError,
    SetupOptions,
    webhook_url_from,
)
from bot.ops.local_redis import RedisUnavailable, redis_for
from bot.ops.setup_flow import run_setup

log = logging.getLogger(__name__)

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _say(text: str) -> None:
    print(text, flush=True)  # noqa: T201 - the command line's own output


def _complain(text: str) -> None:
    print(f"openhands-bot: {text}", file=sys.stderr, flush=True)  # noqa: T201


def _uvicorn(settings: Settings, host: str, port: int) -> uvicorn.Server:
    return uvicorn.Server(uvicorn_config(create_app(settings), host, port))


async def _serve(settings: Settings, host: str, port: int) -> None:
    """Web app and worker side by side in one event loop; either ending stops both."""
    server = _uvicorn(settings, host, port)
    worker = make_worker(settings, handle_signals=False)
    web_task = asyncio.create_task(server.serve(), name="web")
    worker_task = asyncio.create_task(worker.async_run(), name="worker")
    try:
        await asyncio.wait({web_task, worker_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        await worker.close()
        worker_task.cancel()
        await asyncio.gather(web_task, worker_task, return_exceptions=True)


def _unconfigured(settings: Settings) -> bool:
    """No App credential at all: a fresh machine, for which `serve` registers an App first."""
    return all(
        value is None
        for value in (
            settings.github_app_id,
            settings.github_private_key,
            settings.github_private_key_path,
            settings.github_webhook_secret,
        )
    )


def _setup_options(settings: Settings, args: argparse.Namespace) -> SetupOptions:
    github_url = getattr(args, "github_url", None)
    return SetupOptions(
        host=GitHubHost.from_urls(github_url, settings.github_api_url),
        env_file=Path(getattr(args, "env_file", ".env")),
        state_dir=settings.state_dir,
        webhook_url=getattr(args, "webhook_url", None) or webhook_url_from(settings.public_url),
        org=getattr(args, "org", None),
        app_name=getattr(args, "name", None),
        inline_key=getattr(args, "inline_key", False),
        record_api_url=github_url is not None,
    )


def _register(settings: Settings, args: argparse.Namespace) -> Registered:
    if args.host not in LOOPBACK:
        _complain(
            f"warning: the setup page listens on {args.host} over plain HTTP; only the one-time "
            "link below opens it, but on an untrusted network prefer 127.0.0.1 and ssh -L."
        )
    registered = asyncio.run(run_setup(_setup_options(settings, args), args.host, args.port))
    where = (
        f"the private key to {registered.key_file} (0600)"
        if registered.key_file
        else "the private key inline"
    )
    _say(
        f"Registered GitHub App {registered.slug or '?'} (id {registered.app_id}); wrote its "
        f"credentials to {registered.env_file} (0600) and {where}.\n"
        f"Now install it on your repositories: {registered.install_url}"
    )
    shadowing = sorted(key for key in CREDENTIAL_KEYS if key in os.environ)
    if shadowing:  # the environment wins over .env
        _complain(f"warning: unset {', '.join(shadowing)} in the environment: it overrides .env")
    return registered


def _run_serve(args: argparse.Namespace) -> int:
    settings = Settings()
    logs.configure(settings.log_level)
    if _unconfigured(settings):
        _say("No GitHub App is configured yet (GITHUB_APP_ID, key, webhook secret).")
        _register(settings, args)
        settings = Settings()  # the credentials just written to .env
    settings.require_web()
    with redis_for(settings) as ready, contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(ready, args.host, args.port))  # until Ctrl-C or SIGTERM: a clean stop
    return 0


def _run_doctor(args: argparse.Namespace) -> int:
    settings, loaded = doctor.load_settings()
    checks = [loaded]
    if settings is not None:
        checks.extend(asyncio.run(doctor.run_checks(settings, full=args.full)))
    _say(doctor.render(checks))
    return 1 if doctor.failed(checks) else 0


def _run_replay(args: argparse.Namespace) -> int:
    settings = Settings()
    logs.configure(settings.log_level)
    body = replay.read_delivery(Path(args.file).read_bytes())
    delivery_id = args.delivery_id or replay.new_delivery_id()
    with redis_for(settings) as ready:
        answer = asyncio.run(
            replay.post_delivery(ready, args.event, body, delivery_id=delivery_id, url=args.url)
        )
        _say(answer.describe())
        run_id = answer.queued_run
        if answer.status_code >= 300:
            return 1
        if run_id is None or not args.run:
            return 0
        succeeded = asyncio.run(replay.run_burst(ready, run_id, say=_say))
    return 0 if succeeded else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openhands-bot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("serve", "web app and worker in one process (the embedded default)"),
        ("web", "only the webhook receiver"),
        ("worker", "only the job worker"),
        ("setup", "register the GitHub App from app-manifest.yml and keep its credentials"),
    ):
        sub = commands.add_parser(name, help=help_text)
        if name != "worker":
            sub.add_argument("--host", default="127.0.0.1")
            sub.add_argument("--port", type=int, default=8000)
    setup = commands.choices["setup"]
    setup.add_argument("--webhook-url", help="where GitHub posts deliveries (default: PUBLIC_URL)")
    setup.add_argument("--org", help="register the App on this organization")
    setup.add_argument("--github-url", help="GitHub Enterprise Server, e.g. https://github.corp")
    setup.add_argument("--name", help="the App's name (GitHub lets you change it too)")
    setup.add_argument("--inline-key", action="store_true", help="key in .env, not a file")
    setup.add_argument("--env-file", default=".env")

    check = commands.add_parser("doctor", help="check the configuration end to end")
    check.add_argument("--full", action="store_true", help="also start the local agent-server")

    again = commands.add_parser("replay", help="run one saved delivery through the real path")
    again.add_argument("file", help="a webhook payload (JSON), e.g. from the App's deliveries")
    again.add_argument("--event", required=True, help="its X-GitHub-Event, e.g. issue_comment")
    again.add_argument("--url", help="post to this running server instead of in-process")
    again.add_argument("--delivery-id", help="default: a fresh one, so it is never a redelivery")
    again.add_argument(
        "--run",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="then run the queue with a burst worker (default: on)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "worker":  # arq handles its own signals
        # uvicorn re-raises the signal it stopped on once it is done; as KeyboardInterrupt, a
        # SIGTERM then unwinds like Ctrl-C, through every clean-up (the private Redis too).
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        if args.command == "serve":
            return _run_serve(args)
        if args.command == "doctor":
            return _run_doctor(args)
        if args.command == "replay":
            return _run_replay(args)
        settings = Settings()
        logs.configure(settings.log_level)
        if args.command == "setup":
            _register(settings, args)
            return 0
        if args.command == "web":
            settings.require_web()
            _uvicorn(settings, args.host, args.port).run()
        else:
            settings.require_app()
            make_worker(settings).run()
    except (MissingSetting, ValidationError, RedisUnavailable) as exc:
        _complain(str(exc))
        return 2
    except (SetupError, replay.ReplayError, OSError) as exc:
        _complain(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
