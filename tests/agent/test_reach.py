"""An unprivileged process reaches the paths it needs under a private directory, and nothing else
there, while the directory's own permissions stay as they were."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from bot.agent.workspace import reach

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and util-linux"
)


def test_only_the_needed_paths_show_through_a_closed_directory(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    (closed / "python" / "bin").mkdir(parents=True)
    (closed / "python" / "bin" / "tool").write_text("needed\n")
    (closed / "secret").write_text("private\n")
    for path in (closed / "python", closed / "python" / "bin"):
        path.chmod(0o755)
    (closed / "python" / "bin" / "tool").chmod(0o644)
    (closed / "secret").chmod(0o644)
    closed.chmod(0o700)
    reach.STAGE.mkdir(mode=0o755, parents=True, exist_ok=True)
    needed = closed / "python"
    assert reach.needs_private_view([needed])

    reader = (
        f"cat {shlex.quote(str(needed / 'bin' / 'tool'))}; "
        f"cat {shlex.quote(str(closed / 'secret'))} 2>&1 || true"
    )
    script = [
        "set -e",
        *reach.private_view([needed]),
        "exec setpriv --reuid=65534 --regid=65534 --clear-groups -- /bin/sh -c "
        + shlex.quote(reader),
    ]
    unshare = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c"]
    done = subprocess.run(
        [*unshare, "\n".join(script)],
        capture_output=True,
        text=True,
        check=True,
    )

    assert done.stdout.splitlines()[0] == "needed"
    assert "private" not in done.stdout
    assert "No such file" in done.stdout
    assert closed.stat().st_mode & 0o777 == 0o700  # nothing on the host was opened up


def test_an_open_path_needs_no_private_view() -> None:
    assert reach.closed_ancestor(Path("/usr/bin")) is None
