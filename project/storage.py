"""Storage helpers both apps use, and the production static files storage."""

from collections.abc import Iterator

from whitenoise.storage import CompressedManifestStaticFilesStorage


def walk_storage(storage, prefix: str) -> Iterator[str]:
    """Every stored file name under prefix (a "folder"), through the storage API (local or S3)."""
    try:
        dirs, files = storage.listdir(prefix)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in files:
        yield f"{prefix}/{name}"
    for sub in dirs:
        yield from walk_storage(storage, f"{prefix}/{sub}")


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    """whitenoise's hashed, compressed files, with JS module imports rewritten.

    Pages load js/common.<hash>.js through {% static %}, and the page scripts
    `import ... from "./common.js"`. Without the rewrite the import fetches the
    unhashed file: a second copy of the module, whose document listeners
    (the data-confirm dialog) then run twice, and which a browser may keep
    cached from an older release.
    """

    support_js_module_import_aggregation = True
