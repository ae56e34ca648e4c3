"""The tracking comment offers the stop command under the bot's own handle (BOT_HANDLE)."""

from __future__ import annotations

from bot.github.tracking import ON_IT, marker, render


def test_the_stop_command_follows_the_handle() -> None:
    body = render("run-1", "working", "step 3", None, handle="robo")
    assert ON_IT.format(handle="robo") in body
    assert "@openhands" not in body
    assert body.startswith(marker("run-1"))
    assert "**Working**: step 3" in body
