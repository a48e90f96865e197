"""Token authentication that refuses expired tokens (see labeling.services.tokens)."""
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from labeling.services.tokens import token_is_expired


class ExpiringTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if token_is_expired(token):
            raise AuthenticationFailed(
                "This token has expired. Get a new one with POST /api/auth/token/.", code="token_expired"
            )
        return user, token
