// Cluster browser: clusters by size or uncertainty, each with its thumbnails and
// label counts; leave out images that do not belong, then label the cluster.
import {
  classChip, classIndex, el, expectedVersions, getJSON, pageData, postJSON, reportWriteError, showError, thumbTile,
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
let lastAction = null;

async function load() {
  const [clusters, map] = await Promise.all([
    getJSON(`/api/datasets/${datasetId}/clusters/?order=${encodeURIComponent(order)}`),
    getJSON(`/api/datasets/${datasetId}/map/`),
  ]);
  classOfImage = new Map();
  versionOfImage = new Map();
  const ids = map.image_ids || [];
  for (let i = 0; i < ids.length; i++) {
    classOfImage.set(ids[i], map.class[i]);
    versionOfImage.set(ids[i], map.version ? map.version[i] : 0);
  }
  return clusters;
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
  const head = el("div", { class: "page-head", style: { "margin-bottom": ".4rem" } },
    el("div", {},
      el("h2", { style: { margin: 0 } }, `Cluster ${cluster.id}`, el("span", { class: "muted small", text: ` · ${cluster.size} images` })),
      el("div", { class: "small muted" },
        suggested ? el("span", {}, "suggested ", classChip(suggested)) : null,
        cluster.uncertainty != null ? el("span", { text: `${suggested ? " · " : ""}uncertainty ${Number(cluster.uncertainty).toFixed(2)}` }) : null)),
    el("a", { class: "button small", href: `/datasets/${datasetId}/map/?cluster=${cluster.id}&color=class` }, "Show on map"));
  card.append(head, counts);

  if (canLabel && classes.length) {
    const select = el("select", { "aria-label": `Class for cluster ${cluster.id}`, class: "cluster-class" },
      ...classes.map((cls) => el("option", { value: cls.id, selected: suggested && cls.id === suggested.id }, cls.name)));
    const button = el("button", { type: "button", class: "primary small label-cluster" }, "Label this cluster");
    onAction(button, async () => {
      const cls = classById.get(Number(select.value));
      const result = await postJSON(`/api/datasets/${datasetId}/annotations/bulk/`, {
        class: cls.id, cluster: cluster.id, exclude_image_ids: [...excluded],
        expected: expectedVersions(cluster.image_ids.filter((id) => !excluded.has(id)), versionOfImage),
      });
      return [result, `Labeled ${result.updated} image${result.updated === 1 ? "" : "s"} of cluster ${cluster.id} as ${cls.name}`];
    });
    const row = el("div", { class: "row", style: { margin: ".5rem 0" } }, select, button);
    if (suggested && unlabeled > 0) {
      // Each unlabeled image takes its own suggestion (not necessarily the cluster's): one action.
      const accept = el("button", { type: "button", class: "small accept-suggestions" }, "Accept suggestions");
      onAction(accept, async () => {
        const result = await postJSON(`/api/datasets/${datasetId}/suggestions/accept/`, {
          cluster: cluster.id, expected: expectedVersions(cluster.image_ids, versionOfImage),
        });
        return [result, `Accepted ${result.updated} suggestion${result.updated === 1 ? "" : "s"} in cluster ${cluster.id}`];
      });
      row.append(accept);
    }
    row.append(excludedNote);
    card.append(row);
  }
  card.append(thumbs, el("div", { class: "pager" }, moreButton));
  renderThumbs(FIRST);
  return card;
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
