// Image page: class buttons and shortcuts (with the annotation version, so a
// concurrent change is a readable 409, not a lost update), accept the
// suggestion, prev/next, and the most similar images.
import {
  api, ApiError, classButtons, classChip, classIndex, el, getJSON, pageData, showError, thumbTile, toast,
  typingInField, undoAction,
} from "./common.js";

const data = pageData();
const datasetId = data.dataset.id;
const classes = data.classes;
const { byId: classById, byShortcut } = classIndex(classes);
const image = data.image;
const canLabel = data.allowed_actions.includes("label");

function renderCurrent() {
  const box = document.getElementById("current-class");
  const cls = classById.get(image.class);
  box.replaceChildren(cls ? classChip(cls) : el("span", { class: "muted", text: "Unlabeled" }));
  for (const button of document.querySelectorAll("#class-buttons button")) {
    button.classList.toggle("primary", Number(button.dataset.classId) === image.class);
  }
}

// The history card, rebuilt from the server's record after each change or undo
// (so undo rows and other people's changes show as they will after a reload).
async function renderHistory() {
  const table = document.getElementById("history");
  if (!table) return;
  const rows = (await getJSON(`/api/images/${image.id}/history/`)) || [];
  const nameOf = (id) => classById.get(id)?.name ?? "unlabeled";
  table.querySelector("tbody").replaceChildren(...rows.slice(0, image.history_rows || 100).map((row) => el("tr", {},
    // The server's own clock and time zone, as the page rendered them.
    el("td", { class: "nowrap small", text: String(row.created).slice(0, 19).replace("T", " ") }),
    el("td", { text: row.username || "—" }),
    el("td", { text: `${nameOf(row.old_class)} → ${nameOf(row.new_class)}` }),
    el("td", { class: "small" }, row.undo_of ? "Undo" : (image.sources || {})[row.source] || row.source, " ",
      el("span", { class: "muted", text: `#${row.action_id}` })))));
  table.classList.toggle("hidden", !rows.length);
  document.getElementById("history-empty")?.classList.toggle("hidden", rows.length > 0);
}

async function setClass(cls) {
  if (!canLabel) return;
  try {
    const result = cls
      ? await api("PUT", `/api/images/${image.id}/annotation/`, { class: cls.id, version: image.annotation_version })
      : await api("DELETE", `/api/images/${image.id}/annotation/?version=${image.annotation_version}`);
    image.class = result.class;
    image.annotation_version = result.annotation_version;
    renderCurrent();
    renderHistory().catch(showError);
    const message = cls ? `Labeled as ${cls.name}.` : "Class cleared.";
    toast(message, {
      kind: "success",
      action: result.action_id ? { label: "Undo", run: () => undoAction(datasetId, result.action_id, () => refresh()) } : null,
    });
  } catch (err) {
    if (err instanceof ApiError && err.status === 409) {
      toast("Someone changed this image's class while you were looking at it; the page now shows the current class. Choose again if needed.",
        { kind: "warning", timeout: 12000 });
      await refresh();
    } else {
      showError(err);
    }
  }
}

async function refresh() {
  const current = await getJSON(`/api/images/${image.id}/`);
  image.class = current.class;
  image.annotation_version = current.annotation_version;
  renderCurrent();
  await renderHistory();
}

async function loadSimilar() {
  const box = document.getElementById("similar");
  if (!box) return;
  try {
    const similar = await getJSON(`/api/images/${image.id}/similar/?k=24`);
    if (!similar || !similar.length) {
      box.replaceChildren(el("p", { class: "muted", text: "Similar images appear once the dataset has a map." }));
      return;
    }
    box.replaceChildren(...similar.map((item) => {
      const cls = classById.get(item.class);
      const tile = thumbTile(item.id, { tag: "a", cls, title: `distance ${Number(item.distance).toFixed(3)}` });
      return tile;
    }));
  } catch (err) {
    box.replaceChildren(el("p", { class: "muted", text: err.message }));
  }
}

if (canLabel) {
  const buttons = document.getElementById("class-buttons");
  if (buttons) classButtons(buttons, classes, (cls) => setClass(cls));
  document.getElementById("clear-class")?.addEventListener("click", () => setClass(null));
  document.getElementById("accept-suggestion")?.addEventListener("click", () => setClass(classById.get(image.suggestion)));
}
renderCurrent();

document.addEventListener("keydown", (event) => {
  if (typingInField(event) || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "[" && image.previous) { window.location.href = `/images/${image.previous}/`; return; }
  if (event.key === "]" && image.next) { window.location.href = `/images/${image.next}/`; return; }
  if (!canLabel) return;
  const cls = byShortcut.get(event.key.toLowerCase());
  if (cls) { event.preventDefault(); setClass(cls); return; }
  if (event.key === "a" && image.suggestion) { event.preventDefault(); setClass(classById.get(image.suggestion)); return; }
  // Clearing has its own keys: every printable key (digits included) may be a class's shortcut.
  if (event.key === "Delete" || event.key === "Backspace") { event.preventDefault(); setClass(null); }
});

loadSimilar();
document.body.dataset.imageReady = "true";
