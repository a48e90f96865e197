// The cluster map: a Plotly scattergl of the current run's points, built from
// the columnar /api/datasets/<id>/map/ answer with typed arrays (one trace per
// class or cluster, no per-point objects), with hover previews, lasso/box
// selection, bulk labeling in one request, and undo.
import {
  classButtons, classIndex, el, escapeForPlotly, getJSON, imagePageUrl, pageData, postJSON, reportWriteError, showError,
  thumbnailUrl, toast, typingInField, undoAction,
} from "./common.js";

const Plotly = window.Plotly;
const data = pageData();
const datasetId = data.dataset.id;
const classes = data.classes;
const { byId: classById, byShortcut } = classIndex(classes);
const canLabel = data.allowed_actions.includes("label");
const initial = data.initial || {};
const SELECTION_PAGE = 100;
// The server checks at most this many `expected` versions per write (MAX_BULK_IMAGES);
// a larger selection is sent without them (the write then cannot tell it lost a race).
const MAX_EXPECTED = 100000;
const UNLABELED_COLOR = "#adb5bd";
const CLUSTER_PALETTE = [
  "#4c6ef5", "#f76707", "#37b24d", "#f03e3e", "#ae3ec9", "#a9745b", "#e64980", "#868e96", "#94d82d", "#15aabf",
  "#364fc7", "#5c940d", "#e67700", "#c92a2a", "#862e9c", "#1c7ed6", "#d9480f", "#2b8a3e", "#7048e8", "#495057",
];

const plot = document.getElementById("map-plot");
const state = {
  points: null, // typed columns
  traces: [], // per trace: Int32Array of point indices
  colorMode: initial.color || (classes.length ? "class" : "cluster"),
  unlabeledOnly: !!initial.unlabeled,
  classFilter: initial.class ?? null,
  clusterFilter: initial.cluster ?? null,
  dragmode: "lasso",
  selection: null, // {indices: Int32Array, excluded: Set<imageId>, polygon, page}
  selectionRevision: 0, // Plotly's selectionrevision: bumped whenever the selection is cleared
  lastAction: null,
  drawn: false,
};

// --- data ----------------------------------------------------------------------------------

function columns(answer) {
  const n = answer.image_ids ? answer.image_ids.length : 0;
  const ids = Int32Array.from(answer.image_ids || []);
  const x = Float32Array.from(answer.x || []);
  const y = Float32Array.from(answer.y || []);
  const cluster = Int32Array.from(answer.cluster || []);
  // Each image's annotation version as read: bulk writes send them, so a label
  // someone set after this read is never overwritten unseen.
  const version = Int32Array.from(answer.version || new Array(n).fill(0));
  const cls = new Int32Array(n);
  const suggestion = new Int32Array(n);
  const confidence = new Float32Array(n);
  const classCol = answer.class || [];
  const suggestionCol = answer.suggestion || [];
  const confidenceCol = answer.confidence || [];
  const indexOfId = new Map();
  for (let i = 0; i < n; i++) {
    cls[i] = classCol[i] == null ? -1 : classCol[i];
    suggestion[i] = suggestionCol[i] == null ? -1 : suggestionCol[i];
    confidence[i] = confidenceCol[i] == null ? NaN : confidenceCol[i];
    indexOfId.set(ids[i], i);
  }
  return { run: answer.run, n, ids, x, y, cluster, cls, suggestion, confidence, version, indexOfId };
}

const timings = {};

async function loadMap() {
  const answer = await getJSON(`/api/datasets/${datasetId}/map/`);
  timings.fetchedAt = timings.fetchedAt ?? performance.now();
  state.points = columns(answer || {});
  return state.points;
}

// --- traces ---------------------------------------------------------------------------------

function passesFilters(p, i) {
  if (state.unlabeledOnly && p.cls[i] !== -1) return false;
  if (state.classFilter !== null && p.cls[i] !== state.classFilter) return false;
  if (state.clusterFilter !== null && p.cluster[i] !== state.clusterFilter) return false;
  return true;
}

function groupIndices(p, keyOf) {
  const counts = new Map();
  for (let i = 0; i < p.n; i++) {
    if (!passesFilters(p, i)) continue;
    const key = keyOf(i);
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  const groups = new Map();
  for (const [key, count] of counts) groups.set(key, { indices: new Int32Array(count), fill: 0 });
  for (let i = 0; i < p.n; i++) {
    if (!passesFilters(p, i)) continue;
    const group = groups.get(keyOf(i));
    group.indices[group.fill++] = i;
  }
  return groups;
}

function pick(column, indices) {
  const out = new Float32Array(indices.length);
  for (let j = 0; j < indices.length; j++) out[j] = column[indices[j]];
  return out;
}

function clusterColor(k) {
  return k < CLUSTER_PALETTE.length ? CLUSTER_PALETTE[k] : `hsl(${(k * 137.508) % 360}, 62%, 48%)`;
}

function markerSize(n) {
  return n > 50000 ? 3 : n > 10000 ? 4 : n > 2000 ? 5 : 7;
}

function buildTraces() {
  const p = state.points;
  const size = markerSize(p.n);
  const traces = [];
  const indexArrays = [];
  const add = (indices, name, marker, extra = {}) => {
    traces.push({
      type: "scattergl", mode: "markers", x: pick(p.x, indices), y: pick(p.y, indices), name,
      marker: { size, opacity: 0.85, ...marker }, hoverinfo: "none", ...extra,
    });
    indexArrays.push(indices);
  };
  if (state.colorMode === "cluster") {
    const groups = groupIndices(p, (i) => p.cluster[i]);
    for (const key of [...groups.keys()].sort((a, b) => a - b)) {
      const g = groups.get(key);
      add(g.indices, `cluster ${key} (${g.indices.length})`, { color: clusterColor(key) });
    }
  } else if (state.colorMode === "confidence") {
    const groups = groupIndices(p, (i) => (Number.isNaN(p.confidence[i]) ? 0 : 1));
    if (groups.has(0)) add(groups.get(0).indices, `no suggestion (${groups.get(0).indices.length})`, { color: UNLABELED_COLOR });
    if (groups.has(1)) {
      const indices = groups.get(1).indices;
      add(indices, `suggestion confidence (${indices.length})`, {
        color: pick(p.confidence, indices), colorscale: "Viridis", cmin: 0, cmax: 1, showscale: true,
        colorbar: { title: { text: "confidence" }, thickness: 12, len: 0.6 },
      });
    }
  } else {
    const groups = groupIndices(p, (i) => p.cls[i]);
    if (groups.has(-1)) add(groups.get(-1).indices, `unlabeled (${groups.get(-1).indices.length})`, { color: UNLABELED_COLOR, opacity: 0.6 });
    for (const cls of classes) {
      if (!groups.has(cls.id)) continue;
      const g = groups.get(cls.id);
      add(g.indices, `${escapeForPlotly(cls.name)} (${g.indices.length})`, { color: cls.color });
    }
  }
  state.traces = indexArrays;
  return traces;
}

function layout() {
  const axis = { showgrid: false, zeroline: false, showticklabels: false, showline: false };
  return {
    // The top margin is the modebar's strip (about 25 px at the top right): the
    // legend starts below it instead of under its buttons.
    margin: { l: 8, r: 8, t: 36, b: 8 },
    dragmode: state.dragmode,
    hovermode: "closest",
    showlegend: true,
    legend: { itemsizing: "constant", bgcolor: "rgba(255,255,255,0.8)", x: 1, xanchor: "right", y: 1 },
    xaxis: axis,
    yaxis: { ...axis, scaleanchor: "x", scaleratio: 1 },
    // Filters re-zoom to what is shown; recoloring keeps the user's zoom.
    uirevision: `${state.classFilter}|${state.clusterFilter}|${state.unlabeledOnly}`,
    selectionrevision: state.selectionRevision,
    plot_bgcolor: "#ffffff",
    paper_bgcolor: "#ffffff",
  };
}

const plotConfig = {
  responsive: true, displaylogo: false, scrollZoom: true,
  modeBarButtonsToRemove: ["autoScale2d", "toggleSpikelines", "hoverClosestCartesian", "hoverCompareCartesian"],
};

async function draw() {
  const traces = buildTraces();
  if (!state.drawn) {
    await Plotly.newPlot(plot, traces, layout(), plotConfig);
    state.drawn = true;
    wirePlotEvents();
  } else {
    await Plotly.react(plot, traces, layout(), plotConfig);
  }
  renderCounts();
  renderSuggestions();
}

// --- hover and click ---------------------------------------------------------------------

const hoverCard = document.getElementById("hover-card");
const hoverImg = document.getElementById("hover-img");
const hoverText = document.getElementById("hover-text");

function pointIndex(pt) {
  const indices = state.traces[pt.curveNumber];
  const j = pt.pointIndex ?? pt.pointNumber;
  return indices ? indices[j] : undefined;
}

function describe(i) {
  const p = state.points;
  const cls = classById.get(p.cls[i]);
  const parts = [`#${p.ids[i]}`, cls ? cls.name : "unlabeled", `cluster ${p.cluster[i]}`];
  const sug = classById.get(p.suggestion[i]);
  if (sug && !cls) parts.push(`suggests ${sug.name}${Number.isNaN(p.confidence[i]) ? "" : ` ${Math.round(p.confidence[i] * 100)}%`}`);
  return parts.join(" · ");
}

function wirePlotEvents() {
  plot.on("plotly_hover", (ev) => {
    const pt = ev && ev.points && ev.points[0];
    if (!pt) return;
    const i = pointIndex(pt);
    if (i === undefined) return;
    hoverImg.src = thumbnailUrl(state.points.ids[i]);
    hoverText.textContent = describe(i);
    const mouse = ev.event || {};
    const left = (mouse.clientX || 0) + 16;
    const top = (mouse.clientY || 0) + 16;
    hoverCard.style.left = `${Math.min(left, window.innerWidth - 160)}px`;
    hoverCard.style.top = `${Math.min(top, window.innerHeight - 190)}px`;
    hoverCard.classList.remove("hidden");
  });
  plot.on("plotly_unhover", () => hoverCard.classList.add("hidden"));
  plot.on("plotly_click", (ev) => {
    const pt = ev && ev.points && ev.points[0];
    if (!pt) return;
    const i = pointIndex(pt);
    if (i === undefined) return;
    const url = imagePageUrl(state.points.ids[i]);
    if (ev.event && (ev.event.ctrlKey || ev.event.metaKey)) window.open(url, "_blank", "noopener");
    else window.location.href = url;
  });
  plot.on("plotly_selected", (ev) => onSelected(ev));
  plot.on("plotly_deselect", () => setSelection(null));
  plot.on("plotly_legendclick", () => { setTimeout(() => { if (state.selection) renderSelection(); }, 0); return true; });
}

// --- selection ----------------------------------------------------------------------------

function allPointsShown() {
  if (state.unlabeledOnly || state.classFilter !== null || state.clusterFilter !== null) return false;
  return (plot.data || []).every((trace) => trace.visible === undefined || trace.visible === true);
}

function onSelected(ev) {
  if (!ev || !ev.points || !ev.points.length) {
    setSelection(null);
    return;
  }
  const indices = new Int32Array(ev.points.length);
  let count = 0;
  for (const pt of ev.points) {
    const i = pointIndex(pt);
    if (i !== undefined) indices[count++] = i;
  }
  let polygon = null;
  // A lasso over the whole, unfiltered map is sent as its polygon (compact);
  // anything else as ids, so hidden points are never labeled.
  if (ev.lassoPoints && ev.lassoPoints.x && allPointsShown()) {
    polygon = ev.lassoPoints.x.map((x, k) => [Number(x), Number(ev.lassoPoints.y[k])]);
  }
  setSelection({ indices: indices.slice(0, count), excluded: new Set(), polygon, page: 0 });
}

const panel = document.getElementById("selection-panel");
const selectionThumbs = document.getElementById("selection-thumbs");
const selectionPager = document.getElementById("selection-pager");

function setSelection(selection) {
  state.selection = selection && selection.indices.length ? selection : null;
  renderSelection();
}

function clearSelection() {
  setSelection(null);
  // A new selectionrevision tells the next Plotly.react not to restore the old
  // selection (it follows uirevision otherwise): the map would stay dimmed.
  state.selectionRevision += 1;
  if (state.drawn) {
    Plotly.restyle(plot, { selectedpoints: [null] });
    Plotly.relayout(plot, { selections: [] });
  }
}

function renderSelection() {
  const sel = state.selection;
  panel.classList.toggle("hidden", !sel);
  if (!sel) return;
  const p = state.points;
  const total = sel.indices.length;
  document.getElementById("selection-count").textContent = String(total - sel.excluded.size);
  document.getElementById("selection-excluded").textContent = sel.excluded.size ? `${sel.excluded.size} left out.` : "";
  const pages = Math.max(1, Math.ceil(total / SELECTION_PAGE));
  sel.page = Math.min(sel.page, pages - 1);
  const start = sel.page * SELECTION_PAGE;
  const tiles = [];
  for (let j = start; j < Math.min(total, start + SELECTION_PAGE); j++) {
    const i = sel.indices[j];
    const id = p.ids[i];
    const cls = classById.get(p.cls[i]);
    const tile = el("button", {
      type: "button", class: `thumb${sel.excluded.has(id) ? " excluded" : ""}${cls ? " labeled" : ""}`,
      dataset: { imageId: id }, title: `${describe(i)} — click to leave it out`,
      style: { "--class-color": cls ? cls.color : "transparent" },
    }, el("img", { src: thumbnailUrl(id), alt: `image ${id}`, loading: "lazy" }));
    if (cls) tile.append(el("span", { class: "tag", text: cls.name }));
    tile.addEventListener("click", () => {
      if (sel.excluded.has(id)) sel.excluded.delete(id); else sel.excluded.add(id);
      tile.classList.toggle("excluded", sel.excluded.has(id));
      document.getElementById("selection-count").textContent = String(total - sel.excluded.size);
      document.getElementById("selection-excluded").textContent = sel.excluded.size ? `${sel.excluded.size} left out.` : "";
    });
    tiles.push(tile);
  }
  selectionThumbs.replaceChildren(...tiles);
  selectionPager.replaceChildren();
  if (pages > 1) {
    selectionPager.append(
      el("button", { type: "button", class: "small", disabled: sel.page === 0, onclick: () => { sel.page -= 1; renderSelection(); } }, "← Prev"),
      el("span", { class: "muted small", text: `${sel.page + 1} / ${pages}` }),
      el("button", { type: "button", class: "small", disabled: sel.page >= pages - 1, onclick: () => { sel.page += 1; renderSelection(); } }, "Next →"),
    );
  }
}

async function applyClass(cls) {
  const sel = state.selection;
  if (!sel || !canLabel) return;
  const p = state.points;
  const body = { class: cls.id };
  const included = [];
  for (const i of sel.indices) if (!sel.excluded.has(p.ids[i])) included.push(i);
  if (sel.polygon) {
    body.polygon = sel.polygon;
    body.exclude_image_ids = [...sel.excluded];
  } else {
    if (!included.length) { toast("Every selected image is left out: nothing to label.", { kind: "warning" }); return; }
    body.image_ids = included.map((i) => p.ids[i]);
  }
  body.expected = seenVersions(included);
  if (!body.expected) delete body.expected;
  setBusy(true);
  try {
    const result = await postJSON(`/api/datasets/${datasetId}/annotations/bulk/`, body);
    const updated = result.updated ?? 0;
    clearSelection();
    await refresh();
    rememberAction(result.action_id, `Labeled ${updated} image${updated === 1 ? "" : "s"} as ${cls.name}`);
  } catch (err) {
    // Someone labeled some of these since the map was read: nothing was written;
    // show the map as it is now, selection cleared, and say so.
    await reportWriteError(err, async () => { clearSelection(); await refresh(); });
  } finally {
    setBusy(false);
  }
}

// {image id: version} of the points at `indices`, as this page read them (null past MAX_EXPECTED).
function seenVersions(indices) {
  if (indices.length > MAX_EXPECTED) return null;
  const p = state.points;
  const expected = {};
  for (const i of indices) expected[p.ids[i]] = p.version[i];
  return expected;
}

function setBusy(busy) {
  for (const button of panel.querySelectorAll("button")) button.disabled = busy;
}

function rememberAction(actionId, message) {
  state.lastAction = actionId ? { id: actionId, message } : null;
  renderLastAction();
  // This toast's Undo undoes this action, even after newer ones were made.
  if (actionId) toast(message, { kind: "success", action: { label: "Undo", run: () => undo(actionId) }, timeout: 12000 });
}

function undo(actionId) {
  if (state.lastAction && state.lastAction.id === actionId) {
    state.lastAction = null;
    renderLastAction();
  }
  return undoAction(datasetId, actionId, () => refresh());
}

function undoLast() {
  if (state.lastAction) return undo(state.lastAction.id);
}

function renderLastAction() {
  let box = document.getElementById("last-action");
  if (!box) {
    box = el("div", { id: "last-action", class: "row small", style: { "margin-top": ".6rem" } });
    document.getElementById("counts-card").append(box);
  }
  box.replaceChildren();
  if (!state.lastAction) return;
  box.append(el("span", { text: `${state.lastAction.message}.` }),
    el("button", { type: "button", class: "small", id: "undo-last", onclick: () => undoLast() }, "Undo"));
}

async function refresh() {
  await loadMap();
  fillFilterOptions();
  await draw();
}

// --- counts, filters, controls --------------------------------------------------------------

function renderCounts() {
  const p = state.points;
  const counts = new Map();
  for (let i = 0; i < p.n; i++) counts.set(p.cls[i], (counts.get(p.cls[i]) || 0) + 1);
  const rows = [];
  for (const cls of classes) {
    rows.push(el("div", { class: "count-row" },
      el("span", { class: "chip", style: { "--class-color": cls.color } }, el("span", { class: "swatch" }), cls.name,
        cls.shortcut ? el("kbd", { text: cls.shortcut }) : null),
      el("b", { id: `count-class-${cls.id}`, text: String(counts.get(cls.id) || 0) })));
  }
  rows.push(el("div", { class: "count-row" },
    el("span", { class: "chip" }, el("span", { class: "swatch", style: { "--class-color": UNLABELED_COLOR } }), "unlabeled"),
    el("b", { id: "count-unlabeled", text: String(counts.get(-1) || 0) })));
  rows.push(el("div", { class: "count-row muted small" }, el("span", { text: "on the map" }), el("span", { text: String(p.n) })));
  document.getElementById("class-counts").replaceChildren(...rows);
}

// Pending suggestions per class (unlabeled images only, at or above the chosen
// confidence, inside the cluster filter when one is set), each accepted in one
// request that applies that one class.
const suggestionsCard = document.getElementById("suggestions-card");
const minConfidenceInput = document.getElementById("suggestions-min-confidence");

// The floor starts at the server's default (SIMLABEL_ACCEPT_MIN_CONFIDENCE, chosen by measurement).
const defaultFloor = data.accept_min_confidence ?? 0;
// The neighbors' confidences are calibrated (a floor of f keeps labels about f right); an uploaded
// model's are its own, so the note says so instead of promising what was not measured.
function describeFloor(source) {
  const note = document.getElementById("suggestions-default-floor");
  if (!note) return;
  const pct = Math.round(100 * defaultFloor);
  note.textContent = source === "spreading"
    ? `(default ${pct} %: accepted labels about that often right)`
    : `(default ${pct} %: this model's own confidence, not calibrated here)`;
}
if (minConfidenceInput) {
  minConfidenceInput.value = String(Math.round(100 * defaultFloor));
  describeFloor("spreading");
}

function minConfidence() {
  const value = Number(minConfidenceInput.value);
  return Number.isFinite(value) ? Math.min(1, Math.max(0, value / 100)) : 0;
}

// Whose suggestions the card offers: "spreading" (the neighbors', in the map's
// columns) or "model:<name>" (an uploaded model's predictions, fetched once and
// laid onto the points' order again after each refresh).
const sourceSelect = document.getElementById("suggestions-source");
const suggestionSource = { value: "spreading", predictions: null, columns: null, points: null };

function suggestionColumns() {
  const p = state.points;
  if (suggestionSource.value === "spreading" || !suggestionSource.predictions) return { suggestion: p.suggestion, confidence: p.confidence };
  if (suggestionSource.points !== p) {
    const { image_ids: ids, class: cls, confidence } = suggestionSource.predictions;
    const suggestion = new Int32Array(p.n).fill(-1);
    const conf = new Float32Array(p.n).fill(NaN);
    for (let k = 0; k < ids.length; k++) {
      const i = p.indexOfId.get(ids[k]);
      if (i !== undefined) { suggestion[i] = cls[k]; conf[i] = confidence[k]; }
    }
    suggestionSource.columns = { suggestion, confidence: conf };
    suggestionSource.points = p;
  }
  return suggestionSource.columns;
}

async function loadSuggestionSources() {
  if (!sourceSelect) return;
  const answer = await getJSON(`/api/datasets/${datasetId}/predictions/`);
  const models = (answer && answer.models) || [];
  for (const m of models) sourceSelect.append(el("option", { value: `model:${m.model}` }, `Model ${m.model} (${m.count})`));
  document.getElementById("suggestions-source-row").classList.toggle("hidden", !models.length);
  sourceSelect.addEventListener("change", () => chooseSuggestionSource(sourceSelect.value).catch(showError));
  if (models.length) renderSuggestions();
}

async function chooseSuggestionSource(value) {
  closeAcceptPreview(); // a preview of the other source's suggestions no longer applies
  suggestionSource.value = value;
  describeFloor(value);
  suggestionSource.predictions = null;
  suggestionSource.points = null;
  if (value !== "spreading") {
    const model = value.slice("model:".length);
    suggestionSource.predictions = await getJSON(`/api/datasets/${datasetId}/predictions/${encodeURIComponent(model)}/`);
  }
  document.getElementById("suggestions-who").textContent =
    value === "spreading" ? "whose neighbors suggest a class" : `with a class predicted by model ${value.slice("model:".length)}`;
  renderSuggestions();
}

// Points whose suggestion is waiting to be accepted: unlabeled, suggested
// (`classId`, or any class when null), in the cluster filter, above the floor.
function pendingIndices(classId = null) {
  const p = state.points;
  const s = suggestionColumns();
  const floor = minConfidence();
  const out = [];
  for (let i = 0; i < p.n; i++) {
    if (p.cls[i] !== -1 || s.suggestion[i] === -1) continue;
    if (classId !== null && s.suggestion[i] !== classId) continue;
    if (state.clusterFilter !== null && p.cluster[i] !== state.clusterFilter) continue;
    if (!(s.confidence[i] >= floor)) continue;
    out.push(i);
  }
  return out;
}

function renderSuggestions() {
  if (!suggestionsCard) return;
  const s = suggestionColumns();
  const pending = new Map();
  for (const i of pendingIndices()) pending.set(s.suggestion[i], (pending.get(s.suggestion[i]) || 0) + 1);
  const anySuggestion = state.points.suggestion.some((v) => v !== -1) || (sourceSelect && sourceSelect.options.length > 1);
  suggestionsCard.classList.toggle("hidden", !anySuggestion);
  document.getElementById("suggestions-scope").textContent = state.clusterFilter === null ? "" : ` in cluster ${state.clusterFilter}`;
  const rows = [...pending.entries()].sort((a, b) => b[1] - a[1]).map(([classId, count]) => {
    const cls = classById.get(classId);
    if (!cls) return null;
    return el("div", { class: "count-row", dataset: { suggestedClass: classId } },
      el("span", { class: "chip", style: { "--class-color": cls.color } }, el("span", { class: "swatch" }), cls.name),
      el("button", { type: "button", class: "small accept-class", onclick: () => previewAccept(cls).catch(showError) },
        `Accept ${count}`));
  }).filter(Boolean);
  if (rows.length > 1) {
    const total = [...pending.values()].reduce((a, b) => a + b, 0);
    rows.unshift(el("div", { class: "count-row accept-all-row" }, el("span", { class: "small", text: "All classes" }),
      el("button", { type: "button", class: "small accept-all", onclick: () => previewAccept(null).catch(showError) },
        `Accept ${total}`)));
  }
  const floor = `${Math.round(100 * minConfidence())} %`;
  document.getElementById("suggestion-rows").replaceChildren(
    ...(rows.length ? rows : [el("span", { class: "muted small", text: `Nothing to accept above the floor (${floor}).` })]));
}

// Accepting is two steps: "Accept N" asks the server for a dry run of exactly the
// images counted (their versions as `expected`) and shows what would change, per
// class, at which floor; Confirm sends the dry run's own `expected`, so the accept
// changes exactly the previewed images or, if one changed meanwhile, nothing (409).
const acceptUrl = `/api/datasets/${datasetId}/suggestions/accept/`;
const acceptPreviewBox = suggestionsCard ? el("div", {
  id: "accept-preview", class: "accept-preview hidden",
  style: { "border-top": "1px solid #dee2e6", "margin-top": ".6rem", "padding-top": ".5rem" },
}) : null;
if (acceptPreviewBox) suggestionsCard.append(acceptPreviewBox);
let acceptPreview = null; // {cls (null: every class), body, answer}
let acceptPreviewTurn = 0; // only the latest dry run is shown
let acceptFloorTimer = null;

function acceptBody(cls) {
  const body = { min_confidence: minConfidence(), source: suggestionSource.value };
  const indices = pendingIndices(cls ? cls.id : null);
  if (cls) body.class = cls.id;
  if (state.clusterFilter !== null) body.cluster = state.clusterFilter;
  else if (!cls) body.image_ids = indices.map((i) => state.points.ids[i]);
  // Exactly the images the count was made of, at the versions read.
  const expected = seenVersions(indices);
  if (expected) body.expected = expected;
  return body;
}

async function previewAccept(cls) {
  const turn = ++acceptPreviewTurn;
  const body = acceptBody(cls);
  const answer = body.image_ids && !body.image_ids.length
    ? { total: 0, unlabeled: 0, relabeled: 0, classes: [], min_confidence: body.min_confidence, expected: {} }
    : await postJSON(acceptUrl, { ...body, dry_run: true });
  if (turn !== acceptPreviewTurn) return;
  acceptPreview = { cls, body, answer };
  renderAcceptPreview();
}

function closeAcceptPreview() {
  acceptPreviewTurn++;
  acceptPreview = null;
  renderAcceptPreview();
}

function renderAcceptPreview() {
  if (!acceptPreviewBox) return;
  acceptPreviewBox.classList.toggle("hidden", !acceptPreview);
  if (!acceptPreview) { acceptPreviewBox.replaceChildren(); return; }
  const { cls, answer } = acceptPreview;
  const floor = `${Math.round(100 * answer.min_confidence)} %`;
  const cancel = el("button", { type: "button", class: "small cancel-accept", onclick: closeAcceptPreview }, "Cancel");
  if (!answer.total) {
    acceptPreviewBox.replaceChildren(
      el("p", { class: "small nothing-to-accept", text: `Nothing to accept above the floor (confidence at least ${floor}).` }),
      cancel);
    return;
  }
  const rows = answer.classes.map((c) => {
    const known = classById.get(c.id) || { name: c.name, color: UNLABELED_COLOR };
    return el("div", { class: "count-row", dataset: { previewClass: c.id } },
      el("span", { class: "chip", style: { "--class-color": known.color } }, el("span", { class: "swatch" }), c.name),
      el("span", { class: "preview-count", text: String(c.count) }));
  });
  const images = `${answer.total} image${answer.total === 1 ? "" : "s"}`;
  const relabeled = answer.relabeled ? `, ${answer.relabeled} of them relabeled` : "";
  acceptPreviewBox.replaceChildren(
    el("p", { class: "small accept-summary" },
      el("strong", { text: `Would label ${images}` }),
      ` ${cls ? `as ${cls.name}` : "with their suggested class"} at confidence at least ${floor}${relabeled}:`),
    el("div", { class: "counts" }, ...rows),
    el("div", { class: "row", style: { "margin-top": ".4rem" } },
      el("button", { type: "button", class: "primary small confirm-accept", onclick: () => confirmAccept() }, `Confirm: accept ${answer.total}`),
      cancel));
}

async function confirmAccept() {
  if (!acceptPreview) return;
  const { cls, body, answer } = acceptPreview;
  const send = { ...body };
  if (answer.expected) send.expected = answer.expected; // the previewed images, as the server read them
  for (const button of suggestionsCard.querySelectorAll("button")) button.disabled = true;
  try {
    const result = await postJSON(acceptUrl, send);
    const updated = result.updated ?? 0;
    closeAcceptPreview();
    await refresh();
    const what = suggestionSource.value === "spreading" ? "suggestion" : "prediction";
    rememberAction(result.action_id, `Accepted ${updated} ${what}${updated === 1 ? "" : "s"}${cls ? ` of ${cls.name}` : ""}`);
  } catch (err) {
    closeAcceptPreview();
    await reportWriteError(err, () => refresh());
  } finally {
    for (const button of suggestionsCard.querySelectorAll("button")) button.disabled = false;
  }
}

// A floor changed while a preview is open previews again (after typing stops).
function floorChanged() {
  if (!acceptPreview) return;
  clearTimeout(acceptFloorTimer);
  const { cls } = acceptPreview;
  acceptFloorTimer = setTimeout(() => previewAccept(cls).catch(showError), 250);
}

const colorSelect = document.getElementById("color-mode");
const unlabeledBox = document.getElementById("filter-unlabeled");
const classSelect = document.getElementById("filter-class");
const clusterSelect = document.getElementById("filter-cluster");

function fillFilterOptions() {
  const p = state.points;
  classSelect.replaceChildren(el("option", { value: "" }, "All classes"),
    ...classes.map((cls) => el("option", { value: cls.id }, cls.name)));
  classSelect.value = state.classFilter === null ? "" : String(state.classFilter);
  const clusterSizes = new Map();
  for (let i = 0; i < p.n; i++) clusterSizes.set(p.cluster[i], (clusterSizes.get(p.cluster[i]) || 0) + 1);
  clusterSelect.replaceChildren(el("option", { value: "" }, "All clusters"),
    ...[...clusterSizes.keys()].sort((a, b) => a - b).map((k) => el("option", { value: k }, `cluster ${k} (${clusterSizes.get(k)})`)));
  clusterSelect.value = state.clusterFilter === null ? "" : String(state.clusterFilter);
}

function syncUrl() {
  const params = new URLSearchParams();
  if (state.clusterFilter !== null) params.set("cluster", state.clusterFilter);
  if (state.classFilter !== null) params.set("class", state.classFilter);
  if (state.unlabeledOnly) params.set("unlabeled", "1");
  params.set("color", state.colorMode);
  history.replaceState(null, "", `${location.pathname}?${params}`);
}

function onControlsChanged() {
  state.colorMode = colorSelect.value;
  state.unlabeledOnly = unlabeledBox.checked;
  state.classFilter = classSelect.value === "" ? null : Number(classSelect.value);
  state.clusterFilter = clusterSelect.value === "" ? null : Number(clusterSelect.value);
  clearSelection();
  syncUrl();
  draw().catch(showError);
}

function setDragmode(mode) {
  state.dragmode = mode;
  for (const [id, m] of [["mode-lasso", "lasso"], ["mode-box", "select"], ["mode-pan", "pan"]]) {
    document.getElementById(id).classList.toggle("primary", m === mode);
  }
  if (state.drawn) Plotly.relayout(plot, { dragmode: mode });
}

function wireControls() {
  colorSelect.value = state.colorMode;
  unlabeledBox.checked = state.unlabeledOnly;
  for (const control of [colorSelect, unlabeledBox, classSelect, clusterSelect]) control.addEventListener("change", onControlsChanged);
  document.getElementById("mode-lasso").addEventListener("click", () => setDragmode("lasso"));
  document.getElementById("mode-box").addEventListener("click", () => setDragmode("select"));
  document.getElementById("mode-pan").addEventListener("click", () => setDragmode("pan"));
  document.getElementById("selection-clear").addEventListener("click", () => clearSelection());
  minConfidenceInput?.addEventListener("input", () => { if (state.points) { renderSuggestions(); floorChanged(); } });
  const buttons = document.getElementById("class-buttons");
  if (buttons) classButtons(buttons, classes, (cls) => applyClass(cls));
  document.addEventListener("keydown", (event) => {
    if (typingInField(event) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Escape") { clearSelection(); return; }
    const cls = byShortcut.get(event.key.toLowerCase());
    if (state.selection && cls && canLabel) { event.preventDefault(); applyClass(cls); return; }
    if (event.key === "l") setDragmode("lasso");
    else if (event.key === "b") setDragmode("select");
    else if (event.key === "p") setDragmode("pan");
  });
  setDragmode(state.dragmode);
}

// --- start ---------------------------------------------------------------------------------------

async function start() {
  wireControls();
  try {
    const p = await loadMap();
    if (!p.n) {
      document.getElementById("map-empty").classList.remove("hidden");
      document.getElementById("class-counts").replaceChildren(el("span", { class: "muted small", text: "No map yet." }));
    } else {
      document.getElementById("map-empty").classList.add("hidden");
      if (state.clusterFilter !== null && state.colorMode === "class" && !classes.length) state.colorMode = "cluster";
      fillFilterOptions();
      await draw();
      await loadSuggestionSources().catch(showError);
    }
  } catch (err) {
    showError(err);
  }
  // Tests and the browser benchmark wait for this flag.
  window.simlabelMap = { ready: true, readyAt: performance.now(), points: state.points ? state.points.n : 0, ...timings };
  document.body.dataset.mapReady = "true";
}

start();
