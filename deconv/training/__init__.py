"""Training the ZFNet family: the loop, feature-scale clipping, checkpoints (Zeiler & Fergus 2014).

See :func:`train` for the loop and its files, :func:`feature_scale_clip` for the paper's filter
renormalization, and ``experiments/train_zfnet.py`` for the command line.
"""

from deconv.training.clipping import feature_scale_clip, filter_rms
from deconv.training.loop import (
    PAPER_CHECKPOINT_EPOCHS,
    ResumeMismatchError,
    TrainSettings,
    evaluate,
    learning_rate,
    save_weights,
    scaled_checkpoint_epochs,
    train,
)

__all__ = ["PAPER_CHECKPOINT_EPOCHS", "ResumeMismatchError", "TrainSettings", "evaluate",
           "feature_scale_clip", "filter_rms", "learning_rate", "save_weights",
           "scaled_checkpoint_epochs", "train"]
