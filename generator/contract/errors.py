"""Errors the engine raises on purpose; each message is meant to be shown to a person as is."""

from __future__ import annotations

from generator.contract.reasons import Reason, check_values


class GeneratorError(Exception):
    """Base class: something the user or operator can fix, with a message saying how."""


class SettingsError(GeneratorError, ValueError):
    """A setting is out of range or malformed."""


class MemberError(GeneratorError, ValueError):
    """Something a member gave that cannot be used, as a `Reason` and the values it names.

    The bot puts the reason into each member's language; ``str(error)`` is the English
    sentence, filled in.
    """

    def __init__(self, reason: Reason, **values: str | int) -> None:
        check_values(reason.code, values)
        super().__init__(reason.say(**values))
        self.reason = reason
        self.values = values


class PromptError(MemberError):
    """A prompt is empty, malformed or too long for its text encoder."""


class ImageInputError(MemberError):
    """A picture given as an input is refused: too big, not one of the formats, too many
    pixels, damaged, or it could not be fetched."""


class ModelLoadError(GeneratorError):
    """A model file is missing, unreadable or not the model it claims to be."""


class UnsafeModelFileError(ModelLoadError):
    """A model file asks to run code while being loaded; it is refused, never executed."""


class WeightsUnavailableError(ModelLoadError):
    """Weights are not in the cache and could not be downloaded (or downloads are off)."""
