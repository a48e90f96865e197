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
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DATABASE_URL", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE"))}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def test_check_deploy_prints_nothing_with_production_settings(tmp_path):
    result = _manage("check", "--deploy", "--fail-level", "DEBUG",
                     env_extra={"SIMLABEL_PRODUCTION": "1", "SECRET_KEY": STRONG_KEY,
                                "ALLOWED_HOSTS": "labels.example.org", "SIMLABEL_VAR_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNINGS" not in result.stderr and "WARNINGS" not in result.stdout
    assert "System check identified no issues" in result.stdout


def test_check_deploy_warns_in_development_mode(tmp_path):
    # The same check does fail without production mode: the test above is not vacuous.
    result = _manage("check", "--deploy", env_extra={"SIMLABEL_VAR_DIR": str(tmp_path)})
    assert "security.W" in result.stdout + result.stderr


def test_production_refuses_to_start_without_a_real_secret_key(tmp_path):
    for key in ("", "short", "django-insecure-" + "a" * 60, "a" * 60):
        result = _manage("check", env_extra={"SIMLABEL_PRODUCTION": "1", "SECRET_KEY": key,
                                             "SIMLABEL_VAR_DIR": str(tmp_path)})
        assert result.returncode != 0, key
        assert "SECRET_KEY" in result.stderr


def test_no_secret_is_hard_coded_in_the_tracked_code():
    files = subprocess.run(["git", "ls-files", "*.py", "*.yml", "*.yaml", "*.sh", "*.cfg", "*.ini", "*.toml"],
                           cwd=REPO, capture_output=True, text=True).stdout.split()
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
