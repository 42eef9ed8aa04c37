"""Schema migrations: `alembic upgrade head`, run in code on the package's own scripts."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (the latest schema unless told otherwise);
    a no-op when it is there already."""
    ensure_sqlite_parent(url)
    config = _config()
    # The config is an INI parser: a literal % (URL-encoded options) must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, revision)


def head_revision() -> str:
    """The revision of the latest schema this version of Reynolds knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations in {MIGRATIONS}")
    return head


def known_revisions() -> frozenset[str]:
    """Every schema revision this version of Reynolds can migrate from."""
    return frozenset(
        script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()
    )


def ensure_sqlite_parent(url: str) -> None:
    """Create the folder of a SQLite database file, which SQLite will not do itself."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    return config
