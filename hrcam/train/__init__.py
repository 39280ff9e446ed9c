"""Training: the two stages of the paper with a verified weight transfer, resumable and
reproducible.

* `hrcam.train.config`: `TrainConfig`, the one source of the training options' defaults;
* `hrcam.train.augment`: the paper's augmentation policy on whole batches;
* `hrcam.train.data`: the tf.data input pipelines (training stream, validation set);
* `hrcam.train.state`: the resumable training state and its per-epoch commit;
* `hrcam.train.stages`: `train_half`, `train_full`;
* `hrcam.train.transfer`: the half-vs-full transfer check.
"""

from hrcam.train.augment import (
                                 AugmentConfig,
                                 affine_matrices,
                                 apply_affine,
                                 augment_batch,
                                 augment_image,
)
from hrcam.train.config import (
                                 OPTIMIZERS,
                                 ReduceLRConfig,
                                 TrainConfig,
                                 config_fingerprint,
                                 default_of,
                                 load_config,
)
from hrcam.train.data import (
                                 TARGETS,
                                 dataset_size,
                                 list_split,
                                 make_dataset,
                                 split_exists,
                                 steps_per_epoch,
                                 training_dataset,
)
from hrcam.train.stages import (
                                 class_records,
                                 make_optimizer,
                                 tensorboard_available,
                                 train_full,
                                 train_half,
)
from hrcam.train.state import STATE_DIR, TrainingState
from hrcam.train.transfer import (
                                 PROB_TOLERANCE,
                                 TransferCheckError,
                                 check_images,
                                 check_transfer_files,
                                 transfer_failure_message,
                                 verify_transfer,
)

__all__ = [
    "AugmentConfig", "affine_matrices", "apply_affine", "augment_batch", "augment_image",
    "OPTIMIZERS", "ReduceLRConfig", "TrainConfig", "config_fingerprint", "default_of",
    "load_config", "TARGETS", "dataset_size", "list_split", "make_dataset", "split_exists",
    "steps_per_epoch", "training_dataset", "class_records", "make_optimizer",
    "tensorboard_available", "train_full", "train_half", "STATE_DIR", "TrainingState",
    "PROB_TOLERANCE", "TransferCheckError", "check_images", "check_transfer_files",
    "transfer_failure_message", "verify_transfer",
]
