"""experiments/bench_gpu.py: a clear exit without CUDA, and its CPU smoke run (torchrun, Gloo)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "experiments" / "bench_gpu.py"


def _script():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_says_so_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _script().main(["--out", str(tmp_path)]) is None
    assert "no CUDA device" in capsys.readouterr().out
    assert not (tmp_path / "bench_gpu.json").exists()


@pytest.mark.slow
def test_cpu_quick_run_mines_and_checks_distributed_mining_under_torchrun(tmp_path):
    record = _script().main(["--device", "cpu", "--quick", "--skip", "projections",
                             "occlusion", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "bench_gpu.json").read_text())
    assert saved["device"] == "cpu" and record["mining"]["mining_images_per_s"] > 0
    distributed = saved["distributed_mining"]
    assert distributed["backend"] == "gloo" and distributed["world_size"] == 2
    assert distributed["ok"], distributed
