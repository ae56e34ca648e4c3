"""The completion callback as its own job, queued once a run is final: POST the five fields,
retried with back-off on 5xx and network errors, never on 4xx; its fate goes on the record."""

from __future__ import annotations

import logging
import time
from typing import Any

from arq import Retry

from bot.errors import CallbackRejected, CallbackUnavailable, backoff
from bot.jobs import context
from bot.runs import callback, callback_url
from bot.runs.outcome import Done, RunOutcome

log = logging.getLogger(__name__)


async def deliver_callback(ctx: dict[str, Any], run_id: str) -> dict[str, Any]:
    deps, now = context.deps(ctx), context.attempt(ctx)
    return (await _deliver(deps, now, run_id)).as_result()


async def _deliver(deps: context.Deps, now: context.Attempt, run_id: str) -> RunOutcome:
    settings, runs = deps.settings, deps.runs
    record = await runs.get(run_id)
    if record is None:
        return RunOutcome(run_id, Done.GONE)
    to = callback.target(settings, record, await runs.callback_key(run_id))
    if to is None:
        return RunOutcome(run_id, Done.SKIPPED, reason="no callback")
    if (why := callback_url.problem(to.url, settings.callback_allowed_hosts)) is not None:
        # Stored before the rules, or set in the environment: refused, never sent or retried.
        log.error("run %s: callback URL refused: %s", run_id, why, extra={"run_id": run_id})
        await runs.update(run_id, callback_status=f"refused: the callback URL {why}")
        return RunOutcome.failed(run_id, "callback", f"the callback URL {why}")
    try:
        code = await callback.send(deps.http, to, callback.payload(record, to.run_id))
    except CallbackRejected as exc:
        log.error("run %s: callback rejected: %s", run_id, exc, extra={"run_id": run_id})
        await runs.update(run_id, callback_status=f"rejected: {exc}")
        return RunOutcome.failed(run_id, exc.code, str(exc))
    except CallbackUnavailable as exc:
        if now.tries < settings.callback_max_attempts:
            defer = backoff(now.tries, base=settings.callback_retry_base_seconds)
            log.warning(
                "run %s: callback failed (%s); attempt %d of %d in %.1fs",
                run_id,
                exc,
                now.tries + 1,
                settings.callback_max_attempts,
                defer,
                extra={"run_id": run_id},
            )
            raise Retry(defer=defer) from exc
        log.error("run %s: callback gave up: %s", run_id, exc, extra={"run_id": run_id})
        await runs.update(run_id, callback_status=f"gave up after {now.tries} attempts: {exc}")
        return RunOutcome.failed(run_id, exc.code, f"gave up: {exc}")
    await runs.update(run_id, callback_status=f"delivered ({code}) at {time.time():.0f}")
    return RunOutcome(run_id, Done.RECORDED, facts={"attempts": now.tries})
