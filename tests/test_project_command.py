"""``deconv project`` (called through its module; the CLI registry lists it once added)."""

from __future__ import annotations

import argparse
import json

import pytest

from deconv.cli import project_command
from deconv.deconvnet import deconvnet_for


def _parse(argv):
    parser = argparse.ArgumentParser()
    project_command.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["project", *argv])


def test_project_writes_png_and_json_with_the_strongest_units(tmp_path, capsys):
    args = _parse(["--model", "zfnet", "--image", "chelsea", "--layer", "2", "--top", "2",
                   "--size", "96", "--out", str(tmp_path)])
    assert project_command.run(args) == 0
    png = tmp_path / "project_zfnet_chelsea_layer2.png"
    record = json.loads((tmp_path / "project_zfnet_chelsea_layer2.json").read_text())
    assert png.stat().st_size > 1000 and record["engine"] == "Deconvnet"
    assert record["module"] == "features.5" and len(record["units"]) == 2
    assert record["values"][0] >= record["values"][1] > 0
    assert "wrote" in capsys.readouterr().out


def test_channel_restricts_units_and_generic_engine_is_used_on_request(tmp_path):
    args = _parse(["--model", "zfnet", "--image", "coffee", "--layer", "features.1",
                   "--channel", "7", "--top", "1", "--size", "64", "--engine", "generic",
                   "--seed", "unit", "--out", str(tmp_path)])
    project_command.run(args)
    record = json.loads((tmp_path / "project_zfnet_coffee_layerfeatures_1.json").read_text())
    assert record["units"][0][1] == 7 and record["engine"] == "GenericDeconvnet"


def test_auto_engine_falls_back_to_generic_for_non_chains():
    from torch import nn

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.conv(x) + x)

    assert type(deconvnet_for(Residual(), "relu")).__name__ == \
        "GenericDeconvnet"
    with pytest.raises(ValueError, match="not a chain"):
        deconvnet_for(Residual(), "relu", "explicit")
    assert type(deconvnet_for(Residual(), "conv")).__name__ == "Deconvnet"


def test_unknown_image_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="sample photo"):
        project_command.load_image("no-such-file.png")
