"""Alert rules in the admin: each destination's rules with their state, editing one (threshold, window, channels,
on or off; the webhook secret write-only: the form says whether one is stored, never what it is) and "Send test
alert". A Marketer reads them (deliveries/pages/roles.py); changing one takes deliveries.change_alertrule."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db.models import Exists, Field, OuterRef, QuerySet, URLField
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from deliveries.engine.alerts.defaults import DEFAULT_CHANNELS
from deliveries.engine.alerts.evaluate import split_addresses, targets
from deliveries.engine.alerts.notify import send_test
from deliveries.models import Alert, AlertNotification, AlertRule
from integrations.crypto import MASK, Undecryptable

MAX_WINDOW_MINUTES = 24 * 60  # the minute rollups a window sums are kept for days, not weeks
TEST_AT_ONCE = 10  # "Send test alert" sends in the request: a few rules at a time


class AlertRuleForm(forms.ModelForm):
    channels = forms.MultipleChoiceField(
        choices=AlertRule.Channel.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Email goes to the recipients below (or CDPHUB_ALERT_EMAILS); the webhook to the URL below (or "
        "CDPHUB_ALERT_WEBHOOK_URL).",
    )
    webhook_url = forms.URLField(
        max_length=500, required=False, assume_scheme="https", help_text="Blank: CDPHUB_ALERT_WEBHOOK_URL"
    )
    new_webhook_secret = forms.CharField(
        label="Webhook signing secret",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Signs each post the Standard Webhooks way (webhook-signature). Blank keeps what is stored.",
    )
    clear_webhook_secret = forms.BooleanField(label="Remove the stored secret", required=False)

    class Meta:
        model = AlertRule
        fields = [
            "destination",
            "kind",
            "enabled",
            "threshold",
            "window_minutes",
            "min_outcomes",
            "channels",
            "email_recipients",
            "webhook_url",
        ]
        widgets = {"email_recipients": forms.TextInput(attrs={"size": 60})}

    def clean_email_recipients(self) -> str:
        addresses = split_addresses(self.cleaned_data.get("email_recipients", ""))
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                raise ValidationError(f"{address!r} is not an email address.") from None
        return ", ".join(addresses)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        kind, window = data.get("kind") or getattr(self.instance, "kind", ""), data.get("window_minutes")
        if kind == AlertRule.Kind.SUCCESS_RATE:
            threshold = data.get("threshold")
            if threshold is None or not 0 < threshold <= 100:
                self.add_error("threshold", "A success rate rule needs a threshold between 0 and 100 (percent).")
        if kind != AlertRule.Kind.MISCONFIGURED and window is not None and not 1 <= window <= MAX_WINDOW_MINUTES:
            self.add_error("window_minutes", f"Between 1 and {MAX_WINDOW_MINUTES} minutes (a day).")
        return data

    def save(self, commit: bool = True) -> AlertRule:
        rule = super().save(commit=False)
        if self.cleaned_data.get("clear_webhook_secret"):
            rule.webhook_secret = {}
        elif self.cleaned_data.get("new_webhook_secret"):
            rule.webhook_secret = {"signing_secret": self.cleaned_data["new_webhook_secret"]}
        if commit:
            rule.save()
        return rule


class AlertRuleAdmin(admin.ModelAdmin):
    form = AlertRuleForm
    list_display = ["destination", "condition_", "enabled", "channels_", "state", "history"]
    list_editable = ["enabled"]
    list_filter = ["destination", "kind", "enabled"]
    list_select_related = ["destination"]
    search_fields = ["destination__name", "destination__slug"]
    actions = ["send_test_alert"]
    readonly_fields = ["webhook_secret_", "history"]

    class Media:
        css = {"all": ["deliveries/deliveries.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[AlertRule]:
        open_alert = Alert.objects.filter(rule=OuterRef("pk"), resolved_at__isnull=True)
        return super().get_queryset(request).annotate(is_open=Exists(open_alert))

    def get_fieldsets(self, request: HttpRequest, obj: AlertRule | None = None) -> list[tuple[str | None, dict]]:
        secret = ["new_webhook_secret", "clear_webhook_secret"] if self.has_change_permission(request, obj) else []
        return [
            (None, {"fields": ["destination", "kind", "enabled"]}),
            ("Condition", {"fields": ["threshold", "window_minutes", "min_outcomes"]}),
            ("Where to send", {"fields": ["channels", "email_recipients", "webhook_url", "webhook_secret_", *secret]}),
            ("History", {"fields": ["history"]}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: AlertRule | None = None) -> list[str]:
        # A rule's destination and kind are what it is: changing them would be another rule with this one's history.
        return [*self.readonly_fields, *(["destination", "kind"] if obj is not None else [])]

    @admin.display(description="Condition", ordering="kind")
    def condition_(self, rule: AlertRule) -> str:
        return rule.condition

    @admin.display(description="Sent to")
    def channels_(self, rule: AlertRule) -> str:
        found = targets(rule)
        if not found:
            return format_html('<span class="quiet">{}</span>', "nowhere (listed here only)")
        return format_html_join(", ", "{} {}", ((channel, f"({target})") for channel, target in found))

    @admin.display(description="Now")
    def state(self, rule: AlertRule) -> str:
        if getattr(rule, "is_open", False):
            return format_html('<span class="status status-failed">{}</span>', "Alert open")
        return format_html('<span class="status status-delivered">{}</span>', "OK")

    @admin.display(description="Alerts")
    def history(self, rule: AlertRule) -> str:
        if rule.pk is None:
            return "-"
        url = reverse("admin:deliveries_alert_changelist") + "?" + urlencode({"rule__id__exact": rule.pk})
        return format_html('<a href="{}">{}</a>', url, "History")

    @admin.display(description="Webhook secret")
    def webhook_secret_(self, rule: AlertRule) -> str:
        stored = rule.webhook_secret
        if isinstance(stored, Undecryptable):
            return str(stored)
        if isinstance(stored, dict) and stored.get("signing_secret"):
            return MASK
        return "not set (CDPHUB_ALERT_WEBHOOK_SECRET signs, if set)"

    def formfield_for_dbfield(self, db_field: Field, request: HttpRequest, **kwargs: Any) -> forms.Field | None:
        if isinstance(db_field, URLField):
            kwargs.setdefault("assume_scheme", "https")  # as the rule form's: Django 6's default (the list's form)
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        """A new rule starts as the defaults do: told on both channels, success rate below 90%."""
        return {"channels": DEFAULT_CHANNELS, "threshold": 90, **super().get_changeform_initial_data(request)}

    @admin.action(description="Send test alert", permissions=["change"])
    def send_test_alert(self, request: HttpRequest, queryset: QuerySet[AlertRule]) -> None:
        rules = list(queryset.select_related("destination")[: TEST_AT_ONCE + 1])
        if len(rules) > TEST_AT_ONCE:
            self.message_user(request, f"Choose at most {TEST_AT_ONCE} rules to test at once.", messages.WARNING)
            return
        for rule in rules:
            notifications = send_test(rule)
            if not notifications:
                self.message_user(
                    request,
                    f"{rule}: nowhere to send. Tick a channel and give recipients or a URL (or set "
                    "CDPHUB_ALERT_EMAILS / CDPHUB_ALERT_WEBHOOK_URL).",
                    messages.WARNING,
                )
            for n in notifications:
                if n.status == AlertNotification.Status.SENT:
                    self.message_user(request, f"{rule}: test {n.channel} sent to {n.target}.")
                else:
                    self.message_user(request, f"{rule}: test {n.channel} not sent. {n.error}", messages.ERROR)

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        return lookup == "destination__id__exact" or super().lookup_allowed(lookup, value, request)
