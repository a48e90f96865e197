// Grid labeling: unlabeled images in map order (cluster, then position), in
// largest-cluster-first order, or in upload order, driven by the keyboard.
import {
  api, classButtons, classIndex, expectedVersions, getJSON, imagePageUrl, pageData, postJSON, reportWriteError,
  setTileClass, showError, thumbTile, toast, typingInField, undoAction,
} from "./common.js";

const data = pageData();
const datasetId = data.dataset.id;
const classes = data.classes;
const { byId: classById, byShortcut } = classIndex(classes);
const order = data.order || "map";
const CHUNK = 200;

const grid = document.getElementById("label-grid");
const loadMoreButton = document.getElementById("load-more");
const undoButton = document.getElementById("undo-button");
const state = {
  items: [], // {id, cls, version}: version is the annotation version as read, sent with every write
  tiles: [],
  nextPage: null, // API url when images come page by page (no map yet, or upload order)
  total: 0,
  done: 0,
  focus: 0,
  selected: new Set(),
  undo: [], // {actionId, changes: [{index, before}]}
  busy: false,
};

async function loadFromMap() {
  const map = await getJSON(`/api/datasets/${datasetId}/map/`);
  const n = map && map.image_ids ? map.image_ids.length : 0;
  if (!n) return false;
  const unlabeled = [];
  const clusterSize = new Map();
  for (let i = 0; i < n; i++) clusterSize.set(map.cluster[i], (clusterSize.get(map.cluster[i]) || 0) + 1);
  for (let i = 0; i < n; i++) if (map.class[i] == null) unlabeled.push(i);
  unlabeled.sort((a, b) => {
    if (order === "cluster") {
      const bySize = clusterSize.get(map.cluster[b]) - clusterSize.get(map.cluster[a]);
      if (bySize) return bySize;
    }
    return map.cluster[a] - map.cluster[b] || map.x[a] - map.x[b] || map.y[a] - map.y[b];
  });
  state.items = unlabeled.map((i) => ({ id: map.image_ids[i], cls: null, version: map.version ? map.version[i] : 0 }));
  state.total = state.items.length;
  return true;
}

async function loadPage() {
  if (!state.nextPage) return;
  const page = await getJSON(state.nextPage);
  state.nextPage = page.next ? new URL(page.next, location.href).pathname + new URL(page.next, location.href).search : null;
  state.total = page.count;
  for (const image of page.results) state.items.push({ id: image.id, cls: null, version: image.annotation_version });
}

function renderMore() {
  const start = state.tiles.length;
  const end = Math.min(state.items.length, start + CHUNK);
  const fragment = document.createDocumentFragment();
  for (let index = start; index < end; index++) {
    const item = state.items[index];
    const tile = thumbTile(item.id, { cls: classById.get(item.cls) });
    tile.tabIndex = -1;
    tile.addEventListener("click", (event) => {
      if (event.shiftKey || event.ctrlKey || event.metaKey) toggleSelected(index);
      setFocus(index);
    });
    tile.addEventListener("dblclick", () => { window.location.href = imagePageUrl(item.id); });
    state.tiles.push(tile);
    fragment.append(tile);
  }
  grid.append(fragment);
  loadMoreButton.classList.toggle("hidden", state.tiles.length >= state.items.length && !state.nextPage);
  document.getElementById("grid-empty").classList.toggle("hidden", state.items.length > 0);
}

async function ensureRendered(index) {
  while (index >= state.tiles.length - 20) {
    if (state.tiles.length < state.items.length) renderMore();
    else if (state.nextPage) { await loadPage(); renderMore(); }
    else break;
  }
}

function setFocus(index) {
  if (!state.tiles.length) return;
  index = Math.max(0, Math.min(index, state.tiles.length - 1));
  state.tiles[state.focus]?.classList.remove("focused");
  state.focus = index;
  const tile = state.tiles[index];
  tile.classList.add("focused");
  tile.scrollIntoView({ block: "nearest" });
  ensureRendered(index).catch(showError);
}

function toggleSelected(index) {
  if (state.selected.has(index)) state.selected.delete(index); else state.selected.add(index);
  state.tiles[index].classList.toggle("selected", state.selected.has(index));
  updateCounters();
}

function columns() {
  const tiles = state.tiles;
  if (tiles.length < 2) return 1;
  const top = tiles[0].offsetTop;
  let n = 1;
  while (n < tiles.length && tiles[n].offsetTop === top) n++;
  return n;
}

function updateCounters() {
  const remaining = state.items.filter((item) => item.cls === null).length + Math.max(0, state.total - state.items.length);
  document.getElementById("count-remaining").textContent = String(remaining);
  document.getElementById("count-done").textContent = String(state.done);
  document.getElementById("count-selected").textContent = String(state.selected.size);
  undoButton.disabled = !state.undo.length;
}

async function label(cls) {
  if (state.busy || !state.tiles.length) return;
  const indices = state.selected.size ? [...state.selected].sort((a, b) => a - b) : [state.focus];
  const changes = indices.map((index) => ({ index, before: state.items[index].cls }));
  state.busy = true;
  try {
    let actionId;
    const newVersion = new Map();
    if (indices.length === 1) {
      const item = state.items[indices[0]];
      // With the version this page read: a label set by someone else since is a 409, not overwritten.
      const result = await api("PUT", `/api/images/${item.id}/annotation/`, { class: cls.id, version: item.version });
      actionId = result.action_id;
      newVersion.set(item.id, result.annotation_version);
    } else {
      const ids = indices.map((index) => state.items[index].id);
      const byId = new Map(indices.map((index) => [state.items[index].id, state.items[index].version]));
      const result = await postJSON(`/api/datasets/${datasetId}/annotations/bulk/`, {
        class: cls.id, image_ids: ids, expected: expectedVersions(ids, byId),
      });
      actionId = result.action_id;
      for (const [id, version] of Object.entries(result.versions || {})) newVersion.set(Number(id), version);
    }
    for (const { index, before } of changes) {
      if (before === null) state.done += 1;
      const item = state.items[index];
      if (newVersion.has(item.id)) item.version = newVersion.get(item.id);
      state.items[index].cls = cls.id;
      setTileClass(state.tiles[index], cls);
      state.tiles[index].classList.remove("selected");
    }
    state.selected.clear();
    if (actionId) state.undo.push({ actionId, changes, cls });
    // Move on to the next image still unlabeled after the last one labeled.
    let next = indices[indices.length - 1] + 1;
    while (next < state.tiles.length && state.items[next].cls !== null) next++;
    setFocus(Math.min(next, state.tiles.length - 1));
  } catch (err) {
    // Someone else labeled it first: nothing was written; show what they chose.
    await reportWriteError(err, () => showCurrentLabels(indices));
  } finally {
    state.busy = false;
    updateCounters();
  }
}

// After a lost race: read the images' labels and versions again and show them
// on their tiles (a tile someone else labeled shows their class).
async function showCurrentLabels(indices) {
  const images = await Promise.all(indices.map((index) => getJSON(`/api/images/${state.items[index].id}/`)));
  indices.forEach((index, j) => {
    const item = state.items[index];
    item.cls = images[j].class ?? null;
    item.version = images[j].annotation_version;
    setTileClass(state.tiles[index], classById.get(item.cls));
    state.tiles[index].classList.remove("selected");
    state.tiles[index].classList.add("conflict");
  });
  state.selected.clear();
}

async function undo() {
  const last = state.undo.pop();
  if (!last) { toast("Nothing to undo on this page."); return; }
  updateCounters();
  await undoAction(datasetId, last.actionId, (result) => {
    const conflicts = new Set((result && result.conflicts) || []);
    const versions = (result && result.versions) || {};
    for (const { index, before } of last.changes) {
      if (conflicts.has(state.items[index].id)) continue;
      if (versions[state.items[index].id] !== undefined) state.items[index].version = versions[state.items[index].id];
      if (before === null && state.items[index].cls !== null) state.done -= 1;
      state.items[index].cls = before;
      setTileClass(state.tiles[index], classById.get(before));
    }
    setFocus(last.changes[0].index);
    updateCounters();
  });
}

document.addEventListener("keydown", (event) => {
  if (typingInField(event)) return;
  // z, Ctrl+Z and Cmd+Z undo this page's last action.
  if (event.key.toLowerCase() === "z" && !event.altKey && !event.shiftKey) {
    event.preventDefault();
    undo();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const cols = columns();
  switch (event.key) {
    case "ArrowRight": event.preventDefault(); setFocus(state.focus + 1); return;
    case "ArrowLeft": event.preventDefault(); setFocus(state.focus - 1); return;
    case "ArrowDown": event.preventDefault(); setFocus(state.focus + cols); return;
    case "ArrowUp": event.preventDefault(); setFocus(state.focus - cols); return;
    case " ": event.preventDefault(); if (state.tiles.length) toggleSelected(state.focus); return;
    case "Enter": if (state.tiles.length) window.location.href = imagePageUrl(state.items[state.focus].id); return;
    case "Escape": for (const index of state.selected) state.tiles[index].classList.remove("selected"); state.selected.clear(); updateCounters(); return;
    default: break;
  }
  const cls = byShortcut.get(event.key.toLowerCase());
  if (cls) { event.preventDefault(); label(cls); }
});

undoButton.addEventListener("click", () => undo());
loadMoreButton.addEventListener("click", async () => {
  if (state.tiles.length < state.items.length) renderMore();
  else if (state.nextPage) { await loadPage(); renderMore(); }
});
classButtons(document.getElementById("class-buttons"), classes, (cls) => label(cls));

async function start() {
  try {
    const fromMap = order !== "upload" && await loadFromMap();
    if (!fromMap) {
      state.nextPage = `/api/datasets/${datasetId}/images/?unlabeled=true&page_size=200`;
      await loadPage();
    }
    renderMore();
    setFocus(0);
    // Keys go to the grid, but the page stays at the top: scrolling the grid into
    // view would hide the heading and class buttons under the sticky top bar.
    grid.focus({ preventScroll: true });
  } catch (err) {
    showError(err);
  }
  updateCounters();
  document.body.dataset.gridReady = "true";
}

start();
