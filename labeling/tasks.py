"""Celery tasks of the labeling app: thin wrappers that take ids and call a service."""
from celery import shared_task
from django.db import OperationalError


@shared_task(name="labeling.tasks.recompute_suggestions", ignore_result=True, autoretry_for=(OperationalError,),
             retry_backoff=1, max_retries=3)
def recompute_suggestions(dataset_id: int, requested_at: str | None = None) -> str:
    """Debounced suggestion recompute; idempotent (a later request that is already
    covered by a finished recompute is skipped).  Returns "computed", "skipped" or "missing"."""
    from labeling.services.suggestions import suggestions_recompute_if_stale

    return suggestions_recompute_if_stale(dataset_id=dataset_id, requested_at=requested_at)
