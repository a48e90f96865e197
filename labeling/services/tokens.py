"""API tokens: issued by POST /api/auth/token/, expiring after SIMLABEL_TOKEN_TTL_DAYS, revoked
by DELETE /api/auth/token/ and by any change of the user's password."""
from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token


def token_expires_at(token: Token) -> datetime | None:
    """When the token stops working; None when tokens do not expire (SIMLABEL_TOKEN_TTL_DAYS = 0)."""
    days = settings.SIMLABEL_TOKEN_TTL_DAYS
    return token.created + timedelta(days=days) if days > 0 else None


def token_is_expired(token: Token) -> bool:
    expires = token_expires_at(token)
    return expires is not None and expires <= timezone.now()


@transaction.atomic
def token_issue(*, user) -> Token:
    """The user's token: the current one while it is valid, else a new one (one token per user)."""
    token = Token.objects.select_for_update().filter(user=user).first()
    if token is not None and not token_is_expired(token):
        return token
    if token is not None:
        token.delete()
    return Token.objects.create(user=user)


def tokens_revoke(*, user) -> int:
    """Deletes the user's token; returns how many were deleted (0 or 1)."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return deleted
