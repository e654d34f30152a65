"""The session's state in `config.stash`, under typed keys (never `config._x` or module globals).

Light on purpose: the plugin imports it in every run, and the gate's modules load only when the gate is on.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_emogate.gate import Gate
    from pytest_emogate.inference.sources import CheckpointInference
    from pytest_emogate.outputs import Outputs

GATE_KEY: pytest.StashKey[Gate] = pytest.StashKey()
"""The session's gate, on the process that gates (not on a torchrun worker rank)."""
OUTPUTS_KEY: pytest.StashKey[Outputs] = pytest.StashKey()
"""Every file the session writes, beside the gate."""
RANK_KEY: pytest.StashKey[CheckpointInference] = pytest.StashKey()
"""Under torchrun: the source every rank answers its shard with at session start (rank 0 gates it too)."""
SCRATCH_KEY: pytest.StashKey[Path] = pytest.StashKey()
"""With --emogate-no-cache: the temporary folder the answers pass through, made by the process that gates (its
pytest-xdist workers answer into it too, so they infer once and it holds the answers) and removed at its end."""
SCRATCH_INPUT = "emogate_scratch"
"""The key of a pytest-xdist worker's `workerinput` that names its controller's scratch folder (SCRATCH_KEY)."""
