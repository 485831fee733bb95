"""The one error type users see: a single line naming the file, the key and what was expected."""

from __future__ import annotations

from pathlib import Path


class RecipeError(Exception):
    """A mistake in something the user gave us (a recipe, a flag, a data file).

    The CLI prints ``str(err)`` on one line and exits with code 2, without a traceback.
    """

    def __init__(self, file: str | Path | None, key: str | None, message: str):
        self.file = str(file) if file is not None else None
        self.key = key
        self.message = " ".join(str(message).split())  # one line, whatever the cause said
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.file, self.key) if part)
        return f"{where}: {self.message}" if where else self.message
