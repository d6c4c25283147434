"""Turn raw benchmark runs into medians, a markdown report, a chart, and bench/README.md's table."""

import statistics
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SCENARIOS = ["point", "page", "create", "create_keyed", "patch", "mixed"]
SCALE_SCENARIOS = [
    "point",
    "point_unbatched",
    "page",
    "page_deep",
    "page_keyset",
    "by_name",
    "age_range",
]
# The batchers (HeroService.batch_stats()) each scenario goes through. One the service does not
# have (no "pages" before page reads were batched; none with HEROES_BATCHING=false) is skipped.
BATCHERS: dict[str, tuple[str, ...]] = {
    "point": ("reads",),
    "page": ("pages",),
    "create": ("writes",),
    "create_keyed": ("writes",),
    "patch": ("writes",),
    "mixed": ("reads", "writes"),
    "page_deep": ("pages",),
    "page_keyset": ("pages",),  # every GET /heroes/, filtered or not, is a page
    "by_name": ("pages",),
    "age_range": ("pages",),
}
BACKENDS = ["sqlite", "postgresql"]
TARGETS = ["ceiling", "sqlite", "sqlite-unbatched", "postgresql", "postgresql-unbatched"]
COLORS = {
    "ceiling": "#7f7f7f",
    "sqlite": "#1f77b4",
    "sqlite-unbatched": "#aec7e8",
    "postgresql": "#ff7f0e",
    "postgresql-unbatched": "#ffbb78",
}
START, END = "<!-- bench:results:start -->", "<!-- bench:results:end -->"
Run = dict[str, Any]
MeanBatch = dict[str, float] | None


def mean_batch(batches: dict[str, dict[str, int]]) -> MeanBatch:
    """{batcher: items / batches} for the batchers that ran any batch; None when none did."""
    means = {name: d["items"] / d["batches"] for name, d in batches.items() if d["batches"]}
    return means or None


def format_batch(means: MeanBatch) -> str:
    return ", ".join(f"{name} {value:.1f}" for name, value in (means or {}).items())


def _total_batches(group: Iterable[Run]) -> dict[str, dict[str, int]]:
    total: dict[str, dict[str, int]] = {}
    for run in group:
        for name, delta in run.get("batches", {}).items():
            into = total.setdefault(name, {"batches": 0, "items": 0})
            into["batches"] += delta["batches"]
            into["items"] += delta["items"]
    return total


def summarize(runs: list[Run]) -> list[Run]:
    """One row per (phase, target, rows, scenario, connections): medians over rounds, totals of
    errors, and the mean batch size over every batch of every round."""
    groups: dict[tuple[str, str, int, str, int], list[Run]] = defaultdict(list)
    for run in runs:
        key = run["phase"], run["target"], run["rows"], run["scenario"], run["connections"]
        groups[key].append(run)
    rows = []
    for (phase, target, n, scenario, connections), group in groups.items():
        rows.append(
            {
                "phase": phase,
                "target": target,
                "rows": n,
                "scenario": scenario,
                "connections": connections,
                "rounds": len(group),
                "rps": statistics.median(r["rps"] for r in group),
                "p50_ms": statistics.median(r["p50_ms"] for r in group),
                "p99_ms": statistics.median(r["p99_ms"] for r in group),
                "non2xx": sum(r["non2xx"] for r in group),
                "wrong_bodies": sum(r.get("wrong_bodies", 0) for r in group),
                "socket_errors": sum(r["socket_errors"] for r in group),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in group),
                "requests": sum(r["requests"] for r in group),
                "mean_batch": mean_batch(_total_batches(group)),
            }
        )
    ceiling = {
        (r["scenario"], r["connections"]): r["rps"]
        for r in rows
        if r["target"] == "ceiling" and r["phase"] == "main"
    }
    for row in rows:
        same = row["scenario"], row["connections"]
        row["vs_ceiling"] = (
            row["rps"] / ceiling[same] if same in ceiling and row["phase"] == "main" else None
        )
    return rows


def _on_off(table: list[Run]) -> list[tuple[Run, Run]]:
    """Each batched service row with its ``-unbatched`` twin for the same scenario."""
    return [
        (on, off)
        for on in table
        if on["target"] in BACKENDS
        and (off := _find(table, target=f"{on['target']}-unbatched", scenario=on["scenario"]))
    ]


def checks_table(heading: str, checks: list[tuple[str, str, bool]]) -> list[str]:
    """Markdown lines of (target, measured, holds) checks; a miss is in bold."""
    return [
        f"| {heading} | measured | holds |",
        "|---|---|---|",
        *(f"| {name} | {value} | {'yes' if ok else '**no**'} |" for name, value, ok in checks),
    ]


def _find(table: list[Run], **match: Any) -> Run | None:
    return next((r for r in table if all(r[k] == v for k, v in match.items())), None)


def _main(rows: list[Run], connections: int) -> list[Run]:
    """Main-phase rows at one connection count, in target then scenario order."""
    return sorted(
        (r for r in rows if r["phase"] == "main" and r["connections"] == connections),
        key=lambda r: (TARGETS.index(r["target"]), SCENARIOS.index(r["scenario"])),
    )


# Issue 8: the least share of the ceiling's throughput (64 connections) per backend and scenario.
FLOORS = {
    "sqlite": {"point": 0.50, "page": 0.35, "create": 0.25, "patch": 0.25, "mixed": 0.40},
    "postgresql": {"point": 0.35, "create": 0.20, "patch": 0.20, "mixed": 0.30},
}
TAIL_SCENARIOS = ["point", "page", "create", "patch"]  # p99 <= 3x p50 in each


# Issue 9, at the scale run's largest database: (scenario, yardstick, least share of its req/s).
SCALE_FLOORS = [
    ("page_keyset", "page", 0.80),  # keyset pages at random depths vs shallow offset pages
    ("age_range", "page", 0.70),
    ("by_name", "point_unbatched", 0.70),  # a lookup by name vs one by id, batching off
]
FILTERED = ["page_keyset", "by_name", "age_range"]  # scenario.lua checks their answers


def scale_targets(rows: list[Run], backend: str) -> list[tuple[str, str, bool]]:
    """(target, measured, holds) for issue 9's goals on one backend, at the scale run's size."""
    scale = [r for r in rows if r["phase"] == "scale" and r["target"] == backend]
    if not scale:
        return []
    big = max(r["rows"] for r in scale)
    checks: list[tuple[str, str, bool]] = []
    for scenario, yardstick, floor in SCALE_FLOORS:
        row = _find(scale, rows=big, scenario=scenario)
        base = _find(scale, rows=big, scenario=yardstick)
        if row and base:
            share = row["rps"] / base["rps"]
            checks.append(
                (
                    f"{backend}: {scenario} >= {floor:.0%} of {yardstick}, {big:,} heroes",
                    f"{row['rps']:,.0f} / {base['rps']:,.0f} req/s = {share:.0%}",
                    share >= floor,
                )
            )
    filtered = [r for r in scale if r["scenario"] in FILTERED]
    if filtered:
        wrong = sum(r["wrong_bodies"] for r in filtered)
        checks.append(
            (
                f"{backend}: every 2xx answer holds what it asked for ({', '.join(FILTERED)})",
                f"{wrong} wrong in {sum(r['requests'] for r in filtered):,}",
                wrong == 0,
            )
        )
    return checks


def targets(rows: list[Run], meta: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(target, measured, holds) for issue 8's goals per database backend (batching on), then
    issue 9's (the scale run)."""
    checks: list[tuple[str, str, bool]] = []
    main_c, low_c, high_c = meta["connections"], meta["low_connections"], meta["high_connections"]
    for backend in (b for b in BACKENDS if any(r["target"] == b for r in rows)):
        main = [r for r in _main(rows, main_c) if r["target"] == backend]
        errors = sum(
            r["non2xx"] + r["socket_errors"]
            for r in rows
            if r["target"] == backend and r["connections"] != high_c
        )
        ran = [f"{main_c} and {low_c} connections"] if meta["rounds"] else []
        ran += ["scale run"] if meta.get("scale_rounds") else []
        checks.append(
            (
                f"{backend}: zero non-2xx and socket errors ({', '.join(ran)})",
                f"{errors}",
                errors == 0,
            )
        )
        for scenario, floor in FLOORS[backend].items():
            row = _find(main, scenario=scenario)
            if row and row["vs_ceiling"] is not None:
                checks.append(
                    (
                        f"{backend}: {scenario} >= {floor:.0%} of ceiling",
                        f"{row['vs_ceiling']:.1%}",
                        row["vs_ceiling"] >= floor,
                    )
                )
        tails = [r for r in main if r["scenario"] in TAIL_SCENARIOS]
        if worst := max(tails, key=lambda r: r["p99_ms"] / r["p50_ms"], default=None):
            ratio = worst["p99_ms"] / worst["p50_ms"]
            checks.append(
                (
                    f"{backend}: p99 <= 3x p50 in {', '.join(TAIL_SCENARIOS)}",
                    f"worst {ratio:.1f}x ({worst['scenario']})",
                    ratio <= 3,
                )
            )
        mixed, create = _find(main, scenario="mixed"), _find(main, scenario="create")
        if mixed and create:
            ratio = mixed["p99_ms"] / create["p99_ms"]
            checks.append(
                (
                    f"{backend}: mixed p99 <= 2x create p99",
                    f"{mixed['p99_ms']:.0f} / {create['p99_ms']:.0f} ms = {ratio:.2f}x",
                    ratio <= 2,
                )
            )
        pairs = [pair for pair in _on_off(_main(rows, low_c)) if pair[0]["target"] == backend]
        if pairs:
            on, off = max(pairs, key=lambda pair: pair[0]["p50_ms"] / pair[1]["p50_ms"])
            worst_ratio = on["p50_ms"] / off["p50_ms"]
            checks.append(
                (
                    f"{backend}: p50 at {low_c} connection, batching on <= 1.10x off, "
                    "every scenario",
                    f"worst {worst_ratio - 1:+.1%} ({on['scenario']})",
                    worst_ratio <= 1.10,
                )
            )
        high = [r for r in _main(rows, high_c) if r["target"] == backend]
        if high:
            errors = sum(r["non2xx"] + r["socket_errors"] for r in high)
            answered = min(r["requests"] for r in high)  # a run with no answer has no errors
            checks.append(
                (
                    f"{backend}: zero errors at {high_c:,} connections "
                    f"({', '.join(r['scenario'] for r in high)})",
                    f"{errors} in {sum(r['requests'] for r in high):,} requests",
                    errors == 0 and answered > 0,
                )
            )
    for backend in (b for b in BACKENDS if any(r["target"] == b for r in rows)):
        checks += scale_targets(rows, backend)
    return checks


def _ms(value: float) -> str:
    return f"{value:,.1f}"


def markdown(meta: dict[str, Any], rows: list[Run], chart: str | None) -> str:
    """The report; ``chart``: the main phase's figure, if there is one, relative to the file."""
    main_c, low_c, high_c = meta["connections"], meta["low_connections"], meta["high_connections"]
    seconds = meta["seconds"]
    low_seconds = meta.get("low_seconds", seconds)
    how = (
        f"{meta['rounds']} interleaved round{'' if meta['rounds'] == 1 else 's'}. "
        f"Per server start: every scenario at {main_c} connections ({seconds:g} s each), "
        f"every scenario at {low_c} connection ({low_seconds:g} s each), "
        f"point and mixed at {high_c:,} connections ({seconds:g} s each). "
        if meta["rounds"]
        else "scale run only (`--scale-only`). "
    )
    lines = [
        f"Run {meta['date']} on {meta['machine']}, commit `{meta['commit']}`; {how}"
        f"Medians shown; took {meta.get('minutes', '?')} min"
        f"{' (QUICK run: indicative only)' if meta['quick'] else ''}. `-unbatched`: the same "
        "service with `HEROES_BATCHING=false`. Mean batch: requests per statement (reads, "
        "pages) or per transaction (writes), over every round.",
    ]
    if _main(rows, main_c):
        lines += [
            "",
            f"**{main_c} connections**",
            "",
            "| target | scenario | req/s | p50 ms | p99 ms | p99/p50 | non-2xx | socket errors "
            "| peak RSS MB | vs ceiling | mean batch |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
        ]
    for r in _main(rows, main_c):
        ratio = "" if r["vs_ceiling"] is None else f"{r['vs_ceiling']:.0%}"
        lines.append(
            f"| {r['target']} | {r['scenario']} | {r['rps']:,.0f} | {_ms(r['p50_ms'])} "
            f"| {_ms(r['p99_ms'])} | {r['p99_ms'] / r['p50_ms']:.1f} | {r['non2xx']} "
            f"| {r['socket_errors']} | {r['peak_rss_mb']:.0f} | {ratio} "
            f"| {format_batch(r['mean_batch'])} |"
        )

    on_off = _on_off(_main(rows, main_c))
    if on_off:
        lines += [
            "",
            f"**Batching on vs off, {main_c} connections**",
            "",
            "| backend | scenario | req/s on | req/s off | on / off | p99 ms on | p99 ms off "
            "| mean batch |",
            "|---|---|--:|--:|--:|--:|--:|---|",
        ]
        for on, off in on_off:
            lines.append(
                f"| {on['target']} | {on['scenario']} | {on['rps']:,.0f} | {off['rps']:,.0f} "
                f"| {on['rps'] / off['rps']:.2f}x | {_ms(on['p99_ms'])} | {_ms(off['p99_ms'])} "
                f"| {format_batch(on['mean_batch'])} |"
            )

    low = _main(rows, low_c)
    low_pairs = _on_off(low)
    if low_pairs:
        lines += [
            "",
            f"**{low_c} connection: the cost of batching at low load**",
            "",
            "| backend | scenario | p50 ms on | p50 ms off | on vs off | req/s on | req/s off "
            "| ceiling p50 ms | mean batch |",
            "|---|---|--:|--:|--:|--:|--:|--:|---|",
        ]
        for on, off in low_pairs:
            ceiling = _find(low, target="ceiling", scenario=on["scenario"])
            ceiling_p50 = f"{ceiling['p50_ms']:.2f}" if ceiling else ""
            lines.append(
                f"| {on['target']} | {on['scenario']} | {on['p50_ms']:.2f} | {off['p50_ms']:.2f} "
                f"| {on['p50_ms'] / off['p50_ms'] - 1:+.1%} | {on['rps']:,.0f} "
                f"| {off['rps']:,.0f} | {ceiling_p50} "
                f"| {format_batch(on['mean_batch'])} |"
            )

    high = _main(rows, high_c)
    if high:
        lines += [
            "",
            f"**{high_c:,} connections**",
            "",
            "| target | scenario | req/s | p50 ms | p99 ms | non-2xx | socket errors "
            "| peak RSS MB | mean batch |",
            "|---|---|--:|--:|--:|--:|--:|--:|---|",
        ]
        for r in high:
            lines.append(
                f"| {r['target']} | {r['scenario']} | {r['rps']:,.0f} | {_ms(r['p50_ms'])} "
                f"| {_ms(r['p99_ms'])} | {r['non2xx']} | {r['socket_errors']} "
                f"| {r['peak_rss_mb']:.0f} | {format_batch(r['mean_batch'])} |"
            )

    lines += ["", *checks_table("target (issues 8 and 9)", targets(rows, meta))]
    scale = sorted(
        (r for r in rows if r["phase"] == "scale"),
        key=lambda r: (TARGETS.index(r["target"]), SCALE_SCENARIOS.index(r["scenario"]), r["rows"]),
    )
    if scale:
        scale_rounds = meta.get("scale_rounds", meta["rounds"])
        big = max(r["rows"] for r in scale)
        modulus = meta.get("age_modulus")
        ages = f"{big // modulus:,} heroes at {big:,}" if modulus else "one age"
        lines += [
            "",
            f"Scale run, {scale_rounds} interleaved round{'' if scale_rounds == 1 else 's'} "
            f"at {main_c} connections, batching on except `point_unbatched` (`point` with "
            "`HEROES_BATCHING=false`). `page`: offsets 0..900; `page_deep`: offsets anywhere in "
            "the table; `page_keyset`: `after_id` anywhere in the table; `by_name`: one hero by "
            f"name; `age_range`: one age (`min_age` = `max_age`), {ages}; 100 heroes a page:",
            "",
            "| target | heroes | scenario | req/s | p50 ms | p99 ms | non-2xx | socket errors "
            "| peak RSS MB | database MB | mean batch |",
            "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|---|",
        ]
        sizes = meta.get("database_mb", {})
        for r in scale:
            size = sizes.get(f"{r['target']}:{r['rows']}", 0.0)
            lines.append(
                f"| {r['target']} | {r['rows']:,} | {r['scenario']} | {r['rps']:,.0f} "
                f"| {_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | {r['non2xx']} "
                f"| {r['socket_errors']} | {r['peak_rss_mb']:.0f} | {size:.1f} "
                f"| {format_batch(r['mean_batch'])} |"
            )
        for target, rate in meta.get("seed_rows_per_s", {}).items():
            lines.append(f"\nBulk load into {target}: {rate:,.0f} rows/s.")
    if chart:
        lines += [
            "",
            f"![throughput and p99 at {main_c} connections and p50 at {low_c}, per scenario: "
            f"ceiling, and the service with batching on and off]({chart})",
        ]
    return "\n".join([*lines, ""])


def chart(rows: list[Run], path: Path, meta: dict[str, Any]) -> None:
    main_c, low_c = meta["connections"], meta["low_connections"]
    figure, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    panels = [
        (main_c, "rps", f"throughput at {main_c} connections (req/s, higher is better)"),
        (main_c, "p99_ms", f"p99 at {main_c} connections (ms, lower is better)"),
        (low_c, "p50_ms", f"p50 at {low_c} connection (ms, lower is better)"),
    ]
    for axis, (connections, field, title) in zip(axes, panels, strict=True):
        table = _main(rows, connections)
        names = [t for t in TARGETS if any(r["target"] == t for r in table)]
        width = 0.8 / max(len(names), 1)
        for i, name in enumerate(names):
            by = {r["scenario"]: r for r in table if r["target"] == name}
            xs = [n + i * width for n in range(len(SCENARIOS))]
            values = [by[s][field] if s in by else 0 for s in SCENARIOS]
            axis.bar(xs, values, width, label=name, color=COLORS[name])
        axis.set_xticks(
            [n + width * (len(names) - 1) / 2 for n in range(len(SCENARIOS))], SCENARIOS
        )
        axis.set_title(title, fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    figure.suptitle("heroes_api (batching on and off) vs in-memory ceiling, medians")
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    figure.savefig(path, dpi=100)
    plt.close(figure)


def update_readme(readme: Path, section: str) -> None:
    text = readme.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    readme.write_text(f"{head}{START}\n{section}\n{END}{tail}")
