// Review queue: the most useful items first; reviewers accept the suggestion,
// relabel (all or some of the item's images) or mark the item reviewed.
import {
  classChip, classIndex, classMenu, el, expectedVersions, getJSON, pageData, postJSON, reportWriteError, thumbTile, toast, undoAction,
} from "./common.js";

const data = pageData();
const datasetId = data.dataset.id;
const classes = data.classes;
const { byId: classById } = classIndex(classes);
const canReview = data.allowed_actions.includes("review");
const box = document.getElementById("review-items");
const SHOWN = 24;
// image id -> [class id or null, suggested class id or null, calibrated confidence], from the map.
let imageState = new Map();

// How likely a cluster item's suggestion is right for its unlabeled images: the expected
// share of them that are that class (images suggested another class count 0).
function clusterLikelihood(item) {
  if (item.suggested_class == null) return null;
  let open = 0;
  let sum = 0;
  for (const id of item.image_ids || []) {
    const [classId, suggestion, confidence] = imageState.get(id) || [null, null, 0];
    if (classId != null) continue;
    open += 1;
    if (suggestion === item.suggested_class) sum += confidence || 0;
  }
  return open ? sum / open : null;
}

async function resolve(item, card, outcome, extra = {}) {
  for (const button of card.querySelectorAll("button")) button.disabled = true;
  // The versions the queue showed: a label someone changed since is a 409, not overwritten.
  const ids = extra.image_ids || item.image_ids || [];
  const versionOf = new Map(ids.map((id) => [id, versionSeen(item, id)]));
  try {
    const result = await postJSON(`/api/datasets/${datasetId}/review/resolve/`, {
      kind: item.kind, id: item.id, outcome, ...extra, expected: expectedVersions(ids, versionOf),
    });
    card.remove();
    // Keys are the API's outcome values ("relabelled" is the stored value); the words are what the user reads.
    const words = { accepted: "Suggestion accepted", relabelled: "Relabeled", reviewed: "Marked reviewed" }[outcome];
    const count = result && result.updated ? ` (${result.updated} image${result.updated === 1 ? "" : "s"})` : "";
    toast(`${words}${count}.`, {
      kind: "success",
      action: result && result.action_id ? { label: "Undo", run: () => undoAction(datasetId, result.action_id, () => load()) } : null,
      timeout: 10000,
    });
    if (!box.querySelector(".review-item")) load();
  } catch (err) {
    for (const button of card.querySelectorAll("button")) button.disabled = false;
    // A lost race: nothing was written; reload the queue to show the item as it is now.
    await reportWriteError(err, () => load());
  }
}

function versionSeen(item, id) {
  const index = (item.image_ids || []).indexOf(id);
  return index >= 0 && item.image_versions ? item.image_versions[index] : undefined;
}

function itemCard(item) {
  const excluded = new Set();
  const card = el("section", { class: "card review-item", dataset: { kind: item.kind, id: item.id } });
  const suggested = classById.get(item.suggested_class);
  const title = item.kind === "cluster" ? `Cluster ${item.id}` : `Image ${item.id}`;
  const link = item.kind === "cluster" ? `/datasets/${datasetId}/map/?cluster=${item.id}` : `/images/${item.id}/`;
  card.append(el("div", { class: "page-head", style: { "margin-bottom": ".3rem" } },
    el("div", {},
      el("h2", { style: { margin: 0 } }, el("span", { class: "badge", text: item.kind }), " ", el("a", { href: link, text: title })),
      el("p", { text: item.reason })),
    el("span", { class: "muted small", text: `score ${Number(item.score).toFixed(2)}` })));
  // An unlabeled image's item carries its suggestion's calibrated confidence, the chance it
  // is right (a labeled image's is the share of its neighbors that disagree, said in the reason).
  const likely = item.kind === "image"
    ? (item.label_class == null && item.confidence != null ? Number(item.confidence) : null)
    : clusterLikelihood(item);
  if (suggested) {
    card.append(el("p", { class: "small suggested-line" }, "Suggested: ", classChip(suggested),
      likely != null ? el("span", { class: "muted suggestion-likely", text: ` · ${Math.round(100 * likely)} % likely` }) : null));
  }
  const thumbs = el("div", { class: "thumbs small" });
  for (const id of (item.image_ids || []).slice(0, SHOWN)) {
    const tile = thumbTile(id, { title: canReview ? `Image ${id}: click to leave it out of a relabel` : `Image ${id}` });
    if (canReview) {
      tile.addEventListener("click", () => {
        if (excluded.has(id)) excluded.delete(id); else excluded.add(id);
        tile.classList.toggle("excluded", excluded.has(id));
      });
    } else {
      tile.addEventListener("click", () => { window.location.href = `/images/${id}/`; });
    }
    thumbs.append(tile);
  }
  card.append(thumbs);
  if ((item.image_ids || []).length > SHOWN) card.append(el("p", { class: "muted small", text: `and ${item.image_ids.length - SHOWN} more` }));
  if (canReview) {
    const actions = el("div", { class: "row", style: { "margin-top": ".6rem" } });
    if (suggested) {
      const text = likely != null ? `Accept ${suggested.name} (${Math.round(100 * likely)} %)` : `Accept ${suggested.name}`;
      // An unlikely suggestion is offered, not pushed: a plain button, not the primary one.
      const kind = likely != null && likely < 0.5 ? "small accept" : "primary small accept";
      actions.append(el("button", { type: "button", class: kind, onclick: () => resolve(item, card, "accepted") }, text));
    }
    if (classes.length) {
      const relabel = el("button", {
        type: "button", class: "small relabel",
        onclick: () => {
          const chosen = select.chosen();
          if (!chosen) { toast("Choose a class to relabel as first.", { kind: "warning" }); return; }
          const extra = { class: chosen.id };
          if (excluded.size) extra.image_ids = item.image_ids.filter((id) => !excluded.has(id));
          resolve(item, card, "relabelled", extra);
        },
      }, "Relabel");
      // The suggestion is pre-selected only when it is known to be more likely right than not.
      const offered = suggested && likely != null && likely >= 0.5 ? suggested : null;
      const select = classMenu(classes, { suggested: offered, button: relabel, label: "Relabel as", className: "relabel-class" });
      actions.append(select, relabel);
    }
    actions.append(el("button", { type: "button", class: "small reviewed", onclick: () => resolve(item, card, "reviewed") }, "Mark reviewed"));
    card.append(actions);
  }
  return card;
}

async function load() {
  try {
    const items = await getJSON(`/api/datasets/${datasetId}/review/?limit=50`);
    // Only cluster items need the map (their suggestion's likelihood); none, nothing to read.
    const map = items.some((item) => item.kind === "cluster") ? await getJSON(`/api/datasets/${datasetId}/map/`) : {};
    imageState = new Map();
    (map.image_ids || []).forEach((id, i) => {
      imageState.set(id, [map.class[i], map.suggestion ? map.suggestion[i] : null, map.confidence ? map.confidence[i] : null]);
    });
    box.replaceChildren(...(items.length ? items.map(itemCard)
      : [el("div", { class: "card" }, el("p", { class: "muted", text: "Nothing to review right now." }))]));
  } catch (err) {
    box.replaceChildren(el("p", { class: "notice error", text: err.message }));
  }
  document.body.dataset.reviewReady = "true";
}

document.getElementById("reload-queue").addEventListener("click", () => load());
load();
