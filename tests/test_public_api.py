"""The public surface: a short ``deconv.__all__``; old names still work, with a warning."""

import importlib
import importlib.util
import re
import warnings
from pathlib import Path

import pytest

import deconv

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_public_name_resolves_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in deconv.__all__:
            assert not name.startswith("_")
            getattr(deconv, name)
    assert len(deconv.__all__) == len(set(deconv.__all__))


def test_the_readme_uses_only_public_root_names():
    used = set(re.findall(r"\bdeconv\.([A-Za-z]\w*)", README.read_text()))
    subpackages = {name for name in used if importlib.util.find_spec(f"deconv.{name}")}
    assert used - subpackages <= set(deconv.__all__), used - subpackages - set(deconv.__all__)


@pytest.mark.parametrize("name", sorted(deconv._MOVED))
def test_dropped_root_names_warn_and_point_to_their_module(name):
    home, _, new = deconv._MOVED[name].partition(":")
    with pytest.warns(DeprecationWarning) as record:
        value = getattr(deconv, name)
    assert [home in str(w.message) for w in record] == [True]  # one: the target is current
    assert value is getattr(importlib.import_module(home), new or name)


@pytest.mark.parametrize("package, name, home", [
    ("deconv.mining", "select_top_k", "deconv.mining.result"),
    ("deconv.mining", "batch_candidates", "deconv.mining.top_k"),
    ("deconv.occlusion", "evaluate_occluded", "deconv.occlusion.engines"),
])
def test_dropped_subpackage_names_warn(package, name, home):
    module = importlib.import_module(package)
    assert name not in module.__all__
    with pytest.warns(DeprecationWarning, match=home):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(home), name)


def test_unknown_names_and_subpackages():
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        deconv.nothing_here  # noqa: B018
    assert deconv.training.train is importlib.import_module("deconv.training").train
