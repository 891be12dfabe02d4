"""One run of the Fig. 6 first-layer ablation: train, trace filter RMS, keep only what is analysed.

Zeiler & Fergus (2014, Sec. 4.1, Fig. 6) compare AlexNet's first layer (11x11 filters, stride 4)
with theirs (7x7, stride 2) and show that without feature-scale clipping one feature dominates.
:func:`train_ablation_run` trains one such network on Fashion-MNIST with the paper's recipe for
the layer under study: the paper's input scale (pixels 0-255 with the mean subtracted, not divided
by the std: :func:`ablation_transforms`), conv1 initialised from N(0, 0.01^2) (the paper's init;
the layers above keep the He init of the ``fashion`` configs, because the paper's init in all
eight layers of these narrow networks leaves the loss at ln 10, see
``experiments/fig6_ablation.py``), SGD with momentum 0.9, learning rate 1e-2 (warmed up over
the first epoch in the experiment: without it the loss becomes non-finite) divided by 10 by
schedule,
clipping at RMS 0.1 on or off. The clipping radius and the init are in the units of that input:
on inputs divided by the std (x 1/90) a 0.1 filter would be a 9 one.

It saves ``<dest>/weights.pt`` (float16: the state of conv1 and conv2, enough for every layer-1
and layer-2 statistic, and conv1's filters after each epoch) and ``<dest>/log.json`` (settings,
per-epoch rows with filters clipped per layer and every filter's RMS, and conv1's per-filter RMS
every ``trace_every`` steps). The rest of the network is not kept: the analysis only needs the
first two layers and the test accuracy, which the log records.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deconv.datasets import fashion_batch_transform, load_fashion_mnist
from deconv.errors import InvalidArgumentError, MissingFileError
from deconv.training.clipping import filter_rms
from deconv.training.loop import TrainSettings, train
from deconv.zoo import LoadedModel, load_model

__all__ = ["KEPT_MODULES", "PAPER_PIXEL_STD", "ablation_transforms", "paper_init_",
           "paper_init_probe",
           "train_ablation_run", "load_ablation_run"]

#: Modules whose state ``weights.pt`` keeps (conv1 and conv2 of the ZFNet ``features``).
KEPT_MODULES = ("features.0", "features.4")

#: The "std" that makes :func:`deconv.datasets.fashion_batch_transform` give mean-subtracted
#: pixels in 0-255 units, the paper's preprocessing (Sec. 3: per-pixel mean subtracted only).
PAPER_PIXEL_STD = 1 / 255


def ablation_transforms(loaded: LoadedModel):
    """(training with flips, evaluation) transforms: 64 px, mean-subtracted 0-255 pixels."""
    mean = loaded.mean[0]
    return (fashion_batch_transform(loaded.input_size, mean, PAPER_PIXEL_STD, flip=True),
            fashion_batch_transform(loaded.input_size, mean, PAPER_PIXEL_STD))


@torch.no_grad()
def paper_init_(conv: nn.Conv2d, seed: int, std: float = 0.01) -> None:
    """Re-initialise ``conv`` in place as the paper does: weights N(0, std^2), bias 0 (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * std)
    if conv.bias is not None:
        conv.bias.zero_()


def train_ablation_run(config: str, settings: TrainSettings, run_dir: str | Path,
                       dest: str | Path, train_images: int | None, test_images: int | None,
                       trace_every: int = 20, extra: dict | None = None) -> dict:
    """Train one ablation network and write ``dest/weights.pt`` and ``dest/log.json``.

    Args:
        config (str): ``"fashion"`` (conv1 7x7/2) or ``"fashion-alexnet-conv1"`` (11x11/4).
        settings (TrainSettings): the run (its ``seed`` also seeds both inits).
        run_dir (str | Path): scratch folder of the training loop (not committed).
        dest (str | Path): where the kept files go.
        train_images (int | None): the first this many training images (None: all 60,000).
        test_images (int | None): the first this many test images, evaluated after each epoch.
        trace_every (int): record conv1's per-filter RMS every this many steps.
        extra (dict | None): more facts for the log (e.g. the command).

    Returns:
        dict: the log written to ``dest/log.json`` (``diverged`` is the error text if the loss
        became non-finite; the weights are then those of the last finished epoch).
    """
    loaded = load_model("zfnet", config=config, weights=None, seed=settings.seed)
    conv1 = loaded.model.features[0]
    paper_init_(conv1, settings.seed)
    train_set = load_fashion_mnist("train", limit=train_images)
    test_set = load_fashion_mnist("test", limit=test_images)
    train_tf, eval_tf = ablation_transforms(loaded)
    trace: list[dict] = []
    conv1_by_epoch: list[torch.Tensor] = [conv1.weight.detach().clone()]
    steps = -(-len(train_set) // settings.batch_size)

    def on_step(epoch: int, step: int, model: nn.Module) -> None:
        if step % trace_every == 0 or step == steps - 1:
            trace.append({"epoch": epoch, "step": step,
                          "rms": [round(float(r), 6) for r in filter_rms(conv1.weight)]})
        if step == steps - 1:
            conv1_by_epoch.append(conv1.weight.detach().clone())

    for stale in ("last.pt", "log.json"):  # a diverged run must not pick up an older run's files
        (Path(run_dir) / stale).unlink(missing_ok=True)
    start = time.perf_counter()
    diverged = None
    try:
        history = train(loaded.model, train_set, settings, run_dir, test_data=test_set,
                        batch_transform=train_tf, eval_transform=eval_tf, resume=False,
                        progress=False, on_step=on_step)
    except FloatingPointError as error:
        diverged = str(error)
        history = json.loads((Path(run_dir) / "log.json").read_text())["history"] \
            if (Path(run_dir) / "log.json").is_file() else []
        last = Path(run_dir) / "last.pt"
        if last.is_file():
            loaded.model.load_state_dict(torch.load(last, weights_only=True)["model"])
    seconds = time.perf_counter() - start
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16) for k, v in loaded.model.state_dict().items()
             if k.rsplit(".", 1)[0] in KEPT_MODULES}
    torch.save({"state": state, "conv1_by_epoch": torch.stack(conv1_by_epoch).half()},
               dest / "weights.pt")
    log = {"config": config, "settings": settings.to_json(), "conv1_init": "N(0, 0.01^2)",
           "input": "pixels 0-255 minus the mean (the paper's preprocessing)",
           "other_layers_init": "He normal (the fashion config)",
           "train_images": len(train_set),
           "test_images": len(test_set), "train_seconds": round(seconds, 1),
           "threads": torch.get_num_threads(), "diverged": diverged, "history": history,
           "conv1_rms_trace": trace, **(extra or {})}
    (dest / "log.json").write_text(json.dumps(log) + "\n")
    return log


def load_ablation_run(dest: str | Path) -> tuple[LoadedModel, torch.Tensor, dict]:
    """A saved ablation run: the model with conv1/conv2 loaded, conv1 per epoch, the log.

    Only conv1 and conv2 carry trained weights; every other module keeps its seeded random init,
    so use the model up to ``features.7`` (norm2) only.

    Returns:
        tuple[LoadedModel, torch.Tensor, dict]: the model (float32, eval mode), conv1's weights
        ``[epochs + 1, F, C, k, k]`` (index 0: the init) and the log.

    Raises:
        FileNotFoundError: the run was not trained (the message says how to train it).
    """
    dest = Path(dest)
    if not (dest / "weights.pt").is_file():
        raise MissingFileError(f"{dest}/weights.pt not found: train the ablation with "
                                f"`python experiments/fig6_ablation.py --retrain`")
    log = json.loads((dest / "log.json").read_text())
    saved = torch.load(dest / "weights.pt", map_location="cpu", weights_only=True)
    loaded = load_model("zfnet", config=log["config"], weights=None, seed=log["settings"]["seed"])
    missing = loaded.model.load_state_dict(saved["state"], strict=False)
    if missing.unexpected_keys:
        raise InvalidArgumentError(
            f"{dest}/weights.pt has unexpected keys {missing.unexpected_keys}")
    loaded.model.eval()
    return loaded, saved["conv1_by_epoch"].float(), log


def paper_init_probe(config: str = "fashion", steps: int = 60, seed: int = 0,
                     lr: float = 0.01, all_layers: bool = True,
                     clip_radius: float | None = None) -> dict:
    """A few SGD steps at the full rate from the first step (no warm-up), for the record.

    With ``all_layers`` every layer gets the paper's init N(0, 0.01^2): in these narrow networks
    it shrinks the signal layer by layer, so the loss stays at ln 10 and the weights do not move
    (why the runs keep He init above conv1). Without it (conv1 paper init, He above, as in the
    runs) the probe shows what the runs' one-epoch warm-up avoids: at lr 1e-2 from the first step
    the loss becomes non-finite, with or without clipping.

    Returns:
        dict: settings, loss of the first / last / best step, the step where the loss became
        non-finite (None if never), conv1's largest and median filter RMS at the end, the
        largest change of a conv1 weight and the filters clipped (all layers) over the steps.
    """
    import torch.nn.functional as F

    from deconv.training.clipping import feature_scale_clip

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        loaded = load_model("zfnet", config=config, weights=None, seed=seed)
        model = loaded.model
        if all_layers:
            for i, module in enumerate(m for m in model.modules()
                                       if isinstance(m, (nn.Conv2d, nn.Linear))):
                paper_init_(module, seed + i)
        else:
            paper_init_(model.features[0], seed)
        train_tf, _ = ablation_transforms(loaded)
        data = load_fashion_mnist("train", limit=128 * steps)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        before = model.features[0].weight.detach().clone()
        losses, nonfinite, clipped = [], None, 0
        model.train()
        for step in range(steps):
            x = train_tf(data.tensors[0][step * 128:(step + 1) * 128])
            loss = F.cross_entropy(model(x), data.tensors[1][step * 128:(step + 1) * 128])
            if not torch.isfinite(loss):
                nonfinite = step
                break
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if clip_radius is not None:
                clipped += feature_scale_clip(model, clip_radius)
            losses.append(float(loss.detach()))
    rms = filter_rms(model.features[0].weight)
    change = float((model.features[0].weight.detach() - before).abs().max())
    return {"config": config, "steps": steps, "lr": lr, "warmup": "none",
            "init": "N(0, 0.01^2) in every layer" if all_layers
            else "N(0, 0.01^2) in conv1, He above", "clip_radius": clip_radius,
            "loss_first": round(losses[0], 4) if losses else None,
            "loss_last": round(losses[-1], 4) if losses else None,
            "loss_min": round(min(losses), 4) if losses else None,
            "ln_10": round(float(np.log(10)), 4), "nonfinite_loss_at_step": nonfinite,
            "conv1_rms_max": float(rms.max()), "conv1_rms_median": float(rms.median()),
            "conv1_max_weight_change": change, "filters_clipped": clipped}
