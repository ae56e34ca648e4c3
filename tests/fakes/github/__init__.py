"""A fake GitHub REST API on a real loopback port, so the bot's HTTP client is tested end to end."""

# FakeGitHub (server.py) is assembled from one mixin per resource module. These names are what
# tests and the other fakes import from `tests.fakes.github`.

from tests.fakes.github.calls import ApiError, Handler, RecordedRequest, _Call, _Reply
from tests.fakes.github.server import FakeGitHub
from tests.fakes.github.shapes import EXAMPLES_DIR, HTML_BASE, _node_id, example
from tests.fakes.github.state import (
    FakeInstallation,
    FakeIssue,
    FakePull,
    FakeRepo,
    IssuedToken,
    TokenScope,
)

__all__ = [
    "EXAMPLES_DIR",
    "HTML_BASE",
    "ApiError",
    "FakeGitHub",
    "FakeInstallation",
    "FakeIssue",
    "FakePull",
    "FakeRepo",
    "Handler",
    "IssuedToken",
    "RecordedRequest",
    "TokenScope",
    "_Call",
    "_Reply",
    "_node_id",
    "example",
]
