"""Profile the service under load with py-spy (``make bench-profile SCENARIO=point``).

    .venv/bin/python -m bench.profile point [--backend postgresql] [--seconds 15]

Starts the service on a freshly seeded database, drives one scenario with wrk, and samples the
server with ``py-spy record``. Keeps the collapsed stacks in ``bench/.work/profile-<scenario>.txt``
(for flamegraph tools) and prints the functions holding the most samples, by own time and
including callees.
"""

import argparse
import collections
import subprocess
import threading
from pathlib import Path

from bench.run import PORT, SEED_ROWS, SERVICE, WORK, database_for
from bench.servers import ROOT, run_wrk, start_server

PY_SPY = ROOT / ".venv" / "bin" / "py-spy"


def top(collapsed: Path, count: int = 25) -> str:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        samples += int(n)
        own[frames[-1]] += int(n)
        for frame in set(frames):
            total[frame] += int(n)
    lines = [f"{samples} samples"]
    for title, counter in (("own time", own), ("including callees", total)):
        lines.append(f"\ntop {count} by {title}:")
        lines += [f"{n / samples:6.1%}  {frame}" for frame, n in counter.most_common(count)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenario", choices=["point", "page", "create", "patch", "mixed"])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--seconds", type=int, default=15)
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    database = database_for(args.backend, "profile")
    database.create()
    try:
        database.seed(SEED_ROWS)
        server = start_server(
            SERVICE, PORT, {"HEROES_DATABASE_URL": database.url}, WORK / "server.log"
        )
        try:
            raw = WORK / f"profile-{args.scenario}.txt"
            spy = [
                str(PY_SPY),
                "record",
                "--pid",
                str(server.process.pid),
                "--rate",
                "250",
                "--duration",
                str(args.seconds),
                "--nonblocking",
            ]
            load = threading.Thread(
                target=run_wrk,
                args=(server.url, args.scenario),
                kwargs={"seconds": args.seconds + 2, "connections": 64, "max_id": SEED_ROWS},
            )
            load.start()
            subprocess.run(
                [*spy, "--format", "raw", "--output", str(raw)], check=True, capture_output=True
            )
            load.join()
            print(top(raw))
        finally:
            server.stop()
    finally:
        database.drop()


if __name__ == "__main__":
    main()
