"""What the import commands (import_images, import_labels) share: the --user lookup, the progress bar, and
the capped list of entries the report left out."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from tqdm import tqdm


def find_user(username: str | None):
    """The user named by --user, or None when it is not given; an unknown name is an error."""
    if not username:
        return None
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"No user named {username!r}.")
    return user


@contextmanager
def progress_bar(command, *, show: bool, unit: str, desc: str) -> Iterator[Callable[[int, int], None] | None]:
    """An on_progress(done, total) callback that moves a bar on the command's stderr (None when not `show`).

    The bar is closed on the way out, before an error becomes the command's message.
    """
    if not show:
        yield None
        return
    bar = tqdm(total=0, unit=unit, desc=desc[:60], file=command.stderr._out)

    def progress(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        bar.close()


def write_entries(stdout, title: str, lines: list[str], count: int, shown: int) -> None:
    """A titled list of at most `shown` of the report's lines, and how many more there were of `count`."""
    if not count:
        return
    stdout.write(f"{title}:")
    for line in lines[:shown]:
        stdout.write(f"  {line}")
    listed = min(shown, len(lines))
    if count > listed:
        stdout.write(f"  ... and {count - listed} more")
