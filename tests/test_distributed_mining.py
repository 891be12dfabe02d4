"""Distributed mining: 2 Gloo processes (loopback only) give exactly the one-process results.

Covers uneven shards and a rank with no images, dead-map statistics reduced exactly, a run
killed midway that resumes (without re-reading finished items) to the identical result, no
process group left behind, and ``torchrun -m deconv.cli topk`` end to end.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from integer_models import LAYERS, IntNet
from PIL import Image

from deconv.activations import dead_feature_maps
from deconv.distributed import (
    all_reduce_counts,
    distributed_session,
    gather_objects,
    shard_range,
)
from deconv.mining import TopKResult, mine_top_k
from deconv.mining.distributed import (
    dead_feature_maps_distributed,
    mine_top_k_distributed,
    rank_checkpoint,
)

DEAD_LAYERS = ["relu1", "relu2"]


def int_images(n: int = 11, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 3, (n, 3, 8, 8), generator=g).float()
    if n > 6:
        images[5] = images[2]  # equal values in two images, in different shards
        images[6] = 0  # an all-zero image: ties everywhere
    return images


class ProbeImages(torch.utils.data.Dataset):
    """Images that raise on item ``fail_at`` or on any ``forbidden`` item (to prove a resume
    does not read finished items again)."""

    def __init__(self, images: torch.Tensor, fail_at: int | None = None,
                 forbidden: frozenset[int] = frozenset()):
        self.images, self.fail_at, self.forbidden = images, fail_at, forbidden

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        if index == self.fail_at:
            raise RuntimeError(f"injected failure at item {index}")
        if index in self.forbidden:
            raise RuntimeError(f"item {index} read again after a resume")
        return self.images[index]


def _session(rank: int, world: int, init_file: Path):
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only
    return distributed_session(backend="gloo", init_method=f"file://{init_file}", rank=rank,
                               world_size=world)


def _mining_worker(rank: int, world: int, init_file: Path, out: Path, sizes: list[int]) -> None:
    torch.set_num_threads(1)
    model, images = IntNet(), int_images()
    with _session(rank, world, init_file) as context:
        assert context.world_size == world and context.rank == rank
        for n in sizes:
            merged = mine_top_k_distributed(model, images[:n], LAYERS, k=3, batch_size=2,
                                            progress=False)
            if rank == 0:
                merged.save(out / f"n{n}.pt")
            else:
                assert merged is None
        everywhere = mine_top_k_distributed(model, images, LAYERS, k=4, per_image=2,
                                            batch_size=3, progress=False, all_ranks=True)
        everywhere.save(out / f"all_ranks.rank{rank}.pt")
        for n in (len(images), 1):
            stats = dead_feature_maps_distributed(model, images[:n], DEAD_LAYERS,
                                                  dead_fraction=0.5, batch_size=2,
                                                  progress=False)
            (out / f"dead{n}.rank{rank}.json").write_text(
                json.dumps({k: v.to_dict() for k, v in stats.items()}))
    (out / f"clean.rank{rank}").write_text(str(dist.is_initialized()))


def _resume_worker(rank: int, world: int, init_file: Path, out: Path, dataset: ProbeImages
                   ) -> None:
    torch.set_num_threads(1)
    with _session(rank, world, init_file):
        merged = mine_top_k_distributed(IntNet(), dataset, LAYERS, k=3, batch_size=2,
                                        checkpoint=out / "state.pt", checkpoint_every=1,
                                        progress=False)
        if rank == 0:
            merged.save(out / "merged.pt")


def _spawn(fn, *args, world: int = 2) -> None:
    mp.spawn(fn, args=(world, *args), nprocs=world, join=True)


# ----------------------------------------------------------------------------- single process
def test_shard_ranges_cover_every_index_once_and_may_be_empty():
    for length in range(0, 9):
        for world in range(1, 5):
            blocks = [shard_range(length, r, world) for r in range(world)]
            assert [i for a, b in blocks for i in range(a, b)] == list(range(length))
            sizes = [b - a for a, b in blocks]
            assert max(sizes) - min(sizes) <= 1
    assert shard_range(1, 0, 2) == (0, 0)  # rank 0 gets nothing
    with pytest.raises(ValueError, match="rank"):
        shard_range(5, 2, 2)
    assert rank_checkpoint("run/state.pt", 1, 4) == Path("run/state.rank1-of-4.pt")


def test_without_a_process_group_it_is_plain_mining(tmp_path):
    model, images = IntNet(), int_images()
    whole = mine_top_k(model, images, LAYERS, k=3, batch_size=4, progress=False)
    merged = mine_top_k_distributed(model, ProbeImages(images), LAYERS, k=3, batch_size=2,
                                    progress=False, checkpoint=tmp_path / "state.pt")
    assert merged == whole
    assert merged.meta["distributed"]["world_size"] == 1
    # The merged file is a finished checkpoint of the whole run: plain mining reuses it, reading
    # only the first and last items (the run's fingerprint hashes them).
    reused = mine_top_k(model, ProbeImages(images, forbidden=frozenset(range(1, 10))), LAYERS,
                        k=3, checkpoint=tmp_path / "state.pt", progress=False)
    assert reused == whole
    assert gather_objects("x") == ["x"]
    assert dead_feature_maps_distributed(model, images, DEAD_LAYERS, progress=False) == \
        dead_feature_maps(model, images, DEAD_LAYERS, progress=False)
    with pytest.raises(TypeError, match="indexable"):
        mine_top_k_distributed(model, torch.utils.data.DataLoader(images), LAYERS)
    with pytest.raises(TypeError, match="integer"):
        all_reduce_counts({"x": torch.ones(2)})


# ----------------------------------------------------------------------------- two processes
def test_two_gloo_processes_equal_one_process(tmp_path):
    sizes = [11, 3, 1, 0]  # blocks 5+6, 1+2, 0+1 (rank 0 empty), 0+0
    _spawn(_mining_worker, tmp_path / "pg", tmp_path, sizes)
    model, images = IntNet(), int_images()
    for n in sizes:
        single = mine_top_k(model, images[:n], LAYERS, k=3, batch_size=4, progress=False)
        merged = TopKResult.load(tmp_path / f"n{n}.pt")
        assert merged == single, f"{n} images"
        ranks = merged.meta["distributed"]["ranks"]
        assert [r["items"] for r in ranks] == [n // 2, n - n // 2]
        assert [r["first_id"] for r in ranks] == [0, n // 2]
    assert TopKResult.load(tmp_path / "n11.pt").image_ids["conv1"].max() >= 6  # global ids
    single = mine_top_k(model, images, LAYERS, k=4, per_image=2, progress=False)
    for rank in (0, 1):
        assert TopKResult.load(tmp_path / f"all_ranks.rank{rank}.pt") == single
    for n in (11, 1):
        expected = {k: v.to_dict() for k, v in dead_feature_maps(
            model, images[:n], DEAD_LAYERS, dead_fraction=0.5, progress=False).items()}
        for rank in (0, 1):
            assert json.loads((tmp_path / f"dead{n}.rank{rank}.json").read_text()) == expected
    assert expected["relu2"]["channels"] == 6  # learnt by the rank that saw no image
    for rank in (0, 1):  # the process group was destroyed on leaving the session
        assert (tmp_path / f"clean.rank{rank}").read_text() == "False"


def test_a_killed_run_resumes_to_the_identical_result(tmp_path):
    images = int_images()
    single = mine_top_k(IntNet(), images, LAYERS, k=3, batch_size=4, progress=False)
    # Rank 1 mines items 5..10 in batches of 2 and dies on item 9, after 2 checkpoints.
    # Whichever rank is reported first: rank 1's failure, or rank 0 losing its peer (Gloo:
    # "Connection closed by peer" or "Connection reset by peer", both "...remote worker...").
    with pytest.raises(mp.ProcessRaisedException,
                       match="injected failure|remote worker"):
        _spawn(_resume_worker, tmp_path / "pg1", tmp_path, ProbeImages(images, fail_at=9))
    states = [TopKResult.load(rank_checkpoint(tmp_path / "state.pt", r, 2)).meta["progress"]
              for r in (0, 1)]
    assert states[1]["consumed"] == 4 and not states[1]["complete"]
    assert not (tmp_path / "merged.pt").exists()
    done = states[0]["consumed"] if states[0]["complete"] else 0  # rank 0 may have finished
    # Finished items are not read again, except the first and last of each shard and of the
    # whole dataset, which the runs' fingerprints hash (0, 4 | 5, 10).
    forbidden = (frozenset(range(done)) | frozenset(range(6, 9))) - {0, 4}
    _spawn(_resume_worker, tmp_path / "pg2", tmp_path, ProbeImages(images, forbidden=forbidden))
    assert TopKResult.load(tmp_path / "merged.pt") == single
    assert TopKResult.load(tmp_path / "state.pt") == single


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_cli_topk_equals_one_process(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
            folder / f"img{i}.png")
    (folder / "broken.jpg").write_bytes(b"not an image")  # skipped, counted, in shard 1
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1",
               "--nproc-per-node=2", "--master-addr=127.0.0.1", f"--master-port={_free_port()}",
               "-m", "deconv.cli", "topk", "--model", "zfnet", "--data", str(folder),
               "--layer", "1", "--k", "2", "--count", "1", "--size", "32", "--batch-size", "2",
               "--out", str(tmp_path / "out"), "--checkpoint", str(tmp_path / "state.pt")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 rank(s): mined 5 images (1 skipped)" in done.stdout
    assert rank_checkpoint(tmp_path / "state.pt", 1, 2).is_file()
    record = json.loads((tmp_path / "out" / "topk.json").read_text())
    assert record["distributed"]["world_size"] == 2

    import deconv
    from deconv.samples import ImageFiles

    loaded = deconv.load_model("zfnet")
    dataset = ImageFiles(folder, transform=lambda im: loaded.preprocess(im, size=32))
    with pytest.warns(UserWarning, match="skipping"):
        single = mine_top_k(loaded, dataset, [1], k=2, batch_size=4, progress=False)
    assert TopKResult.load(tmp_path / "out" / "topk.pt") == single
