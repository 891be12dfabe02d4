"""Bad inputs, through the API and the command line, from one table each (issue 15).

Every API case must raise a :class:`deconv.DeconvError` (also the built-in type that fits) with
a message that says what to do, and leave the model as it was (``model_guard``). Every CLI case
runs ``deconv.cli.main([...])`` in-process and must exit 2 with ONE line ``deconv ...: error:
...`` on stderr and no traceback.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import deconv
from deconv import errors
from deconv.cli import main


# ----------------------------------------------------------------------------- models
def chain() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(5, 10)).eval()


class SharedRelu(nn.Module):
    """One ReLU module called twice (like torchvision's ResNet blocks)."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.relu, self.fc = nn.ReLU(), nn.Linear(4, 3)

    def forward(self, x):
        x = self.relu(self.c2(self.relu(self.c1(x))))
        return self.fc(x.mean(dim=(2, 3)))


X = torch.rand(2, 3, 16, 16)
UNITS = torch.tensor([[0, 1, 2, 2]])


def _nan(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[0, 0, 3, 3] = float("nan")
    return x


def _hooked(model: nn.Module) -> nn.Module:
    model[1].register_forward_hook(lambda m, i, o: o * 2)
    return model


# (id, model factory, call(model) -> anything, error type, message regex)
API_CASES = [
    ("float16 input", chain, lambda m: deconv.Deconvnet(m).project(X.half(), "4", UNITS),
     errors.DtypeMismatchError, "float16.*model's parameters are torch.float32"),
    ("empty batch", chain, lambda m: deconv.Deconvnet(m).top_units(X[:0], "4", 1),
     errors.InvalidImageError, "empty batch"),
    ("3-D input", chain, lambda m: deconv.Deconvnet(m).top_units(X[0], "4", 1),
     errors.InvalidImageError, "unsqueeze"),
    ("NaN input, explicit", chain, lambda m: deconv.Deconvnet(m).top_units(_nan(X), "4", 1),
     errors.InvalidImageError, "NaN or Inf"),
    ("NaN input, generic", chain,
     lambda m: deconv.GenericDeconvnet(m).project(_nan(X), "4", UNITS),
     errors.InvalidImageError, "NaN or Inf"),
    ("Inf input, mining", chain,
     lambda m: deconv.mine_top_k(m, X.masked_fill(X > 0.99, float("inf")), ["1"], k=2,
                                 progress=False), errors.InvalidImageError, "NaN or Inf"),
    ("k = 0", chain, lambda m: deconv.mine_top_k(m, X, ["1"], k=0, progress=False),
     errors.InvalidArgumentError, "positive int"),
    ("unknown layer", chain, lambda m: deconv.Deconvnet(m).top_units(X, "9.9", 1),
     errors.UnknownLayerError, "Valid names"),
    ("channel out of range", chain,
     lambda m: deconv.Deconvnet(m).top_units(X, "4", 1, channel=99),
     errors.InvalidArgumentError, r"\[0, 5\)"),
    ("negative class", chain, lambda m: deconv.attribute("captum-saliency", m, X, -1),
     errors.OutOfRangeError, "negative class id"),
    ("class 5000", chain, lambda m: deconv.attribute("captum-saliency", m, X, 5000),
     errors.OutOfRangeError, "10 classes"),
    ("user forward hook", lambda: _hooked(chain()),
     lambda m: deconv.Deconvnet(m).project(X, "4", UNITS),
     deconv.UnsupportedModuleError, "forward hook"),
    ("reused module, occlusion", SharedRelu,
     lambda m: deconv.occlusion_sweep(m, X[0], patch=8, stride=8, layer="relu", channel=0),
     errors.ReusedModuleError, "more than once"),
    ("NaN image, occlusion", chain,
     lambda m: deconv.occlusion_sweep(m, _nan(X)[0], patch=8, stride=8),
     errors.DeconvError, "NaN"),
    ("float64 input, capture", chain,
     lambda m: deconv.layers.capture_outputs(m, X.double(), ["1"]),
     errors.DtypeMismatchError, "float64"),
    ("NaN image, feature maps", chain, lambda m: deconv.feature_maps(m, _nan(X)[0], "1"),
     errors.InvalidImageError, "NaN"),
    ("TorchScript model", lambda: torch.jit.trace(chain(), X),
     lambda m: deconv.Deconvnet(m).top_units(X, "1", 1), errors.ScriptedModelError,
     "TorchScript"),
    ("TorchScript, occlusion", lambda: torch.jit.trace(chain(), X),
     lambda m: deconv.occlusion_sweep(m, X[0], patch=8, stride=8), errors.ScriptedModelError,
     "TorchScript"),
    ("TorchScript, mining", lambda: torch.jit.trace(chain(), X),
     lambda m: deconv.mine_top_k(m, X, ["1"], k=1, progress=False), errors.ScriptedModelError,
     "TorchScript"),
]


@pytest.mark.parametrize("name, build, call, error, message", API_CASES,
                         ids=[c[0] for c in API_CASES])
def test_api_refuses_bad_input_clearly_and_leaves_the_model(name, build, call, error, message,
                                                            model_guard):
    model = build()
    guard = model_guard(model, at_teardown=not isinstance(model, torch.jit.ScriptModule)
                        and name != "user forward hook")
    with pytest.raises(error, match=message) as info:
        call(model)
    assert isinstance(info.value, errors.DeconvError)
    if not isinstance(model, torch.jit.ScriptModule) and name != "user forward hook":
        guard.check()


def test_display_and_checkpoint_inputs(tmp_path):
    with pytest.raises(errors.InvalidImageError, match="NaN"):
        deconv.deconvnet.normalize_for_display(torch.full((3, 4, 4), float("nan")))
    (tmp_path / "bad.pt").write_bytes(b"\x80\x02 garbage")
    with pytest.raises(errors.CheckpointError, match="truncated, corrupt"):
        deconv.TopKResult.load(tmp_path / "bad.pt")
    with pytest.raises(errors.CheckpointError, match="truncated, corrupt"):
        deconv.load_model("zfnet", weights=str(tmp_path / "bad.pt"))


def test_sixteen_bit_png_is_read_with_its_contrast(tmp_path):
    # Before: PIL's convert("RGB") clipped 16-bit values: 99.9996 % of pixels were 255.
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    pixels = np.asarray(deconv.samples.open_image(tmp_path / "ramp16.png"))
    expected = np.round(ramp / 65535 * 255)
    assert pixels.shape == (64, 64, 3) and np.abs(pixels[..., 0] - expected).max() <= 1
    assert (pixels == 255).mean() < 0.01


def test_generic_deconvnet_warns_about_gates_and_catches_maximum_rectifiers():
    class Gated(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.g, self.out = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 2, 1)

        def forward(self, x):
            y = torch.maximum(self.c(x), torch.zeros(()))  # a rectifier, spelled differently
            return self.out(y * torch.sigmoid(self.g(y)))  # a squeeze-excitation-like gate

    from deconv.deconvnet.relu_rules import RectifierRules

    model = Gated()
    with pytest.warns(UserWarning, match="sigmoid"):
        deconv.GenericDeconvnet(model).project(X[:1], "out", torch.tensor([[0, 0, 1, 1]]))
    with pytest.warns(UserWarning, match="where"), RectifierRules() as rules:
        torch.where(X > 0.5, X, 0.0)
        model(X[:1])
    assert rules.count == 1  # torch.maximum(x, 0) is a rectifier


# ----------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_inputs")
    (root / "a_file.txt").write_text("not a folder")
    (root / "bad_images").mkdir()
    for i in range(3):
        (root / "bad_images" / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (root / "photos").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(
            root / "photos" / f"{i}.png")
    torch.save({"x": torch.arange(100)}, root / "ok.pt")
    (root / "truncated.pt").write_bytes((root / "ok.pt").read_bytes()[:60])
    return root


# (id, argv with {root} placeholders, message regex)
CLI_CASES = [
    ("--size 0", ["project", "--model", "zfnet", "--image", "coffee", "--layer", "2",
                  "--size", "0", "--out", "{root}/o"], "int >= 1, got 0"),
    ("--channel -1", ["optimize", "--model", "zfnet", "--layer", "2", "--channel", "-1",
                      "--out", "{root}/o"], "int >= 0, got -1"),
    ("--channel 999", ["optimize", "--model", "zfnet", "--layer", "2", "--channel", "999",
                       "--size", "32", "--steps", "1", "--out", "{root}/o"], "out of range"),
    ("topk --channels 999", ["topk", "--model", "zfnet", "--data", "{root}/photos",
                             "--layer", "1", "--channels", "999", "--size", "32",
                             "--out", "{root}/t1"], "channel 999 is out of range"),
    ("topk --k 0", ["topk", "--model", "zfnet", "--data", "{root}/photos", "--layer", "1",
                    "--k", "0", "--out", "{root}/t2"], "int >= 1"),
    ("topk on bad files", ["topk", "--model", "zfnet", "--data", "{root}/bad_images",
                           "--layer", "1", "--size", "32", "--out", "{root}/t3"],
     "no image could be read"),
    ("--out inside --data", ["topk", "--model", "zfnet", "--data", "{root}/photos",
                             "--layer", "1", "--out", "{root}/photos/out"],
     "inside the input folder"),
    ("--out is a file", ["project", "--model", "zfnet", "--image", "coffee", "--layer", "2",
                         "--out", "{root}/a_file.txt"], "existing file"),
    ("truncated --checkpoint", ["topk", "--model", "zfnet", "--data", "{root}/photos",
                                "--layer", "1", "--size", "32", "--out", "{root}/t4",
                                "--checkpoint", "{root}/truncated.pt"], "truncated, corrupt"),
    ("checkpoint of another kind", ["topk", "--model", "zfnet", "--data", "{root}/photos",
                                    "--layer", "1", "--size", "32", "--out", "{root}/t5",
                                    "--checkpoint", "{root}/ok.pt"], "not a deconv top-k"),
    ("corrupt --weights", ["project", "--model", "zfnet", "--weights", "{root}/truncated.pt",
                           "--image", "coffee", "--layer", "2", "--out", "{root}/o"],
     "truncated, corrupt"),
    ("unknown layer", ["project", "--model", "zfnet", "--image", "coffee", "--layer", "conv9",
                       "--out", "{root}/o"], "unknown layer 'conv9'"),
    ("paper layer 3 vs module 3", ["project", "--model", "zfnet", "--image", "coffee",
                                   "--layer", "99", "--out", "{root}/o"], "paper layer"),
    ("no such image", ["project", "--model", "zfnet", "--image", "{root}/none.png",
                       "--layer", "2", "--out", "{root}/o"], "neither a file nor a sample"),
    ("compare --target 99999", ["compare", "--image", "sample:coffee", "--methods",
                                "captum-saliency", "--target", "99999", "--out", "{root}/c"],
     "out of range"),
    ("compare --target -1", ["compare", "--image", "sample:coffee", "--methods",
                             "captum-saliency", "--target", "-1", "--out", "{root}/c"],
     "negative indices"),
    ("occlude --target 5000", ["occlude", "--model", "efficientnet-lite0", "--image",
                               "sample:coffee", "--patch", "64", "--stride", "64",
                               "--target", "5000", "--out", "{root}/oc"], "out of range"),
    ("occlude --patch 0", ["occlude", "--model", "zfnet", "--image", "sample:coffee",
                           "--patch", "0", "--stride", "8", "--out", "{root}/oc"], "int >= 1"),
    ("unknown sample", ["occlude", "--model", "zfnet", "--image", "sample:nope", "--patch",
                        "8", "--stride", "8", "--out", "{root}/oc"], "unknown sample image"),
    ("unknown option", ["project", "--bogus"], "required|unrecognized"),
    ("unknown model", ["project", "--model", "nope", "--image", "coffee", "--layer", "1",
                       "--out", "{root}/o"], "invalid choice"),
]


@pytest.mark.parametrize("name, argv, message", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_prints_one_line_and_exits_2(name, argv, message, files, capsys):
    status = main([a.format(root=files) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]  # (progress bars aside)
    assert status == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("deconv"), err
    assert re.search(message, lines[0]), lines[0]


def test_a_bug_is_not_hidden_as_exit_2(monkeypatch):
    # Before: every RuntimeError became "error: ..." and exit 2, hiding bugs.
    from deconv.cli import models_command

    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(models_command, "run", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["models"])


def test_both_layer_spellings_reach_their_module_from_the_cli(tmp_path, capsys):
    # Before: the CLI's --layer 3 was paper layer 3 ("15") and module "3" was unreachable.
    import json

    for layer, module in (("3", "15"), ("module:3", "3")):
        assert main(["project", "--model", "hed-vgg16", "--image", "coffee", "--layer", layer,
                     "--size", "32", "--out", str(tmp_path)]) == 0
        stem = f"project_hed-vgg16_coffee_layer{layer.replace(':', '-')}"
        assert json.loads((tmp_path / f"{stem}.json").read_text())["module"] == module
    capsys.readouterr()


def test_outputs_of_two_images_do_not_overwrite_each_other(tmp_path, capsys):
    for image in ("coffee", "chelsea"):
        assert main(["occlude", "--model", "zfnet", "--image", f"sample:{image}", "--patch",
                     "112", "--stride", "112", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "occlusion_coffee.png").is_file()
    assert (tmp_path / "occlusion_chelsea.png").is_file()
    capsys.readouterr()
