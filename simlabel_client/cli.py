"""`simlabel`: log in to a simlabel server, list datasets, upload images, start runs, export and import labels.

Exit status: 0 when everything asked for was done, 1 when the server refused something or a file
failed (the server's message is printed), 2 for a command line that does not parse, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections import deque
from pathlib import Path

from tqdm import tqdm

from simlabel_client import __version__, config
from simlabel_client.api import ApiError, Client, normalize_url

# What the server accepts (README "Uploads and imports"); other files in a folder are left out, not sent.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
ARCHIVE_SUFFIXES = {".zip"}
# Well under the server's defaults (500 files, 1 GiB a request), so a batch is one short request.
DEFAULT_BATCH_FILES = 100
DEFAULT_BATCH_MIB = 64
# Known when this was written; the server has the last word (a 400 names the formats it takes).
EXPORT_FORMATS = ("json", "csv", "coco", "imagefolder", "yolo", "hf", "labelstudio")
IMPORT_FORMATS = ("csv", "coco", "labelstudio")
FINISHED = {"succeeded", "failed", "cancelled"}
# Errors after which no later request of the same command can do better.
FATAL_CODES = {"unreachable", "timeout", "redirect", "no_token", "bad_url"}


class CommandFailed(Exception):
    """The command ran but did not do all it was asked; its message is printed and the exit status is 1."""


def say(text: str = "") -> None:
    tqdm.write(text, file=sys.stdout)


def warn(text: str) -> None:
    tqdm.write(text, file=sys.stderr)


def client_from(args, *, need_token: bool = True) -> Client:
    settings = config.load(url=args.url, token=args.token)
    if not settings.url:
        raise ApiError("No server URL: run `simlabel login` (or set SIMLABEL_URL).", code="no_url")
    if need_token and not settings.token:
        raise ApiError("Not logged in: run `simlabel login` (or set SIMLABEL_TOKEN).", code="no_token")
    return Client(settings.url, settings.token, timeout=args.timeout)


# --- login / logout -----------------------------------------------------------------------------------------


def cmd_login(args) -> int:
    saved = config.load_saved()
    url = args.url or os.environ.get("SIMLABEL_URL") or _ask("Server URL", saved.get("url"))
    url = normalize_url(url)
    username = args.username or os.environ.get("SIMLABEL_USERNAME") or _ask("Username", saved.get("username"))
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = os.environ.get("SIMLABEL_PASSWORD") or getpass.getpass("Password: ")
    if not username or not password:
        raise CommandFailed("A username and a password are needed.")
    answer = Client(url, timeout=args.timeout).obtain_token(username, password)
    path = config.save({"url": url, "username": username, "token": answer["token"], "expires": answer.get("expires")})
    expires = answer.get("expires")
    say(f"Logged in to {url} as {username}; token saved in {path}" + (f" (valid until {expires})." if expires else "."))
    return 0


def _ask(prompt: str, default: str | None) -> str:
    if not sys.stdin.isatty() and default:
        return default
    text = input(f"{prompt}{f' [{default}]' if default else ''}: ").strip()
    return text or (default or "")


def cmd_logout(args) -> int:
    settings = config.load(url=args.url, token=args.token)
    if settings.url and settings.token:
        try:
            Client(settings.url, settings.token, timeout=args.timeout).revoke_token()
        except ApiError as exc:
            if exc.status != 401:  # an expired or revoked token is as good as logged out
                raise
    path = config.forget()
    say("Logged out." + (f" Removed {path}." if path else ""))
    return 0


# --- datasets -------------------------------------------------------------------------------------------------


def cmd_datasets(args) -> int:
    datasets = client_from(args).datasets()
    if args.json:
        say(json.dumps(datasets, indent=2))
        return 0
    if not datasets:
        say("No datasets: you are a member of none on this server.")
        return 0
    rows = [("ID", "NAME", "ROLE", "IMAGES", "LABELED")] + [
        (str(d["id"]), d["name"], d.get("role") or "", str(d["image_count"]), str(d["labeled_count"])) for d in datasets
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        say("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


# --- upload ---------------------------------------------------------------------------------------------------


def collect_files(paths: list[str]) -> tuple[list[Path], list[Path]]:
    """Files to send and files left out: folders are walked (hidden entries skipped) for images and .zip
    archives; a file named on the command line is sent whatever it is, so the server can say what is wrong."""
    found, ignored = [], []
    for text in paths:
        path = Path(text).expanduser()
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if any(part.startswith(".") for part in child.relative_to(path).parts) or not child.is_file():
                    continue
                suffix = child.suffix.lower()
                (found if suffix in IMAGE_SUFFIXES | ARCHIVE_SUFFIXES else ignored).append(child)
        elif path.is_file():
            found.append(path)
        else:
            raise CommandFailed(f"No such file or folder: {text}")
    return found, ignored


def plan_batches(files: list[Path], max_files: int, max_bytes: int) -> list[list[Path]]:
    """Archives go alone (the server reads each as a whole); images are grouped up to both limits."""
    batches, current, size = [], [], 0
    for path in files:
        length = path.stat().st_size
        if path.suffix.lower() in ARCHIVE_SUFFIXES:
            batches.append([path])
            continue
        if current and (len(current) >= max_files or size + length > max_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(path)
        size += length
    if current:
        batches.append(current)
    return batches


def cmd_upload(args) -> int:
    client = client_from(args)
    dataset = client.dataset(args.dataset)
    files, ignored = collect_files(args.paths)
    for path in ignored:
        warn(f"left out (not an image or .zip): {path}")
    if not files:
        raise CommandFailed("Nothing to upload: no images or .zip archives found.")
    total_bytes = sum(path.stat().st_size for path in files)
    queue = deque(plan_batches(files, args.batch_files, args.batch_mib * 1024 * 1024))
    created, skipped, rejected, failed = 0, 0, 0, 0
    with tqdm(
        total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc="upload", disable=args.quiet
    ) as bar:
        while queue:
            batch = queue.popleft()
            sent = 0

            def on_bytes(n: int) -> None:
                nonlocal sent
                sent += n
                bar.update(n)

            try:
                report = client.upload(dataset["id"], batch, on_bytes=on_bytes)
            except ApiError as exc:
                bar.update(-sent)
                if (exc.status == 413 or exc.code == "connection_closed") and len(batch) > 1:
                    # Over the server's own limits: send the halves instead.
                    half = len(batch) // 2
                    queue.extendleft([batch[half:], batch[:half]])
                    continue
                if exc.status in (401, 403, 404) or exc.code in FATAL_CODES:
                    done = f"{created} stored, {skipped} skipped, {rejected} rejected before it stopped"
                    raise CommandFailed(
                        f"{exc.message}\nUpload stopped ({done}). Running the same command again is safe: "
                        "files already stored are skipped as duplicates."
                    ) from None
                bar.update(sum(path.stat().st_size for path in batch))
                for path in batch:
                    warn(f"failed {path}: {exc.message}")
                failed += len(batch)
                continue
            created += len(report.get("created", []))
            for item in report.get("skipped", []):
                skipped += 1
                if args.verbose:
                    say(f"skipped {item.get('name')}: {item.get('reason')}")
            for item in report.get("rejected", []):
                rejected += 1
                warn(f"rejected {item.get('name')}: {item.get('error')}")
    summary = (
        f"Dataset {dataset['id']} ({dataset['name']}): {created} stored, {skipped} skipped as already there, "
        f"{rejected} rejected" + (f", {failed} failed" if failed else "") + "."
    )
    if rejected or failed:
        raise CommandFailed(summary)
    say(summary)
    return 0


# --- runs -----------------------------------------------------------------------------------------------------


def parse_param(text: str) -> tuple[str, object]:
    """`key=value`; the value is read as JSON when it is one (3, 0.5, true, null), else kept as text (tsne)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    if isinstance(parsed, (dict, list)):
        parsed = value
    return key.strip(), parsed


def cmd_run(args) -> int:
    client = client_from(args)
    dataset = client.dataset(args.dataset)
    params = dict(args.params or [])
    try:
        started = client.start_run(dataset["id"], params)
    except ApiError as exc:
        if exc.code == "run_active" and exc.body.get("run_id"):
            raise ApiError(f"{exc.message} (run {exc.body['run_id']})", status=exc.status, code=exc.code) from None
        raise
    run_id = started["id"]
    say(f"Run {run_id} {started.get('status', 'queued')} for dataset {dataset['id']} ({dataset['name']}).")
    if not args.wait:
        return 0
    return follow_run(client, run_id, interval=args.interval, quiet=args.quiet)


def follow_run(client: Client, run_id: int, *, interval: float, quiet: bool) -> int:
    """Polls the run until it finishes, showing its stage and percent; 0 if it succeeded, else 1."""
    last_stage = None
    with tqdm(total=100, bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}", disable=quiet) as bar:
        try:
            while True:
                run = client.run(run_id)
                stage = f"{run['status']} · {run['stage']}"
                if stage != last_stage:
                    if not quiet:
                        say(f"run {run_id}: {stage}")
                    bar.set_description_str(stage)
                    last_stage = stage
                bar.n = round(100 * float(run.get("progress") or 0), 1)
                bar.refresh()
                if run["status"] in FINISHED:
                    break
                time.sleep(interval)
        except KeyboardInterrupt:
            warn(f"Stopped watching; run {run_id} goes on on the server (POST /api/runs/{run_id}/cancel/ stops it).")
            raise
    if run["status"] == "succeeded":
        say(f"Run {run_id} succeeded: {run.get('image_count')} images, {run.get('cluster_count')} clusters.")
        return 0
    reason = run.get("error") or "no reason given"
    raise CommandFailed(f"Run {run_id} {run['status']}: {reason}")


# --- export / import ------------------------------------------------------------------------------------------


def export_query(args) -> dict:
    query = {key: json.dumps(value) if not isinstance(value, str) else value for key, value in args.options or []}
    if args.include_unlabeled:
        query["include_unlabeled"] = "true"
    return query


def cmd_export(args) -> int:
    client = client_from(args)
    dataset = client.dataset(args.dataset)
    if args.output == "-":
        client.export(dataset["id"], args.format, sys.stdout.buffer, query=export_query(args))
        sys.stdout.buffer.flush()
        return 0
    target = Path(args.output).expanduser()
    # Written beside the target and renamed at the end, so a failed export never leaves half a file behind.
    partial = target.with_name(f".{target.name}.partial")
    try:
        with (
            partial.open("wb") as out,
            tqdm(unit="B", unit_scale=True, unit_divisor=1024, desc="export", disable=args.quiet) as bar,
        ):
            written = client.export(dataset["id"], args.format, out, query=export_query(args), on_bytes=bar.update)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    say(f"Exported dataset {dataset['id']} ({dataset['name']}) as {args.format} to {target} ({written} bytes).")
    return 0


def cmd_import_labels(args) -> int:
    client = client_from(args)
    dataset = client.dataset(args.dataset)
    path = Path(args.file).expanduser()
    if not path.is_file():
        raise CommandFailed(f"No such file: {args.file}")
    try:
        report = client.import_labels(
            dataset["id"], path, args.format, create_classes=args.create_classes, only_unlabeled=args.only_unlabeled
        )
    except ApiError as exc:
        if exc.code == "unknown_classes" and not args.create_classes:
            exc.message += " (--create-classes creates them)"
        raise
    if args.json:
        say(json.dumps(report, indent=2))
    else:
        print_import_report(dataset, path, report)
    left_out = (report.get("unmatched_count") or 0) + (report.get("ambiguous_count") or 0)
    if left_out:
        raise CommandFailed(f"{left_out} row(s) of {path.name} were not applied (listed above).")
    return 0


def print_import_report(dataset: dict, path: Path, report: dict) -> None:
    matched = f"{report.get('matched', 0)} matched ({report.get('updated', 0)} changed, {report.get('unchanged', 0)} already so"
    matched += f", {report['kept']} kept their class)" if report.get("kept") else ")"
    say(
        f"Imported {path.name} into dataset {dataset['id']} ({dataset['name']}): {report.get('rows', 0)} rows, "
        f"{matched}, {report.get('unmatched_count', 0)} unmatched, {report.get('ambiguous_count', 0)} ambiguous."
    )
    if report.get("action_id") is not None:
        say(
            f"Action {report['action_id']} (undo: POST /api/datasets/{dataset['id']}/actions/{report['action_id']}/undo/)"
        )
    if report.get("created_classes"):
        say(f"Classes created: {', '.join(report['created_classes'])}")
    for key in ("unmatched", "ambiguous"):
        entries, count = report.get(key) or [], report.get(f"{key}_count") or 0
        if not count:
            continue
        warn(f"{key} rows ({count}):")
        for entry in entries:
            what = entry.get("name") or entry.get("sha256") or "?"
            warn(f"  row {entry.get('row')}: {what} -> {entry.get('class')!r}: {entry.get('reason')}")
        if count > len(entries):
            warn(f"  … and {count - len(entries)} more")


# --- the parser ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simlabel",
        description="simlabel's command-line client: works with a simlabel server over its REST API.",
        epilog="The server URL and token come from --url/--token, SIMLABEL_URL/SIMLABEL_TOKEN, or the file "
        "`simlabel login` writes (~/.config/simlabel/config.json).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="server URL, e.g. https://simlabel.example.org (default: saved by login)")
    common.add_argument("--token", help="API token (default: SIMLABEL_TOKEN, else saved by login)")
    common.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for an answer (300)")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    login = commands.add_parser("login", parents=[common], help="get an API token and save it")
    login.add_argument("--username", help="default: SIMLABEL_USERNAME, else asked")
    login.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (default: asked, or SIMLABEL_PASSWORD)",
    )
    login.set_defaults(handler=cmd_login)

    logout = commands.add_parser("logout", parents=[common], help="revoke the token and forget it")
    logout.set_defaults(handler=cmd_logout)

    datasets = commands.add_parser("datasets", parents=[common], help="list your datasets")
    datasets.add_argument("--json", action="store_true", help="print the API's JSON")
    datasets.set_defaults(handler=cmd_datasets)

    upload = commands.add_parser("upload", parents=[common], help="upload images: folders, images, .zip archives")
    upload.add_argument("dataset", metavar="DATASET", help="dataset id or exact name")
    upload.add_argument("paths", metavar="PATH", nargs="+", help="a folder (walked), an image or a .zip")
    upload.add_argument("--batch-files", type=int, default=DEFAULT_BATCH_FILES, help="files per request (100)")
    upload.add_argument("--batch-mib", type=int, default=DEFAULT_BATCH_MIB, help="MiB per request (64)")
    upload.add_argument("-v", "--verbose", action="store_true", help="also list files skipped as duplicates")
    upload.set_defaults(handler=cmd_upload)

    run = commands.add_parser("run", parents=[common], help="start a run (train, embed, lay out, cluster)")
    run.add_argument("dataset", metavar="DATASET", help="dataset id or exact name")
    run.add_argument(
        "--param", "-p", dest="params", action="append", type=parse_param, metavar="KEY=VALUE",
        help="a run parameter (README: Run parameters), e.g. epochs=20 layout_method=umap; repeatable",
    )  # fmt: skip
    run.add_argument("--wait", action="store_true", help="follow the run until it finishes; exit 1 if it fails")
    run.add_argument("--interval", type=float, default=2.0, help="seconds between polls with --wait (2)")
    run.set_defaults(handler=cmd_run)

    export = commands.add_parser("export", parents=[common], help="download the dataset's labels")
    export.add_argument("dataset", metavar="DATASET", help="dataset id or exact name")
    export.add_argument(
        "--format", "-f", default="json", help=f"{', '.join(EXPORT_FORMATS)}, … (the server's list; default json)"
    )
    export.add_argument(
        "--option", dest="options", action="append", type=parse_param, metavar="KEY=VALUE",
        help="another query parameter of the export, e.g. val_fraction=0.2 (yolo); repeatable",
    )  # fmt: skip
    export.add_argument("--output", "-o", required=True, metavar="FILE", help="where to write it ('-': stdout)")
    export.add_argument("--include-unlabeled", action="store_true")
    export.set_defaults(handler=cmd_export)

    imp = commands.add_parser(
        "import-labels",
        parents=[common],
        help="label uploaded images from a CSV, COCO or Label Studio file",
        description="Rows are matched to images by sha256, else file name; all labels are one undoable action. "
        "Exits 1 when some rows matched no image (or several), after printing them.",
    )
    imp.add_argument("dataset", metavar="DATASET", help="dataset id or exact name")
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--format", "-f", choices=IMPORT_FORMATS, required=True)
    imp.add_argument(
        "--create-classes", action="store_true", help="create classes the file names but the dataset lacks"
    )
    imp.add_argument("--only-unlabeled", action="store_true", help="leave images that already have a class alone")
    imp.add_argument("--json", action="store_true", help="print the server's whole answer as JSON")
    imp.set_defaults(handler=cmd_import_labels)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "batch_files", 1) < 1 or getattr(args, "batch_mib", 1) < 1:
        print("simlabel: --batch-files and --batch-mib must be at least 1", file=sys.stderr)
        return 2
    try:
        return args.handler(args)
    except (ApiError, CommandFailed) as exc:
        print(f"simlabel: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("simlabel: interrupted", file=sys.stderr)
        return 130
