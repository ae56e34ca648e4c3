"""Finding fingerprints and the per-PR store: what makes a finding the same one again."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from bot.runs.findings import Finding, PullFindings, fingerprint, marker, marker_in


def test_a_fingerprint_survives_reindenting_and_changes_with_the_code_or_rule() -> None:
    first = fingerprint("app.py", "    x = eval(text)\n", "eval")
    assert fingerprint("app.py", "x  =  eval(text)", "Eval") == first
    assert fingerprint("app.py", "x = eval(data)", "eval") != first
    assert fingerprint("lib.py", "x = eval(text)", "eval") != first
    assert fingerprint("app.py", "x = eval(text)", "injection") != first


@pytest.mark.parametrize(
    ("body", "found"),
    [
        pytest.param(f"Finding\n\n{marker('0123456789abcdef')}", "0123456789abcdef", id="ours"),
        pytest.param("<!-- openhands-finding:nothex!!nothex! -->", None, id="not-hex"),
        pytest.param("no marker", None, id="none"),
    ],
)
def test_marker_in(body: str, found: str | None) -> None:
    assert marker_in(body) == found


async def test_the_store_keeps_findings_and_the_review_state(redis: Redis) -> None:
    store = PullFindings(redis, "Octo/App", 5)
    assert (await store.state()).last_head is None
    finding = Finding("0123456789abcdef", "app.py", 3, "x = 1", "style", "important", "b", "h1")
    await store.save(finding)
    await store.reviewed("h1", 42, "run:review")
    await store.save(finding.but("dismissed"))
    await store.reviewed("h2", None, None)
    assert await PullFindings(redis, "octo/app", 5).all() == {
        finding.fingerprint: finding.but("dismissed")
    }
    state = await store.state()
    assert (state.last_head, state.summary_review_id, state.summary_key, state.reviews) == (
        "h2",
        42,
        "run:review",
        2,
    )
    await redis.hset(store.findings_key, "junk", b"{not json")
    assert list(await store.all()) == [finding.fingerprint]
