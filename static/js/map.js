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
  view: null, // {x0, x1, y0, y1}: the axes' ranges after a zoom or pan; null while autoranged
  density: false, // whether the last draw was the density view
};
// Above this many points (after filters, inside the view) the map draws their density, a heatmap binned
// in the browser, instead of the points: Plotly's scattergl takes seconds to draw and ~10 s to lasso a
// million points. Zooming in to fewer draws the points in view again. A lasso on the density view is
// exact all the same: its polygon is tested here against every point and applied by the server.
// `?density=1` asks for the density view at any size.
const forceDensity = new URLSearchParams(location.search).get("density") === "1";
const POINTS_DRAWN_MAX = forceDensity ? 0 : 250000;
const DENSITY_BINS = 360; // along the longer side
// Points just outside the view are drawn too, so a small pan does not show an empty border.
const VIEW_MARGIN = 0.25;

// --- data ----------------------------------------------------------------------------------
// The map comes as typed arrays (GET …/map/?format=binary, laid out in the README): each column is
// wrapped where it lies in the response (no copy, no per-point objects); only the image ids (sent as
// deltas) and the confidence (uint16 thousandths) are turned into plain columns, one loop each.

const TYPED = {
  int8: Int8Array, uint8: Uint8Array, int16: Int16Array, uint16: Uint16Array, int32: Int32Array,
  uint32: Uint32Array, float32: Float32Array, float64: Float64Array,
};
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const GETTERS = {
  int8: "getInt8", uint8: "getUint8", int16: "getInt16", uint16: "getUint16", int32: "getInt32",
  uint32: "getUint32", float32: "getFloat32", float64: "getFloat64",
};

function typedColumn(buffer, spec) {
  const Typed = TYPED[spec.dtype];
  if (!Typed) throw new Error(`map: unknown column type ${spec.dtype}`);
  if (LITTLE_ENDIAN) return new Typed(buffer, spec.offset, spec.length);
  // A big-endian machine reads each value through a DataView.
  const view = new DataView(buffer);
  const out = new Typed(spec.length);
  const step = Typed.BYTES_PER_ELEMENT;
  for (let i = 0; i < spec.length; i++) out[i] = view[GETTERS[spec.dtype]](spec.offset + i * step, true);
  return out;
}

function decodeMap(buffer) {
  const magic = new TextDecoder().decode(new Uint8Array(buffer, 0, 7));
  if (magic !== "SLMAP01") throw new Error("map: not the binary map format");
  const headerLength = new DataView(buffer).getUint32(8, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 16, headerLength)));
  const specs = new Map(header.columns.map((c) => [c.name, c]));
  const column = (name) => typedColumn(buffer, specs.get(name));
  const n = header.count;
  const idSpec = specs.get("image_ids");
  const rawIds = column("image_ids");
  const ids = idSpec.dtype === "float64" ? rawIds : new Int32Array(n);
  if (idSpec.encoding === "delta") {
    let id = 0;
    for (let i = 0; i < n; i++) { id += rawIds[i]; ids[i] = id; }
  }
  const confSpec = specs.get("confidence");
  const rawConfidence = column("confidence");
  const confidence = new Float32Array(n);
  for (let i = 0; i < n; i++) confidence[i] = rawConfidence[i] === confSpec.null ? NaN : rawConfidence[i] * confSpec.scale;
  return {
    run: header.run, n, ids, x: column("x"), y: column("y"), cluster: column("cluster"), cls: column("class"),
    suggestion: column("suggestion"), confidence, version: column("version"), header,
  };
}

// The row of an image id: the ids come sorted, so a binary search (no Map of a million entries).
function indexOfId(p, id) {
  let lo = 0;
  let hi = p.n - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = p.ids[mid];
    if (v === id) return mid;
    if (v < id) lo = mid + 1; else hi = mid - 1;
  }
  return undefined;
}

const timings = {};
const mapUrl = `/api/datasets/${datasetId}/map/?format=binary`;

async function loadMap() {
  const started = performance.now();
  // Matches the page's <link rel="preload">, so the download starts before this module runs.
  const response = await fetch(mapUrl, { credentials: "same-origin" });
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try { detail = (await response.json()).detail || detail; } catch { /* not JSON: keep the status */ }
    throw new Error(`Could not load the map: ${detail}`);
  }
  const buffer = await response.arrayBuffer();
  timings.fetchedAt = timings.fetchedAt ?? performance.now();
  timings.mapBytes = timings.mapBytes ?? buffer.byteLength;
  state.points = decodeMap(buffer);
  timings.decodeMs = timings.decodeMs ?? performance.now() - timings.fetchedAt;
  timings.fetchMs = timings.fetchMs ?? timings.fetchedAt - started;
  return state.points;
}

// --- traces ---------------------------------------------------------------------------------

function passesFilters(p, i) {
  const box = state.drawBox;
  if (box && (p.x[i] < box.x0 || p.x[i] > box.x1 || p.y[i] < box.y0 || p.y[i] > box.y1)) return false;
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

function shownCount(p) {
  let count = 0;
  for (let i = 0; i < p.n; i++) if (passesFilters(p, i)) count++;
  return count;
}

// The view widened by VIEW_MARGIN on each side (null: the whole map).
function widened(view) {
  if (!view) return null;
  const mx = (view.x1 - view.x0) * VIEW_MARGIN;
  const my = (view.y1 - view.y0) * VIEW_MARGIN;
  return { x0: view.x0 - mx, x1: view.x1 + mx, y0: view.y0 - my, y1: view.y1 + my };
}

// Counts of the shown points on a grid over the view (or their extent), as a Plotly heatmap:
// one pass over the typed columns, empty cells left transparent.
function densityTrace(p, count) {
  let { x0, x1, y0, y1 } = state.drawBox || { x0: Infinity, x1: -Infinity, y0: Infinity, y1: -Infinity };
  if (!state.drawBox) {
    for (let i = 0; i < p.n; i++) {
      if (!passesFilters(p, i)) continue;
      if (p.x[i] < x0) x0 = p.x[i];
      if (p.x[i] > x1) x1 = p.x[i];
      if (p.y[i] < y0) y0 = p.y[i];
      if (p.y[i] > y1) y1 = p.y[i];
    }
  }
  const span = Math.max(x1 - x0, y1 - y0) || 1;
  const cell = span / DENSITY_BINS;
  const nx = Math.max(1, Math.ceil((x1 - x0) / cell));
  const ny = Math.max(1, Math.ceil((y1 - y0) / cell));
  const counts = new Float32Array(nx * ny);
  for (let i = 0; i < p.n; i++) {
    if (!passesFilters(p, i)) continue;
    const a = Math.min(nx - 1, Math.floor((p.x[i] - x0) / cell));
    const b = Math.min(ny - 1, Math.floor((p.y[i] - y0) / cell));
    counts[b * nx + a] += 1;
  }
  const z = new Array(ny);
  for (let b = 0; b < ny; b++) {
    const row = new Array(nx);
    for (let a = 0; a < nx; a++) { const c = counts[b * nx + a]; row[a] = c ? Math.log10(c + 1) : null; }
    z[b] = row;
  }
  return {
    type: "heatmap", z, x0: x0 + cell / 2, dx: cell, y0: y0 + cell / 2, dy: cell, name: `density of ${count} points (zoom in to see them)`,
    colorscale: "Viridis", showscale: false, showlegend: true, hoverinfo: "none", zsmooth: false,
  };
}

function buildTraces() {
  const p = state.points;
  // Only a map too big to draw whole is cut to the view; otherwise zooming redraws nothing.
  state.drawBox = null;
  let count = shownCount(p);
  if (count > POINTS_DRAWN_MAX && state.view) {
    state.drawBox = widened(state.view);
    count = shownCount(p);
  }
  state.drawnView = state.view;
  state.density = count > POINTS_DRAWN_MAX;
  if (state.density) {
    const trace = densityTrace(p, count);
    state.drawBox = null;
    // Plotly draws a lasso only over a plot with selectable points: the grid's two corners, unseen.
    const corners = {
      type: "scattergl", mode: "markers", x: [trace.x0, trace.x0 + trace.dx * trace.z[0].length],
      y: [trace.y0, trace.y0 + trace.dy * trace.z.length], marker: { opacity: 0, size: 1 }, hoverinfo: "none", showlegend: false,
    };
    state.traces = [null, null];
    return [trace, corners];
  }
  const traces = buildPointTraces(p, count);
  state.drawBox = null;
  return traces;
}

function buildPointTraces(p, count) {
  const size = markerSize(count);
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
  const axis = { showgrid: false, zeroline: false, showticklabels: false, showline: false, ticks: "" };
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

// A zoom or pan on a map too big to draw whole redraws what is in view: the points when few enough
// are, else a finer density. Debounced: a scroll-zoom sends many relayouts.
let relayoutTimer = null;

function onRelayout(ev) {
  if (!ev || !state.points) return;
  const keys = Object.keys(ev);
  if (!keys.some((k) => k.startsWith("xaxis.") || k.startsWith("yaxis."))) return;
  clearTimeout(relayoutTimer);
  relayoutTimer = setTimeout(() => {
    const full = plot._fullLayout;
    const autorange = ev["xaxis.autorange"] || ev["yaxis.autorange"];
    const [x0, x1] = full.xaxis.range.map(Number);
    const [y0, y1] = full.yaxis.range.map(Number);
    const view = autorange ? null : { x0: Math.min(x0, x1), x1: Math.max(x0, x1), y0: Math.min(y0, y1), y1: Math.max(y0, y1) };
    state.view = view;
    if (state.points.n <= POINTS_DRAWN_MAX && !state.density) return;
    const before = state.drawnView;
    // Points already drawn with a margin cover a view inside it: nothing to redraw.
    const margin = widened(before);
    if (!state.density && view && margin && view.x0 >= margin.x0 && view.x1 <= margin.x1 && view.y0 >= margin.y0 && view.y1 <= margin.y1) return;
    draw().catch(showError);
  }, 150);
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
  plot.on("plotly_relayout", (ev) => onRelayout(ev));
  plot.on("plotly_deselect", () => setSelection(null));
  plot.on("plotly_legendclick", () => { setTimeout(() => { if (state.selection) renderSelection(); }, 0); return true; });
}

// --- selection ----------------------------------------------------------------------------

function allPointsShown() {
  if (state.unlabeledOnly || state.classFilter !== null || state.clusterFilter !== null) return false;
  return (plot.data || []).every((trace) => trace.visible === undefined || trace.visible === true);
}

// Rows of the shown points inside a polygon of map coordinates (even-odd rule, as the server's test).
function indicesInPolygon(polygon) {
  const p = state.points;
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const [x, y] of polygon) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  const px = Float64Array.from(polygon, (v) => v[0]);
  const py = Float64Array.from(polygon, (v) => v[1]);
  const out = [];
  for (let i = 0; i < p.n; i++) {
    const x = p.x[i], y = p.y[i];
    if (x < x0 || x > x1 || y < y0 || y > y1 || !passesFilters(p, i)) continue;
    let inside = false;
    for (let a = 0, b = px.length - 1; a < px.length; b = a++) {
      if ((py[a] > y) !== (py[b] > y) && x < ((px[b] - px[a]) * (y - py[a])) / (py[b] - py[a]) + px[a]) inside = !inside;
    }
    if (inside) out.push(i);
  }
  return Int32Array.from(out);
}

// A lasso or box on the density view: Plotly reports no points (a heatmap has none), only the shape.
function onDensitySelected(ev) {
  let polygon = null;
  if (ev && ev.lassoPoints && ev.lassoPoints.x) polygon = ev.lassoPoints.x.map((x, k) => [Number(x), Number(ev.lassoPoints.y[k])]);
  else if (ev && ev.range && ev.range.x) {
    const [ax, bx] = ev.range.x.map(Number);
    const [ay, by] = ev.range.y.map(Number);
    polygon = [[ax, ay], [bx, ay], [bx, by], [ax, by]];
  }
  if (!polygon || polygon.length < 3) { setSelection(null); return; }
  const indices = indicesInPolygon(polygon);
  // Without filters the server applies the same polygon to every point; with them, the ids shown.
  setSelection({ indices, excluded: new Set(), polygon: allPointsShown() ? polygon : null, page: 0 });
}

function onSelected(ev) {
  if (state.density) {
    onDensitySelected(ev);
    return;
  }
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
      const i = indexOfId(p, ids[k]);
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
  if (forceDensity) params.set("density", "1");
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
      // Drawn, before the first frame is painted (the awaited request below resolves after it).
      timings.drawnAt = performance.now();
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
