"""Read tensors out of model files without running any code stored in them.

Accepted: safetensors files, ``torch.save`` checkpoints (zip or legacy format) holding a state
dict or a whole pickled module (OpenAI's ``decoder.pkl`` is one), and TorchScript archives
(OpenAI's CLIP ``.pt`` files). Pickled modules are never rebuilt as the classes they name: every
module class becomes an inert `ModuleRecord` that only keeps its attributes, and any other
global a pickle asks for (``os.system``, ``builtins.eval``, ...) is refused with
`UnsafeModelFileError` before anything is called.
"""

from __future__ import annotations

import pickle
import re
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from generator.contract.errors import ModelLoadError, UnsafeModelFileError

# Module classes a pickled model may name. They are replaced by records, never instantiated.
PICKLED_MODULE_CLASSES = (
    "dall_e.decoder.Decoder",
    "dall_e.decoder.DecoderBlock",
    "dall_e.encoder.Encoder",
    "dall_e.encoder.EncoderBlock",
    "dall_e.utils.Conv2d",
    "torch.nn.modules.container.Sequential",
    "torch.nn.modules.activation.ReLU",
    "torch.nn.modules.upsampling.Upsample",
    "torch.nn.modules.linear.Identity",
    "torch.nn.modules.pooling.MaxPool2d",
)

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}

FORMATS_HINT = "expected a PyTorch checkpoint, a TorchScript archive or a safetensors file"


class ModuleRecord:
    """What is left of a pickled module: its attributes, and the class name it claimed."""

    qualified_name = "module"

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.state = dict(state) if isinstance(state, Mapping) else {}


def _record_class(qualified_name: str) -> type[ModuleRecord]:
    return type(
        qualified_name.rsplit(".", 1)[-1], (ModuleRecord,), {"qualified_name": qualified_name}
    )


_TORCH_SAVE_RECORDS: list[Callable[..., Any] | tuple[Callable[..., Any], str]] = [
    (_record_class(name), name) for name in PICKLED_MODULE_CLASSES
]


class _StorageType:
    """Stands for ``torch.FloatStorage`` and friends in a persistent id; never callable."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


class _ScriptArchiveUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript archive's ``data.pkl`` into records and tensors, nothing else."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, path: Path) -> None:
        super().__init__(archive.open(f"{prefix}data.pkl"))
        self._archive = archive
        self._prefix = prefix
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__."):
            return _record_class(f"{module}.{name}")
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return torch._utils._rebuild_tensor_v2
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise UnsafeModelFileError(_unsafe_message(self._path, f"{module}.{name}"))

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise ModelLoadError(f"{self._path} has a malformed tensor reference ({FORMATS_HINT})")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise ModelLoadError(f"{self._path} has a malformed tensor reference ({FORMATS_HINT})")
        raw = bytearray(self._archive.read(f"{self._prefix}data/{key}"))
        expected = numel * torch.empty((), dtype=storage_type.dtype).element_size()
        if len(raw) < expected:
            raise ModelLoadError(f"{self._path} is truncated: tensor data {key} is incomplete")
        untyped = torch.frombuffer(raw, dtype=torch.uint8).untyped_storage() if raw else None
        if untyped is None:
            untyped = torch.UntypedStorage(0)
        return torch.storage.TypedStorage(
            wrap_storage=untyped, dtype=storage_type.dtype, _internal=True
        )


def _unsafe_message(path: Path, global_name: str) -> str:
    return (
        f"refusing to load {path}: it asks to run code ({global_name}) while loading. "
        "Only plain weights are accepted; get the file from a trusted source."
    )


def _sniff(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(16)
    if head[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return "torchscript"
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{":
        (header_len,) = struct.unpack("<Q", head[:8])
        if header_len <= path.stat().st_size:
            return "safetensors"
    return "torch"


def _read_torchscript(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if not pickles:
            raise ModelLoadError(f"{path} is a zip file without model data ({FORMATS_HINT})")
        prefix = pickles[0][: -len("data.pkl")]
        return _ScriptArchiveUnpickler(archive, prefix, path).load()


def _read_torch_save(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(_TORCH_SAVE_RECORDS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        match = re.search(r"GLOBAL (\S+)", str(error))
        if match:
            raise UnsafeModelFileError(_unsafe_message(path, match.group(1))) from None
        raise


def _walk(obj: Any, prefix: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        yield prefix.rstrip("."), obj
    elif isinstance(obj, ModuleRecord):
        state = obj.state
        if "_parameters" in state or "_modules" in state:
            for group in ("_parameters", "_buffers", "_modules"):
                for name, value in (state.get(group) or {}).items():
                    yield from _walk(value, f"{prefix}{name}.")
        else:
            for name, value in state.items():
                if isinstance(value, torch.Tensor | ModuleRecord):
                    yield from _walk(value, f"{prefix}{name}.")
    elif isinstance(obj, Mapping):
        for name, value in obj.items():
            if isinstance(name, str):
                yield from _walk(value, f"{prefix}{name}.")


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor in the model file at `path`, keyed by its dotted state-dict name."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist")
    try:
        kind = _sniff(path)
        if kind == "safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path))
        elif kind == "torchscript":
            obj = _read_torchscript(path)
        else:
            obj = _read_torch_save(path)
    except ModelLoadError:
        raise
    except Exception as error:
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise ModelLoadError(
            f"{path} is not a readable model file ({FORMATS_HINT}): {reason}"
        ) from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    tensors = dict(_walk(obj, ""))
    if not tensors:
        raise ModelLoadError(f"{path} holds no tensors ({FORMATS_HINT})")
    return tensors
