"""API tokens: issued by POST /api/auth/token/, expiring after SIMLABEL_TOKEN_TTL_DAYS, revoked
by DELETE /api/auth/token/ and by any change of the user's password. When a token expires is
the authentication's rule (core.api.authentication)."""

from __future__ import annotations

from django.db import transaction
from rest_framework.authtoken.models import Token

from core.api.authentication import token_is_expired


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
