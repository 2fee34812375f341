"""Run every ``benchmarks/perf/*.py`` and collect their figures into one markdown report.

Each benchmark is run as ``python benchmarks/perf/NAME.py --json TMP`` and prints a markdown table;
the collector adds the machine, date and git commit and writes ``reports/bench.md``.  A benchmark that
fails is reported as failed (with its last lines of output) instead of stopping the others.

A benchmark whose JSON has a ``summary`` list (entries ``{"figure", "value", "unit", "baseline",
"baseline_value", "ratio", "goal"}``; ``goal`` a text such as ``">= 0.8x"``, or null) also gets rows in the
summary table at the top of the report: each figure with the baseline it was measured against, in the
same run, beside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def machine_summary() -> list[str]:
    """Lines describing the machine: OS, CPU, cores, memory, torch and its device."""
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    from p2p_eval.device import cpu_has_native_bf16

    flags = set(cpuinfo.read_text().split()) if cpuinfo.exists() else set()
    vector = ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags) or "none listed"
    return [
        f"- machine: {platform.platform()}, {cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB",
        f"- CPU vector extensions: {vector}; native bf16: {'yes' if cpu_has_native_bf16() else 'no'} "
        "(`p2p-eval train --precision auto` picks bf16 only where it is native)",
        f"- python {platform.python_version()}, torch {torch.__version__}, GPU: {gpu}",
    ]


def git_commit() -> str:
    """The checkout's commit (with ``-dirty`` when the tree has changes), or ``unknown``."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_benchmark(script: Path, timeout: int) -> tuple[str, dict | None]:
    """Run one benchmark; return its printed output and its JSON (None when it failed)."""
    with tempfile.TemporaryDirectory() as tmp:
        out_json = Path(tmp) / "result.json"
        try:
            proc = subprocess.run([sys.executable, str(script), "--json", str(out_json)], cwd=REPO,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return f"timed out after {timeout} s", None
        text = proc.stdout.strip()
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            return f"failed (exit {proc.returncode}):\n\n```\n{tail}\n```", None
        data = json.loads(out_json.read_text()) if out_json.exists() else None
        return text, data


def summary_rows(results: dict[str, dict | None]) -> list[str]:
    """Markdown rows ``| benchmark | figure | value | baseline | baseline value | ratio | goal |``."""
    rows = []
    for name, data in results.items():
        for item in (data or {}).get("summary", []):
            unit = item.get("unit", "")
            rows.append(f"| {name} | {item['figure']} | {_number(item['value'])} {unit} | {item['baseline']} | "
                        f"{_number(item['baseline_value'])} {unit} | {item['ratio']:.2f}x | {item.get('goal') or ''} |")
    return rows


def _number(value: float) -> str:
    """At least three significant digits, no exponent: 1182, 12.9, 2.08."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "bench.md", help="markdown report to write")
    parser.add_argument("--only", nargs="*", help="benchmark names to run (default: all)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per benchmark (default 1800)")
    args = parser.parse_args(argv)

    scripts = sorted((REPO / "benchmarks" / "perf").glob("*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem in args.only]
    lines = ["# Benchmarks", "", f"- date: {dt.datetime.now().isoformat(timespec='seconds')}",
             f"- commit: {git_commit()}", *machine_summary(), ""]
    results = {}
    header_end = len(lines)  # the summary table goes here, before the sections
    for script in scripts:
        print(f"running {script.name} ...", flush=True)
        text, data = run_benchmark(script, args.timeout)
        results[script.stem] = data
        lines += [f"## {script.stem}", "", text, ""]
    rows = summary_rows(results)
    if rows:
        lines[header_end:header_end] = ["## Summary (each figure beside its baseline, measured in the same run)", "",
                            "| benchmark | figure | value | baseline | baseline value | ratio | goal |",
                            "| --- | --- | ---: | --- | ---: | ---: | --- |", *rows, ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
