"""The API token admin: every staff user creates and revokes their own management API tokens (a superuser sees and
revokes everyone's); a new token is shown once, on the page that answers the add form, and stored nowhere else."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from integrations.admin.base import ago
from integrations.models import ApiToken

STATES = {
    "active": "Works until it is revoked or expires.",
    "revoked": "Refused: it was revoked.",
    "expired": "Refused: its expiry date has passed.",
}


def manages_all(request: HttpRequest) -> bool:
    """A superuser sees and revokes everyone's tokens; anyone else only their own."""
    return request.user.is_active and request.user.is_superuser


def is_staff(request: HttpRequest) -> bool:
    return request.user.is_active and request.user.is_staff


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["name", "user", "expires_at"]

    def clean_expires_at(self) -> Any:
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("Pick a time in the future, or leave it blank for a token that never expires.")
        return expires_at


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(state, state.capitalize()) for state in STATES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> QuerySet[ApiToken]:
        now = timezone.now()
        expired = Q(expires_at__lte=now)
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True).exclude(expired)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(expired, revoked_at__isnull=True)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    form = ApiTokenForm
    list_display = ["name", "user", "prefix_", "state_", "created", "last_used", "expires"]
    list_filter = [StateFilter]
    list_select_related = ["user"]
    search_fields = ["name", "prefix"]
    actions = ["revoke_tokens"]
    readonly_fields = ["user", "prefix_", "state_", "created", "last_used", "expires", "revoked"]

    class Media:
        css = {"all": ["integrations/api_tokens.css"]}

    # Who may do what: any staff user with their own tokens, whatever their group (a Marketer's group has no
    # permission on tokens and needs none); a superuser with everyone's.

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_staff(request)

    def has_view_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return is_staff(request) and (obj is None or manages_all(request) or obj.user_id == request.user.pk)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_staff(request)

    def has_change_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return self.has_view_permission(request, obj)  # the name only: everything else is read-only

    def has_delete_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False  # revoked, never deleted: the list keeps who had which token and when it was last used

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return is_staff(request)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        tokens = super().get_queryset(request)
        return tokens if manages_all(request) else tokens.filter(user=request.user)

    def get_list_display(self, request: HttpRequest) -> list[str]:
        display = list(super().get_list_display(request))
        return display if manages_all(request) else [c for c in display if c != "user"]

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        fields = list(super().get_search_fields(request))
        return [*fields, "user__username"] if manages_all(request) else fields

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        if obj is None:
            return ["name", "user", "expires_at"] if manages_all(request) else ["name", "expires_at"]
        return ["name", "user", "prefix_", "state_", "created", "last_used", "expires", "revoked"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        return [] if obj is None else list(self.readonly_fields)

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "user":  # a plain select, without the links to edit or add users beside it
            kwargs["queryset"] = get_user_model().objects.filter(is_active=True)
            kwargs["initial"] = request.user.pk
            kwargs["help_text"] = "The token acts as this user, with this user's permissions."
            return db_field.formfield(**kwargs)
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: ApiToken | None = None,
    ) -> HttpResponse:
        # One button: adding answers with the token's page, and a saved token has only its name to change.
        context = {**context, "show_save_and_add_another": False, "show_save_and_continue": False}
        if not add:
            context["can_revoke"] = obj is not None and obj.revoked_at is None
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request: HttpRequest, obj: ApiToken, form: ModelForm, change: bool) -> None:
        if not change:
            if not manages_all(request) or obj.user_id is None:
                obj.user = request.user
            # Kept on this object for response_add alone: the database gets the digest and the prefix.
            obj.plain_token = obj.fill()
        super().save_model(request, obj, form, change)

    def response_add(self, request: HttpRequest, obj: ApiToken, post_url_continue: str | None = None) -> HttpResponse:
        """Show the new token on the answer to the add form itself: no redirect, so it is never kept in the
        session, a message cookie or a log, and the browser is asked not to keep the page either."""
        token = getattr(obj, "plain_token", None)
        if token is None:
            return super().response_add(request, obj, post_url_continue)
        opts = self.opts
        context = {
            **self.admin_site.each_context(request),
            "title": "Your new API token",
            "subtitle": obj.name,
            "opts": opts,
            "original": obj,
            "token": token,
            "api_url": request.build_absolute_uri("/api/v1/"),
            "changelist_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
        }
        response = TemplateResponse(request, "admin/integrations/apitoken/issued.html", context)
        response["Cache-Control"] = "no-store"
        return response

    # Revoking

    def get_urls(self) -> list[URLPattern]:
        revoke = path(
            "<int:object_id>/revoke/",
            self.admin_site.admin_view(self.revoke_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_revoke",
        )
        return [revoke, *super().get_urls()]

    def revoke_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """The change page's Revoke button (a POST, with the CSRF token)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        token = get_object_or_404(self.get_queryset(request), pk=object_id)  # someone else's token: 404
        if token.revoked_at is None:
            token.revoke()
            self.log_change(request, token, [{"changed": {"fields": ["revoked_at"]}}])
            self.message_user(request, f"Revoked {token}: calls made with it are refused from now on.")
        else:
            self.message_user(request, f"{token} was already revoked.", messages.WARNING)
        return HttpResponseRedirect(
            reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[object_id])
        )

    @admin.action(description="Revoke selected API tokens", permissions=["revoke"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        chosen = list(queryset.filter(revoked_at__isnull=True))
        for token in chosen:
            token.revoke()
            self.log_change(request, token, [{"changed": {"fields": ["revoked_at"]}}])
        if not chosen:
            self.message_user(request, "The selected tokens were already revoked.", messages.WARNING)
            return
        names = ", ".join(str(token) for token in chosen)
        them = "it" if len(chosen) == 1 else "them"
        self.message_user(request, f"Revoked {names}: calls made with {them} are refused from now on.")

    # Columns

    @admin.display(description="Token", ordering="prefix")
    def prefix_(self, token: ApiToken) -> str:
        return format_html("<code>{}…</code>", token.prefix)

    @admin.display(description="State")
    def state_(self, token: ApiToken) -> str:
        state = token.state
        return format_html('<span class="token-state token-{}" title="{}">{}</span>', state, STATES[state], state)

    @admin.display(description="Created", ordering="created_at")
    def created(self, token: ApiToken) -> str:
        return ago(token.created_at)

    @admin.display(description="Revoked", ordering="revoked_at")
    def revoked(self, token: ApiToken) -> str:
        return ago(token.revoked_at, "no")

    @admin.display(description="Last used", ordering="last_used_at")
    def last_used(self, token: ApiToken) -> str:
        return ago(token.last_used_at)

    @admin.display(description="Expires", ordering="expires_at")
    def expires(self, token: ApiToken) -> str:
        if token.expires_at is None:
            return "never"
        return ago(token.expires_at)
