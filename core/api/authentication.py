"""API tokens that expire: issued by POST /api/auth/token/, valid for SIMLABEL_TOKEN_TTL_DAYS
(labeling.services.tokens issues and revokes them)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed


def token_expires_at(token: Token) -> datetime | None:
    """When the token stops working; None when tokens do not expire (SIMLABEL_TOKEN_TTL_DAYS = 0)."""
    days = settings.SIMLABEL_TOKEN_TTL_DAYS
    return token.created + timedelta(days=days) if days > 0 else None


def token_is_expired(token: Token) -> bool:
    expires = token_expires_at(token)
    return expires is not None and expires <= timezone.now()


class ExpiringTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if token_is_expired(token):
            raise AuthenticationFailed(
                "This token has expired. Get a new one with POST /api/auth/token/.", code="token_expired"
            )
        return user, token
