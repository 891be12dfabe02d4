"""The ``deconv`` command line."""

import subprocess
import sys

from deconv.cli import build_parser, main


def test_models_lists_every_model(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("zfnet", "alexnet", "vgg16"):
        assert name in out
    assert "weights here" in out


def test_console_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "deconv.cli", "--help"], capture_output=True,
                            text=True, check=True)
    assert "models" in result.stdout
    assert build_parser().prog == "deconv"
