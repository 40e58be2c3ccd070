"""Training: state, pure train step, device mesh, checkpoints, and the config-driven loop.

``train.loop.train_and_evaluate(config, workdir)`` runs an experiment from a config;
``train.options`` is the config schema (checked once, every default written there),
``train.build`` the one place config strings become objects, ``train.evaluate`` what
``diffax sample | likelihood | eval`` compute, ``train.fit`` trains on in-memory arrays
(the task examples). The modules below are
usable on their own.
"""

from diffax.train import checkpoint, in_memory, parallel, state, step
from diffax.train.checkpoint import (
    Checkpointer,
    CheckpointError,
    CheckpointWriteError,
    CorruptCheckpointError,
    NonFiniteStateError,
)
from diffax.train.in_memory import FitResult, fit
from diffax.train.parallel import (
    compile_train_step,
    make_mesh,
    replicate,
    shard_batch,
)
from diffax.train.state import TrainState
from diffax.train.step import TrainStep, make_optimizer, make_train_step

__all__ = [
    "checkpoint",
    "in_memory",
    "parallel",
    "state",
    "step",
    "Checkpointer",
    "CheckpointError",
    "CheckpointWriteError",
    "CorruptCheckpointError",
    "NonFiniteStateError",
    "TrainState",
    "FitResult",
    "fit",
    "TrainStep",
    "compile_train_step",
    "make_mesh",
    "make_optimizer",
    "make_train_step",
    "replicate",
    "shard_batch",
]
