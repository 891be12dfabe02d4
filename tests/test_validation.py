"""The shared validation layer: the error hierarchy, the checks, the layer rule, mining state.

Each test here fails on the code before issue 15's fixes (noted per test).
"""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
import torch
from integer_models import LAYERS, IntNet
from PIL import Image
from torch import nn

import deconv
from deconv import errors
from deconv.layers import ModuleName, register_paper_layers, resolve_layer
from deconv.mining import mine_top_k
from deconv.mining.result import TopKResult
from deconv.validation import (
    check_checkpoint_file,
    check_class_target,
    check_images,
    check_output_dir,
    check_positive_int,
    read_checkpoint,
)


# ----------------------------------------------------------------------------- the hierarchy
def test_every_error_is_a_deconv_error_and_keeps_its_builtin_base():
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.DeconvError), name
    bases = {"UnknownLayerError": ValueError, "ReusedModuleError": RuntimeError,
             "WeightsUnavailableError": RuntimeError, "ReceptiveFieldError": ValueError,
             "CorruptImageError": ValueError,
             "ResumeMismatchError": ValueError, "FashionMNISTNotFoundError": FileNotFoundError,
             "InvalidTypeError": TypeError, "OutOfRangeError": IndexError,
             "WeightsMismatchError": RuntimeError}
    for name, base in bases.items():
        assert issubclass(getattr(errors, name), base), name
    from deconv.occlusion.incremental_plan import IncrementalPlanError
    assert issubclass(IncrementalPlanError, errors.DeconvError)
    assert issubclass(deconv.UnsupportedModuleError, (errors.DeconvError, ValueError))
    # The old import paths still give the same classes.
    from deconv.deconvnet.path import UnsupportedModuleError
    from deconv.layers import UnknownLayerError
    from deconv.zoo.registry import WeightsUnavailableError
    assert UnknownLayerError is errors.UnknownLayerError
    assert UnsupportedModuleError is deconv.UnsupportedModuleError
    assert WeightsUnavailableError is errors.WeightsUnavailableError
    assert deconv.DeconvError is errors.DeconvError


def test_unknown_name_error_prints_without_quotes():
    # Before: KeyError("...") printed as "'...'" (the CLI showed "error: '15'").
    assert str(errors.UnknownNameError("no such sample")) == "no such sample"
    with pytest.raises(KeyError, match="unknown sample image"):
        deconv.sample_images(["nope"])


# ----------------------------------------------------------------------------- checks
@pytest.mark.parametrize("value", [0, -1, True, 2.0, "3"])
def test_positive_int_refuses_zero_negative_bool_float_and_text(value):
    with pytest.raises(errors.DeconvError, match="k must be an int >= 1"):
        check_positive_int("k", value)


def test_check_images_refuses_each_bad_batch_with_a_hint():
    model = nn.Conv2d(3, 2, 3)
    good = torch.zeros(2, 3, 8, 8)
    assert check_images(good, model) is good
    cases = [(torch.zeros(3, 8, 8), "unsqueeze"), (torch.zeros(0, 3, 8, 8), "empty batch"),
             (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "floating"),
             (torch.full((1, 3, 8, 8), float("nan")), "NaN"),
             (torch.full((1, 3, 8, 8), float("inf")), "NaN or Inf"),
             (torch.zeros(1, 3, 8, 8, dtype=torch.float16), "float16"),
             (torch.zeros(1, 3, 8, 8, device="meta"), "move them")]
    for images, message in cases:
        with pytest.raises(errors.InvalidImageError if message != "float16" and
                           message != "move them" else errors.InvalidArgumentError,
                           match=message):
            check_images(images, model)
    with pytest.raises(errors.InvalidTypeError, match="preprocess"):
        check_images(np.zeros((1, 3, 8, 8)), model)


def test_class_target_refuses_negative_and_too_large_indices_and_unknown_names():
    assert check_class_target(3, 10) == 3
    assert check_class_target("cat", 3, ["dog", "cat", "cow"]) == 1
    for bad in (-1, 10, "-1", 99999):
        with pytest.raises(errors.OutOfRangeError, match=r"0\.\.9"):
            check_class_target(bad, 10)
    with pytest.raises(errors.InvalidArgumentError, match="class name"):
        check_class_target("zebra", 3, ["dog", "cat", "cow"])


def test_checkpoint_files_that_are_empty_truncated_or_pickled_code_are_clear_errors(tmp_path):
    with pytest.raises(errors.MissingFileError):
        check_checkpoint_file(tmp_path / "none.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(errors.CheckpointError, match="empty"):
        read_checkpoint(tmp_path / "empty.pt")
    torch.save({"x": torch.arange(1000)}, tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    torch.save({"f": Image.new("RGB", (2, 2))}, tmp_path / "code.pt")  # pickled objects
    for name in ("cut.pt", "junk.pt", "code.pt"):
        with pytest.raises(errors.CheckpointError, match="truncated, corrupt") as info:
            read_checkpoint(tmp_path / name)
        assert "weights_only=False" not in str(info.value)  # never advise loading code
    with pytest.raises(errors.CheckpointError):
        TopKResult.load(tmp_path / "cut.pt")


def test_output_dir_that_is_a_file_or_inside_the_data_is_refused(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(errors.OutputPathError, match="existing file"):
        check_output_dir(tmp_path / "file.txt")
    with pytest.raises(errors.OutputPathError, match="is a file"):
        check_output_dir(tmp_path / "file.txt" / "sub")
    data = tmp_path / "photos"
    data.mkdir()
    with pytest.raises(errors.OutputPathError, match="inside the input folder"):
        check_output_dir(data / "out", inputs=[data])
    assert check_output_dir(tmp_path / "out", inputs=[data]).is_dir()


def test_scripted_models_are_refused_clearly():
    from deconv.validation import check_eager_model

    scripted = torch.jit.script(nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU()))
    with pytest.raises(errors.ScriptedModelError, match="TorchScript"):
        check_eager_model(scripted)


# ----------------------------------------------------------------------------- the layer rule
class _PaperNet(nn.Sequential):
    """Modules named "0".."5" and paper layers 1 -> "1", 2 -> "3" (like hed-vgg16)."""

    def __init__(self):
        super().__init__(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(),
                         nn.Conv2d(4, 4, 3), nn.ReLU())
        register_paper_layers(self, {1: "1", 2: "3"})


def test_one_layer_rule_digits_are_paper_layers_and_module_prefix_forces_a_module():
    net = _PaperNet()
    assert resolve_layer(net, 2) == resolve_layer(net, "2") == "3"  # paper layer 2
    assert resolve_layer(net, "module:2") == "2"  # before: unreachable from the CLI
    assert resolve_layer(net, "4") == "4"  # not a paper number: the module
    with pytest.raises(errors.UnknownLayerError, match="module:5"):
        resolve_layer(net, 5)  # the hint says how to reach module "5"
    # A resolved name resolves to itself, even "2" (which as digits means paper layer 2).
    name = resolve_layer(net, "module:2")
    assert isinstance(name, ModuleName) and resolve_layer(net, name) == "2"
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    assert resolve_layer(plain, "1") == "1"  # no paper layers: digits are module names


def test_cli_layer_help_states_the_rule(capsys):
    from deconv.cli import main

    for command in ("project", "topk", "occlude", "optimize"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "module:N" in text and "paper layer" in text, command


# ----------------------------------------------------------------------------- mining state
def _folder(path, seed: int, n: int = 4, side: int = 12):
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(
            path / f"{i}.png")
    return path


def _prep(size: int):
    def preprocess(image):
        array = np.asarray(image.resize((size, size)), dtype=np.float32) / 255
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()
    return preprocess


def test_a_finished_state_is_never_returned_for_another_run(tmp_path):
    # Before: only layers, k, source type and length were compared.
    a, b = _folder(tmp_path / "a", 0), _folder(tmp_path / "b", 1)
    state = tmp_path / "state.pt"
    model = IntNet()
    first = mine_top_k(model, str(a), LAYERS, k=2, preprocess=_prep(8), checkpoint=state,
                       progress=False)
    again = mine_top_k(model, str(a), LAYERS, k=2, preprocess=_prep(8), checkpoint=state,
                       progress=False)
    assert again == first
    runs = {"files_digest": dict(model=model, data=str(b), size=8),  # another folder, same size
            "weights": dict(model=IntNet(seed=1), data=str(a), size=8),  # other weights
            "first_item": dict(model=model, data=str(a), size=10)}  # another input size
    for message, run in runs.items():
        with pytest.raises(errors.CheckpointMismatchError, match=message):
            mine_top_k(run["model"], run["data"], LAYERS, k=2, preprocess=_prep(run["size"]),
                       checkpoint=state, progress=False)
    # The same folder with a file changed is another run too.
    _folder(a, 5, n=1)
    with pytest.raises(errors.CheckpointMismatchError, match="files_digest"):
        mine_top_k(model, str(a), LAYERS, k=2, preprocess=_prep(8), checkpoint=state,
                   progress=False)


class _Interrupting(torch.utils.data.Dataset):
    """Integer images; item ``stop_at`` raises KeyboardInterrupt (a Ctrl-C mid-run)."""

    def __init__(self, images, stop_at=None):
        self.images, self.stop_at = images, stop_at

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if i == self.stop_at:
            raise KeyboardInterrupt
        return self.images[i]


def test_ctrl_c_saves_the_finished_batches_and_a_rerun_gives_the_same_result(tmp_path):
    # Before: the state was saved only every checkpoint_every batches; Ctrl-C lost it all.
    images = torch.randint(0, 3, (10, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    images = images.float()
    model, state = IntNet(), tmp_path / "state.pt"
    whole = mine_top_k(model, images, LAYERS, k=3, batch_size=2, progress=False)
    with pytest.raises(KeyboardInterrupt):
        mine_top_k(model, _Interrupting(images, stop_at=7), LAYERS, k=3, batch_size=2,
                   checkpoint=state, checkpoint_every=100, progress=False)
    progress = TopKResult.load(state).meta["progress"]
    assert progress["consumed"] == 6 and not progress["complete"]
    resumed = mine_top_k(model, _Interrupting(images), LAYERS, k=3, batch_size=2,
                         checkpoint=state, progress=False)
    assert resumed == whole


def test_a_crash_inside_a_forward_saves_whole_batches_only(tmp_path):
    images = torch.randint(0, 3, (6, 3, 8, 8), generator=torch.Generator().manual_seed(2))
    images = images.float()
    model, state = IntNet(), tmp_path / "state.pt"
    whole = mine_top_k(model, images, LAYERS, k=3, batch_size=2, progress=False)
    calls = {"n": 0}

    def crash(_module, _inputs, _output):
        calls["n"] += 1
        if calls["n"] == 3:  # conv1 ran for batch 3, conv2 not yet
            raise RuntimeError("crash")

    handle = model.conv2.register_forward_hook(crash)
    try:
        with pytest.raises(RuntimeError, match="crash"):
            mine_top_k(model, images, LAYERS, k=3, batch_size=2, checkpoint=state,
                       progress=False)
    finally:
        handle.remove()
    assert TopKResult.load(state).meta["progress"]["consumed"] == 4
    assert mine_top_k(model, images, LAYERS, k=3, batch_size=2, checkpoint=state,
                      progress=False) == whole


def test_nan_images_are_refused_by_mining():
    # Before: NaN gave -inf entries and no error.
    images = torch.rand(4, 3, 8, 8)
    images[2, 0, 1, 1] = float("nan")
    with pytest.raises(errors.InvalidImageError, match=r"images \[2\]"):
        mine_top_k(IntNet(), images, LAYERS, k=2, progress=False)


# ----------------------------------------------------------------------------- network check
def test_the_offline_check_bounds_name_resolution(monkeypatch):
    # Before: socket.create_connection's timeout does not cover getaddrinfo.
    from deconv.zoo import torchvision_models

    monkeypatch.delenv("DECONV_OFFLINE", raising=False)

    def stalled(*args, **kwargs):
        time.sleep(5)
        raise socket.gaierror("stalled")

    monkeypatch.setattr(socket, "getaddrinfo", stalled)
    start = time.perf_counter()
    assert torchvision_models._reachable("https://download.pytorch.org/x", timeout=0.3) is False
    assert time.perf_counter() - start < 2
