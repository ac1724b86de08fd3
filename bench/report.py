"""The Markdown report of a bench/run: medians over the rounds of each run's measures.

    python bench/report.py MACHINE.txt RESULTS.tsv

MACHINE.txt holds key=value lines (the machine, the versions, the inputs); RESULTS.tsv one
line per run as bench/run writes it (wall, user and system seconds and the peak resident set
in KiB from /usr/bin/time, and the CPU seconds other processes used meanwhile). MB are 10^6
bytes; CPU is user + system time.
"""

import csv
import statistics
import sys

PEERS = {
    "agentmeter": "`agentmeter ingest` into an empty local lake",
    "duckdb-hourly": "DuckDB: hourly query to Parquet",
    "duckdb-raw": "DuckDB: raw events to Parquet",
    "polars-hourly": "Polars: hourly query to Parquet",
}
FLOORS = {
    "floor-parse": "serde_json: split lines, parse each to `IgnoredAny`",
    "floor-decode": "agentmeter's decode stage, outcomes counted and dropped",
    "floor-duckdb-count": "DuckDB: `count(*)` and `max` of every column",
}
MONTH = {
    "month-firehose": "the Firehose (CloudWatch subscription) files",
    "month-firehose-decode": "the same, agentmeter's decode stage alone (outcomes counted "
    "and dropped; events decoded, duplicate deliveries included)",
    "month-all": "the whole month: every format and the spans",
}


def load(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def med(rows, key):
    vals = [float(r[key]) for r in rows if r[key] not in ("", None)]
    return statistics.median(vals) if vals else None


def medians(rows):
    ok = [r for r in rows if r["rc"] == "0"]
    if not ok:
        return None
    for r in ok:
        r["cpu"] = str(float(r["user"]) + float(r["sys"]))
        r["rss_mb"] = str(int(r["maxrss_kb"]) * 1024 / 1e6)
        wall = float(r["wall"])
        r["eps"] = str(float(r["events"]) / wall) if r["events"] else ""
        r["rps"] = str(float(r["records"]) / wall) if r["records"] else ""
        r["mbps"] = str(float(r["bytes"]) / 1e6 / wall)
    return {
        k: med(ok, k)
        for k in ("wall", "cpu", "rss_mb", "eps", "rps", "mbps", "events", "records", "other_cpu")
    } | {"runs": len(ok), "failed": len(rows) - len(ok)}


def f(x, digits=1):
    if x is None:
        return "n/a"
    return f"{x:,.{digits}f}"


def n(x):
    return "n/a" if x is None else f"{x:,.0f}"


def ratio(a, b):
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def main(machine_path, results_path):
    m = {}
    with open(machine_path) as fh:
        for line in fh:
            k, _, v = line.rstrip("\n").partition("=")
            m[k] = v
    rows = load(results_path)
    by = {}
    for r in rows:
        by.setdefault(r["name"], []).append(r)
    med_of = {name: medians(rs) for name, rs in by.items()}
    rounds = m.get("rounds", "?")
    out = []
    p = out.append
    p("## Machine and versions\n")
    p("| | |\n|---|---|")
    mem = int(m.get("memory_kb", "0") or 0) / 1024 / 1024
    for label, value in [
        ("CPU", m.get("cpu")),
        ("cores", m.get("cores")),
        ("memory", f"{mem:.1f} GiB"),
        ("kernel", m.get("kernel")),
        ("OS", m.get("os")),
        ("agentmeter", f"{m.get('agentmeter')}, commit {m.get('commit')}"),
        ("rustc", m.get("rustc")),
        ("Python", m.get("python")),
        ("DuckDB", m.get("duckdb")),
        ("Polars", m.get("polars")),
    ]:
        p(f"| {label} | {value} |")

    size = int(m["file_bytes"]) / 1e6
    p(
        f"\n## One NDJSON file: {int(m['file_events']):,} events, {size:,.0f} MB\n\n"
        f"`{m['file']}`: {int(m['file_records']):,} records (the distinct events, their "
        "duplicate deliveries and other event types). Medians of "
        f"{rounds} rounds; events/s counts the {int(m['file_events']):,} distinct events for "
        "every tool; the ratios are agentmeter's median divided by the tool's; other CPU s is "
        "the CPU time the rest of the machine used during the run (0 on an idle machine).\n"
    )
    p(
        "| tool | wall s | CPU s | peak RSS MB | events/s | MB/s "
        "| agentmeter ÷ tool: wall | CPU | RSS | other CPU s |"
    )
    p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    am = med_of.get("agentmeter")
    for name, label in PEERS.items():
        s = med_of.get(name)
        if s is None:
            p(f"| {label} | failed | | | | | | | | |")
            continue
        if name == "agentmeter" or am is None:
            rat = "— | — | —"
        else:
            rat = (
                f"{ratio(am['wall'], s['wall'])} | {ratio(am['cpu'], s['cpu'])} "
                f"| {ratio(am['rss_mb'], s['rss_mb'])}"
            )
        p(
            f"| {label} | {f(s['wall'], 2)} | {f(s['cpu'], 2)} | {f(s['rss_mb'], 0)} "
            f"| {n(s['eps'])} | {f(s['mbps'])} | {rat} | {f(s['other_cpu'], 2)} |"
        )

    p(f"\n### Parse-only floors, same file (medians of {rounds} rounds)\n")
    p(
        "| floor | wall s | CPU s | peak RSS MB | events/s | MB/s "
        "| agentmeter wall ÷ floor wall | other CPU s |"
    )
    p("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, label in FLOORS.items():
        s = med_of.get(name)
        if s is None:
            p(f"| {label} | failed | | | | | | |")
            continue
        w = ratio(am["wall"], s["wall"]) if am else "n/a"
        p(
            f"| {label} | {f(s['wall'], 2)} | {f(s['cpu'], 2)} | {f(s['rss_mb'], 0)} "
            f"| {n(s['eps'])} | {f(s['mbps'])} | {w} | {f(s['other_cpu'], 2)} |"
        )

    p(
        f"\n## A generated month: {int(m['month_events']):,} events, "
        f"{int(m['month_spans']):,} spans\n\n`agentmeter ingest` into an empty local lake; "
        "events and records are the run summary's (events written, records read), or for "
        "the decode stage alone its own count (events decoded, records read). "
        f"Medians of {rounds} rounds.\n"
    )
    p(
        "| input | MB | records | events | wall s | CPU s | peak RSS MB | events/s | records/s "
        "| other CPU s |"
    )
    p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, label in MONTH.items():
        s = med_of.get(name)
        if s is None:
            p(f"| {label} | failed | | | | | | | | |")
            continue
        mb = int(by[name][0]["bytes"]) / 1e6
        p(
            f"| {label} | {mb:,.0f} | {n(s['records'])} | {n(s['events'])} | {f(s['wall'], 2)} "
            f"| {f(s['cpu'], 2)} | {f(s['rss_mb'], 0)} | {n(s['eps'])} | {n(s['rps'])} "
            f"| {f(s['other_cpu'], 2)} |"
        )

    failed = [r for r in rows if r["rc"] != "0"]
    if failed:
        p("\nFailed runs (left out of the medians):\n")
        for r in failed:
            p(f"- {r['name']}, round {r['round']}: exit code {r['rc']}")
    print("\n".join(out))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1], sys.argv[2])
