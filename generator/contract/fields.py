"""What the contract's validated models share: a text field that must be one of its choices."""

from __future__ import annotations

from pydantic import AfterValidator


def one_of(choices: tuple[str, ...]) -> AfterValidator:
    """A validator refusing any value but `choices`, naming them."""

    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return AfterValidator(check)
