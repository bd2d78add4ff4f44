"""Pictures members give with a drawing: from what an attachment declares to the copy a job keeps.

What an attachment declares (size, type, width x height) is checked before a byte of it is
fetched; it is fetched when the member submits, only from `[images] cdn_origins`, within
`fetch_timeout_s`, and never more than `MAX_INPUT_BYTES` (the fetch stops as soon as more
arrives). `generator.intake` then decodes and re-encodes it in a worker thread. Only the
re-encoded copy and a thumbnail for the job's card are kept; the bytes as sent are dropped, and
neither they nor the URL's query string (Discord's signature) are ever logged.

A PNG pseudo-dalle drew carries its token grid (`generator.contract.edits`); where the member
may edit it instead ("Draw from this image"), `carried_tokens` reads the grid from the fetched
bytes, within the same limits, before anything is re-encoded.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
import yarl
from PIL import Image

from generator.contract.errors import ImageInputError, MemberError
from generator.contract.images import (
    DEFAULT_IMAGE_USE,
    DEFAULT_INIT_STRENGTH,
    MAX_INPUT_BYTES,
    ImageInput,
)
from generator.contract.reasons import (
    EDIT_NO_TOKENS,
    PICTURE_MORE_THAN_DECLARED,
    PICTURE_NOT_FETCHED,
    PICTURE_NOT_FROM_DISCORD,
    PICTURE_TIMED_OUT,
)
from generator.intake.edits import EditSource, edit_source
from generator.intake.images import check_declared, from_upload

log = logging.getLogger("pseudo_dalle.pictures")
CHUNK_BYTES = 64 * 2**10
THUMBNAIL_SIDE = 128  # the card shows the picture it starts from or steers towards this small
MAX_NAME_CHARS = 200  # what the protocol carries of a file's name


class CarriesTokens(Exception):
    """A picture given to offer edits (`PictureAsk.offer_edits`) is one pseudo-dalle drew,
    carrying its tokens (`source`): nothing was queued."""

    def __init__(self, source: EditSource) -> None:
        super().__init__("the picture carries its token grid")
        self.source = source


@dataclass(frozen=True)
class GivenPicture:
    """A picture given with a job: the re-encoded copy, how the job uses it, and the small
    copy its card shows."""

    image: ImageInput
    use: str  # one of IMAGE_USES
    strength: float
    thumbnail: bytes = field(repr=False)


@dataclass(frozen=True)
class Upload:
    """What Discord says of an attachment; nothing of it has been fetched."""

    url: str = field(repr=False)  # its query string is Discord's signature: never logged
    filename: str
    size: int
    content_type: str | None
    width: int | None
    height: int | None

    def check(self) -> None:
        """ImageInputError when what it declares is out of the limits."""
        check_declared(self.size, self.content_type, self.width, self.height)


@dataclass(frozen=True)
class PictureAsk:
    """A picture a member asks to draw with, and how to use it; `offer_edits`: if it carries
    pseudo-dalle's tokens, offer to edit it rather than draw from it."""

    upload: Upload
    use: str = DEFAULT_IMAGE_USE
    strength: float = DEFAULT_INIT_STRENGTH
    offer_edits: bool = False


class PictureIntake:
    """Fetches and re-encodes members' pictures, as the operator's `[images]` allows."""

    def __init__(self, *, enabled: bool, origins: Sequence[str], timeout_s: float) -> None:
        self.enabled = enabled
        self.origins = {yarl.URL(origin).origin() for origin in origins}
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def keep(self, ask: PictureAsk, data: bytes) -> GivenPicture:
        """The re-encoded copy and thumbnail of `data`, fetched for `ask`; ImageInputError
        saying why not."""
        image, thumbnail = await asyncio.to_thread(_copies, data, ask.upload.filename)
        return GivenPicture(image, ask.use, ask.strength, thumbnail)

    async def fetch(self, upload: Upload) -> bytes:
        """The bytes of `upload`, as sent (to be read with `generator.intake` only);
        ImageInputError when what it declares is refused or it cannot be fetched."""
        upload.check()
        return await self._fetch(upload)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _fetch(self, upload: Upload) -> bytes:
        url = yarl.URL(upload.url, encoded=True)
        where = url.with_query(None).with_fragment(None)
        if url.origin() not in self.origins:
            log.warning("not fetching a picture from %s: not in [images] cdn_origins", where)
            raise ImageInputError(PICTURE_NOT_FROM_DISCORD)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with (
                asyncio.timeout(self.timeout_s),
                self._session.get(url, allow_redirects=False) as response,
            ):
                if response.status != 200:
                    log.warning("could not fetch the picture %s: HTTP %s", where, response.status)
                    raise ImageInputError(PICTURE_NOT_FETCHED)
                data = bytearray()
                async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                    data += chunk
                    if len(data) > MAX_INPUT_BYTES:
                        log.warning("stopped fetching %s: more than it declared", where)
                        raise ImageInputError(
                            PICTURE_MORE_THAN_DECLARED, limit=MAX_INPUT_BYTES // 2**20
                        )
        except TimeoutError:
            log.warning("fetching the picture %s took more than %g s", where, self.timeout_s)
            raise ImageInputError(PICTURE_TIMED_OUT) from None
        except aiohttp.ClientError as error:
            # The error's text may hold the whole URL: only its kind is logged.
            log.warning("could not fetch the picture %s: %s", where, type(error).__name__)
            raise ImageInputError(PICTURE_NOT_FETCHED) from None
        return bytes(data)


async def carried_tokens(data: bytes) -> EditSource | None:
    """The token grid and prompt a PNG pseudo-dalle drew carries; None for any other picture,
    and for one whose grid is damaged or no longer fits it (it is then just a picture)."""
    try:
        return await asyncio.to_thread(edit_source, data)
    except MemberError as error:
        if error.reason != EDIT_NO_TOKENS:
            log.info("drawing from a picture whose token grid cannot be used: %s", error)
        return None


def _copies(data: bytes, name: str) -> tuple[ImageInput, bytes]:
    """The re-encoded copy of `data` and a thumbnail of it (both PNG)."""
    image = from_upload(data, name[:MAX_NAME_CHARS])
    with Image.open(io.BytesIO(image.png), formats=["PNG"]) as copy:
        copy.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        thumbnail = io.BytesIO()
        copy.save(thumbnail, format="PNG")
    return image, thumbnail.getvalue()
