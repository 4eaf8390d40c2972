"""What the API's actions need beyond a model's view/add/change/delete: the admin's own permission for the same
button (Retry now: change_delivery; the Event Tester: use_event_tester and view_destination)."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request


def needs(*perms: str) -> type[permissions.BasePermission]:
    """A permission class: an authenticated user (else a 401) who has every one of `perms` (else a 403)."""

    class Needs(permissions.BasePermission):
        message = f"This needs the permission{'s' if len(perms) > 1 else ''} {', '.join(perms)}."

        def has_permission(self, request: Request, view: Any) -> bool:
            user = request.user
            return bool(user and user.is_authenticated and user.has_perms(perms))

    return Needs
