"""Receivers for events that happen outside simlabel's own services."""

from django.contrib.auth import get_user_model
from django.db.models.signals import post_save

from embeddings.models import TrainingRun
from embeddings.signals import run_finished
from labeling.services.tokens import tokens_revoke
from labeling.services.webhooks import run_finished_notify


def revoke_tokens_on_password_change(sender, instance, **kwargs):
    # Passwords change outside our services (the admin, the password-change page,
    # `manage.py changepassword`, shell scripts); all of them call set_password() and
    # then save(). set_password() keeps the raw password on `_password` until that
    # save has run Django's password_changed hooks, and Django's own hash upgrades at
    # sign-in clear it first, so this fires for real changes only.
    if getattr(instance, "_password", None) is not None:
        tokens_revoke(user=instance)


def webhooks_on_run_finished(sender, run, **kwargs):
    # embeddings may not import labeling, so a run's end reaches the webhooks through this signal.
    run_finished_notify(run=run)


def connect() -> None:
    run_finished.connect(webhooks_on_run_finished, sender=TrainingRun, dispatch_uid="simlabel-webhooks-run-finished")
    post_save.connect(
        revoke_tokens_on_password_change,
        sender=get_user_model(),
        dispatch_uid="simlabel-revoke-tokens-on-password-change",
    )
