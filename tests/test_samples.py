"""Sample photos and image folders: provenance, bad files skipped with a warning."""

import numpy as np
import pytest
import torch
from PIL import Image

from deconv.samples import (
    SAMPLE_NAMES,
    CorruptImageError,
    ImageFiles,
    collate_skip_bad,
    list_image_files,
    open_image,
    sample_images,
    to_pil,
)


def test_default_samples_are_rgb_photos_with_licences():
    samples = sample_images()
    assert [s.name for s in samples] == list(SAMPLE_NAMES)
    for s in samples:
        assert s.image.mode == "RGB" and min(s.image.size) >= 256
        assert s.licence and s.source


def test_all_and_unknown():
    assert len(sample_images("all")) > len(SAMPLE_NAMES)
    with pytest.raises(KeyError, match="available"):
        sample_images(["nope"])


@pytest.fixture
def folder(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
    Image.new("RGB", (20, 10), (255, 0, 0)).save(tmp_path / "a" / "red.png")
    Image.new("L", (8, 8), 128).save(tmp_path / "b" / "grey.jpg")
    (tmp_path / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    good = tmp_path / "a" / "trunc.png"
    Image.new("RGB", (64, 64), (0, 0, 255)).save(good)
    good.write_bytes(good.read_bytes()[:60])  # truncated
    return tmp_path


def test_folder_listing_and_bad_files_are_skipped_with_names(folder):
    files = list_image_files(folder)
    assert [f.name for f in files] == ["red.png", "trunc.png", "broken.jpg", "grey.jpg"]
    dataset = ImageFiles(folder, transform=lambda im: torch.from_numpy(
        np.asarray(im.resize((4, 4)), dtype=np.float32)))
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, collate_fn=collate_skip_bad)
    with pytest.warns(UserWarning) as record:
        batches = [b for b in loader if b is not None]
    messages = " ".join(str(w.message) for w in record)
    assert "broken.jpg" in messages and "trunc.png" in messages
    ids = torch.cat([b[1] for b in batches]).tolist()
    assert ids == [0, 3] and dataset.bad == {1, 2}


def test_open_image_errors_name_the_file(folder):
    with pytest.raises(CorruptImageError, match="broken.jpg"):
        open_image(folder / "b" / "broken.jpg")
    with pytest.raises(CorruptImageError, match="missing.png"):
        open_image(folder / "missing.png")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_image_files(folder / "nowhere")


def test_to_pil_conversions():
    assert to_pil(np.zeros((5, 6), np.uint8)).size == (6, 5)
    assert to_pil(np.ones((5, 6, 4), np.float32)).getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(ValueError, match="NaN"):
        to_pil(np.full((4, 4, 3), np.nan))
    with pytest.raises(ValueError, match="HxW"):
        to_pil(np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(TypeError):
        to_pil(42)
