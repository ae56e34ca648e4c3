"""Where the repository's own test data lives, found from this file so any clone finds it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
PAYLOADS = FIXTURES / "github" / "webhook-payloads"
REST_EXAMPLES = FIXTURES / "github" / "rest-examples"
