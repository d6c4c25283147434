"""A real server (tests/servers.py) whose settings are only the ones a test names."""

from pathlib import Path

from tests.servers import Server


def isolated_server(
    database_url: str, log_dir: Path, *, workers: int = 1, **settings: str
) -> Server:
    """A ``Server`` on ``database_url`` that sees no ``HEROES_*`` variable of the developer's
    environment and no ``.env``: only ``settings`` (``db_pool_size="4"`` is
    ``HEROES_DB_POOL_SIZE=4``)."""
    server = Server(database_url, log_dir, workers=workers)
    server.env = {
        **{k: v for k, v in server.env.items() if not k.startswith("HEROES_")},
        "HEROES_ENV_FILE": "",
        "HEROES_DATABASE_URL": database_url,
        **{f"HEROES_{name.upper()}": value for name, value in settings.items()},
    }
    return server
