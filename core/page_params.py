"""Query parameters of the HTML pages, checked like the API's.

One rule for every page: an absent or empty parameter means its default; a
value that cannot mean anything (not a number, out of range, not one of the
choices, not one of the dataset's classes) is a 400 page that names the
parameter and what it accepts; unknown parameters are ignored (links from
elsewhere may carry them). A page number past the last page shows the last
page, because the number of pages shrinks while people label.
"""

import re

# Ids and cluster numbers fit a 32-bit column; anything longer is refused before
# it reaches the database (SQLite overflows above 2**63, PostgreSQL's integer
# columns above 2**31).
INT_MAX = 2**31 - 1
_ASCII_INT = re.compile(r"-?[0-9]{1,10}")


class PageParameterError(ValueError):
    """A page's query parameter that cannot be used; pages answer it with a 400."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def _raw(query, name: str) -> str:
    # The last value wins, as with QueryDict.get(); an empty one means "not given".
    return (query.get(name) or "").strip()


def int_param(
    query, name: str, *, default: int | None = None, min_value: int = 0, max_value: int = INT_MAX
) -> int | None:
    """An integer in [min_value, max_value] written with ASCII digits ('²' and '١' are not numbers here)."""
    raw = _raw(query, name)
    if raw == "":
        return default
    if not _ASCII_INT.fullmatch(raw):
        raise PageParameterError(name, f"“{raw[:40]}” is not a whole number from {min_value} to {max_value}.")
    value = int(raw)
    if not min_value <= value <= max_value:
        raise PageParameterError(name, f"{value} is outside {min_value} to {max_value}.")
    return value


def choice_param(query, name: str, choices, *, default: str | None = None) -> str | None:
    raw = _raw(query, name)
    if raw == "":
        return default
    if raw not in choices:
        raise PageParameterError(name, f"“{raw[:40]}” is not one of: {', '.join(choices)}.")
    return raw


def bool_param(query, name: str, *, default: bool = False) -> bool:
    raw = choice_param(query, name, ("1", "0", "true", "false"))
    return default if raw is None else raw in {"1", "true"}


def class_param(query, name: str, classes: list[dict]) -> int | None:
    """The id of one of the dataset's classes (given as dicts with an "id")."""
    value = int_param(query, name, min_value=1)
    if value is not None and all(cls["id"] != value for cls in classes):
        raise PageParameterError(name, f"this dataset has no class {value}.")
    return value
