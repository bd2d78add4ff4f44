"""Where model weights come from: a cache directory, ordered download sources, SHA-256 checks.

OpenAI's CLIP download URLs have returned 404 since 2025 (openai/CLIP issue 516), so each model
lists mirrors of the same OpenAI weights after OpenAI's own URL. Downloads go to a temporary file
in the cache directory and are renamed into place only once complete and verified, so an
interrupted download never leaves a half file where a model is expected.

``$PSEUDO_DALLE_MIRROR`` names a copy of the cache to fetch from instead of the origins (an
``http(s)://`` server or a ``file://`` folder holding, say, ``clip/ViT-B-32.pt``), for machines that
cannot reach the origins; pinned SHA-256s still apply.

Models kept on Hugging Face (the multilingual text encoders) are lists of `HubFile`s at a pinned
commit, fetched file by file through the same code; ``$HF_ENDPOINT`` names a mirror of the Hub
(the variable huggingface_hub itself reads) to use instead of huggingface.co.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator import __version__
from generator.contract.errors import WeightsUnavailableError

DEFAULT_DECODER_URL = "https://cdn.openai.com/dall-e/decoder.pkl"
# Only jobs that start from a picture need the encoder; it is fetched on the first such job.
DEFAULT_ENCODER_URL = "https://cdn.openai.com/dall-e/encoder.pkl"
DEFAULT_CLIP_MODEL = "ViT-B/32"
MIRROR_VARIABLE = "PSEUDO_DALLE_MIRROR"
USER_AGENT = f"pseudo-dalle/{__version__}"
CHUNK = 1 << 20
# Seconds to connect and between chunks: an unreachable source fails a first run quickly.
TIMEOUT_S = 15


@dataclass(frozen=True)
class Source:
    url: str
    sha256: str | None = None


@dataclass(frozen=True)
class WeightSpec:
    """A model file: its name for people, its path inside the cache, and where to get it."""

    name: str
    filename: str
    sources: tuple[Source, ...]


def _openai_clip(name: str, file: str, digest: str, mirror: Source | None = None) -> WeightSpec:
    url = f"https://openaipublic.azureedge.net/clip/models/{digest}/{file}"
    sources = (Source(url, digest),) + ((mirror,) if mirror else ())
    return WeightSpec(f"CLIP {name}", f"clip/{file}", sources)


def _timm_mirror(repo: str, revision: str = "main", sha256: str | None = None) -> Source:
    return Source(
        f"https://huggingface.co/timm/{repo}/resolve/{revision}/open_clip_model.safetensors", sha256
    )


CLIP_WEIGHTS: dict[str, WeightSpec] = {
    "ViT-B/32": _openai_clip(
        "ViT-B/32",
        "ViT-B-32.pt",
        "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
        _timm_mirror(
            "vit_base_patch32_clip_224.openai",
            "a6f597a30f7b82c51704746581f9a4e41421e878",
            "e6d1bd7789aa45192b3bf90570a789b478bae1b74ebcce7eddd908e83a2b7c31",
        ),
    ),
    "ViT-B/16": _openai_clip(
        "ViT-B/16",
        "ViT-B-16.pt",
        "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
        _timm_mirror("vit_base_patch16_clip_224.openai"),
    ),
    "ViT-L/14": _openai_clip(
        "ViT-L/14",
        "ViT-L-14.pt",
        "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
        _timm_mirror("vit_large_patch14_clip_224.openai"),
    ),
    "RN50": _openai_clip(
        "RN50", "RN50.pt", "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762"
    ),
}


def clip_label(name_or_path: str) -> str:
    """How outputs name a CLIP model: its known name, or its file's name (a PNG that travels
    should not carry where its maker keeps files)."""
    return name_or_path if name_or_path in CLIP_WEIGHTS else Path(name_or_path).name


HUB_URL = "https://huggingface.co"


@dataclass(frozen=True)
class HubFile:
    """One file of a Hugging Face repository at a commit, and where it goes in its model's
    folder (`save_as`, default: the same path)."""

    repo: str
    revision: str
    path: str
    sha256: str | None = None
    save_as: str | None = None

    @property
    def stored(self) -> str:
        """Its path inside its model's folder."""
        return self.save_as or self.path

    def sources(self) -> tuple[Source, ...]:
        """The file on the Hub, or on the mirror ``$HF_ENDPOINT`` names instead (as
        huggingface_hub reads it: where the Hub is out of reach, the mirror replaces it)."""
        endpoint = os.environ.get("HF_ENDPOINT", "").rstrip("/") or HUB_URL
        return (Source(f"{endpoint}/{self.repo}/resolve/{self.revision}/{self.path}", self.sha256),)


def ensure_hub_files(
    name: str,
    folder: str,
    files: tuple[HubFile, ...],
    cache_dir: Path,
    *,
    offline: bool = False,
    progress: bool = True,
) -> Path:
    """The folder `cache_dir/folder` holding every one of `files`, fetching those not there."""
    for file in files:
        spec = WeightSpec(f"{name} ({file.path})", f"{folder}/{file.stored}", file.sources())
        ensure_weights(spec, cache_dir, offline=offline, progress=progress)
    return cache_dir / folder


def _dvae_spec(part: str, url: str, default: str) -> WeightSpec:
    """A dVAE half at `url`, cached under a name that differs for every URL but the default.
    OpenAI publishes no SHA-256 for either half, so none is pinned (see docs/weights.md)."""
    basename = Path(urllib.parse.urlparse(url).path).name or f"{part}.pkl"
    if url != default:
        basename = f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{basename}"
    return WeightSpec(f"DALL-E dVAE {part}", f"dall_e/{basename}", (Source(url),))


def decoder_spec(url: str = DEFAULT_DECODER_URL) -> WeightSpec:
    return _dvae_spec("decoder", url, DEFAULT_DECODER_URL)


def encoder_spec(url: str = DEFAULT_ENCODER_URL) -> WeightSpec:
    return _dvae_spec("encoder", url, DEFAULT_ENCODER_URL)


def sources_of(spec: WeightSpec) -> tuple[Source, ...]:
    """Where `spec` is fetched from: the mirror ``$PSEUDO_DALLE_MIRROR`` names, laid out like the
    cache, instead of the origins when it is set (the file's pinned SHA-256 still applies)."""
    mirror = os.environ.get(MIRROR_VARIABLE, "").rstrip("/")
    if not mirror:
        return spec.sources
    digest = next((source.sha256 for source in spec.sources if source.sha256), None)
    return (Source(f"{mirror}/{spec.filename}", digest),)


def default_cache_dir() -> Path:
    """``$PSEUDO_DALLE_CACHE``, else ``$XDG_CACHE_HOME/pseudo-dalle``, else
    ``~/.cache/pseudo-dalle``."""
    if configured := os.environ.get("PSEUDO_DALLE_CACHE"):
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pseudo-dalle"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _LineProgress:
    """Download progress as plain lines every 10%, for logs that are not a terminal."""

    def __init__(self, total: int | None, label: str) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self.reported = 0

    def update(self, size: int) -> None:
        self.done += size
        if not self.total:
            return
        tenths = self.done * 10 // self.total
        if tenths > self.reported:
            self.reported = tenths
            print(
                f"{self.label}: {tenths * 10}% ({self.done / 2**20:.0f} of "
                f"{self.total / 2**20:.0f} MiB)",
                file=sys.stderr,
                flush=True,
            )


def _progress(total: int | None, label: str, enabled: bool) -> AbstractContextManager[Any]:
    if enabled and sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(
            total=total, unit="B", unit_scale=True, desc=label, file=sys.stderr, leave=False
        )
    # Without a known total (or with progress off) the line reporter stays silent.
    return nullcontext(_LineProgress(total if enabled else None, label))


def _download(source: Source, target: Path, progress: bool, label: str) -> None:
    """Fetch `source` into `target` atomically; raise OSError or ValueError on any failure."""
    target.parent.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(source.url, headers={"User-Agent": USER_AGENT})
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    temp = Path(temp_name)
    try:
        digest = hashlib.sha256()
        with (
            os.fdopen(fd, "wb") as handle,
            urllib.request.urlopen(request, timeout=TIMEOUT_S) as response,
        ):
            total = int(response.headers.get("Content-Length") or 0) or None
            with _progress(total, label, progress) as bar:
                while chunk := response.read(CHUNK):
                    handle.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        size = temp.stat().st_size
        if total is not None and size != total:
            raise ValueError(f"download ended early ({size} of {total} bytes)")
        if source.sha256 and digest.hexdigest() != source.sha256:
            raise ValueError(
                f"SHA-256 mismatch: got {digest.hexdigest()}, expected {source.sha256}"
            )
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def _describe(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}"
    if isinstance(error, urllib.error.URLError):
        return f"unreachable ({error.reason})"
    return str(error) or type(error).__name__


def ensure_weights(
    spec: WeightSpec, cache_dir: Path, *, offline: bool = False, progress: bool = True
) -> Path:
    """Path of `spec` in the cache, downloading it from the first source that works.

    Raises WeightsUnavailableError naming the file and where to put it when it is not cached
    and `offline` is set or every source fails.
    """
    target = cache_dir / spec.filename
    if target.is_file():
        return target
    sources = sources_of(spec)
    failures: list[str] = []
    if not offline:
        for source in sources:
            if progress:
                print(f"downloading {spec.name} from {source.url}", file=sys.stderr)
            try:
                _download(source, target, progress, spec.filename)
                return target
            except (OSError, ValueError) as error:
                failures.append(f"{source.url}: {_describe(error)}")
    urls = " or ".join(source.url for source in sources)
    tried = "; ".join(failures) or f"offline mode, nothing was downloaded; its source: {urls}"
    raise WeightsUnavailableError(
        f"{spec.name} is not available ({tried}). Run `pseudo-dalle fetch-weights` where there "
        f"is a network and copy the cache here, set {MIRROR_VARIABLE} to a reachable copy of "
        f"the cache, or save it as {target}."
    )
