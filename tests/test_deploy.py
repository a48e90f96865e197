"""Production settings, secrets and docker-compose consistency."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
STRONG_KEY = "k3Y-" + "x7Q9pL2mZ8vR4tW6yB1nC5dF0gH3jK" * 2


def _manage(*args, env_extra=None):
    # A clean deployment environment: nothing the test session itself set (the
    # browser tests set DJANGO_ALLOW_ASYNC_UNSAFE for Playwright).
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE"))
    }
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_prints_nothing_with_production_settings(tmp_path):
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "DEBUG",
        env_extra={
            "SIMLABEL_PRODUCTION": "1",
            "SECRET_KEY": STRONG_KEY,
            "ALLOWED_HOSTS": "labels.example.org",
            "SIMLABEL_VAR_DIR": str(tmp_path),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNINGS" not in result.stderr and "WARNINGS" not in result.stdout
    assert "System check identified no issues" in result.stdout


def test_check_deploy_warns_in_development_mode(tmp_path):
    # The same check does fail without production mode: the test above is not vacuous.
    result = _manage("check", "--deploy", env_extra={"SIMLABEL_VAR_DIR": str(tmp_path)})
    assert "security.W" in result.stdout + result.stderr


def test_production_refuses_to_start_without_a_real_secret_key(tmp_path):
    for key in ("", "short", "django-insecure-" + "a" * 60, "a" * 60):
        result = _manage(
            "check", env_extra={"SIMLABEL_PRODUCTION": "1", "SECRET_KEY": key, "SIMLABEL_VAR_DIR": str(tmp_path)}
        )
        assert result.returncode != 0, key
        assert "SECRET_KEY" in result.stderr


def test_no_secret_is_hard_coded_in_the_tracked_code():
    files = subprocess.run(
        ["git", "ls-files", "*.py", "*.yml", "*.yaml", "*.sh", "*.cfg", "*.ini", "*.toml"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.split()
    pattern = re.compile(r"""(SECRET_KEY|PASSWORD|AWS_SECRET_ACCESS_KEY)\s*[:=]\s*["'][^"'$]{12,}["']""")
    offenders = []
    for name in files:
        if name.startswith("tests/"):
            continue
        text = (REPO / name).read_text(errors="replace")
        for match in pattern.finditer(text):
            offenders.append(f"{name}: {match.group(0)[:60]}")
    assert not offenders, offenders


def test_weights_are_only_loaded_with_weights_only():
    offenders = []
    for path in list((REPO / "embeddings").rglob("*.py")) + list((REPO / "labeling").rglob("*.py")):
        text = path.read_text()
        for match in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in match.group(1):
                offenders.append(f"{path.relative_to(REPO)}: {match.group(0)}")
    assert not offenders, offenders


def _compose():
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_has_the_full_stack_with_health_checks_and_volumes():
    compose = _compose()
    services = compose["services"]
    assert {"web", "worker", "worker-ml", "postgres", "redis"} <= set(services)
    for name in ("web", "worker", "worker-ml", "postgres", "redis"):
        assert "healthcheck" in services[name], name
    assert {"media", "postgres-data", "redis-data"} <= set(compose["volumes"])
    assert "gunicorn" in services["web"]["command"]
    assert "-Q ml" in services["worker-ml"]["command"]
    assert "-Q default" in services["worker"]["command"]


def test_compose_variables_line_up_with_the_settings():
    compose = _compose()
    settings_text = (REPO / "project" / "settings.py").read_text()
    for name in ("web", "worker", "worker-ml"):
        env = compose["services"][name]["environment"]
        for key in env:
            assert key in settings_text, f"{key} is set in docker-compose.yml but never read by the settings"
        assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:6379")
        assert env["SIMLABEL_PRODUCTION"] == "1"
    pg = compose["services"]["postgres"]["environment"]
    web_db = compose["services"]["web"]["environment"]["DATABASE_URL"]
    assert f"{pg['POSTGRES_USER']}:" in web_db and web_db.endswith("/" + pg["POSTGRES_DB"])


def test_celery_queues_route_ml_work_to_the_ml_queue():
    from django.conf import settings

    assert settings.CELERY_TASK_ROUTES["embeddings.tasks.run_pipeline"]["queue"] == "ml"
    assert settings.CELERY_TASK_DEFAULT_QUEUE == "default"


def test_worker_ml_scales_out_and_every_replica_sees_the_runs_files():
    """`docker compose up -d --scale worker-ml=N`: N identical replicas on one broker, database and
    media, so a run's helper chunk files written by one are read by another (README, "Runs, workers
    and scaling out")."""
    from django.conf import settings

    services = _compose()["services"]
    ml, web = services["worker-ml"], services["web"]
    # A fixed name or published port would stop a second replica from starting.
    assert not [name for name, service in services.items() if "container_name" in service]
    assert "ports" not in ml and "hostname" not in ml
    assert "deploy" not in ml or "replicas" not in ml["deploy"], "--scale decides the replica count"
    # One task at a time per replica (the bench's and the speed-up's unit); the ml queue only.
    assert "-Q ml" in ml["command"] and "--concurrency 1" in ml["command"]
    # Each replica's health check pings its own node, whatever the container's hostname.
    assert "celery@$$HOSTNAME" in ml["healthcheck"]["test"]
    # Chunk files and models go to the run's storage: the volume every app container mounts at
    # MEDIA_ROOT, or the bucket when AWS_STORAGE_BUCKET_NAME is set (several machines).
    media_root = ml["environment"]["MEDIA_ROOT"]
    assert media_root == web["environment"]["MEDIA_ROOT"]
    for service in (ml, web, services["worker"]):
        assert f"media:{media_root}" in service["volumes"]
    for key in ("AWS_STORAGE_BUCKET_NAME", "AWS_S3_ENDPOINT_URL", "DATABASE_URL", "CELERY_BROKER_URL"):
        assert ml["environment"][key] == web["environment"][key], key
    for task in ("run_pipeline", "embed_chunk", "neighbor_chunk"):
        assert settings.CELERY_TASK_ROUTES[f"embeddings.tasks.{task}"]["queue"] == "ml", task
    header = (REPO / "docker-compose.yml").read_text().split("services:")[0]
    assert "--scale worker-ml=" in header


# --- the image's static files and every page under production settings -----------------------

import http.client  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from urllib.parse import urlencode  # noqa: E402

import pytest  # noqa: E402

ADMIN_PASSWORD = "Prod-pages-pw-" + "9z" * 8


def _clean_env(**extra):
    """The environment of a fresh deployment process: none of the test session's
    database, broker, cache or production switches, only what `extra` sets."""
    drop = (
        "DATABASE_URL",
        "SECRET_KEY",
        "DJANGO_ALLOW_ASYNC_UNSAFE",
        "CELERY_BROKER_URL",
        "CELERY_RESULT_BACKEND",
        "CACHE_URL",
        "SIMLABEL_PRODUCTION",
        "STATIC_ROOT",
        "MEDIA_ROOT",
        "ALLOWED_HOSTS",
        "DJANGO_DEBUG",
        "SIMLABEL_NUM_PROXIES",
        "DJANGO_SETTINGS_MODULE",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _dockerfile_run_lines():
    """The Dockerfile's RUN commands, continuation lines joined."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip()[len("RUN ") :].strip() for line in text.splitlines() if line.strip().startswith("RUN ")]


def _dockerfile_env():
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    env = {}
    for line in text.splitlines():
        if line.strip().startswith("ENV "):
            for pair in line.strip()[4:].split():
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def test_the_image_runs_production_settings_and_builds_their_static_files():
    env = _dockerfile_env()
    assert env.get("SIMLABEL_PRODUCTION") == "1"
    runs = _dockerfile_run_lines()
    static_runs = [run for run in runs if "collectstatic" in run]
    # One command builds the static files, and it is the script the page test below runs.
    assert static_runs == ["./scripts/collectstatic.sh"], static_runs
    assert "SIMLABEL_PRODUCTION=1" in (REPO / "scripts" / "collectstatic.sh").read_text()
    assert "python -m embeddings.ml.warmup" in runs
    # The build's numba cache is the one the workers read at run time.
    assert env.get("NUMBA_CACHE_DIR") == "/var/cache/numba"


@pytest.fixture(scope="module")
def production_static(tmp_path_factory):
    """The static files exactly as the Docker build makes them: its RUN line, in a subprocess."""
    root = tmp_path_factory.mktemp("production-static")
    (command,) = [run for run in _dockerfile_run_lines() if "collectstatic" in run]
    var_dir = tmp_path_factory.mktemp("collectstatic-var")
    result = subprocess.run(
        ["bash", "-c", command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=_clean_env(STATIC_ROOT=root, PYTHON=sys.executable, SIMLABEL_VAR_DIR=var_dir),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (root / "staticfiles.json").exists()
    return root


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _production_env(var_dir, static_root, **extra):
    return _clean_env(
        SIMLABEL_PRODUCTION="1",
        SECRET_KEY=STRONG_KEY,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="0",
        SIMLABEL_VAR_DIR=var_dir,
        STATIC_ROOT=static_root,
        MEDIA_ROOT=Path(var_dir) / "media",
        **extra,
    )


def _wait_for(port, path="/healthz/", timeout=60, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            status, _, _ = _http(port, "GET", path, timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"nothing answered 200 on port {port}{path} within {timeout} s")


def _http(port, method, path, *, headers=None, body=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


def _gunicorn(port, env, workers=1):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "project.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--timeout",
            "60",
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


SEED_SCRIPT = """
import json, sys
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
from tests.factories import DatasetFactory, build_map
user = get_user_model().objects.create_superuser("boss", "boss@example.org", sys.argv[1])
dataset = DatasetFactory(name="Digits", created_by=user)
run, classes, blobs = build_map(dataset, stored=True)
print(json.dumps({"dataset": dataset.pk, "image": blobs[0][0]}))
"""

STATIC_REF = re.compile(r"""(?:src|href)="(/static/[^"]+)\"""")
HASHED = re.compile(r"\.[0-9a-f]{12}\.[a-z0-9]+$")


class _Browser:
    """Cookies by hand: production cookies are Secure, which http.cookiejar keeps off plain HTTP."""

    def __init__(self, port):
        self.port, self.cookies = port, {}

    def request(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        status, response_headers, content = _http(self.port, method, path, headers=headers, body=body)
        for name, value in response_headers:
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                self.cookies[key] = rest.split(";", 1)[0]
        return status, dict(response_headers), content


def test_every_page_renders_under_production_settings_with_the_images_static_files(production_static, tmp_path):
    var_dir = tmp_path / "var"
    env = _production_env(var_dir, production_static, DJANGO_SETTINGS_MODULE="project.settings")
    seeded = subprocess.run(
        [sys.executable, "-c", SEED_SCRIPT, ADMIN_PASSWORD],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert seeded.returncode == 0, seeded.stderr
    ids = json.loads(seeded.stdout.strip().splitlines()[-1])
    port = _free_port()
    server = _gunicorn(port, env)
    try:
        _wait_for(port, proc=server)
        browser = _Browser(port)
        pages = {"login": "/accounts/login/", "admin login": "/admin/login/"}
        anonymous = {name: browser.request("GET", path) for name, path in pages.items()}
        login_html = anonymous["login"][2].decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_html).group(1)
        status, headers, _ = browser.request(
            "POST",
            "/accounts/login/",
            body=urlencode({"username": "boss", "password": ADMIN_PASSWORD, "csrfmiddlewaretoken": token}),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert status == 302 and headers["Location"].endswith("/datasets/"), status
        d, i = ids["dataset"], ids["image"]
        member_pages = {
            "dataset list": "/datasets/",
            "dataset detail": f"/datasets/{d}/",
            "upload": f"/datasets/{d}/upload/",
            "runs": f"/datasets/{d}/runs/",
            "map": f"/datasets/{d}/map/",
            "clusters": f"/datasets/{d}/clusters/",
            "label grid": f"/datasets/{d}/label/",
            "review": f"/datasets/{d}/review/",
            "image": f"/images/{i}/",
            "API docs": "/api/docs/",
        }
        responses = dict(anonymous)
        responses.update({name: browser.request("GET", path) for name, path in member_pages.items()})
        static_urls = set()
        for name, (status, _headers, content) in responses.items():
            assert status == 200, f"{name}: {status}\n{content[:2000]!r}"
            refs = STATIC_REF.findall(content.decode())
            assert refs, f"{name} links no static file"
            unhashed = [ref for ref in refs if not HASHED.search(ref.split("?")[0])]
            assert not unhashed, f"{name} links static files by their unhashed names: {unhashed}"
            static_urls.update(refs)
        # Each linked file is served (whitenoise, from the build's STATIC_ROOT), and the
        # page scripts import their modules by the same hashed names the pages load.
        for url in sorted(static_urls):
            status, _, content = _http(port, "GET", url)
            assert status == 200, url
            if url.startswith("/static/js/"):
                for module in re.findall(r'from "(\./[^"]+)"', content.decode()):
                    assert HASHED.search(module), f"{url} imports {module} by its unhashed name"
        status, _, content = _http(port, "GET", "/healthz/")
        assert status == 200 and json.loads(content)["ok"] is True
    finally:
        _stop(server)
    assert "Traceback" not in server.stderr.read()


def test_health_check_fails_when_the_static_build_is_missing(tmp_path):
    # What the image did before: static files built without production settings
    # (no manifest). Every page answered 500 while /healthz/ said ok.
    static_root = tmp_path / "static"
    built = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=REPO,
        env=_clean_env(STATIC_ROOT=static_root, SIMLABEL_VAR_DIR=tmp_path / "build-var"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    assert not (static_root / "staticfiles.json").exists()
    port = _free_port()
    server = _gunicorn(port, _production_env(tmp_path / "var", static_root))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _, _ = _http(port, "GET", "/healthz/", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.3)
        assert status == 500
        assert _http(port, "GET", "/accounts/login/")[0] == 500
    finally:
        _stop(server)


# --- development defaults ----------------------------------------------------------------------

PRINT_SETTINGS = (
    "import json; from django.conf import settings as s; "
    "print(json.dumps({'hosts': s.ALLOWED_HOSTS, 'key': s.SECRET_KEY, 'debug': s.DEBUG}))"
)


def _dev_settings(var_dir):
    result = _manage("shell", "-c", PRINT_SETTINGS, env_extra={"SIMLABEL_VAR_DIR": str(var_dir)})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_development_defaults_answer_only_this_machine_and_use_a_key_of_their_own(tmp_path):
    first = _dev_settings(tmp_path / "a")
    assert first["debug"] is True
    assert "*" not in first["hosts"]
    assert {"localhost", "127.0.0.1", "[::1]", "testserver"} <= set(first["hosts"])
    # A random key per checkout, kept in var/ (private) so sessions survive a restart ...
    assert len(first["key"]) >= 50 and "insecure" not in first["key"]
    key_file = tmp_path / "a" / "secret_key"
    assert key_file.read_text().strip() == first["key"]
    assert key_file.stat().st_mode & 0o077 == 0
    assert _dev_settings(tmp_path / "a")["key"] == first["key"]
    # ... and not one that anyone reading the code knows.
    assert _dev_settings(tmp_path / "b")["key"] != first["key"]
    assert first["key"] not in (REPO / "project" / "settings.py").read_text()


def test_development_server_refuses_requests_for_other_host_names(tmp_path):
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=REPO,
        env=_clean_env(SIMLABEL_VAR_DIR=tmp_path),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(port, proc=server)
        assert _http(port, "GET", "/healthz/", headers={"Host": "localhost"})[0] == 200
        assert _http(port, "GET", "/healthz/", headers={"Host": "attacker.example"})[0] == 400
    finally:
        _stop(server)


# --- scripts/run.sh ----------------------------------------------------------------------------


def _proc_stat(pid):
    """(parent pid, state, start time) from /proc, or None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may contain spaces
    return int(fields[1]), fields[0], fields[19]


def _descendants(root):
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat:
                children.setdefault(stat[0], []).append(int(entry.name))
    found, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            stat = _proc_stat(child)
            if stat:
                found[child] = stat[2]
                todo.append(child)
    return found


def _alive(pid, started):
    stat = _proc_stat(pid)
    # A zombie is dead (nobody may be reaping in a container); a new start time is another process.
    return stat is not None and stat[1] != "Z" and stat[2] == started


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.slow
def test_run_sh_leaves_no_process_behind_on_sigterm_to_its_process_group(tmp_path):
    port = _free_port()
    var_dir = tmp_path / "var"
    # A 20-image demo and no run: the test is about starting and stopping.
    env = _clean_env(SIMLABEL_VAR_DIR=var_dir, PORT=port, SEED_DEMO_ARGS="--limit 20 --no-progress")
    log = open(tmp_path / "run.log", "w")
    started = {}
    proc = subprocess.Popen(
        ["bash", "scripts/run.sh"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        _wait_for(port, timeout=300, proc=proc)
        worker_log = var_dir / "log" / "worker.log"
        deadline = time.monotonic() + 120
        while "ready." not in (worker_log.read_text() if worker_log.exists() else ""):
            assert time.monotonic() < deadline, "the Celery worker never became ready"
            time.sleep(0.5)
        started = _descendants(proc.pid)
        commands = " | ".join(_cmdline(pid) for pid in started)
        assert "celery" in commands and "runserver" in commands, commands
        # What `kill -TERM -- -PGID` (a service manager, a terminal closing) does.
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) != 0
        deadline = time.monotonic() + 20
        while True:
            survivors = {pid: _cmdline(pid) for pid, start in started.items() if _alive(pid, start)}
            if not survivors or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert not survivors, f"left running after run.sh stopped: {survivors}"
    finally:
        for pid, start in {**started, **_descendants(proc.pid)}.items():
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


# --- nginx in front of gunicorn (docker-compose.yml) -------------------------------------------

NGINX_TEMPLATE = REPO / "deploy" / "nginx.conf.template"


def _render_template(text, values):
    """What the nginx image's envsubst does: replace only the variables that are set."""
    for name, value in values.items():
        text = text.replace("${" + name + "}", str(value))
    leftover = re.findall(r"\$\{\w+\}", text)
    assert not leftover, f"template variables not set: {leftover}"
    return text


def _nginx_binary():
    import shutil

    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        message = "nginx is not installed (apt-get install nginx-light)"
        if os.environ.get("SIMLABEL_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _nginx_config(tmp_path, upstream_port, port, max_body):
    server = _render_template(
        NGINX_TEMPLATE.read_text(),
        {
            "SIMLABEL_UPSTREAM": f"127.0.0.1:{upstream_port}",
            "NGINX_PORT": f"127.0.0.1:{port}",
            "SIMLABEL_MAX_UPLOAD_BYTES": max_body,
        },
    )
    (tmp_path / "server.conf").write_text(server)
    # The http {} around it, as the image's /etc/nginx/nginx.conf has, with every path in tmp_path.
    temp_paths = "\n".join(
        f"    {kind}_temp_path {tmp_path / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {tmp_path / "nginx.pid"};
error_log {tmp_path / "error.log"} warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
{temp_paths}
    include {tmp_path / "server.conf"};
}}
"""
    (tmp_path / "nginx.conf").write_text(main)
    return tmp_path / "nginx.conf"


def _slow_client(port, body=False):
    """A client that starts a request and never finishes it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if body:
        sock.sendall(
            b"POST /api/datasets/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100000\r\n\r\n{"na'
        )
    else:
        sock.sendall(b"GET /healthz/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    return sock


@pytest.mark.slow
def test_nginx_keeps_the_site_answering_while_slow_clients_hold_connections(production_static, tmp_path):
    nginx = _nginx_binary()
    app_port, port = _free_port(), _free_port()
    env = _production_env(tmp_path / "var", production_static, SIMLABEL_NUM_PROXIES="1")
    # gunicorn as docker-compose.yml runs it: 3 synchronous workers.
    app = _gunicorn(app_port, env, workers=3)
    config = _nginx_config(tmp_path, app_port, port, max_body=1024 * 1024)
    checked = subprocess.run(
        [nginx, "-t", "-c", str(config), "-e", str(tmp_path / "error.log")], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stderr
    proxy = subprocess.Popen(
        [nginx, "-c", str(config), "-e", str(tmp_path / "error.log"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    slow = []
    try:
        _wait_for(app_port, proc=app)
        _wait_for(port, proc=proxy)
        # Without nginx, three slow clients take every gunicorn worker: the health check times out.
        slow = [_slow_client(app_port) for _ in range(3)]
        time.sleep(0.5)
        with pytest.raises(OSError):
            _http(app_port, "GET", "/healthz/", timeout=3)
        for sock in slow:
            sock.close()
        _wait_for(app_port, proc=app)
        # Through nginx, slow headers and slow bodies wait in nginx, not in a worker.
        slow = [_slow_client(port) for _ in range(6)] + [_slow_client(port, body=True) for _ in range(6)]
        time.sleep(0.5)
        for _ in range(3):
            start = time.monotonic()
            status, _, content = _http(port, "GET", "/healthz/", timeout=5)
            assert status == 200 and json.loads(content)["ok"] is True
            assert time.monotonic() - start < 2
        # Bodies over the upload limit are refused by nginx before anything is buffered.
        status, _, _ = _http(
            port, "POST", "/api/datasets/", body=b"x" * (1024 * 1024 + 1), headers={"Content-Type": "application/json"}
        )
        assert status == 413
    finally:
        for sock in slow:
            sock.close()
        _stop(proxy)
        _stop(app)


def test_compose_publishes_only_nginx_which_forwards_the_client_address():
    services = _compose()["services"]
    assert "ports" not in services["web"], "gunicorn must not be reachable except through nginx"
    published = [name for name, service in services.items() if service.get("ports")]
    assert published == ["nginx"], published
    nginx = services["nginx"]
    assert "./deploy/nginx.conf.template:/etc/nginx/templates/default.conf.template:ro" in nginx["volumes"]
    assert nginx["environment"]["SIMLABEL_UPSTREAM"] == "web:8000"
    # The same body limit in nginx and in the app.
    web_env = services["web"]["environment"]
    assert nginx["environment"]["SIMLABEL_MAX_UPLOAD_BYTES"] == web_env["SIMLABEL_MAX_UPLOAD_BYTES"]
    # The app trusts exactly the one proxy in front of it.
    assert web_env["SIMLABEL_NUM_PROXIES"] == "1"
    for worker in ("worker", "worker-ml"):
        assert "SIMLABEL_NUM_PROXIES" not in services[worker]["environment"]
    template = NGINX_TEMPLATE.read_text()
    for directive in (
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header Host $http_host;",
        "proxy_request_buffering on;",
        "client_max_body_size ${SIMLABEL_MAX_UPLOAD_BYTES};",
    ):
        assert directive in template, directive


# --- CI never skips the browser tests ----------------------------------------------------------


def test_missing_chromium_fails_the_browser_tests_unless_skipping_is_asked_for(tmp_path):
    env = _clean_env(SIMLABEL_VAR_DIR=tmp_path, SIMLABEL_CHROMIUM=str(tmp_path / "no-chromium"))
    env.pop("SIMLABEL_SKIP_BROWSER", None)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "tests/e2e/test_map_xss.py"]
    failed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert failed.returncode != 0
    assert "headless Chromium not found" in failed.stdout + failed.stderr
    assert "SIMLABEL_SKIP_BROWSER=1" in failed.stdout + failed.stderr
    skipped = subprocess.run(
        command, cwd=REPO, env={**env, "SIMLABEL_SKIP_BROWSER": "1"}, capture_output=True, text=True, timeout=300
    )
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "skipped" in skipped.stdout and "passed" not in skipped.stdout
    # Deselecting the browser tests is not an error either.
    deselected = subprocess.run(
        command + ["-m", "not browser"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert deselected.returncode in (0, 5), deselected.stdout + deselected.stderr


def test_ci_fails_when_chromium_is_missing_even_if_skipping_is_asked_for(tmp_path):
    env = _clean_env(
        SIMLABEL_VAR_DIR=tmp_path, SIMLABEL_CHROMIUM=str(tmp_path / "no-chromium"), SIMLABEL_SKIP_BROWSER="1"
    )
    for script in (".ci/run", "scripts/test.sh"):
        run_env = dict(env)
        if script == "scripts/test.sh":
            run_env.pop("SIMLABEL_SKIP_BROWSER")
        result = subprocess.run(["bash", script], cwd=REPO, env=run_env, capture_output=True, text=True, timeout=120)
        assert result.returncode != 0, script
        assert "headless Chromium is missing" in result.stderr, script
        # It stopped before running any test.
        assert "test pass" not in result.stdout, script
