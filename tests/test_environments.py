"""Two environments: ``make install`` (what ``make run`` uses) installs the runtime lock only;
``make test`` and ``make lint`` add the development lock, whose pins agree with the runtime's."""

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.databases import ROOT
from tests.servers import clean_env

DEV_TOOLS = {"pytest", "mypy", "ruff", "hypothesis", "schemathesis"}
INSTALL_TIMEOUT_SECONDS = 600
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;]+)", re.MULTILINE)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text()
    return {normalized(name): version for name, version in _PIN.findall(text)}


def requirement_names(requirements: list[str]) -> set[str]:
    return {
        normalized(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0])
        for requirement in requirements
    }


def test_the_locks_agree_and_split_runtime_from_development() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert requirement_names(project["dependencies"]) <= runtime.keys()
    assert requirement_names(project["optional-dependencies"]["dev"]) <= dev.keys()
    assert not DEV_TOOLS & runtime.keys()
    assert {name: dev.get(name) for name in runtime} == runtime  # same pins for shared packages


@pytest.mark.slow
def test_make_install_builds_an_environment_without_the_development_tools(
    tmp_path: Path,
) -> None:
    """``make install`` into a fresh venv (from PyPI): exactly the runtime lock's packages, at its
    pins, enough to build the app (docs assets included), and no test or lint tool."""
    venv = tmp_path / "venv"
    done = subprocess.run(
        ["make", "--no-print-directory", "install", f"VENV={venv}"],
        cwd=ROOT,
        env=clean_env(HOME=str(Path.home())),  # pip reads its own config and cache there
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_SECONDS,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (venv / ".installed").exists()
    assert not (venv / ".dev-installed").exists()

    listed = subprocess.run(
        [venv / "bin/python", "-m", "pip", "list", "--format=freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
        env=clean_env(),
    ).stdout
    installed = {normalized(name): version for name, version in _PIN.findall(listed)}
    assert not DEV_TOOLS & installed.keys()
    runtime = pins("requirements.lock")
    assert {name: installed.get(name) for name in runtime} == runtime
    assert installed.keys() - runtime.keys() <= {"pip", "setuptools"}  # the venv's own

    built = subprocess.run(
        [
            venv / "bin/python",
            "-c",
            "from heroes_api.app import create_app; from heroes_api.config import Settings; "
            "print(len(create_app(Settings(database_url='sqlite://')).routes))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=clean_env(HEROES_DATABASE_URL="sqlite://"),
    )
    assert built.returncode == 0, built.stderr
    for tool in ("alembic", "uvicorn"):
        assert (venv / "bin" / tool).exists()
