"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright for Python."""

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

CHROMIUM = os.environ.get("SIMLABEL_CHROMIUM", "/usr/bin/chromium")
SHOTS = os.environ.get("SIMLABEL_SCREENSHOTS")  # a folder: tests save each page there, to look at
# Playwright's sync API keeps an event loop in this thread; the test's own ORM
# calls (checking the database after each step) are still plain sync code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.hookimpl(trylast=True)  # after -m / -k deselected what will not run
def pytest_collection_modifyitems(config, items):
    if Path(CHROMIUM).exists() or not any("browser" in item.keywords for item in items):
        return
    missing = f"headless Chromium not found at {CHROMIUM} (apt-get install chromium)"
    # A missing browser used to skip these tests quietly, so a run without them
    # looked green. Skipping is a choice the person running the tests makes.
    if os.environ.get("SIMLABEL_SKIP_BROWSER") != "1":
        raise pytest.UsageError(
            f"{missing}: the browser tests cannot run. Install it, or set SIMLABEL_SKIP_BROWSER=1 "
            "to skip them (never in CI), or deselect them with -m 'not browser'."
        )
    skip = pytest.mark.skip(reason=f"{missing}; SIMLABEL_SKIP_BROWSER=1")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def chromium_browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        yield browser
        browser.close()


class PageWatch:
    """Collects JS errors, console errors and CSP violations of a page."""

    def __init__(self, page):
        self.errors = []
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("console", self._console)
        # Every CSP violation fires this DOM event; keep them where the test can read them.
        page.add_init_script(
            "window.__csp = []; document.addEventListener('securitypolicyviolation', "
            "e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
        )

    def _console(self, message):
        if message.type == "error":
            self.errors.append(f"console: {message.text} @ {message.location.get('url', '')}")

    def check(self, page):
        csp = page.evaluate("window.__csp || []")
        assert not csp, f"CSP violations: {csp}"
        assert not self.errors, "JS errors:\n" + "\n".join(self.errors)


@pytest.fixture
def browser_page(chromium_browser, live_server):
    context = chromium_browser.new_context(base_url=live_server.url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.watch = PageWatch(page)
    yield page
    context.close()


@pytest.fixture
def shot():
    """shot(page, name): a full-page screenshot into $SIMLABEL_SCREENSHOTS when it is set, else nothing."""

    def save(page, name):
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)

    return save


@pytest.fixture
def labels_of(db):
    """labels_of(dataset): {image id: class id} of the dataset's labeled images, as the database has them now."""
    from labeling.models import Annotation

    def read(dataset):
        return dict(
            Annotation.objects.filter(dataset=dataset, label_class__isnull=False).values_list(
                "image_id", "label_class_id"
            )
        )

    return read


@pytest.fixture
def shelter_team(make_user, make_dataset):
    """The "Shelter" dataset of alice (admin) with anna (annotator), both signing in with tests.factories.PASSWORD."""
    from tests.factories import PASSWORD

    alice = make_user("alice", password=PASSWORD)
    anna = make_user("anna", password=PASSWORD)
    dataset = make_dataset("Shelter", admin=alice, members={anna: "annotator"})
    return SimpleNamespace(dataset=dataset, alice=alice, anna=anna)
