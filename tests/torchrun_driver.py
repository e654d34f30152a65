"""One torchrun rank calling run_torchrun directly (tests/test_distributed.py starts two of them).

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/torchrun_driver.py OUT MANIFEST...

Rank R reads MANIFEST[R] and keeps its own cache under OUT/cache-R (as if on its own node); rank 0 writes what it
got, its runs or its error, to OUT/rank0.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pytest_emogate.data import load_test3
from pytest_emogate.inference.cache import AnswerCache
from pytest_emogate.inference.distributed import RankFailedError, run_torchrun, torchrun_rank
from pytest_emogate.inference.settings import InferenceSettings

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "tiny"


def main(out: Path, manifests: list[str]) -> None:
    rank, _ = torchrun_rank() or (0, 1)
    data = load_test3(Path(manifests[rank]))
    settings = InferenceSettings(TINY / "checkpoint_best.pth", TINY / "llama", TINY / "eva_vit_g.pth", batch_size=8)
    cache = AnswerCache.open(out / f"cache-{rank}", {"test": "torchrun"})
    done = cache.load()
    missing = [i for i, sample in enumerate(data.samples) if sample.name not in done]
    try:
        runs = run_torchrun(settings, data, cache.folder, missing, identity={"data": "slice"}, progress=False)
        result = {"runs": [[run.rank, run.device, run.answered, run.error] for run in runs]}
    except RankFailedError as error:
        result = {"error": str(error), "error_type": error.error_type}
    if rank == 0:
        (out / "rank0.json").write_text(json.dumps({**result, "cache": str(cache.folder)}), encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
