"""Turn raw benchmark runs into medians, a markdown report, a chart, and bench/README.md's table."""

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SCENARIOS = ["point", "page", "create", "patch", "mixed"]
SCALE_SCENARIOS = ["point", "page", "page_deep"]
START, END = "<!-- bench:results:start -->", "<!-- bench:results:end -->"
Run = dict[str, Any]


def summarize(runs: list[Run]) -> list[Run]:
    """One row per (phase, target, rows, scenario): medians over rounds, totals of errors."""
    groups: dict[tuple[str, str, int, str], list[Run]] = defaultdict(list)
    for run in runs:
        groups[run["phase"], run["target"], run["rows"], run["scenario"]].append(run)
    rows = []
    for (phase, target, n, scenario), group in groups.items():
        rows.append(
            {
                "phase": phase,
                "target": target,
                "rows": n,
                "scenario": scenario,
                "rounds": len(group),
                "rps": statistics.median(r["rps"] for r in group),
                "p50_ms": statistics.median(r["p50_ms"] for r in group),
                "p99_ms": statistics.median(r["p99_ms"] for r in group),
                "non2xx": sum(r["non2xx"] for r in group),
                "socket_errors": sum(r["socket_errors"] for r in group),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in group),
                "requests": sum(r["requests"] for r in group),
            }
        )
    ceiling = {r["scenario"]: r["rps"] for r in rows if r["target"] == "ceiling"}
    for row in rows:
        row["vs_ceiling"] = (
            row["rps"] / ceiling[row["scenario"]]
            if row["scenario"] in ceiling and row["phase"] == "main"
            else None
        )
    return rows


def _find(table: list[Run], **match: Any) -> Run | None:
    return next((r for r in table if all(r[k] == v for k, v in match.items())), None)


def targets(rows: list[Run]) -> list[tuple[str, str, bool]]:
    """(target, measured, holds) for issue 5's goals, per database backend."""
    checks: list[tuple[str, str, bool]] = []
    backends = sorted(
        {r["target"] for r in rows if r["target"] != "ceiling"}, key=lambda t: t != "sqlite"
    )
    for backend in backends:
        main = [r for r in rows if r["phase"] == "main" and r["target"] == backend]
        errors = sum(r["non2xx"] + r["socket_errors"] for r in rows if r["target"] == backend)
        checks.append((f"{backend}: zero non-2xx and socket errors", f"{errors}", errors == 0))
        for scenario, floor in (
            ("point", 0.30),
            ("mixed", 0.25),
            ("create", 0.15),
            ("patch", 0.15),
        ):
            row = _find(main, scenario=scenario)
            if row and row["vs_ceiling"] is not None:
                checks.append(
                    (
                        f"{backend}: {scenario} >= {floor:.0%} of ceiling",
                        f"{row['vs_ceiling']:.1%}",
                        row["vs_ceiling"] >= floor,
                    )
                )
        worst = max(main, key=lambda r: r["p99_ms"] / r["p50_ms"], default=None)
        if worst:
            ratio = worst["p99_ms"] / worst["p50_ms"]
            checks.append(
                (
                    f"{backend}: p99 <= 3x p50 in every scenario",
                    f"worst {ratio:.1f}x ({worst['scenario']})",
                    ratio <= 3,
                )
            )
        big_rows = max(
            (r["rows"] for r in rows if r["phase"] == "scale" and r["target"] == backend),
            default=None,
        )
        small = _find(rows, phase="scale", target=backend, rows=1000, scenario="point")
        big = _find(rows, phase="scale", target=backend, rows=big_rows, scenario="point")
        if big and small and big_rows:
            rss = max(
                r["peak_rss_mb"]
                for r in rows
                if r["phase"] == "scale" and r["target"] == backend and r["rows"] == big_rows
            )
            checks.append(
                (
                    f"{backend}: server RSS < 150 MB with {big_rows:,} heroes",
                    f"{rss:.0f} MB",
                    rss < 150,
                )
            )
            kept = big["rps"] / small["rps"]
            checks.append(
                (
                    f"{backend}: point reads at {big_rows:,} rows within 20% of 1,000",
                    f"{kept:.0%} of 1k",
                    kept >= 0.8,
                )
            )
    return checks


def markdown(meta: dict[str, Any], rows: list[Run], chart: str) -> str:
    lines = [
        f"Run {meta['date']} on {meta['machine']}, commit `{meta['commit']}`; "
        f"{meta['rounds']} interleaved rounds of {meta['seconds']} s per scenario, "
        f"{meta['connections']} connections, medians shown"
        f"{' (QUICK run: indicative only)' if meta['quick'] else ''}.",
        "",
        "| target | scenario | req/s | p50 ms | p99 ms | p99/p50 | non-2xx | socket errors "
        "| peak RSS MB | vs ceiling |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    order = {"ceiling": 0, "sqlite": 1, "postgresql": 2}
    main = sorted(
        (r for r in rows if r["phase"] == "main"),
        key=lambda r: (order[r["target"]], SCENARIOS.index(r["scenario"])),
    )
    for r in main:
        ratio = "" if r["vs_ceiling"] is None else f"{r['vs_ceiling']:.0%}"
        lines.append(
            f"| {r['target']} | {r['scenario']} | {r['rps']:,.0f} | {r['p50_ms']:.1f} "
            f"| {r['p99_ms']:.1f} | {r['p99_ms'] / r['p50_ms']:.1f} | {r['non2xx']} "
            f"| {r['socket_errors']} | {r['peak_rss_mb']:.0f} | {ratio} |"
        )
    lines += ["", "| target (issue 5) | measured | holds |", "|---|---|---|"]
    lines += [
        f"| {name} | {value} | {'yes' if ok else '**no**'} |" for name, value, ok in targets(rows)
    ]
    scale = sorted(
        (r for r in rows if r["phase"] == "scale"),
        key=lambda r: (order[r["target"]], SCALE_SCENARIOS.index(r["scenario"]), r["rows"]),
    )
    if scale:
        lines += [
            "",
            "Scale run (`page` offsets 0..900, `page_deep` offsets anywhere in the table):",
            "",
            "| target | heroes | scenario | req/s | p50 ms | p99 ms | non-2xx | socket errors "
            "| peak RSS MB | database MB |",
            "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|",
        ]
        sizes = meta.get("database_mb", {})
        for r in scale:
            size = sizes.get(f"{r['target']}:{r['rows']}", 0.0)
            lines.append(
                f"| {r['target']} | {r['rows']:,} | {r['scenario']} | {r['rps']:,.0f} "
                f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['non2xx']} | {r['socket_errors']} "
                f"| {r['peak_rss_mb']:.0f} | {size:.1f} |"
            )
        for target, rate in meta.get("seed_rows_per_s", {}).items():
            lines.append(f"\nBulk load into {target}: {rate:,.0f} rows/s.")
    lines += ["", f"![throughput and p99 per scenario, service vs ceiling]({chart})", ""]
    return "\n".join(lines)


def chart(rows: list[Run], path: Path) -> None:
    main = [r for r in rows if r["phase"] == "main"]
    names = [t for t in ("ceiling", "sqlite", "postgresql") if any(r["target"] == t for r in main)]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        by = {r["scenario"]: r for r in main if r["target"] == name}
        xs = [n + i * width for n in range(len(SCENARIOS))]
        left.bar(xs, [by[s]["rps"] if s in by else 0 for s in SCENARIOS], width, label=name)
        right.bar(xs, [by[s]["p99_ms"] if s in by else 0 for s in SCENARIOS], width, label=name)
    for axis, title in (
        (left, "throughput (req/s, higher is better)"),
        (right, "p99 latency (ms, lower is better)"),
    ):
        axis.set_xticks(
            [n + width * (len(names) - 1) / 2 for n in range(len(SCENARIOS))], SCENARIOS
        )
        axis.set_title(title)
        axis.legend()
    figure.suptitle("heroes_api vs in-memory ceiling, 64 connections (medians)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def update_readme(readme: Path, section: str) -> None:
    text = readme.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    readme.write_text(f"{head}{START}\n{section}\n{END}{tail}")
