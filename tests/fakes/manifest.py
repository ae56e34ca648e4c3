"""GitHub's side of the App manifest flow for FakeGitHub: codes for confirmed manifests, and
`POST /app-manifests/{code}/conversions`, which turns a code into the new App's credentials.

GitHub hands out a code when someone confirms a manifest on its "Create GitHub App" page and
redirects to the manifest's `redirect_url` with it; a test plays that part with `issue_code`.
Docs: https://docs.github.com/rest/apps/apps#create-a-github-app-from-a-manifest
"""

from __future__ import annotations

import re
import secrets
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.github import FakeGitHub, Handler, _Call, _Reply

PERMISSION_LEVELS = frozenset({"read", "write", "admin"})
# Webhook events an App can subscribe to that this fake knows (GitHub knows more).
KNOWN_EVENTS = frozenset(
    {
        "check_run",
        "check_suite",
        "issue_comment",
        "issues",
        "label",
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "pull_request_review_thread",
        "push",
        "repository",
        "workflow_run",
    }
)
# Sent to every App whatever it subscribes to; GitHub's form does not offer them.
ALWAYS_SENT = frozenset({"installation", "installation_repositories"})


@dataclass
class CreatedApp:
    """An App made from a manifest: what the conversion answered, secrets included."""

    code: str
    manifest: dict[str, Any]
    id: int
    slug: str
    pem: str
    webhook_secret: str
    client_secret: str


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def check_manifest(manifest: dict[str, Any]) -> None:
    """Refuse a manifest as GitHub's page would, before any code exists (ValueError)."""
    if not isinstance(manifest.get("url"), str) or not manifest["url"]:
        raise ValueError("manifest: url is required")
    hook = manifest.get("hook_attributes")
    if hook is not None and not (isinstance(hook, dict) and hook.get("url")):
        raise ValueError("manifest: hook_attributes.url is required")
    for name, level in (manifest.get("default_permissions") or {}).items():
        if level not in PERMISSION_LEVELS:
            raise ValueError(f"manifest: permission {name}: {level!r} is not read/write/admin")
    for event in manifest.get("default_events") or []:
        if event in ALWAYS_SENT or event not in KNOWN_EVENTS:
            raise ValueError(f"manifest: {event!r} cannot be subscribed to")


class ManifestConversions:
    """The codes one FakeGitHub handed out and the Apps they became. Codes work once."""

    def __init__(self, fake: FakeGitHub) -> None:
        self._fake = weakref.ref(fake)
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[dict[str, Any], str]] = {}
        self.created: list[CreatedApp] = []

    def issue_code(self, manifest: dict[str, Any], private_key_pem: str) -> str:
        """What GitHub does when the manifest is confirmed: a code for an App with this key.

        The App gets the fake's `app_id`, so its JWTs (signed with `private_key_pem`, which
        should be the fake's key pair) are accepted afterwards."""
        check_manifest(manifest)
        code = secrets.token_hex(10)
        with self._lock:
            self._pending[code] = (manifest, private_key_pem)
        return code

    def convert(self, call: _Call) -> _Reply:
        from tests.fakes.github import HTML_BASE, ApiError, _node_id, _Reply

        fake = self._fake()
        assert fake is not None
        with self._lock:
            pending = self._pending.pop(call.params["code"], None)
        if pending is None:
            raise ApiError(404, "Not Found")
        manifest, pem = pending
        slug = _slug(str(manifest.get("name") or fake.app_slug))
        app = CreatedApp(
            code=call.params["code"],
            manifest=manifest,
            id=fake.app_id,
            slug=slug,
            pem=pem,
            webhook_secret=secrets.token_hex(20),
            client_secret=secrets.token_hex(20),
        )
        with self._lock:
            self.created.append(app)
        stamp = "2024-01-01T00:00:00Z"
        return _Reply(
            201,
            {
                "id": app.id,
                "slug": slug,
                "node_id": _node_id("03:Integration", app.id),
                "client_id": f"Iv1.{secrets.token_hex(8)}",
                "owner": fake._user(fake.app_owner, call.api_base),
                "name": manifest.get("name") or slug,
                "description": manifest.get("description"),
                "external_url": manifest["url"],
                "html_url": f"{HTML_BASE}/apps/{slug}",
                "created_at": stamp,
                "updated_at": stamp,
                "permissions": dict(manifest.get("default_permissions") or {}),
                "events": list(manifest.get("default_events") or []),
                "client_secret": app.client_secret,
                "webhook_secret": app.webhook_secret,
                "pem": pem,
            },
        )


_CONVERSIONS: weakref.WeakKeyDictionary[FakeGitHub, ManifestConversions] = (
    weakref.WeakKeyDictionary()
)
_GUARD = threading.Lock()


def manifest_conversions(fake: FakeGitHub) -> ManifestConversions:
    """The manifest side of `fake` (made on first use)."""
    with _GUARD:
        conversions = _CONVERSIONS.get(fake)
        if conversions is None:
            conversions = _CONVERSIONS[fake] = ManifestConversions(fake)
        return conversions


def convert_manifest_code(fake: FakeGitHub) -> Handler:
    """FakeGitHub's handler for `POST /app-manifests/{code}/conversions`."""
    return lambda call: manifest_conversions(fake).convert(call)
