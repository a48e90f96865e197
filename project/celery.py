import os
import sys

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("simlabel")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="simlabel.health_check")
def health_check(value: int = 0) -> dict:
    """A round trip through broker and worker, used by tests and /healthz; says whether the worker
    process has torch loaded (`ml` workers load it when their pool starts)."""
    return {"ok": True, "echo": value, "torch_loaded": "torch" in sys.modules}
