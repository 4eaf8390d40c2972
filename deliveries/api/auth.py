"""Who calls the management API: a Bearer API token acting as its user (or the admin's session, for the browsable
API), what that user may do (the same model permissions as the admin), and how often."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.cache import caches
from django.utils import timezone
from rest_framework import exceptions, permissions, throttling
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from integrations.models import ApiToken
from integrations.models.api_tokens import digest_of

LAST_USED_EVERY = timedelta(minutes=1)  # a busy script writes last_used_at once a minute, not on every call


class BearerTokenAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        scheme, _, value = get_authorization_header(request).decode("latin-1").partition(" ")
        if scheme.lower() != self.keyword.lower():
            return None
        value = value.strip()
        if not value or " " in value:
            raise exceptions.AuthenticationFailed("Send the token as `Authorization: Bearer <token>`.")
        token = ApiToken.objects.select_related("user").filter(digest=digest_of(value)).first()
        if token is None:
            raise exceptions.AuthenticationFailed("Unknown API token.")
        if token.state == "revoked":
            raise exceptions.AuthenticationFailed("This API token was revoked.")
        if token.state == "expired":
            raise exceptions.AuthenticationFailed("This API token has expired.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The token's user is inactive.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_EVERY:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'  # a 401, not a 403, for a missing or bad token


class ModelPermissions(permissions.DjangoModelPermissions):
    """The admin's model permissions, reading included: a GET needs `view_<model>` as the admin's lists do."""

    perms_map = {
        **permissions.DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
    }


class UserThrottle(throttling.UserRateThrottle):
    """Counted in the broker's cache, which every web process shares (Redis at scale), not per process."""

    cache = caches["qcluster"]


class AnonymousThrottle(throttling.AnonRateThrottle):
    cache = caches["qcluster"]
