// Shared helpers for every page: the JSON API client, messages, DOM building.
// User-typed text is only ever put into the page with textContent.

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

// A readable sentence from a DRF-style error body ({detail} or {field: [msgs]}).
export function errorMessage(body, status) {
  if (!body) return `The server answered ${status}.`;
  if (typeof body === "string") return body;
  if (body.detail) return String(body.detail);
  if (body.message) return String(body.message);
  const parts = [];
  for (const [field, value] of Object.entries(body)) {
    const text = Array.isArray(value) ? value.join(" ") : typeof value === "object" ? JSON.stringify(value) : String(value);
    parts.push(field === "non_field_errors" ? text : `${field}: ${text}`);
  }
  return parts.length ? parts.join("; ") : `The server answered ${status}.`;
}

export async function api(method, url, body) {
  const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (method !== "GET" && method !== "HEAD") options.headers["X-CSRFToken"] = csrfToken();
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, options);
  } catch (err) {
    throw new ApiError(0, "The server could not be reached. Check your connection and try again.", null);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text.slice(0, 300); }
  }
  if (!response.ok) {
    let message = errorMessage(data, response.status);
    if (response.status === 401 || response.status === 403 && /credentials/i.test(message)) {
      message = "Your session has ended: log in again.";
    }
    throw new ApiError(response.status, message, data);
  }
  return data;
}

export const getJSON = (url) => api("GET", url);
export const postJSON = (url, body) => api("POST", url, body ?? {});

// Element builder: el("div", {class: "x", dataset: {id: 1}, onclick: fn}, child, "text").
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "style") for (const [p, v] of Object.entries(value)) node.style.setProperty(p, v);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function pageData(id = "page-data") {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : {};
}

// A message in the corner; `action` adds a button (e.g. Undo). Returns a close function.
export function toast(message, { kind = "", action = null, timeout = 6000 } = {}) {
  let box = document.getElementById("toast");
  if (!box) {
    box = el("div", { id: "toast", "aria-live": "polite" });
    document.body.append(box);
  }
  const note = el("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, el("span", { text: message }));
  if (action) note.append(el("button", { class: "small", type: "button", onclick: () => { action.run(); close(); } }, action.label));
  note.append(el("button", { class: "small", type: "button", "aria-label": "Dismiss", onclick: () => close() }, "×"));
  box.append(note);
  let timer = timeout ? setTimeout(() => close(), timeout) : null;
  function close() {
    if (timer) clearTimeout(timer);
    timer = null;
    note.remove();
  }
  return close;
}

export function showError(err) {
  const message = err instanceof ApiError ? err.message : `Something went wrong: ${err && err.message ? err.message : err}`;
  toast(message, { kind: "error", timeout: 10000 });
  if (!(err instanceof ApiError)) console.warn(err);
}

// Plotly renders trace names and hover text as a small HTML subset: escape user text.
export function escapeForPlotly(text) {
  return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export const thumbnailUrl = (id) => `/images/${id}/thumbnail/`;
export const imagePageUrl = (id) => `/images/${id}/`;

export function classIndex(classes) {
  const byId = new Map();
  const byShortcut = new Map();
  for (const cls of classes) {
    byId.set(cls.id, cls);
    if (cls.shortcut) byShortcut.set(cls.shortcut.toLowerCase(), cls);
  }
  return { byId, byShortcut };
}

// True when a key press is meant for a text field, so page shortcuts stay out of the way.
export function typingInField(event) {
  const target = event.target;
  if (!target || !target.tagName) return false;
  const tag = target.tagName.toLowerCase();
  return tag === "input" && !["checkbox", "radio", "button", "submit"].includes(target.type)
    || tag === "textarea" || tag === "select" || target.isContentEditable;
}

// A class chip: swatch + name (textContent).
export function classChip(cls, extra = "") {
  const chip = el("span", { class: "chip", style: { "--class-color": cls ? cls.color : "#adb5bd" } },
    el("span", { class: "swatch" }), cls ? cls.name : "unlabeled");
  if (extra !== "") chip.append(el("b", { text: String(extra) }));
  return chip;
}

// A class menu for a bulk label that never picks a class by itself (the first
// option used to be selected by default, so a click labeled a cluster as the
// first class): `suggested` (a class) is pre-selected and marked "suggested",
// otherwise a "Choose a class…" placeholder is, and `button` stays disabled
// until a class is chosen.  menu.chosen() is the chosen class or null.
export function classMenu(classes, { suggested = null, button = null, label = "Class", className = "" } = {}) {
  const menu = el("select", { "aria-label": label, class: className },
    el("option", { value: "", disabled: true, selected: !suggested }, "Choose a class…"),
    ...classes.map((cls) => el("option", { value: cls.id, selected: Boolean(suggested) && cls.id === suggested.id },
      suggested && cls.id === suggested.id ? `${cls.name} (suggested)` : cls.name)));
  const byId = new Map(classes.map((cls) => [String(cls.id), cls]));
  menu.chosen = () => byId.get(menu.value) || null;
  const sync = () => {
    if (!button) return;
    button.disabled = !menu.chosen();
    button.title = menu.chosen() ? "" : "Choose a class first";
  };
  menu.addEventListener("change", sync);
  sync();
  return menu;
}

// A thumbnail tile for image `id`; the caller wires clicks.
export function thumbTile(id, { cls = null, title = "", tag = "button", href = null } = {}) {
  const attrs = { class: "thumb", dataset: { imageId: id }, title: title || `Image ${id}` };
  if (tag === "a") attrs.href = href || imagePageUrl(id);
  else attrs.type = "button";
  const tile = el(tag, attrs, el("img", { src: thumbnailUrl(id), alt: `image ${id}`, loading: "lazy", decoding: "async" }));
  setTileClass(tile, cls);
  return tile;
}

export function setTileClass(tile, cls) {
  tile.classList.toggle("labeled", !!cls);
  tile.style.setProperty("--class-color", cls ? cls.color : "transparent");
  let tagNode = tile.querySelector(".tag");
  if (cls) {
    if (!tagNode) { tagNode = el("span", { class: "tag" }); tile.append(tagNode); }
    tagNode.textContent = cls.name;
  } else if (tagNode) {
    tagNode.remove();
  }
}

// Buttons for each class with its shortcut; onPick(cls) is called on click.
export function classButtons(container, classes, onPick) {
  container.replaceChildren();
  for (const cls of classes) {
    const button = el("button", { type: "button", class: "class-button", style: { "--class-color": cls.color }, dataset: { classId: cls.id } },
      el("span", { class: "swatch", style: { "--class-color": cls.color } }), cls.name);
    if (cls.shortcut) button.append(el("kbd", { text: cls.shortcut }));
    button.addEventListener("click", () => onPick(cls));
    container.append(button);
  }
  if (!classes.length) container.append(el("span", { class: "muted small", text: "No classes yet: an admin adds them on the dataset page." }));
}

// Actions this page has undone, so a second Undo for one (a toast and the
// last-action bar both offer it) says so instead of asking the server again.
const undoneActions = new Set();

// Undo exactly the label action `actionId` (the one a toast or button belongs
// to, never "the newest"), then call `after(result)` (e.g. refresh the view).
export async function undoAction(datasetId, actionId, after) {
  if (!actionId) return;
  if (undoneActions.has(actionId)) { toast("That action is already undone."); return; }
  try {
    const result = await postJSON(`/api/datasets/${datasetId}/actions/${actionId}/undo/`);
    undoneActions.add(actionId);
    const conflicts = (result && result.conflicts) ? result.conflicts.length : 0;
    const restored = result && result.restored !== undefined ? result.restored : "";
    toast(conflicts
      ? `Undone: ${restored} restored; ${conflicts} image(s) were changed since and kept their new class.`
      : `Undone${restored !== "" ? `: ${restored} image(s) restored` : ""}.`, { kind: "success" });
    if (after) await after(result);
  } catch (err) {
    showError(err);
  }
}

// A write refused because someone changed the images after this page read
// them (409 stale_version / stale_versions): nothing was written.
export function isStaleWrite(err) {
  return err instanceof ApiError && err.status === 409 && !!err.body
    && (err.body.code === "stale_versions" || err.body.code === "stale_version");
}

// Shows why a label write failed. A lost race is told to the person as such,
// then `refresh()` brings the page to what the server now holds, so they can
// look and choose again; other errors are shown as errors.
export async function reportWriteError(err, refresh) {
  if (!isStaleWrite(err)) { showError(err); return; }
  const count = err.body.conflict_count ?? (err.body.conflicts ? err.body.conflicts.length : 1);
  const message = err.body.code === "stale_versions"
    ? `Not saved: someone else changed ${count} of these images since this page loaded them. `
      + "The page now shows their current labels; choose again if needed."
    : "Not saved: someone else changed this image's label since this page loaded it. "
      + "The page now shows its current label; choose again if needed.";
  toast(message, { kind: "warning conflict", timeout: 20000 });
  if (refresh) {
    try { await refresh(err.body); } catch (refreshErr) { showError(refreshErr); }
  }
}

// {image id: annotation version} for `ids`, read from `versionOf` (a Map or a
// function): the state a bulk write saw, sent as its `expected`.
export function expectedVersions(ids, versionOf) {
  const read = typeof versionOf === "function" ? versionOf : (id) => versionOf.get(id);
  const expected = {};
  for (const id of ids) {
    const version = read(id);
    if (version !== undefined && version !== null) expected[id] = version;
  }
  return expected;
}

// Confirmation for forms and buttons marked data-confirm (no inline handlers under our CSP).
document.addEventListener("submit", (event) => {
  const form = event.target;
  const message = form.dataset ? form.dataset.confirm : null;
  if (message && !window.confirm(message)) event.preventDefault();
});
