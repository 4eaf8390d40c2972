// The globals of Segment's function runtime, for code written for it, and the host's entry points.
// Loaded into every V8 context after url.min.js and lodash.min.js, before the function's own code.
// There is no event loop of our own: the host (integrations/functions/runtime.py) starts a handler, then
// answers the fetch calls it made until the handler's promise settles. So no timers: setTimeout is absent.
(function (global) {
  "use strict";

  // Error classes with Segment's meanings --------------------------------------------------------------
  function errorClass(name) {
    const cls = class extends Error {
      constructor(message) {
        super(message);
        this.name = name;
      }
    };
    Object.defineProperty(cls, "name", { value: name });
    return cls;
  }
  const RetryError = errorClass("RetryError");
  const EventNotSupported = errorClass("EventNotSupported");
  const InvalidEventPayload = errorClass("InvalidEventPayload");
  const ValidationError = errorClass("ValidationError");
  const DropEvent = errorClass("DropEvent");

  // State of one invocation -----------------------------------------------------------------------------
  let state = null;
  const limits = { consoleKeep: 16384, consoleHard: 1048576, fetches: 50 };

  // JSON.stringify writes a lone surrogate (half an emoji cut by slice(), "\ud800" parsed from a webhook) as an
  // escape no UTF-8 reader takes (the host's orjson refuses it): U+FFFD instead, as a decoder would. A pair is
  // written as its character, so an escape of one that no escaped backslash precedes is always a lone half.
  const LONE_SURROGATE = /(?<!\\)((?:\\\\)*)\\ud[89a-f][0-9a-f]{2}/g;
  function wellFormed(json) {
    return json.replace(LONE_SURROGATE, "$1\\ufffd");
  }

  function fatal(code, message) {
    // An error the function may not catch: recorded, and the host ends the invocation with it.
    if (state && !state.fatal) state.fatal = { code: code, message: message };
    return new Error(message);
  }

  // console -----------------------------------------------------------------------------------------------
  function show(value, depth) {
    if (typeof value === "string") return depth ? JSON.stringify(value) : value;
    if (value instanceof Error) return value.stack || value.name + ": " + value.message;
    if (typeof value === "undefined") return "undefined";
    if (typeof value === "function") return "[Function: " + (value.name || "anonymous") + "]";
    if (typeof value === "bigint") return value.toString() + "n";
    if (typeof value === "symbol") return value.toString();
    if (value instanceof Headers) return "Headers " + JSON.stringify(Object.fromEntries(value.entries()));
    if (value instanceof URL) return value.href;
    try {
      const text = JSON.stringify(value);
      return text === undefined ? String(value) : text;
    } catch (e) {
      return "[" + (value && value.constructor ? value.constructor.name : "Object") + ": cannot be shown]";
    }
  }
  function logger(level) {
    return function () {
      if (!state) return;
      let line = Array.prototype.map.call(arguments, (a) => show(a, 0)).join(" ");
      state.consoleSize += line.length;
      if (state.consoleSize > limits.consoleHard) {
        throw fatal("console_limit", "console output passed " + limits.consoleHard / 1048576 +
          " MB in one invocation: log less (a summary, not whole payloads)");
      }
      if (state.consoleKept >= limits.consoleKeep) {
        state.consoleDropped += line.length;
        return;
      }
      const room = limits.consoleKeep - state.consoleKept;
      if (line.length > room) {
        state.consoleDropped += line.length - room;
        line = line.slice(0, room);
      }
      state.consoleKept += line.length;
      state.logs.push({ level: level, message: line });
    };
  }
  const console = {
    log: logger("log"), info: logger("info"), warn: logger("warn"), error: logger("error"),
    debug: logger("debug"), trace: logger("trace"),
  };

  // btoa / atob (Latin-1 strings, as browsers and Node do) ---------------------------------------------------
  const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  function btoa(input) {
    const text = String(input);
    let out = "";
    for (let i = 0; i < text.length; i += 3) {
      const a = text.charCodeAt(i), b = text.charCodeAt(i + 1), c = text.charCodeAt(i + 2);
      if (a > 255 || b > 255 || c > 255) {
        throw new Error("btoa: the string has characters outside Latin-1 (InvalidCharacterError)");
      }
      const n = (a << 16) | ((b || 0) << 8) | (c || 0);
      out += ALPHABET[(n >> 18) & 63] + ALPHABET[(n >> 12) & 63] +
        (i + 1 < text.length ? ALPHABET[(n >> 6) & 63] : "=") + (i + 2 < text.length ? ALPHABET[n & 63] : "=");
    }
    return out;
  }
  function atob(input) {
    const text = String(input).replace(/[\t\n\f\r ]/g, "").replace(/={1,2}$/, "");
    if (text.length % 4 === 1 || /[^A-Za-z0-9+/]/.test(text)) {
      throw new Error("atob: the string is not correctly encoded (InvalidCharacterError)");
    }
    let out = "", bits = 0, value = 0;
    for (let i = 0; i < text.length; i++) {
      value = (value << 6) | ALPHABET.indexOf(text[i]);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out += String.fromCharCode((value >> bits) & 255);
      }
    }
    return out;
  }

  // Headers, Response, Request -----------------------------------------------------------------------------
  class Headers {
    constructor(init) {
      this._map = new Map();
      if (init instanceof Headers) init.forEach((v, k) => this.append(k, v));
      else if (Array.isArray(init)) init.forEach((pair) => this.append(pair[0], pair[1]));
      else if (init && typeof init === "object") Object.keys(init).forEach((k) => this.append(k, init[k]));
    }
    append(name, value) {
      const key = String(name).toLowerCase();
      const old = this._map.get(key);
      this._map.set(key, old === undefined ? String(value) : old + ", " + String(value));
    }
    set(name, value) { this._map.set(String(name).toLowerCase(), String(value)); }
    get(name) { const v = this._map.get(String(name).toLowerCase()); return v === undefined ? null : v; }
    has(name) { return this._map.has(String(name).toLowerCase()); }
    delete(name) { this._map.delete(String(name).toLowerCase()); }
    forEach(fn, self) { for (const [k, v] of this._map) fn.call(self, v, k, this); }
    keys() { return this._map.keys(); }
    values() { return this._map.values(); }
    entries() { return this._map.entries(); }
    [Symbol.iterator]() { return this._map.entries(); }
    raw() { const o = {}; for (const [k, v] of this._map) o[k] = [v]; return o; }
  }

  function bodyText(body) {
    return typeof body === "string" ? body : body === undefined || body === null ? "" : String(body);
  }
  class Body {
    constructor(body) { this._body = bodyText(body); this.bodyUsed = false; }
    async text() { this.bodyUsed = true; return this._body; }
    async json() {
      this.bodyUsed = true;
      try {
        return JSON.parse(this._body);
      } catch (e) {
        throw new SyntaxError("invalid json response body" + (this.url ? " at " + this.url : "") +
          " reason: " + e.message);
      }
    }
    async arrayBuffer() {
      const bytes = new Uint8Array(this._body.length);
      for (let i = 0; i < this._body.length; i++) bytes[i] = this._body.charCodeAt(i) & 255;
      return bytes.buffer;
    }
  }
  class Response extends Body {
    constructor(body, init) {
      super(body);
      init = init || {};
      this.status = init.status === undefined ? 200 : init.status;
      this.statusText = init.statusText || "";
      this.headers = new Headers(init.headers);
      this.url = init.url || "";
      this.ok = this.status >= 200 && this.status < 300;
      this.redirected = false;
      this.type = "basic";
    }
    clone() {
      return new Response(this._body, { status: this.status, statusText: this.statusText, headers: this.headers,
        url: this.url });
    }
  }
  class Request extends Body {
    constructor(input, init) {
      init = init || {};
      super(init.body);
      this.url = typeof input === "string" ? input : input && input.url ? String(input.url) : String(input);
      this.method = (init.method || "GET").toUpperCase();
      this.headers = new Headers(init.headers);
    }
  }

  // fetch: the host makes the call (its SSRF guard, proxies, timeout, and a recorded, redacted exchange) -----
  function fetch(resource, init) {
    if (!state) return Promise.reject(new Error("fetch is only available while a handler runs"));
    init = init || {};
    const url = resource instanceof URL ? resource.href : resource && resource.url ? resource.url : String(resource);
    const headers = new Headers(resource instanceof Request ? resource.headers : undefined);
    new Headers(init.headers).forEach((v, k) => headers.set(k, v));
    let body = init.body;
    if (body === undefined && resource instanceof Request && resource._body) body = resource._body; // as node-fetch
    if (body instanceof URLSearchParams) {
      if (!headers.has("content-type")) headers.set("content-type", "application/x-www-form-urlencoded;charset=UTF-8");
      body = body.toString();
    } else if (body !== undefined && body !== null && typeof body !== "string") {
      body = String(body);
    }
    const method = String(init.method || (resource instanceof Request ? resource.method : "GET")).toUpperCase();
    if ((method === "GET" || method === "HEAD") && body) {
      return Promise.reject(new TypeError("Request with GET/HEAD method cannot have body"));
    }
    if (state.fetchCount >= limits.fetches) {
      return Promise.reject(fatal("too_many_fetches", "more than " + limits.fetches +
        " fetch calls in one invocation"));
    }
    state.fetchCount += 1;
    const id = state.fetchCount;
    const call = { id: id, method: method, url: url, headers: Object.fromEntries(headers.entries()),
      body: body === undefined || body === null ? null : body };
    return new Promise((resolve, reject) => {
      state.pending.set(id, { resolve: resolve, reject: reject, url: url });
      state.queue.push(call);
    });
  }

  // Source functions' emitters, checked as Segment's runtime checks them, every field kept -------------------
  const Segment = {};
  function emit(type, required) {
    return function (message) {
      if (!state) throw new Error("Segment." + type + "() is only available while onRequest runs");
      if (!message || typeof message !== "object") {
        throw new ValidationError("Segment." + type + "() takes one object, e.g. {userId, event, properties}");
      }
      for (const field of required) {
        if (message[field] === undefined || message[field] === null || message[field] === "") {
          throw new ValidationError("Segment." + type + "(): " + field + " is required");
        }
      }
      if (type !== "set" && !message.userId && !message.anonymousId) {
        throw new ValidationError("Segment." + type + "(): userId or anonymousId is required");
      }
      state.emitted.push(Object.assign(JSON.parse(JSON.stringify(message)), { type: type }));
    };
  }
  Segment.identify = emit("identify", []);
  Segment.track = emit("track", ["event"]);
  Segment.page = emit("page", []);
  Segment.screen = emit("screen", []);
  Segment.group = emit("group", ["groupId"]);
  Segment.alias = emit("alias", ["previousId"]);
  Segment.set = emit("set", ["collection", "id"]);

  // Segment's process-local cache: cache.load(key, ttlMs, async fn), cache.delete(key) ------------------
  const cacheEntries = new Map();
  const cache = {
    async load(key, ttl, loader) {
      const hit = cacheEntries.get(key);
      if (hit && hit.until > Date.now()) return hit.value;
      const value = await loader();
      cacheEntries.set(key, { value: value, until: Date.now() + Number(ttl || 0) });
      return value;
    },
    delete(key) { cacheEntries.delete(key); },
  };

  function require(name) {
    throw fatal("forbidden", "require('" + name + "') is not available: functions have no modules. " +
      "Use the globals: fetch, Headers, URL, URLSearchParams, btoa, atob, _ (lodash), cache, console");
  }

  // The host's entry points -------------------------------------------------------------------------------
  function describe(error) {
    if (error === undefined || error === null || typeof error !== "object") {
      return { name: "Error", message: String(error), stack: "" };
    }
    const stack = String(error.stack || "");
    const at = stack.split("\n").map((l) => l.trim()).filter((l) => l.startsWith("at "));
    const own = at.filter((l) => l.indexOf("function.js:") >= 0);
    return { name: String(error.name || (error.constructor && error.constructor.name) || "Error"),
      message: String(error.message === undefined ? error : error.message), stack: (own[0] || at[0] || "") };
  }
  function jsonOrNull(value) {
    try {
      return wellFormed(JSON.stringify(value === undefined ? null : value));
    } catch (e) {
      return JSON.stringify({ __unserialisable: String(e.message) });
    }
  }
  const host = {
    has(name) { return typeof handlerNamed(name) === "function"; },
    setLimits(text) { Object.assign(limits, JSON.parse(text)); },
    // Start a handler; "missing" when the code defines none of that name.
    start(name, argsText) {
      const handler = handlerNamed(name);
      state = { queue: [], pending: new Map(), logs: [], emitted: [], fetchCount: 0, consoleSize: 0,
        consoleKept: 0, consoleDropped: 0, done: null, fatal: null, missing: false };
      if (typeof handler !== "function") {
        state.missing = true;
        return "missing";
      }
      let args = JSON.parse(argsText);
      if (name === "onRequest") args = [makeRequest(args[0]), args[1]];
      try {
        Promise.resolve(handler.apply(undefined, args)).then(
          (value) => { state.done = { ok: true, value: jsonOrNull(value) }; },
          (error) => { state.done = { ok: false, error: describe(error) }; });
      } catch (error) {
        state.done = { ok: false, error: describe(error) };
      }
      return "started";
    },
    // What the host must do next: the fetch calls made since the last look, and whether the handler settled.
    // The last step (settled, a fatal error, or waiting on nothing) carries what finish() would, and ends the
    // invocation: one call less across the host's boundary per invocation.
    take() {
      const calls = state.queue;
      state.queue = [];
      const step = { calls: calls, done: state.done, fatal: state.fatal, waiting: state.pending.size,
        missing: state.missing };
      if (state.done || state.fatal || state.missing || !calls.length) {
        Object.assign(step, { logs: state.logs, dropped: state.consoleDropped, emitted: state.emitted, last: true });
        state = null;
      }
      return wellFormed(JSON.stringify(step));
    },
    answer(id, text) {
      const call = state.pending.get(id);
      state.pending.delete(id);
      const r = JSON.parse(text);
      call.resolve(new Response(r.body, { status: r.status, statusText: r.statusText, headers: r.headers,
        url: r.url }));
    },
    refuse(id, message) {
      const call = state.pending.get(id);
      state.pending.delete(id);
      const error = new Error("request to " + call.url + " failed, reason: " + message);
      error.name = "FetchError";
      error.type = "system";
      call.reject(error);
    },
    finish() {
      if (!state) return JSON.stringify({ logs: [], dropped: 0, emitted: [] });
      const out = wellFormed(
        JSON.stringify({ logs: state.logs, dropped: state.consoleDropped, emitted: state.emitted }));
      state = null;
      return out;
    },
  };

  // A handler declared `async function onTrack` is a property of the global object; one declared
  // `const onTrack = async (…) => …` is a binding of the global scope only, which an indirect eval sees.
  const indirectEval = eval;
  function handlerNamed(name) {
    if (!/^on[A-Z][A-Za-z]+$/.test(name)) return undefined;
    try {
      return indirectEval("typeof " + name + " === 'function' ? " + name + " : undefined");
    } catch (e) {
      return undefined;
    }
  }

  function makeRequest(incoming) {
    const request = new Request(incoming.url, { method: incoming.method, headers: incoming.headers,
      body: incoming.body });
    request.url = new URL(incoming.url);
    let parsed;
    request.json = function () {
      // Synchronous, as Segment's docs show it (request.json()); awaiting it works too.
      if (parsed === undefined) parsed = JSON.parse(this._body);
      return parsed;
    };
    request.text = function () { return this._body; };
    return request;
  }

  const globals = {
    RetryError, EventNotSupported, InvalidEventPayload, ValidationError, DropEvent, console, btoa, atob,
    Headers, Response, Request, fetch, Segment, cache, require,
  };
  for (const name of Object.keys(globals)) {
    Object.defineProperty(global, name, { value: globals[name], writable: true, configurable: true });
  }
  Object.defineProperty(global, "__cdphub", { value: Object.freeze(host), writable: false, configurable: false });
  for (const name of ["setTimeout", "setInterval", "clearTimeout", "clearInterval", "setImmediate"]) {
    global[name] = function () {
      throw fatal("forbidden", name + " is not available: functions have no timers; await each fetch instead");
    };
  }
  Object.defineProperty(global, "process", {
    configurable: true,
    get() {
      throw fatal("forbidden", "process is not available: functions cannot reach the host. " +
        "Settings come as the handler's second argument");
    },
  });
})(globalThis);
