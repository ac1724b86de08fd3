"""bench/memory's two halves (the rounds, the page cache and the wait for an idle machine are
the script's):

    memory.py run --bin BIN --lake DIR --prefix P --name NAME --round R PATH
        one `agentmeter ingest` of PATH into an empty lake, its resident memory sampled ten times
        a second (P.samples.tsv); prints its line of results.tsv
    memory.py report --runs DIR --target PERCENT NAME...
        the medians of DIR/results.tsv and how the peak grows from the first NAME to the others
        (DIR/report.md)

Standard library only.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

SAMPLE_SECONDS = 0.1


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def run_one(binary, path, lake, prefix):
    """One ingest into an empty lake: wall, user, sys, peak RSS (the kernel's, exact), when the
    sampled peak came (seconds from the start) and the exit code."""
    shutil.rmtree(lake, ignore_errors=True)
    cmd = [binary, "ingest", "--no-progress", "--lake", lake, path]
    start = time.monotonic()
    samples = []
    with open(prefix + ".stdout", "wb") as out, open(prefix + ".stderr", "wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            kb = rss_kb(proc.pid)
            if kb is not None:
                samples.append((time.monotonic() - start, kb))
            time.sleep(SAMPLE_SECONDS)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    shutil.rmtree(lake, ignore_errors=True)
    with open(prefix + ".samples.tsv", "w") as f:
        f.write("seconds\trss_kb\n")
        for t, kb in samples:
            f.write(f"{t:.2f}\t{kb}\n")
    peak_at = max(samples, key=lambda s: s[1])[0] if samples else 0.0
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1000,
        "peak_at": peak_at,
        "rc": proc.returncode,
    }


def run(a):
    res = run_one(a.bin, a.path, a.lake, a.prefix)
    print(
        f"[bench] {a.name} round {a.round}: {res['wall']:.2f} s, {res['cpu']:.2f} CPU-s, "
        f"peak {res['rss_mb']:.0f} MB at {res['peak_at']:.1f} s",
        file=sys.stderr,
    )
    print(
        f"{a.name}\t{a.round}\t{res['rc']}\t{res['wall']:.2f}\t{res['cpu']:.2f}\t"
        f"{res['rss_mb']:.1f}\t{res['peak_at']:.1f}"
    )


def report(a):
    results = {name: [] for name in a.names}
    failed = []
    with open(os.path.join(a.runs, "results.tsv")) as f:
        for line in f.read().splitlines()[1:]:  # after the header bench/memory writes
            name, rnd, rc, wall, cpu, rss, peak_at = line.split("\t")
            if rc != "0":
                failed.append(f"{name} round {rnd} (exit {rc})")
            run = {"wall": wall, "cpu": cpu, "rss_mb": rss, "peak_at": peak_at}
            results[name].append({k: float(v) for k, v in run.items()})
    rounds = max(len(r) for r in results.values())
    base_name = a.names[0]
    base = results[base_name]
    base_med = statistics.median(x["rss_mb"] for x in base)
    base_min = min(x["rss_mb"] for x in base)
    lines = [
        f"Peak RSS of `agentmeter ingest` into an empty local lake, {rounds} round(s), the "
        f"inputs in turn; growth is against {base_name}'s median (worst: the input's highest run "
        f"against {base_name}'s lowest); the target is less than {a.target:g} %. The peak came at "
        f"the share of the run given (its samples: `*.samples.tsv`).",
        "",
        "| input | runs | wall s (median) | CPU s (median) | peak RSS MB (median) | runs' peaks MB "
        "| peak at (median share of the run) | growth: median | worst | within the target |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    ok = True
    for name in a.names:
        rs = results[name]
        med = statistics.median(x["rss_mb"] for x in rs)
        top = max(x["rss_mb"] for x in rs)
        peaks = ", ".join(f"{x['rss_mb']:.0f}" for x in rs)
        share = statistics.median(x["peak_at"] / x["wall"] for x in rs if x["wall"] > 0)
        if name == base_name:
            growth, worst, within = "—", "—", "—"
        else:
            g, w = (med / base_med - 1) * 100, (top / base_min - 1) * 100
            growth, worst = f"{g:+.0f} %", f"{w:+.0f} %"
            within = "yes" if w < a.target else ("at the median" if g < a.target else "no")
            ok = ok and w < a.target
        lines.append(
            f"| {name} | {len(rs)} | {statistics.median(x['wall'] for x in rs):.2f} | "
            f"{statistics.median(x['cpu'] for x in rs):.2f} | {med:.0f} | "
            f"{peaks} | {share:.0%} | {growth} | {worst} | "
            f"{within} |"
        )
    if failed:
        lines += ["", "Failed runs: " + "; ".join(failed)]
    report = "\n".join(lines) + "\n"
    with open(os.path.join(a.runs, "report.md"), "w") as f:
        f.write(report)
    print(report)
    if failed:
        sys.exit(1)
    if not ok:
        print(f"[bench] growth past {a.target:g} % in some run", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    for opt in ("--bin", "--lake", "--prefix", "--name", "--round"):
        r.add_argument(opt, required=True)
    r.add_argument("path")
    p = sub.add_parser("report")
    p.add_argument("--runs", required=True)
    p.add_argument("--target", type=float, required=True)
    p.add_argument("names", nargs="+")
    a = ap.parse_args()
    run(a) if a.cmd == "run" else report(a)


if __name__ == "__main__":
    main()
