"""The API token admin: every staff user (a Marketer too) creates, lists and revokes their own tokens, a superuser
everyone's; a new token is shown once and kept nowhere readable; prefix and digest are never edited."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, User
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from deliveries.pages.roles import ALERT_PERMISSIONS, FUNCTION_PERMISSIONS, MARKETER, PERMISSIONS
from integrations.models import ApiToken
from integrations.models.api_tokens import digest_of

pytestmark = pytest.mark.django_db

TOKENS = reverse("admin:integrations_apitoken_changelist")
ADD = reverse("admin:integrations_apitoken_add")
SHOWN = re.compile(r'<code id="api-token">(cdp_[A-Za-z0-9_-]+)</code>')


def change_url(token: ApiToken) -> str:
    return reverse("admin:integrations_apitoken_change", args=[token.pk])


def revoke_url(token: ApiToken) -> str:
    return reverse("admin:integrations_apitoken_revoke", args=[token.pk])


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def api_status(token: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get("/api/v1/").status_code


def create(client: Client, **data: str) -> tuple[ApiToken, str]:
    """Post the add form; return the new row and the token its answer shows."""
    response = client.post(ADD, {"name": "CI deploy", **data})
    assert response.status_code == 200, response.context and response.context["adminform"].form.errors
    shown = SHOWN.search(response.content.decode())
    assert shown, response.content.decode()
    return ApiToken.objects.latest("pk"), shown[1]


@pytest.fixture
def admin(django_user_model) -> User:
    return django_user_model.objects.create_superuser("ada", "ada@example.com", "pw")


@pytest.fixture
def nobody(django_user_model) -> User:
    """Staff, in no group, with no permission at all."""
    return django_user_model.objects.create_user("nobody", password="pw", is_staff=True)


# Creating: shown once


def test_a_marketer_creates_a_token_that_is_shown_once_and_works(marketer: User) -> None:
    client = logged_in(marketer)
    assert 'href="/admin/integrations/apitoken/"' in client.get(reverse("admin:index")).content.decode()
    form = client.get(ADD).content.decode()
    assert 'name="name"' in form
    assert 'name="expires_at_0"' in form
    assert 'name="user"' not in form  # someone who is not a superuser makes tokens for themselves
    assert "_addanother" not in form
    assert "_continue" not in form

    response = client.post(ADD, {"name": "Weekly report"})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    token = SHOWN.search(html)[1]
    assert "you will not see it again" in html
    assert f'curl -H "Authorization: Bearer {token}" http://testserver/api/v1/' in html
    row = ApiToken.objects.get()
    assert (row.user, row.name, row.digest, row.prefix) == (marketer, "Weekly report", digest_of(token), token[:10])
    assert api_status(token) == 200


def test_the_plain_token_is_kept_nowhere_readable(nobody: User) -> None:
    client = logged_in(nobody)
    _, token = create(client)

    assert token not in str(list(ApiToken.objects.values()))
    assert all(token not in session.get_decoded().__repr__() for session in Session.objects.all())
    assert all(token not in str(morsel) for morsel in client.cookies.values())  # no message cookie holds it
    assert token not in str(list(LogEntry.objects.values()))
    assert SHOWN.search(client.get(TOKENS).content.decode()) is None  # the list, and every later page, never show it


def test_a_crafted_post_cannot_make_a_token_for_someone_else(marketer: User, admin: User) -> None:
    row, _ = create(logged_in(marketer), user=str(admin.pk))
    assert row.user == marketer


def test_a_superuser_makes_a_token_for_a_chosen_user(admin: User, marketer: User) -> None:
    client = logged_in(admin)
    assert 'name="user"' in client.get(ADD).content.decode()

    row, token = create(client, user=str(marketer.pk), **{"expires_at_0": "2999-01-01", "expires_at_1": "00:00:00"})

    assert row.user == marketer
    assert row.expires_at.year == 2999
    assert api_status(token) == 200


def test_an_expiry_in_the_past_is_refused_with_a_reason(nobody: User) -> None:
    yesterday = timezone.localtime() - timedelta(days=1)
    response = logged_in(nobody).post(
        ADD, {"name": "old", "expires_at_0": yesterday.strftime("%Y-%m-%d"), "expires_at_1": "00:00:00"}
    )
    assert response.status_code == 200
    assert "Pick a time in the future" in response.content.decode()
    assert not ApiToken.objects.exists()


# Listing: one's own


def test_a_staff_user_lists_only_their_own_tokens(nobody: User, marketer: User) -> None:
    ApiToken.issue(nobody, "mine")
    theirs, _ = ApiToken.issue(marketer, "the marketer's")
    client = logged_in(nobody)

    html = client.get(TOKENS).content.decode()

    assert "mine" in html
    assert "the marketer&#x27;s" not in html
    assert "column-user" not in html
    assert client.get(change_url(theirs)).status_code == 302  # Django's "does not exist" redirect
    assert client.post(revoke_url(theirs)).status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_a_superuser_lists_everyones_tokens_with_their_state(admin: User, marketer: User) -> None:
    ApiToken.issue(marketer, "active one")
    ApiToken.issue(marketer, "expired one", expires_at=timezone.now() - timedelta(minutes=1))
    ApiToken.issue(admin, "revoked one")[0].revoke()

    html = logged_in(admin).get(TOKENS).content.decode()

    for name, state in [("active one", "active"), ("expired one", "expired"), ("revoked one", "revoked")]:
        row = re.search(rf"<tr>(?:(?!</tr>).)*{name}.*?</tr>", html, re.S)[0]
        assert f'class="token-state token-{state}"' in row, row
    assert "mia" in html
    assert "column-user" in html


def test_the_state_filter_picks_active_revoked_and_expired(admin: User) -> None:
    ApiToken.issue(admin, "token-a")
    ApiToken.issue(admin, "token-e", expires_at=timezone.now() - timedelta(minutes=1))
    ApiToken.issue(admin, "token-r")[0].revoke()
    client = logged_in(admin)
    for state in ("active", "revoked", "expired"):
        html = client.get(TOKENS, {"state": state}).content.decode()
        assert set(re.findall(r"token-[aer]\b", html)) == {f"token-{state[0]}"}, state


# Revoking


def test_the_revoke_action_refuses_the_token_from_then_on_and_keeps_it_listed(marketer: User) -> None:
    client = logged_in(marketer)
    row, token = create(client)

    response = client.post(TOKENS, {"action": "revoke_tokens", "_selected_action": [row.pk]}, follow=True)

    assert "Revoked CI deploy" in response.content.decode()
    row.refresh_from_db()
    assert row.state == "revoked"
    assert api_status(token) == 401
    assert 'class="token-state token-revoked"' in client.get(TOKENS).content.decode()


def test_the_change_page_has_a_revoke_button_that_posts(nobody: User) -> None:
    client = logged_in(nobody)
    row, token = create(client)
    html = client.get(change_url(row)).content.decode()
    assert f'action="{revoke_url(row)}"' in html
    assert client.get(revoke_url(row)).status_code == 405

    response = client.post(revoke_url(row), follow=True)

    assert response.redirect_chain == [(change_url(row), 302)]
    assert "calls made with it are refused" in response.content.decode()
    assert f'action="{revoke_url(row)}"' not in response.content.decode()  # nothing left to revoke
    assert api_status(token) == 401


def test_a_superuser_revokes_someone_elses_token(admin: User, marketer: User) -> None:
    row, token = ApiToken.issue(marketer, "marketer script")
    assert logged_in(admin).post(revoke_url(row)).status_code == 302
    assert api_status(token) == 401


def test_a_token_is_renamed_but_its_prefix_digest_user_and_expiry_stay(nobody: User, admin: User) -> None:
    row, token = ApiToken.issue(nobody, "old name")
    before = ApiToken.objects.values().get(pk=row.pk)
    data = {
        "name": "new name",
        "prefix": "cdp_xxxxxx",
        "digest": "0" * 64,
        "user": admin.pk,
        "expires_at_0": "2000-01-01",
    }

    response = logged_in(nobody).post(change_url(row), data)

    assert response.status_code == 302
    after = ApiToken.objects.values().get(pk=row.pk)
    assert after == {**before, "name": "new name"}
    assert api_status(token) == 200


def test_tokens_are_never_deleted(admin: User) -> None:
    row, _ = ApiToken.issue(admin, "kept")
    client = logged_in(admin)
    assert "delete_selected" not in client.get(TOKENS).content.decode()
    assert client.post(reverse("admin:integrations_apitoken_delete", args=[row.pk]), {"post": "yes"}).status_code == 403
    assert ApiToken.objects.filter(pk=row.pk).exists()


def test_the_marketer_group_keeps_its_permissions() -> None:
    granted = Group.objects.get(name=MARKETER).permissions.values_list("content_type__app_label", "codename")
    assert sorted(granted) == sorted(PERMISSIONS + FUNCTION_PERMISSIONS + ALERT_PERMISSIONS)
