"""Every user file is read through pytest_emogate/files.py: `open_checked` / `read_checked` (a regular file, at most
a size limit, opened without blocking) or, for a file a library opens itself, `check_regular` first.

This test lists every call in the package that opens or reads a file by path outside files.py. Each one is
either on the list below, with the check that guards it, or the test fails: a new reader must use the helpers, or
be added here with its reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pytest_emogate"
OPENERS = {
    "open", "read_bytes", "read_text", "VideoCapture", "safe_open", "from_pretrained", "SentencePieceProcessor",
    "connect", "fromfile", "memmap", "imread", "load_file",
}  # fmt: skip
"""Names of calls that open or read a file by its path (`load`, `loads` count only for torch, numpy, pickle)."""
LOADERS = {"torch.load", "np.load", "numpy.load", "pickle.loads", "pickle.load", "yaml.load", "yaml.safe_load"}

ALLOWED = {
    ("data/image.py", "Image.open"): "the handle of open_checked (a regular file, at most the image limit)",
    ("data/image.py", "cv2.VideoCapture"): "after check_regular and the size limit; the frame size is checked first",
    ("evaluate/ratchet.py", "yaml.load"): "ruamel on text read by read_bounded (the thresholds' 4 MiB limit)",
    ("cli.py", "files('pytest_emogate').joinpath(STARTER).read_bytes"): "the package's own thresholds.yaml (data)",
    ("cli.py", "os.open"): "emogate init: O_CREAT | O_EXCL, a new file or nothing (never follows a symlink)",
    ("history.py", "sqlite3.connect"): "after check_regular; read-only unless recording; a foreign schema refused",
    ("inference/cache.py", "os.open"): "answers files checked regular and writable when the cache opens",
    ("inference/cache.py", "(self.folder / LOCK).open"): "the lock file, checked a writable regular file at open",
    ("inference/sources.py", "AnswerCache.open"): "the cache's own opener, which checks every file it will use",
    ("inference/probe.py", "AnswerCache.open"): "the cache's own opener, which checks every file it will use",
    ("inference/launch.py", "plan_path.read_bytes"): "our own plan, in a private temporary folder (mode 0700)",
    ("inference/launch.py", "pickle.loads"): "our own plan, written by this pytest process to its private folder",
    ("inference/launch.py", "_log(plan, rank, 'stdout').open"): "a rank's log, created in the private folder",
    ("inference/launch.py", "_log(plan, rank, 'stderr').open"): "a rank's log, created in the private folder",
    ("inference/launch.py", "result_path(self.plan, self.rank).read_text"): "a rank's result, in the private folder",
    ("inference/launch.py", "path.open"): "the end of a rank's log, in the private folder",
    ("inference/launch.py", "path.read_text"): "a rank's error record, in the private folder",
    ("model/llama_files.py", "sentencepiece.SentencePieceProcessor"): "model_proto= bytes read by read_checked",
    ("model/llm.py", "LlamaTokenizer.from_pretrained"): "after check_llama_folder: every file regular and bounded",
    ("model/llm.py", "LlamaForCausalLM.from_pretrained"): "after check_llama_folder: every file regular and bounded",
    ("model/weight_files.py", "torch.load"): "after check_regular and the first bytes (weights_only=True)",
    ("model/weight_files.py", "safe_open"): "after check_regular and the header's size checked against the file",
}


def calls_in(source: str) -> set[str]:
    """The file-opening calls of a module's source, each as written (`Path(x).read_text`, `np.load`)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
        written = ast.unparse(function)
        if name in OPENERS or written in LOADERS or (written.startswith("os.") and name in ("open", "fdopen")):
            found.add(written)
    return found


def file_calls() -> set[tuple[str, str]]:
    """(module path under the package, the call as written) for every file-opening call outside files.py."""
    return {
        (path.relative_to(PACKAGE).as_posix(), call)
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "files.py" or path.parent != PACKAGE
        for call in calls_in(path.read_text(encoding="utf-8"))
    }


def test_every_file_read_outside_files_py_is_a_known_guarded_one() -> None:
    found = file_calls()
    unlisted = sorted(found - set(ALLOWED))
    assert not unlisted, (
        f"file reads outside files.py that bypass its bounded, regular-file helpers: {unlisted}; use "
        "files.open_checked / read_checked / check_regular, or list the call in ALLOWED with the check guarding it"
    )
    assert not sorted(set(ALLOWED) - found), "ALLOWED lists calls that are gone: remove them"


def test_the_scan_finds_direct_reads() -> None:
    source = "import numpy as np, os\nPath('x').read_text()\nopen('y')\nnp.load('z')\nos.open('w', 0)\nlen('v')\n"
    assert calls_in(source) == {"Path('x').read_text", "open", "np.load", "os.open"}
