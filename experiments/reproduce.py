"""Run every experiment of the offline default in order: ``make reproduce`` calls this.

Each step is one script of ``experiments/`` run in-process through its ``main(argv)``; a step
that fails is reported and the others still run (finished results are never lost). The exit
status is non-zero if any step failed. A timing summary goes to ``results/reproduce.json``.

Usage: ``python experiments/reproduce.py [--quick] [--only NAME ...] [--bench]``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# (script, extra arguments); ``--quick`` is appended for smoke runs. Benchmarks run with --bench.
STEPS: list[tuple[str, list[str]]] = [
    ("models_smoke", []),
    ("project_example", []),
    ("projection_rules", []),  # the same unit with the deconvnet, guided and gradient rules
    ("fig2_top9", []),
    ("fig2_fashion", []),
    ("fig6_filters", []),
    ("fig_activation_maps", []),
    ("fig7_occlusion", []),
    ("fig7_fashion", []),
    ("table1_correspondence", []),
    ("fig5_invariance", []),
    ("fig5_fashion", []),
    ("fig_optimization", []),  # after fig2_top9: reuses its mined top-9
    ("train_zfnet", []),  # reuses the committed checkpoints; --retrain to train again
    ("fig4_evolution", []),
    ("fig6_ablation", []),  # analyses the committed ablation checkpoints
    ("table7_probes", []),
    ("compare_captum", []),
    ("atlas_screenshots", []),  # builds the --quick zfnet-fashion atlas in atlas-quick/
]
BENCHMARKS: list[tuple[str, list[str]]] = [
    ("bench_projection", []),
    ("bench_mining", []),
    ("bench_mining", ["--distributed"]),  # 1 and 2 Gloo processes
    ("bench_occlusion", []),
    ("bench_occlusion_quality", []),  # approximate occlusion on trained weights
    ("bench_gpu", []),  # CUDA only: says so and writes nothing without a GPU
    ("bench_atlas", ["--cases", "zfnet-fashion"]),  # hed-vgg16 (long): run it on its own
]


def run_step(script: str, argv: list[str]) -> None:
    """Import ``experiments/<script>.py`` and call its ``main(argv)``."""
    spec = importlib.util.spec_from_file_location(f"experiments.{script}", HERE / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the steps; returns 0 when all succeeded."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run of every step")
    parser.add_argument("--bench", action="store_true", help="run the benchmarks instead")
    parser.add_argument("--only", nargs="*", default=None, help="run only these steps")
    args = parser.parse_args(argv)
    steps = BENCHMARKS if args.bench else STEPS
    if args.only:
        steps = [s for s in steps if s[0] in args.only]
    summary = {}
    total = time.perf_counter()
    for script, extra in steps:
        step_argv = extra + (["--quick"] if args.quick else [])
        print(f"\n=== {script} {' '.join(step_argv)}", flush=True)
        start = time.perf_counter()
        try:
            run_step(script, step_argv)
            status = "ok"
        except Exception:  # keep going: one failed figure must not lose the others
            traceback.print_exc()
            status = "failed"
        key = " ".join([script] + extra)
        summary[key] = {"status": status, "seconds": round(time.perf_counter() - start, 1)}
        print(f"=== {key}: {status} in {summary[key]['seconds']} s", flush=True)
    summary["total_seconds"] = round(time.perf_counter() - total, 1)
    if not args.quick and not args.only:
        name = "bench_summary.json" if args.bench else "reproduce.json"
        (ROOT / "results").mkdir(exist_ok=True)
        (ROOT / "results" / name).write_text(json.dumps(summary, indent=1) + "\n")
    failed = [s for s, v in summary.items() if isinstance(v, dict) and v["status"] != "ok"]
    print(f"\n{len(steps) - len(failed)} steps ok, {len(failed)} failed {failed or ''}"
          f" in {summary['total_seconds']} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
