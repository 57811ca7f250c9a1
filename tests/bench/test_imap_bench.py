"""The benchmark's guard against comparing two checkouts on a schema only one of them has."""

from pathlib import Path

from bench.imap_bench import differing_migrations


def _checkout(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_checkouts_with_the_same_migrations_do_not_differ(tmp_path: Path) -> None:
    files = {"mailweb/migrations/0001_initial.py": "a", "sync/migrations/0001_initial.py": "b"}
    ours = _checkout(tmp_path / "ours", files)
    theirs = _checkout(tmp_path / "theirs", {**files, "mailweb/views.py": "other code"})

    assert differing_migrations(ours, theirs) == []


def test_added_removed_and_changed_migrations_are_named(tmp_path: Path) -> None:
    ours = _checkout(
        tmp_path / "ours",
        {
            "mailweb/migrations/0001_initial.py": "a",
            "mailweb/migrations/0002_search.py": "new",
            "sync/migrations/0001_initial.py": "b",
        },
    )
    theirs = _checkout(
        tmp_path / "theirs",
        {
            "mailweb/migrations/0001_initial.py": "a",
            "sync/migrations/0001_initial.py": "changed",
            "accounts/migrations/0003_old.py": "c",
        },
    )

    assert differing_migrations(ours, theirs) == [
        "accounts/migrations/0003_old.py",
        "mailweb/migrations/0002_search.py",
        "sync/migrations/0001_initial.py",
    ]


def test_the_real_checkouts_migrations_are_compared(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]

    assert differing_migrations(root, root) == []
    against_none = differing_migrations(root, tmp_path)
    assert "mailweb/migrations/0001_initial.py" in against_none
    assert "sync/migrations/0001_sync_state.py" in against_none
