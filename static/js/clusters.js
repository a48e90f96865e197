// Cluster browser: clusters by size or uncertainty, each with its thumbnails and
// label counts; leave out images that do not belong, then label the cluster.
import {
  classChip, classIndex, classMenu, el, expectedVersions, getJSON, pageData, postJSON, reportWriteError, showError, thumbTile,
  toast, undoAction,
} from "./common.js";

const data = pageData();
const datasetId = data.dataset.id;
const classes = data.classes;
const { byId: classById } = classIndex(classes);
const canLabel = data.allowed_actions.includes("label");
const order = data.order || "size";
const FIRST = 24;
const MORE = 200;
const list = document.getElementById("cluster-list");
let classOfImage = new Map();
let versionOfImage = new Map(); // annotation versions as read: writes send them as `expected`
let suggestionOfImage = new Map(); // image id -> [suggested class id, calibrated confidence]
// A cluster's suggestion is offered in its class menu only when it is more likely right than not.
const OFFER_AT = 0.5;
// Accepting a cluster's suggestions starts at the server's default floor (SIMLABEL_ACCEPT_MIN_CONFIDENCE).
const acceptFloor = data.accept_min_confidence ?? 0;
let lastAction = null;

async function load() {
  const [clusters, map] = await Promise.all([
    getJSON(`/api/datasets/${datasetId}/clusters/?order=${encodeURIComponent(order)}`),
    getJSON(`/api/datasets/${datasetId}/map/`),
  ]);
  classOfImage = new Map();
  versionOfImage = new Map();
  suggestionOfImage = new Map();
  const ids = map.image_ids || [];
  for (let i = 0; i < ids.length; i++) {
    classOfImage.set(ids[i], map.class[i]);
    versionOfImage.set(ids[i], map.version ? map.version[i] : 0);
    if (map.suggestion && map.suggestion[i] != null) suggestionOfImage.set(ids[i], [map.suggestion[i], map.confidence[i] || 0]);
  }
  return clusters;
}

// How likely the cluster's suggested class is right: for a cluster with unlabeled
// images, the expected share of them that are that class (the mean calibrated
// confidence, counting images suggested another class as 0); for a fully labeled
// one, the share of its labels that say it.
function suggestionLikelihood(cluster, suggested, labeled) {
  if (!suggested) return null;
  const open = cluster.image_ids.filter((id) => classOfImage.get(id) == null);
  if (!open.length) return labeled ? (cluster.class_counts[suggested.id] || 0) / labeled : null;
  let sum = 0;
  for (const id of open) {
    const [classId, confidence] = suggestionOfImage.get(id) || [null, 0];
    if (classId === suggested.id) sum += confidence;
  }
  return sum / open.length;
}

function clusterCard(cluster) {
  const excluded = new Set();
  let shown = 0;
  const thumbs = el("div", { class: "thumbs small" });
  const moreButton = el("button", { type: "button", class: "small" });
  const excludedNote = el("span", { class: "muted small" });
  const card = el("section", { class: "card cluster-card", dataset: { cluster: cluster.id } });

  function renderThumbs(limit) {
    const end = Math.min(cluster.image_ids.length, limit);
    for (let j = shown; j < end; j++) {
      const id = cluster.image_ids[j];
      const tile = thumbTile(id, { cls: classById.get(classOfImage.get(id)) });
      tile.title = `Image ${id}: click to leave it out of this cluster's label`;
      tile.addEventListener("click", () => {
        if (excluded.has(id)) excluded.delete(id); else excluded.add(id);
        tile.classList.toggle("excluded", excluded.has(id));
        excludedNote.textContent = excluded.size ? `${excluded.size} left out` : "";
      });
      thumbs.append(tile);
    }
    shown = end;
    const left = cluster.image_ids.length - shown;
    moreButton.textContent = shown <= FIRST ? `Show all ${cluster.image_ids.length}` : `Show ${Math.min(left, MORE)} more`;
    moreButton.classList.toggle("hidden", left <= 0);
  }
  moreButton.addEventListener("click", () => renderThumbs(shown <= FIRST ? shown + MORE : shown + MORE));

  const counts = el("div", { class: "row" });
  let labeled = 0;
  for (const [classId, n] of Object.entries(cluster.class_counts || {})) {
    const cls = classById.get(Number(classId));
    if (cls) { counts.append(classChip(cls, ` ${n}`)); labeled += n; }
  }
  const unlabeled = cluster.size - labeled;
  if (unlabeled > 0) counts.append(classChip(null, ` ${unlabeled}`));

  const suggested = classById.get(cluster.suggested_class);
  const likely = suggestionLikelihood(cluster, suggested, labeled);
  const offered = suggested && likely != null && likely >= OFFER_AT ? suggested : null;
  const head = el("div", { class: "page-head", style: { "margin-bottom": ".4rem" } },
    el("div", {},
      el("h2", { style: { margin: 0 } }, `Cluster ${cluster.id}`, el("span", { class: "muted small", text: ` · ${cluster.size} images` })),
      el("div", { class: "small muted cluster-suggestion" },
        suggested ? el("span", {}, "suggested ", classChip(suggested)) : null,
        likely != null ? el("span", { class: "suggestion-likely", text: ` · ${Math.round(100 * likely)} % likely` }) : null,
        cluster.uncertainty != null ? el("span", { text: `${suggested ? " · " : ""}uncertainty ${Number(cluster.uncertainty).toFixed(2)}` }) : null)),
    el("a", { class: "button small", href: `/datasets/${datasetId}/map/?cluster=${cluster.id}&color=class` }, "Show on map"));
  card.append(head, counts);

  if (canLabel && classes.length) {
    const button = el("button", { type: "button", class: "primary small label-cluster" }, "Label this cluster");
    const select = classMenu(classes, {
      suggested: offered, button, label: `Class for cluster ${cluster.id}`, className: "cluster-class",
    });
    onAction(button, async () => {
      const cls = select.chosen();
      if (!cls) throw new Error("Choose a class for this cluster first.");
      const result = await postJSON(`/api/datasets/${datasetId}/annotations/bulk/`, {
        class: cls.id, cluster: cluster.id, exclude_image_ids: [...excluded],
        expected: expectedVersions(cluster.image_ids.filter((id) => !excluded.has(id)), versionOfImage),
      });
      return [result, `Labeled ${result.updated} image${result.updated === 1 ? "" : "s"} of cluster ${cluster.id} as ${cls.name}`];
    });
    const row = el("div", { class: "row", style: { margin: ".5rem 0" } }, select, button);
    let previewBox = null;
    if (suggested && unlabeled > 0) {
      // Each unlabeled image takes its own suggestion (not necessarily the cluster's): one action,
      // after a preview of what it would change. Below the floor the cluster's suggestion is not offered.
      const accept = el("button", { type: "button", class: "small accept-suggestions" }, "Accept suggestions…");
      const preview = el("div", {
        class: "accept-preview hidden",
        style: { "border-left": "3px solid #dee2e6", "padding-left": ".6rem", "margin-bottom": ".6rem" },
      });
      if (likely == null || likely < acceptFloor) {
        accept.disabled = true;
        accept.title = `This cluster's suggestion is ${Math.round(100 * (likely || 0))} % likely, under the accept floor of ${Math.round(100 * acceptFloor)} %.`;
      } else {
        accept.addEventListener("click", () => previewClusterAccept(cluster, preview, accept).catch((err) => showError(err)));
      }
      row.append(accept);
      previewBox = preview;
    }
    row.append(excludedNote);
    card.append(row);
    if (previewBox) card.append(previewBox);
  }
  card.append(thumbs, el("div", { class: "pager" }, moreButton));
  renderThumbs(FIRST);
  return card;
}

// The accept's dry run for a cluster, shown in the card: per class, total and the floor
// (adjustable: each change previews again); Confirm sends the dry run's `expected`, so
// exactly the previewed images change, or nothing if one changed meanwhile (409).
async function previewClusterAccept(cluster, box, opener) {
  const url = `/api/datasets/${datasetId}/suggestions/accept/`;
  const body = { cluster: cluster.id, expected: expectedVersions(cluster.image_ids, versionOfImage) };
  const floorInput = el("input", {
    type: "number", class: "accept-floor", min: "0", max: "100", step: "5", value: String(Math.round(100 * acceptFloor)),
    style: { width: "4.5rem" }, "aria-label": "Accept floor, percent",
  });
  const result = el("div", { class: "accept-result" });
  let turn = 0;
  let answer = null;
  const close = () => { turn++; box.replaceChildren(); box.classList.add("hidden"); opener.disabled = false; };
  async function load() {
    const mine = ++turn;
    const value = Number(floorInput.value);
    const floor = Number.isFinite(value) ? Math.min(1, Math.max(0, value / 100)) : acceptFloor;
    const sent = { ...body, min_confidence: floor };
    const got = await postJSON(url, { ...sent, dry_run: true });
    if (mine !== turn) return;
    answer = { sent, got };
    const percent = `${Math.round(100 * got.min_confidence)} %`;
    const cancel = el("button", { type: "button", class: "small cancel-accept", onclick: close }, "Cancel");
    if (!got.total) {
      result.replaceChildren(el("p", { class: "small nothing-to-accept", text: `Nothing to accept above the floor (${percent}).` }), cancel);
      return;
    }
    const confirm = el("button", { type: "button", class: "primary small confirm-accept" }, `Confirm: accept ${got.total}`);
    onAction(confirm, async () => {
      const accepted = await postJSON(url, { ...answer.sent, expected: answer.got.expected || answer.sent.expected });
      return [accepted, `Accepted ${accepted.updated} suggestion${accepted.updated === 1 ? "" : "s"} in cluster ${cluster.id}`];
    });
    result.replaceChildren(
      el("p", { class: "small accept-summary" }, el("strong", { text: `Would label ${got.total} image${got.total === 1 ? "" : "s"}` }),
        ` at confidence at least ${percent}:`),
      el("div", { class: "row" }, ...got.classes.map((c) => {
        const chip = classChip(classById.get(c.id) || { name: c.name, color: "#adb5bd" }, ` ${c.count}`);
        chip.dataset.previewClass = c.id;
        return chip;
      })),
      el("div", { class: "row", style: { "margin-top": ".4rem" } }, confirm, cancel));
  }
  let timer = null;
  floorInput.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => load().catch(showError), 250); });
  box.replaceChildren(el("label", { class: "small" }, "Confidence at least ", floorInput, " %"), result);
  box.classList.remove("hidden");
  opener.disabled = true;
  await load();
}

// A button that sends one labeling request: disabled while it runs, then a
// toast with Undo and a fresh render (or the error, and the button back).
function onAction(button, send) {
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const [result, message] = await send();
      const actionId = result.action_id;
      lastAction = actionId ? { id: actionId, message } : null;
      // This toast's Undo undoes this action, even after newer ones were made.
      if (actionId) toast(message, { kind: "success", action: { label: "Undo", run: () => undo(actionId) }, timeout: 12000 });
      await render();
    } catch (err) {
      button.disabled = false;
      // A lost race: nothing was written; show the clusters as they are now.
      await reportWriteError(err, () => render());
    }
  });
}

function undo(actionId) {
  if (lastAction && lastAction.id === actionId) lastAction = null;
  return undoAction(datasetId, actionId, () => render());
}

function undoLast() {
  if (lastAction) return undo(lastAction.id);
}

function undoBar() {
  if (!lastAction) return null;
  return el("div", { class: "notice success row", id: "last-action" },
    el("span", { text: `${lastAction.message}.` }),
    el("button", { type: "button", class: "small", id: "undo-last", onclick: () => undoLast() }, "Undo"));
}

async function render() {
  try {
    const clusters = await load();
    const scroll = window.scrollY;
    if (!clusters.length) {
      list.replaceChildren(el("div", { class: "card" }, el("p", { class: "muted", text: "This map has no clusters." })));
    } else {
      list.replaceChildren(...[undoBar(), ...clusters.map(clusterCard)].filter(Boolean));
    }
    window.scrollTo(0, scroll);
  } catch (err) {
    showError(err);
  }
  document.body.dataset.clustersReady = "true";
}

render();
