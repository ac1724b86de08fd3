"""Runs `agentmeter ingest` of several inputs in turn, each into an empty local lake, for some
rounds; samples each run's resident memory ten times a second; writes every run's figures and
samples beside a report of the medians and how the peak grows from the first input to the others.

    memory.py --bin BIN --rounds R --runs DIR --target PERCENT [--quiet-wait S] NAME=PATH...

The first NAME is the base the others are compared with. Standard library only.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

SAMPLE_SECONDS = 0.1


def busy_ticks():
    """CPU time the whole machine has been busy, in clock ticks (as bench/lib.sh counts it)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return user + nice + system + irq + softirq + steal


def wait_quiet(most):
    """Waits until the machine has been idle (under 0.1 CPU busy) for a second, at most `most`
    seconds (as bench/lib.sh's wait_quiet); the run's other CPU column shows what remained."""
    start = time.monotonic()
    while time.monotonic() - start < most:
        a = busy_ticks()
        time.sleep(1)
        if (busy_ticks() - a) * 10 < os.sysconf("SC_CLK_TCK"):
            return
    print(f"[bench] the machine is still busy after {most:g} s; measuring anyway", file=sys.stderr)


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
    busy0 = busy_ticks()
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
    other = (busy_ticks() - busy0) / os.sysconf("SC_CLK_TCK") - usage.ru_utime - usage.ru_stime
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
        "other_cpu": max(other, 0.0),
        "rc": proc.returncode,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--rounds", type=int, required=True)
    ap.add_argument("--runs", required=True)
    ap.add_argument("--target", type=float, required=True)
    ap.add_argument("--quiet-wait", type=float, default=300)
    ap.add_argument("inputs", nargs="+")
    a = ap.parse_args()
    inputs = [tuple(x.split("=", 1)) for x in a.inputs]
    lake = os.path.join(a.runs, "lake")
    results = {name: [] for name, _ in inputs}
    failed = []
    with open(os.path.join(a.runs, "results.tsv"), "w") as tsv:
        tsv.write("input\tround\trc\twall\tcpu\tpeak_rss_mb\tpeak_at_s\tother_cpu\n")
        for r in range(1, a.rounds + 1):
            for path in (p for _, p in inputs):
                # Page cache warm: every input read once before each round.
                subprocess.run(
                    ["find", path, "-type", "f", "-exec", "cat", "{}", "+"],
                    stdout=subprocess.DEVNULL,
                    check=True,
                )
            # In turn, each round starting one further along.
            for i in range(len(inputs)):
                name, path = inputs[(i + r - 1) % len(inputs)]
                wait_quiet(a.quiet_wait)
                res = run_one(a.bin, path, lake, os.path.join(a.runs, f"{name}.{r}"))
                print(
                    f"[bench] {name} round {r}: {res['wall']:.2f} s, {res['cpu']:.2f} CPU-s, "
                    f"peak {res['rss_mb']:.0f} MB at {res['peak_at']:.1f} s",
                    file=sys.stderr,
                )
                tsv.write(
                    f"{name}\t{r}\t{res['rc']}\t{res['wall']:.2f}\t{res['cpu']:.2f}\t"
                    f"{res['rss_mb']:.1f}\t{res['peak_at']:.1f}\t{res['other_cpu']:.2f}\n"
                )
                if res["rc"] != 0:
                    failed.append(f"{name} round {r} (exit {res['rc']})")
                results[name].append(res)

    base_name = inputs[0][0]
    base = results[base_name]
    base_med = statistics.median(x["rss_mb"] for x in base)
    base_min = min(x["rss_mb"] for x in base)
    lines = [
        f"Peak RSS of `agentmeter ingest` into an empty local lake, {a.rounds} round(s), the "
        f"inputs in turn; growth is against {base_name}'s median (worst: the input's highest run "
        f"against {base_name}'s lowest); the target is less than {a.target:g} %. The peak came at "
        f"the share of the run given (its samples: `*.samples.tsv`).",
        "",
        "| input | runs | wall s (median) | CPU s (median) | peak RSS MB (median) | runs' peaks MB "
        "| peak at (median share of the run) | growth: median | worst | within the target |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    ok = True
    for name, _ in inputs:
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


if __name__ == "__main__":
    main()
