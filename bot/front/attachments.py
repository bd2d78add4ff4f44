"""What Discord says of an attachment, as the desk takes it (`bot.jobs.pictures.Upload`):
nothing of the attachment is fetched here."""

from __future__ import annotations

import discord

from bot.jobs.pictures import Upload


def upload_of(attachment: discord.Attachment) -> Upload:
    return Upload(
        attachment.url,
        attachment.filename,
        attachment.size,
        attachment.content_type,
        attachment.width,
        attachment.height,
    )


def first_picture(message: discord.Message) -> Upload | None:
    """The message's first attachment that says it is a picture."""
    for attachment in message.attachments:
        if (attachment.content_type or "").startswith("image/") or attachment.width is not None:
            return upload_of(attachment)
    return None
