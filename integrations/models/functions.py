"""Functions: JavaScript a marketing team writes when no built-in integration fits, run in embedded V8
(integrations/functions). A destination function is a Destination with vendor "function"; a source function a
Source of kind "function"; an insert function runs on a destination's events before they are sent.

Every save that changes the code or the settings declaration keeps a FunctionVersion, so a bad deploy is
rolled back in one click; the destinations and sources running the function are touched so workers load the
new code at their next drain.
"""

from __future__ import annotations

from django.apps import apps
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from integrations.functions.declaration import FunctionCode


class Function(models.Model):
    class Kind(models.TextChoices):
        DESTINATION = "destination", "Destination function"
        SOURCE = "source", "Source function"
        INSERT = "insert", "Insert function"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.DESTINATION)
    description = models.TextField(blank=True)
    code = models.TextField(help_text="JavaScript with Segment's handlers (onTrack, onIdentify … or onRequest)")
    settings = models.JSONField(
        default=list,
        blank=True,
        help_text='Settings the code reads from its second argument: [{"name", "label", "type", "description", '
        '"required", "sensitive"}]; sensitive ones are stored encrypted on each destination or source',
    )
    version = models.PositiveIntegerField(default=0, editable=False, help_text="The number of the version saved last")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, user=None, note: str = "", **kwargs) -> None:
        """Save, keeping a version when the code or the settings changed, and make workers reload it."""
        with transaction.atomic():
            last = self.versions.order_by("-number").first() if self.pk else None
            changed = last is None or last.code != self.code or last.settings != self.settings
            if changed:
                self.version = (last.number if last else 0) + 1
            super().save(*args, **kwargs)
            if changed:
                FunctionVersion.objects.create(
                    function=self,
                    number=self.version,
                    code=self.code,
                    settings=self.settings,
                    created_by=user,
                    note=note[:200],
                )
                self.touch_users()

    def clean(self) -> None:
        from integrations.functions.declaration import declaration_problems
        from integrations.functions.runtime import code_problems

        errors: dict[str, list[str]] = {}
        problems = code_problems(self.code or "", self.kind)
        if problems:
            errors["code"] = problems
        problems = declaration_problems(self.settings)
        if problems:
            errors["settings"] = problems
        if self.pk:
            before = Function.objects.filter(pk=self.pk).values_list("kind", flat=True).first()
            if before and before != self.kind and self.in_use():
                errors.setdefault("kind", []).append(
                    f"kind: the function is in use as a {before} function; make a new function instead"
                )
        if errors:
            raise ValidationError(errors)

    def in_use(self) -> bool:
        Destination, Source = apps.get_model("integrations", "Destination"), apps.get_model("integrations", "Source")
        return (
            Destination.objects.filter(vendor="function", config__function=self.slug).exists()
            or Destination.objects.filter(insert_function=self).exists()
            or Source.objects.filter(kind="function", config__function=self.slug).exists()
        )

    def touch_users(self) -> None:
        """Bump updated_at of what runs this function: a worker rebuilds a destination's vendor (and its V8
        context) when that changes, so the new code runs from the next drain on."""
        Destination, Source = apps.get_model("integrations", "Destination"), apps.get_model("integrations", "Source")
        now = timezone.now()
        Destination.objects.filter(vendor="function", config__function=self.slug).update(updated_at=now)
        Destination.objects.filter(insert_function=self).update(updated_at=now)
        Source.objects.filter(kind="function", config__function=self.slug).update(updated_at=now)

    def roll_back(self, number: int, user=None) -> FunctionVersion:
        """Make version `number`'s code and settings current again, as a new version (history is never rewritten)."""
        old = self.versions.get(number=number)
        self.code, self.settings = old.code, old.settings
        self.save(user=user, note=f"rolled back to version {number}")
        return self.versions.get(number=self.version)

    def as_code(self) -> FunctionCode:
        return FunctionCode(self.slug, self.kind, self.code, self.settings if isinstance(self.settings, list) else [])

    def declared(self, sensitive: bool | None = None) -> list[dict]:
        items = self.settings if isinstance(self.settings, list) else []
        return [s for s in items if sensitive is None or bool(s.get("sensitive")) == sensitive]


class FunctionVersion(models.Model):
    """A saved state of a function's code and settings declaration: kept for ever, listed, diffed, restored."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    code = models.TextField()
    settings = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(django_settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["function", "-number"]
        constraints = [models.UniqueConstraint(fields=["function", "number"], name="function_version_number")]

    def __str__(self) -> str:
        return f"{self.function} v{self.number}"
