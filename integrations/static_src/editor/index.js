// cdphub's code editor: CodeMirror 6 behind a small global, window.CdphubEditor, for Django admin pages.
// build.sh bundles this file (and everything it imports, and editor.css as text) into one minified IIFE at
// integrations/static/integrations/editor/editor.js. The README beside this file says how to use and rebuild it.
//
// Deliberately left out of the editor (both are in CodeMirror's basicSetup): auto-closing brackets and
// autocompletion. With them, text typed key by key (a person, or Playwright's keyboard.type) does not land as
// typed: a "{" gains a "}" that the typed "}" then doubles, and Enter accepts a completion instead of breaking the line.

import { minimalSetup } from "codemirror";
import {
  EditorView, Decoration, WidgetType, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter,
  dropCursor, rectangularSelection, crosshairCursor, placeholder,
} from "@codemirror/view";
import { EditorState, StateField, StateEffect } from "@codemirror/state";
import {
  indentOnInput, indentUnit, bracketMatching, foldGutter, foldKeymap, syntaxHighlighting, ensureSyntaxTree,
} from "@codemirror/language";
import { indentWithTab } from "@codemirror/commands";
import { search, searchKeymap, highlightSelectionMatches } from "@codemirror/search";
import { linter, lintGutter, lintKeymap } from "@codemirror/lint";
import { javascript } from "@codemirror/lang-javascript";
import { json, jsonParseLinter } from "@codemirror/lang-json";
import { MergeView, unifiedMergeView } from "@codemirror/merge";
import { tags as t, tagHighlighter } from "@lezer/highlight";
import css from "./editor.css";
import { version, dependencies } from "./package.json";

// ---- look --------------------------------------------------------------------------------------------------------

// The two palettes (editor.css uses only these variables). Where Django's admin has a variable for the same thing,
// the palette takes it, so the editor follows the admin's colours; the value after the comma is for other pages.
const LIGHT = {
  bg: "var(--body-bg, #fff)", fg: "var(--body-fg, #333)", quiet: "var(--body-quiet-color, #666)",
  border: "var(--border-color, #ccc)", "gutter-bg": "var(--darkened-bg, #f8f8f8)", focus: "var(--link-fg, #417893)",
  "error-fg": "var(--error-fg, #ba2121)", "error-line": "#fde8e8",
  "active-line": "rgba(0,0,0,.035)", selection: "#d7e4f2", match: "rgba(255,210,0,.35)", bracket: "rgba(0,140,0,.18)",
  inserted: "rgba(40,170,60,.16)", "inserted-strong": "rgba(40,170,60,.35)",
  deleted: "rgba(230,40,40,.13)", "deleted-strong": "rgba(230,40,40,.32)",
  keyword: "#7a1fa2", string: "#116329", regexp: "#b5530c", number: "#0550ae", atom: "#0550ae", comment: "#6e7781",
  function: "#6639ba", definition: "#953800", property: "#1a5a96", type: "#953800", invalid: "#cf222e",
};
const DARK = {
  bg: "var(--body-bg, #121212)", fg: "var(--body-fg, #eee)", quiet: "var(--body-quiet-color, #aaa)",
  border: "var(--border-color, #353535)", "gutter-bg": "var(--darkened-bg, #212121)", focus: "var(--link-fg, #81d4fa)",
  "error-fg": "var(--error-fg, #e35f5f)", "error-line": "#4a1515",
  "active-line": "rgba(255,255,255,.045)", selection: "#264f78", match: "rgba(255,210,0,.22)",
  bracket: "rgba(80,220,80,.25)",
  inserted: "rgba(60,200,90,.16)", "inserted-strong": "rgba(60,200,90,.38)",
  deleted: "rgba(255,80,80,.15)", "deleted-strong": "rgba(255,80,80,.38)",
  keyword: "#d2a8ff", string: "#a5d6a7", regexp: "#ffb86c", number: "#79c0ff", atom: "#79c0ff", comment: "#8b949e",
  function: "#e0b0ff", definition: "#ffa657", property: "#9ecbff", type: "#ffa657", invalid: "#ff7b72",
};

function variables(palette) {
  return Object.entries(palette).map(([name, value]) => `--cdp-${name}:${value};`).join("");
}

// The same rule as Django's dark_mode.css: the system's preference, unless the admin's toggle set <html data-theme>.
const STYLE = `.cdphub-editor{${variables(LIGHT)}}
@media (prefers-color-scheme: dark){.cdphub-editor{${variables(DARK)}}}
html[data-theme="light"] .cdphub-editor{${variables(LIGHT)}}
html[data-theme="dark"] .cdphub-editor{${variables(DARK)}}
${css}`;

function injectStyle() {
  if (document.getElementById("cdphub-editor-style")) return;
  const style = document.createElement("style");
  style.id = "cdphub-editor-style";
  style.textContent = STYLE;
  document.head.appendChild(style);
}

// Tokens get classes (coloured in editor.css by palette), not inline colours, so the theme can switch in CSS alone.
const highlighter = tagHighlighter([
  { tag: t.keyword, class: "tok-keyword" },
  { tag: [t.string, t.special(t.string)], class: "tok-string" },
  { tag: [t.regexp, t.escape], class: "tok-regexp" },
  { tag: t.number, class: "tok-number" },
  { tag: [t.bool, t.null, t.atom, t.self], class: "tok-atom" },
  { tag: t.comment, class: "tok-comment" },
  { tag: [t.function(t.variableName), t.function(t.propertyName)], class: "tok-function" },
  { tag: [t.definition(t.variableName), t.className], class: "tok-definition" },
  { tag: [t.propertyName, t.definition(t.propertyName)], class: "tok-property" },
  { tag: [t.typeName, t.namespace], class: "tok-type" },
  { tag: t.labelName, class: "tok-label" },
  { tag: t.meta, class: "tok-meta" },
  { tag: t.invalid, class: "tok-invalid" },
]);

// ---- languages and lint ------------------------------------------------------------------------------------------

function languageSupport(name) {
  if (name === "json") return json();
  if (name === "javascript" || name === "js" || name === undefined || name === "") return javascript();
  return []; // "text" or anything else: plain text
}

// lint: true asks for the language's own check: JSON.parse's error for JSON, the parser's error nodes for JavaScript.
function javascriptSyntaxLinter(view) {
  const tree = ensureSyntaxTree(view.state, view.state.doc.length, 500);
  if (!tree) return [];
  const found = [];
  tree.iterate({
    enter(node) {
      if (!node.type.isError) return;
      const from = node.from, to = Math.min(Math.max(node.to, from + 1), view.state.doc.length);
      if (found.length < 20) found.push({ from: Math.min(from, to), to, severity: "error", message: "Syntax error" });
    },
  });
  return found;
}

// A lint function of the page's: (text, view) -> [{line, column, endLine?, endColumn?, message, severity?}] or
// CodeMirror diagnostics ({from, to, ...}), or a promise of either. Lines and columns count from 1.
function pageLinter(lint) {
  return async (view) => {
    const doc = view.state.doc;
    const items = (await lint(doc.toString(), view)) || [];
    return items.map((item) => {
      if (typeof item.from === "number") return { severity: "error", ...item };
      const start = position(doc, item.line, item.column);
      const end = item.endLine ? position(doc, item.endLine, item.endColumn) : Math.min(start + 1, doc.lineAt(start).to);
      return { from: start, to: Math.max(start, end), severity: item.severity || "error", message: String(item.message || "") };
    });
  };
}

function lintExtension(lint, language) {
  if (!lint) return [];
  let source = null;
  if (typeof lint === "function") source = pageLinter(lint);
  else if (language === "json") source = jsonParseLinter();
  else if (language === "javascript" || language === "js" || !language) source = javascriptSyntaxLinter;
  return source ? [linter(source, { delay: 400 }), lintGutter()] : [];
}

// ---- showError(): a line, a column and a message, from the server or the page ------------------------------------

const setError = StateEffect.define();
const clearErrorEffect = StateEffect.define();

class ErrorMessage extends WidgetType {
  constructor(message) { super(); this.message = message; }
  eq(other) { return other.message === this.message; }
  toDOM() {
    const div = document.createElement("div");
    div.className = "cm-cdphub-errorMessage";
    div.setAttribute("role", "alert");
    div.textContent = "\u26a0 " + this.message;
    return div;
  }
  ignoreEvent() { return false; }
}

const errorField = StateField.define({
  create: () => Decoration.none,
  update(marks, tr) {
    marks = marks.map(tr.changes); // the marker stays on its line while the text around it is edited
    for (const effect of tr.effects) {
      if (effect.is(clearErrorEffect)) marks = Decoration.none;
      if (effect.is(setError)) {
        const { from, to, at, message } = effect.value;
        const ranges = [Decoration.line({ class: "cm-cdphub-errorLine" }).range(from)];
        if (at < to) ranges.push(Decoration.mark({ class: "cm-cdphub-errorAt" }).range(at, at + 1));
        if (message) ranges.push(Decoration.widget({ widget: new ErrorMessage(message), block: true, side: 1 }).range(to));
        marks = Decoration.set(ranges, true);
      }
    }
    return marks;
  },
  provide: (field) => EditorView.decorations.from(field),
});

// 1-based line and column -> document offset, both clamped into the document.
function position(doc, line, column) {
  const l = doc.line(Math.min(Math.max(parseInt(line, 10) || 1, 1), doc.lines));
  return l.from + Math.min(Math.max((parseInt(column, 10) || 1) - 1, 0), l.length);
}

// Chrome (seen in 156) leaves an empty line behind when typed text replaces a selection that crosses a line break
// and ends on the document's last line: all of "ab\ncd" selected, type "r", and the text is "r\n". Such a
// selection is replaced here, as a typed change, instead of by the browser's own editing.
const typeOverLines = EditorView.domEventHandlers({
  beforeinput(event, view) {
    if (event.inputType !== "insertText" || !event.data || view.composing || view.state.readOnly) return false;
    const { doc, selection } = view.state;
    if (!selection.ranges.some((r) => doc.lineAt(r.from).number !== doc.lineAt(r.to).number)) return false;
    event.preventDefault();
    view.dispatch(view.state.replaceSelection(event.data), { userEvent: "input.type", scrollIntoView: true });
    return true;
  },
});

// ---- attach ------------------------------------------------------------------------------------------------------

function truthy(value) {
  return value !== undefined && value !== null && !["", "0", "false", "no"].includes(String(value).toLowerCase());
}

function editorExtensions({ language, readOnly, lint, placeholderText }) {
  return [
    lineNumbers(),
    highlightActiveLineGutter(),
    foldGutter(),
    minimalSetup, // special characters shown, history (undo/redo), drawn selection, the default keymap
    dropCursor(),
    EditorState.allowMultipleSelections.of(true),
    rectangularSelection(),
    crosshairCursor(),
    indentOnInput(),
    typeOverLines,
    indentUnit.of("  "),
    EditorState.tabSize.of(2),
    bracketMatching(),
    highlightActiveLine(),
    highlightSelectionMatches(),
    search({ top: true }),
    syntaxHighlighting(highlighter),
    languageSupport(language),
    lintExtension(lint, language),
    keymap.of([...searchKeymap, ...foldKeymap, ...lintKeymap, indentWithTab]),
    readOnly ? [EditorState.readOnly.of(true)] : [],
    placeholderText ? placeholder(placeholderText) : [],
    errorField,
  ];
}

function attach(textarea, options = {}) {
  if (!(textarea instanceof HTMLTextAreaElement)) throw new TypeError("CdphubEditor.attach needs a <textarea>");
  if (textarea.cdphubEditor) return textarea.cdphubEditor;
  injectStyle();
  const data = textarea.dataset;
  const language = options.language || data.codeEditor || "javascript";
  const readOnly = options.readOnly !== undefined ? !!options.readOnly
    : truthy(data.readonly) || textarea.readOnly || textarea.disabled;
  const lint = options.lint !== undefined ? options.lint : truthy(data.lint);

  const wrapper = document.createElement("div");
  wrapper.className = "cdphub-editor cdphub-sized" + (readOnly ? " cdphub-readonly" : "");
  textarea.insertAdjacentElement("afterend", wrapper);

  // The textarea stays in the form, hidden, and carries the value a normal POST submits. Its "required" would make
  // the browser refuse to submit an empty editor without a visible reason (it cannot focus a hidden field), so the
  // server's validation is left to say so.
  const wasRequired = textarea.required;
  textarea.required = false;
  const wasDisplay = textarea.style.display;
  textarea.style.display = "none";

  const label = textarea.labels && textarea.labels[0];
  const contentAttributes = { "aria-multiline": "true" };
  if (label) contentAttributes["aria-label"] = label.textContent.trim().replace(/:$/, "");
  if (textarea.id) contentAttributes["data-for"] = textarea.id;

  const view = new EditorView({
    parent: wrapper,
    state: EditorState.create({
      doc: textarea.value,
      extensions: [
        editorExtensions({ language, readOnly, lint, placeholderText: textarea.placeholder }),
        EditorView.contentAttributes.of(contentAttributes),
        EditorView.updateListener.of((update) => {
          if (!update.docChanged) return;
          textarea.value = update.state.doc.toString();
          textarea.dispatchEvent(new Event("input", { bubbles: true }));
        }),
      ],
    }),
  });

  const focusEditor = (event) => { event.preventDefault(); view.focus(); };
  if (label) label.addEventListener("click", focusEditor);
  // A form's reset puts the textarea back; the editor follows.
  const onReset = () => setTimeout(() => editor.setValue(textarea.value));
  if (textarea.form) textarea.form.addEventListener("reset", onReset);

  const editor = {
    view,
    textarea,
    language,
    getValue: () => view.state.doc.toString(),
    setValue(text) {
      text = text === undefined || text === null ? "" : String(text);
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
      textarea.value = text; // also when the text did not change (no update fires then)
    },
    focus: () => view.focus(),
    // line and column count from 1, as in JavaScript's and JSON's error messages; both are clamped into the text.
    showError(line, column, message) {
      const doc = view.state.doc;
      const at = position(doc, line, column);
      const l = doc.lineAt(at);
      view.dispatch({
        effects: [
          setError.of({ from: l.from, to: l.to, at, message: message ? String(message) : "" }),
          EditorView.scrollIntoView(at, { y: "center" }),
        ],
        selection: { anchor: at },
      });
    },
    clearError() { view.dispatch({ effects: clearErrorEffect.of(null) }); },
    destroy() {
      view.destroy();
      wrapper.remove();
      if (label) label.removeEventListener("click", focusEditor);
      if (textarea.form) textarea.form.removeEventListener("reset", onReset);
      textarea.style.display = wasDisplay;
      textarea.required = wasRequired;
      delete textarea.cdphubEditor;
      delete wrapper.cdphubEditor;
    },
  };
  textarea.cdphubEditor = editor;
  wrapper.cdphubEditor = editor;
  if (data.errorLine) editor.showError(data.errorLine, data.errorColumn || 1, data.errorMessage || "");
  return editor;
}

// ---- diff --------------------------------------------------------------------------------------------------------

// A read-only diff of two texts inside element: mode "split" (side by side, the default) or "unified".
// Long unchanged stretches are folded away (click to open) unless collapseUnchanged is false.
function diff(element, options = {}) {
  injectStyle();
  const original = options.original === undefined || options.original === null ? "" : String(options.original);
  const modified = options.modified === undefined || options.modified === null ? "" : String(options.modified);
  const mode = options.mode === "unified" ? "unified" : "split";
  const collapse = options.collapseUnchanged === false ? undefined
    : { margin: 3, minSize: 4, ...(typeof options.collapseUnchanged === "object" ? options.collapseUnchanged : {}) };
  const shared = [
    lineNumbers(),
    minimalSetup,
    syntaxHighlighting(highlighter),
    languageSupport(options.language || "javascript"),
    highlightSelectionMatches(),
    search({ top: true }),
    keymap.of(searchKeymap),
    EditorState.readOnly.of(true),
    indentUnit.of("  "),
    EditorState.tabSize.of(2),
  ];

  element.textContent = "";
  element.classList.add("cdphub-editor", "cdphub-diff", "cdphub-readonly");
  if (original === modified) {
    const same = element.appendChild(document.createElement("div"));
    same.className = "cdphub-diff-same";
    same.textContent = "No differences.";
  }
  let view;
  if (mode === "unified") {
    view = new EditorView({
      parent: element,
      doc: modified,
      extensions: [shared, unifiedMergeView({ original, mergeControls: false, collapseUnchanged: collapse })],
    });
  } else {
    view = new MergeView({
      parent: element,
      a: { doc: original, extensions: shared },
      b: { doc: modified, extensions: shared },
      collapseUnchanged: collapse,
    });
  }
  const handle = {
    view,
    mode,
    destroy() { view.destroy(); element.textContent = ""; delete element.cdphubDiff; },
  };
  element.cdphubDiff = handle;
  return handle;
}

// ---- automatic attach --------------------------------------------------------------------------------------------

// <textarea data-code-editor="javascript|json" [data-readonly="1"] [data-lint="1"]
//           [data-error-line="3" data-error-column="7" data-error-message="..."]>
// <div data-code-diff="javascript|json" data-original="..." data-modified="..." [data-diff-mode="unified"]>
// Rows of an admin inline's hidden template (.empty-form) are skipped: Django clones them, and formset:added
// attaches the clone.
function autoAttach(root = document) {
  const editors = [];
  const scope = root.querySelectorAll ? root : document;
  const inside = (el) => el.closest(".empty-form");
  const textareas = [...scope.querySelectorAll("textarea[data-code-editor]")];
  if (scope.matches && scope.matches("textarea[data-code-editor]")) textareas.push(scope);
  for (const textarea of textareas) {
    if (!inside(textarea)) editors.push(attach(textarea));
  }
  for (const element of scope.querySelectorAll("[data-code-diff]")) {
    if (inside(element) || element.cdphubDiff) continue;
    diff(element, {
      original: element.dataset.original,
      modified: element.dataset.modified,
      language: element.dataset.codeDiff || "javascript",
      mode: element.dataset.diffMode,
    });
  }
  return editors;
}

// ---- the global --------------------------------------------------------------------------------------------------

const api = {
  attach,
  autoAttach,
  diff,
  version, // this bundle's, from package.json
  versions: dependencies, // the CodeMirror packages in it
  EditorView, // e.g. EditorView.findFromDOM(document.querySelector(".cm-editor")) in a test or the console
};
window.CdphubEditor = api;

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => autoAttach());
else autoAttach();
document.addEventListener("formset:added", (event) => autoAttach(event.target));
