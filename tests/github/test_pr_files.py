"""Changed files set aside when generated, packed into passes, and the coverage stated."""

from __future__ import annotations

import pytest

from bot.github.pr_files import (
    ChangedFile,
    is_generated,
    linguist_generated,
    plan,
)

ATTRIBUTES = """\
# generated code
api/gen/** linguist-generated
*.pb.go linguist-generated=true
schema.graphql linguist-generated
api/gen/keep.py -linguist-generated
web/vendor/** linguist-generated=false
"""


@pytest.mark.parametrize(
    ("path", "generated"),
    [
        ("api/gen/client.py", True),
        ("api/gen/deep/er/x.py", True),
        ("api/gen/keep.py", False),  # a later line unsets it
        ("svc/thing.pb.go", True),
        ("schema.graphql", True),
        ("docs/schema.graphql", True),  # no slash: any depth
        ("api/generic.py", False),
        ("uv.lock", True),
        ("web/package-lock.json", True),
        ("static/app.min.js", True),
        ("vendor/github.com/x/y.go", True),
        ("web/vendor/lib.js", False),  # the repository says it is not generated
        ("bot/app.py", False),
    ],
)
def test_generated_files(path: str, generated: bool) -> None:
    assert is_generated(path, linguist_generated(ATTRIBUTES)) is generated


def _file(path: str, lines: int) -> ChangedFile:
    patch = f"@@ -0,0 +1,{lines} @@\n" + "".join(f"+line {n}\n" for n in range(lines))
    return ChangedFile(path, patch, lines)


def test_files_are_packed_into_passes_and_the_rest_listed() -> None:
    files = [_file(f"src/m{n:03}.py", 10) for n in range(30)]
    files += [_file("uv.lock", 10), _file("src/huge.py", 500)]
    size = len(files[0].section())

    result = plan(files, total=33, budget_chars=size * 10, max_passes=2, rules=[])

    assert [len(p.files) for p in result.passes] == [10, 10]
    assert result.generated == ["uv.lock"]
    assert "src/huge.py" in result.over_budget  # larger than a whole pass
    assert len(result.over_budget) == 11
    seen = {f.path for p in result.passes for f in p.files}
    assert not seen & set(result.over_budget)
    assert all(len(p.diff) <= size * 10 for p in result.passes)
    assert result.coverage() == (
        "**Coverage:** 20 of 33 files reviewed in 2 passes; 1 generated or vendored skipped, "
        "11 over budget, 1 not listed by GitHub (it lists 3,000 at most) — listed below."
    )


def test_a_small_pull_request_is_one_pass_fully_covered() -> None:
    result = plan(
        [_file("a.py", 1), _file("b.py", 2)], total=2, budget_chars=10_000, max_passes=4, rules=[]
    )
    assert len(result.passes) == 1
    assert result.coverage() == "**Coverage:** 2 of 2 files reviewed."
    assert "<details>" not in result.section()


def test_the_lists_are_folded_and_capped() -> None:
    files = [_file(f"vendor/x{n}.go", 1) for n in range(60)] + [_file("a.py", 1)]
    section = plan(files, total=61, budget_chars=10_000, max_passes=1, rules=[]).section()
    assert "<details><summary>Not reviewed: generated or vendored (60)</summary>" in section
    assert "- `vendor/x0.go`" in section
    assert "- … and 10 more" in section


def test_the_prompt_names_at_most_50_files_left_out() -> None:
    files = [_file(f"src/m{n:03}.py", 1) for n in range(80)]
    result = plan(files, total=80, budget_chars=len(files[0].section()), max_passes=1, rules=[])
    assert len(result.over_budget) == 79
    assert result.left_out() == [f"src/m{n:03}.py" for n in range(1, 51)] + ["… and 29 more"]


def test_a_file_name_cannot_leave_its_code_span() -> None:
    hostile = "vendor/a` @octo/admins [x](https://evil.example) `\nb.go"
    section = plan(
        [_file(hostile, 1)], total=1, budget_chars=10_000, max_passes=1, rules=[]
    ).section()
    assert "- `vendor/a' @octo/admins [x](https://evil.example) ' b.go`" in section
