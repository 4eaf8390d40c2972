"""The function form: the code in the code editor (a syntax error marked on its line), the settings it declares as
rows (name, label, type, description, required, sensitive), and a note kept with the version the save makes."""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from integrations.functions.declaration import TYPES
from integrations.models import Destination, Function, Source

# "line 3, column 13: SyntaxError: …" (Function.clean) or "at onTrack (function.js:3:13)" (a thrown error's stack)
WHERE = re.compile(r"line (\d+)(?:, column (\d+))?|function\.js:(\d+):(\d+)")
TYPE_LABELS = {
    "string": "string",
    "text": "text (long)",
    "boolean": "boolean",
    "number": "number",
    "array": "list of strings",
    "text_map": "map of strings",
}
STARTERS = {
    Function.Kind.DESTINATION: """\
// A destination function: a handler per event type it takes (onTrack, onIdentify, onPage, onScreen, onGroup,
// onAlias, onDelete, onBatch). `settings` holds what each destination gives. Throw RetryError to have the
// event sent again later, EventNotSupported to filter it.
async function onTrack(event, settings) {
  const response = await fetch("https://api.example.com/events", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ userId: event.userId, name: event.event, properties: event.properties }),
  });
  if (response.status >= 500 || response.status === 429) {
    throw new RetryError(`The API answered ${response.status}`);
  }
}
""",
    Function.Kind.SOURCE: """\
// A source function: each webhook request of a tool becomes events, with Segment.track(), .identify() …
async function onRequest(request, settings) {
  const body = request.json();
  Segment.track({ event: body.type, userId: body.user_id, properties: body });
}
""",
    Function.Kind.INSERT: """\
// An insert function: runs on each event before it is sent to the destination. Return the event (changed or
// not) to send it; throw DropEvent to drop it.
async function onTrack(event, settings) {
  event.properties = { ...event.properties, enriched: true };
  return event;
}
""",
}
ROW_KEYS = ("name", "label", "type", "description", "required", "sensitive")


def error_position(message: str) -> tuple[int, int] | None:
    """(line, column) a syntax error's message or a stack line points at, if any."""
    match = WHERE.search(message or "")
    if not match:
        return None
    line, column = match.group(1) or match.group(3), match.group(2) or match.group(4) or "1"
    return int(line), int(column)


def named_by(slug: str) -> list[Destination | Source]:
    """The destinations and sources that run a function by its slug: a rename or a deletion leaves them without it."""
    return [
        *Destination.objects.filter(vendor="function", config__function=slug).order_by("name"),
        *Source.objects.filter(kind="function", config__function=slug).order_by("name"),
    ]


def compact(item: dict[str, Any]) -> dict[str, Any]:
    """A declared setting without its default keys (empty label, not required …), so equal ones compare equal."""
    kept = {k: v for k, v in item.items() if v not in ("", False, None) or k == "name"}
    if kept.get("type") == "string":
        kept.pop("type")
    return kept


class DeclarationWidget(forms.Widget):
    """One row of inputs per declared setting, and a blank row to add one; the page's script adds more rows and
    removes them. A row whose name is blank (and nothing else typed) is left out."""

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None) -> SafeString:
        items = [item for item in (value if isinstance(value, list) else []) if isinstance(item, dict)]
        rows = [self._row(name, str(index), item) for index, item in enumerate(items)]
        if not rows:
            rows.append(self._row(name, "0", {}))  # a first row to fill in; "Add a setting" adds more
        template = self._row(name, "__index__", {})
        heads = ("Name", "Label", "Type", "Description", "Required", "Sensitive", "")
        return format_html(
            '<div class="declaration" data-name="{}"><table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>'
            '<template class="declaration-template">{}</template>'
            '<button type="button" class="button declaration-add">Add a setting</button></div>',
            name,
            format_html_join("", "<th>{}</th>", ((h,) for h in heads)),
            format_html_join("", "{}", ((r,) for r in rows)),
            template,
        )

    def _row(self, name: str, index: str, item: dict[str, Any]) -> SafeString:
        prefix = f"{name}-{index}-"
        kind = item.get("type") or "string"
        options = format_html_join(
            "",
            '<option value="{}"{}>{}</option>',
            ((t, " selected" if t == kind else "", TYPE_LABELS.get(t, t)) for t in TYPES),
        )
        return format_html(
            '<tr class="declaration-row">'
            '<td><input type="text" name="{0}name" value="{1}" class="vTextField" placeholder="apiKey" '
            'spellcheck="false" aria-label="Name"></td>'
            '<td><input type="text" name="{0}label" value="{2}" class="vTextField" placeholder="API key" '
            'aria-label="Label"></td>'
            '<td><select name="{0}type" aria-label="Type">{3}</select></td>'
            '<td><input type="text" name="{0}description" value="{4}" class="vTextField" aria-label="Description">'
            "</td>"
            '<td class="flag"><input type="checkbox" name="{0}required" aria-label="Required"{5}></td>'
            '<td class="flag"><input type="checkbox" name="{0}sensitive" aria-label="Sensitive"{6}></td>'
            '<td><button type="button" class="declaration-remove" title="Remove this setting" '
            'aria-label="Remove this setting">&times;</button></td></tr>',
            prefix,
            item.get("name", ""),
            item.get("label", ""),
            options,
            item.get("description", ""),
            " checked" if item.get("required") else "",
            " checked" if item.get("sensitive") else "",
        )

    def value_from_datadict(self, data: Any, files: Any, name: str) -> list[dict[str, Any]]:
        indices = sorted(
            {int(m.group(1)) for key in data for m in [re.match(rf"^{re.escape(name)}-(\d+)-name$", key)] if m}
        )
        items = []
        for index in indices:
            prefix = f"{name}-{index}-"
            item: dict[str, Any] = {"name": data.get(prefix + "name", "").strip()}
            for key in ("label", "description"):
                if data.get(prefix + key, "").strip():
                    item[key] = data[prefix + key].strip()
            item["type"] = data.get(prefix + "type") or "string"
            for flag in ("required", "sensitive"):
                if data.get(prefix + flag):
                    item[flag] = True
            if item["name"] or "label" in item or "description" in item:
                items.append(item)
        return items

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return False  # no rows at all is a declaration too: no settings


class DeclarationField(forms.Field):
    widget = DeclarationWidget

    def has_changed(self, initial: Any, data: Any) -> bool:
        def key(value: Any) -> str:
            return json.dumps([compact(i) for i in (value or []) if isinstance(i, dict)], sort_keys=True)

        return key(initial) != key(data)


class FunctionForm(forms.ModelForm):
    settings = DeclarationField(
        required=False,
        label="Settings",
        help_text="What the code reads from its settings argument, given by each destination (or source) that runs "
        "it. Sensitive ones are stored encrypted there, never shown again, and redacted from logs and exchanges.",
    )
    note = forms.CharField(
        required=False,
        max_length=200,
        help_text="Kept with the version this save makes, e.g. “retry on 429”. Versions are made when the code or "
        "the settings change.",
    )

    class Meta:
        model = Function
        fields = ["name", "slug", "kind", "description", "code", "settings"]
        widgets = {
            "code": forms.Textarea(
                attrs={"data-code-editor": "javascript", "rows": 24, "spellcheck": "false", "class": "code-input"}
            ),
            "description": forms.Textarea(attrs={"rows": 2}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "code" in self.fields:
            self.fields["code"].strip = False  # code as typed: a trimmed end would make a version of its own
        if "kind" in self.fields:
            # A new function starts from its kind's starter; the script swaps it while it is untouched.
            self.fields["kind"].widget.attrs["data-starters"] = json.dumps(STARTERS)
            if not self.instance.pk and "code" in self.fields:
                kind = self.initial.get("kind") or Function.Kind.DESTINATION
                self.initial.setdefault("code", STARTERS.get(kind, ""))

    def clean_slug(self) -> str:
        slug = self.cleaned_data.get("slug") or ""
        if self.instance.pk and slug != self.instance.slug and (users := named_by(self.instance.slug)):
            raise forms.ValidationError(
                f"Cannot be changed: {', '.join(u.name for u in users)} run the function by its slug. Make a new "
                "function to use another slug."
            )
        return slug

    def clean_code(self) -> str:
        """Newlines as LF: a browser posts a textarea's as CRLF, and versions and diffs compare the text."""
        return (self.cleaned_data.get("code") or "").replace("\r\n", "\n")

    def clean_settings(self) -> Any:
        """The stored declaration when nothing but the rows' form changed, so a save makes no version for it."""
        typed = self.cleaned_data.get("settings") or []
        stored = self.instance.settings if self.instance.pk else []
        if not self.fields["settings"].has_changed(stored, typed):
            return stored
        return typed

    def _post_clean(self) -> None:
        super()._post_clean()
        errors = self.errors.get("code")
        if errors and "code" in self.fields:
            found = next((p for p in map(error_position, errors) if p), None)
            if found:
                # The editor puts its error marker there (integrations/static_src/editor: data-error-*).
                self.fields["code"].widget.attrs.update(
                    {"data-error-line": found[0], "data-error-column": found[1], "data-error-message": errors[0]}
                )
