"""Vendor Q16's learned prompts as plain numpy arrays: run once, by hand, when they change.

Q16 (github.com/ml-research/Q16) keeps, for each CLIP model it learned prompts for, one pickle
`data/<model>/prompts.p` of a float16 array (2, D): row 0 is "non inappropriate", row 1
"inappropriate". A pickle can run code when it is read, so this script reads them from a git
snapshot of that repository with an unpickler that knows only the three numpy globals an
array needs, and writes each as a `.npy` file (loadable with `allow_pickle=False`) beside a
NOTICE naming the source, its commit, each file's git blob id, the licence, the paper and the
SHA-256 of each `.npy`:

    python tools/convert_q16.py /work/.mirror/ml-research+Q16/repo

The SHA-256 it prints go into `generator/models/learned_prompts.py` as well.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import pickle
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

COMMIT = "33de788767bbe33cf77a5f6df931cd86c71f294f"
MODELS = {"ViT-B/32": 512, "ViT-B/16": 512, "ViT-L/14": 768}  # name -> embedding width
OUT = Path(__file__).resolve().parent.parent / "generator" / "models" / "q16"
# What a pickled numpy array names, and nothing else.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class ArrayUnpickler(pickle.Unpickler):
    """Reads a pickled numpy array; any other global is refused before it is looked up (as
    the pickle module's documentation restricts globals)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing the global {module}.{name}")
        return super().find_class(module, name)


def file_name(model: str) -> str:
    """Q16's folder name for a CLIP model, which is also the vendored file's stem."""
    return model.replace("/", "-")


def git_blob(repo: Path, path: str) -> tuple[str, bytes]:
    """The blob id and bytes of `path` at `COMMIT` in the git directory `repo`."""
    spec = f"{COMMIT}:{path}"
    blob = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", spec], capture_output=True, text=True, check=True
    ).stdout.strip()
    data = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "blob", blob], capture_output=True, check=True
    ).stdout
    return blob, data


def convert(data: bytes, width: int) -> bytes:
    """The pickled array as `.npy` bytes, after checking that it is what Q16 describes."""
    array = ArrayUnpickler(io.BytesIO(data)).load()
    if not isinstance(array, np.ndarray) or array.dtype != np.float16:
        raise ValueError(f"expected a float16 array, got {type(array).__name__}")
    if array.shape != (2, width) or not np.isfinite(array).all():
        raise ValueError(f"expected a finite (2, {width}) array, got {array.shape}")
    out = io.BytesIO()
    np.save(out, np.ascontiguousarray(array), allow_pickle=False)
    return out.getvalue()


NOTICE = """\
Q16's learned prompts, vendored as plain numpy arrays
=====================================================

Source:  https://github.com/ml-research/Q16
Commit:  {commit}
Licence: MIT, as the repository's README says (its licence badge links to
         https://opensource.org/licenses/MIT); the repository has no LICENSE file.
Paper:   Patrick Schramowski, Christopher Tauchmann, Kristian Kersting. "Can Machines Help Us
         Answering Question 16 in Datasheets, and In Turn Reflecting on Inappropriate
         Content?" FAccT 2022. https://doi.org/10.1145/3531146.3533192, arXiv:2202.06675.

Each file is one float16 array of shape (2, D), D the CLIP model's embedding width, with the
values of the source pickle unchanged: learned text embeddings in that CLIP's joint space. Row 0
is "non inappropriate", row 1 "inappropriate" (main/paper_experiments/experiments.py, `labels`).
Q16 classifies a picture by the softmax of 100 times the cosine similarity between its CLIP
image embedding and each row (main/models/clip.py, ClipSimModel_Infer). The arrays were read
from the pickles with an unpickler that allows only numpy's array globals, and written with
numpy.save (allow_pickle=False) by tools/convert_q16.py.

{files}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path, help="a git directory holding Q16's history")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write (default {OUT})")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = []
    for model, width in MODELS.items():
        source = f"data/{file_name(model)}/prompts.p"
        blob, data = git_blob(args.repo, source)
        npy = convert(data, width)
        target = f"{file_name(model)}.npy"
        (args.out / target).write_bytes(npy)
        digest = hashlib.sha256(npy).hexdigest()
        lines.append(
            f"{target}  (CLIP {model}, shape (2, {width}))\n"
            f"  from:    {source} (git blob {blob})\n"
            f"  sha256:  {digest}"
        )
        print(f"{model}: {target} sha256 {digest}")
    notice = NOTICE.format(commit=COMMIT, files="\n\n".join(lines))
    (args.out / "NOTICE").write_text(notice, encoding="utf-8")


if __name__ == "__main__":
    main()
