// Training page: start a run (admins), watch the live run (progress, stage,
// loss curve, cancel), and see the reconstructions of a finished one.
import { ApiError, el, getJSON, pageData, postJSON, showError, toast } from "./common.js";

const Plotly = window.Plotly;
const data = pageData();
const datasetId = data.dataset.id;
const canCancel = data.allowed_actions.includes("cancel_run");
const POLL_MS = 1500;
const STAGES = ["preparing", "training", "embedding", "layout", "clustering", "done"];

const live = document.getElementById("live-run");
const progress = document.getElementById("live-progress");
const cancelButton = document.getElementById("cancel-run");
let watched = null;
let activeRun = data.active_run;  // the dataset's queued or running run, as far as this page knows
let timer = null;
let chartDrawn = false;

function lossSeries(curve) {
  // Two series, never joined: the epochs' mean losses, and the batch losses
  // (each the mean of the steps since the previous report) as a faint trace.
  // Entries are {kind: "epoch"|"batch", step, epoch, loss}; runs recorded
  // before "kind" existed marked epoch means with epoch_loss; the oldest are
  // plain numbers, one per epoch.
  const epochs = { x: [], y: [], epoch: [] };
  const batches = { x: [], y: [] };
  let byStep = false;
  (curve || []).forEach((point, k) => {
    if (typeof point === "number") { epochs.x.push(k + 1); epochs.y.push(point); epochs.epoch.push(k + 1); return; }
    if (!point || typeof point !== "object") return;
    byStep = byStep || point.step !== undefined;
    const x = point.step ?? point.epoch ?? k + 1;
    if (point.kind === "epoch" || (point.kind === undefined && point.epoch_loss !== undefined)) {
      epochs.x.push(x); epochs.y.push(point.epoch_loss ?? point.loss); epochs.epoch.push(point.epoch ?? k + 1);
    } else {
      batches.x.push(x); batches.y.push(point.loss ?? point.value);
    }
  });
  return { epochs, batches, byStep };
}

function drawLoss(run) {
  const { epochs, batches, byStep } = lossSeries(run.loss_curve);
  const chart = document.getElementById("loss-chart");
  if (!epochs.x.length && !batches.x.length) { chart.classList.add("hidden"); return; }
  chart.classList.remove("hidden");
  const traces = [
    { type: "scatter", mode: "lines", x: batches.x, y: batches.y, name: "batch loss", opacity: 0.7,
      line: { color: "#91a7ff", width: 1 }, hovertemplate: "step %{x}: %{y:.4f}<extra>batch loss</extra>" },
    { type: "scatter", mode: "lines+markers", x: epochs.x, y: epochs.y, name: "epoch mean", customdata: epochs.epoch,
      line: { color: "#3b5bdb", width: 2 }, marker: { size: 6 },
      hovertemplate: `epoch %{customdata}${byStep ? " (step %{x})" : ""}: %{y:.4f}<extra>epoch mean</extra>` },
  ];
  const layout = {
    margin: { l: 50, r: 10, t: 10, b: 40 }, height: 260,
    legend: { orientation: "h", x: 1, xanchor: "right", y: 1.02, yanchor: "bottom" },
    xaxis: { title: { text: byStep ? "step" : "epoch" } }, yaxis: { title: { text: "reconstruction loss" } },
  };
  (chartDrawn ? Plotly.react : Plotly.newPlot)(chart, traces, layout, { displaylogo: false, responsive: true });
  chartDrawn = true;
}

function formatSeconds(s) {
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function showRun(run) {
  live.classList.remove("hidden");
  document.getElementById("live-id").textContent = `#${run.id}`;
  const badge = document.getElementById("live-status");
  badge.textContent = run.status;
  badge.className = `badge ${run.status}`;
  const percent = Math.round((run.progress || 0) * 100);
  progress.firstElementChild.style.width = `${run.status === "succeeded" ? 100 : percent}%`;
  progress.setAttribute("aria-valuenow", String(percent));
  progress.classList.toggle("done", run.status === "succeeded");
  progress.classList.toggle("failed", run.status === "failed" || run.status === "cancelled");
  const stageIndex = STAGES.indexOf(run.stage);
  const stageText = run.status === "running" || run.status === "queued"
    ? `${run.status === "queued" ? "Waiting for a worker" : `Stage ${stageIndex + 1} of ${STAGES.length - 1}: ${run.stage}`} · ${percent}%${run.cancel_requested ? " · cancelling…" : ""}`
    : `${run.status}${run.finished ? ` at ${new Date(run.finished).toLocaleString()}` : ""}`;
  document.getElementById("live-stage").textContent = stageText;
  const error = document.getElementById("live-error");
  error.textContent = run.error || "";
  error.classList.toggle("hidden", !run.error);
  // Only the dataset's admins get error_detail (the traceback and the worker) from the API.
  const detail = document.getElementById("live-error-detail");
  detail.querySelector("pre").textContent = run.error_detail || "";
  detail.classList.toggle("hidden", !run.error_detail);
  followStatus(run);
  if (cancelButton) cancelButton.classList.toggle("hidden", !canCancel || !["queued", "running"].includes(run.status) || run.cancel_requested);
  document.getElementById("open-map").classList.toggle("hidden", run.status !== "succeeded");
  const metrics = run.metrics || {};
  const timings = Object.entries(run.stage_timings || {}).map(([stage, s]) => `${stage} ${formatSeconds(Number(s))}`);
  const facts = [];
  const embedding = (run.params || {}).embedding;
  if (embedding) facts.push(`embedding: ${embedding === "uploaded" ? "uploaded vectors" : embedding}`);
  if (metrics.backbone) facts.push(`backbone: ${metrics.backbone.name} (${metrics.backbone.dim} values, ${metrics.backbone.device}, ${metrics.backbone.images_per_second} images/s)`);
  // Which training objective ran, and why ("auto: 3-channel photos"): photos and digits train differently.
  if (metrics.objective) facts.push(`objective: ${metrics.objective}${metrics.objective_reason ? ` (${metrics.objective_reason})` : ""}`);
  // Whether patch features sit beside the learned code, and why ("auto: contrastive codes of 3-channel photos").
  if (metrics.patch_features != null) facts.push(`patch features: ${metrics.patch_features ? "yes" : "no"}${metrics.patch_features_reason ? ` (${metrics.patch_features_reason})` : ""}`);
  // How many labeled images the encoder learned from, and why (or why not): "auto: 120 labeled images in 4 classes".
  if (metrics.labels_used != null) facts.push(`labels used: ${metrics.labels_used}${metrics.labels_reason ? ` (${metrics.labels_reason})` : ""}`);
  if (metrics.final_loss != null) facts.push(`final loss ${Number(metrics.final_loss).toFixed(4)}`);
  if (run.image_count) facts.push(`${run.image_count} images`);
  if (run.cluster_count) facts.push(`${run.cluster_count} clusters`);
  if (metrics.epochs_run != null) facts.push(`${metrics.epochs_run} epochs`);
  if (timings.length) facts.push(timings.join(" · "));
  // A run on uploaded vectors has no model to embed images added after it: they stay off its map.
  if (metrics.unplaced_images) facts.push(`${metrics.unplaced_images} newer images not on the map: ${metrics.unplaced_reason}`);
  document.getElementById("live-metrics").textContent = facts.join(" · ");
  drawLoss(run);
  document.body.dataset.runStatus = run.status;
}

function followStatus(run) {
  // What the page says about a run follows its live status: the past-runs
  // row's badge, and the note under the start button while it is the active
  // run ("Run 2 is running: one run at a time"; nothing once it has ended).
  const badge = document.querySelector(`#runs-table tr[data-run-id="${run.id}"] td:nth-child(2) .badge`);
  if (badge) { badge.textContent = run.status; badge.className = `badge ${run.status}`; }
  const active = ["queued", "running"].includes(run.status);
  if (active) activeRun = run.id;
  else if (activeRun !== run.id) return;  // another run is still the active one
  else activeRun = null;
  const button = document.getElementById("start-run-button");
  if (button) button.disabled = active;
  const note = document.getElementById("start-run-note");
  if (note) note.textContent = active ? `Run ${run.id} is ${run.status}: one run at a time.` : "";
}

async function poll() {
  if (!watched) return;
  try {
    const run = await getJSON(`/api/runs/${watched}/`);
    showRun(run);
    if (["queued", "running"].includes(run.status)) {
      timer = setTimeout(poll, POLL_MS);
    } else if (run.status === "succeeded") {
      if (["uploaded", "backbone"].includes((run.params || {}).embedding)) showNoReconstructions();
      else loadReconstructions(run.id);
    }
  } catch (err) {
    showError(err);
    timer = setTimeout(poll, POLL_MS * 4);
  }
}

function watch(runId) {
  if (timer) clearTimeout(timer);
  watched = runId;
  document.getElementById("reconstructions").classList.add("hidden");
  poll();
}

function showNoReconstructions() {
  // Vectors made elsewhere come without a decoder: there is nothing to rebuild the images from.
  document.getElementById("recon-grid").replaceChildren();
  document.getElementById("recon-note").textContent = "No reconstructions for uploaded embeddings or a pretrained backbone: the vectors come without a decoder that could rebuild the images.";
  document.getElementById("reconstructions").classList.remove("hidden");
}

async function loadReconstructions(runId) {
  const section = document.getElementById("reconstructions");
  try {
    const answer = await getJSON(`/datasets/${datasetId}/runs/${runId}/reconstructions.json?n=16`);
    document.getElementById("recon-note").textContent = "Each pair: the original (left) and what the autoencoder rebuilt from its code (right).";
    const grid = document.getElementById("recon-grid");
    grid.replaceChildren(...answer.items.map((item) => el("a", { class: "recon-pair", href: `/images/${item.image_id}/`, title: `Image ${item.image_id}` },
      el("img", { src: item.original, alt: `original ${item.image_id}` }),
      el("img", { src: item.reconstruction, alt: `reconstruction ${item.image_id}` }))));
    section.classList.toggle("hidden", !answer.items.length);
  } catch (err) {
    section.classList.add("hidden");
    if (!(err instanceof ApiError && err.status === 409)) showError(err);
  }
}

const form = document.getElementById("start-run-form");
if (form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    // Every field is sent as the server rendered or the person edited it: the
    // fields, their defaults and kinds come from the one declaration of the run
    // parameters.  An emptied field is null ("auto" / "off" where it may be empty).
    const params = {};
    for (const input of form.querySelectorAll("input[name], select[name]")) {
      const text = input.value.trim();
      if (text === "") params[input.name] = null;
      else params[input.name] = input.dataset.kind === "str" ? text : Number(text);
    }
    const button = document.getElementById("start-run-button");
    button.disabled = true;
    try {
      const run = await postJSON(`/api/datasets/${datasetId}/runs/`, params);
      toast(`Run ${run.id} started.`, { kind: "success" });
      followStatus(run);
      watch(run.id);
      live.scrollIntoView({ behavior: "smooth" });
    } catch (err) {
      showError(err);
      button.disabled = false;
    }
  });
}

if (cancelButton) {
  cancelButton.addEventListener("click", async () => {
    if (!watched || !window.confirm("Cancel this run? Its progress is lost.")) return;
    cancelButton.disabled = true;
    try {
      const run = await postJSON(`/api/runs/${watched}/cancel/`);
      showRun(run);
      toast("Cancelling the run…");
    } catch (err) {
      showError(err);
    } finally {
      cancelButton.disabled = false;
    }
  });
}

for (const link of document.querySelectorAll(".watch-run")) {
  link.addEventListener("click", (event) => {
    event.preventDefault();
    watch(Number(link.dataset.runId));
    history.replaceState(null, "", `?run=${link.dataset.runId}`);
    live.scrollIntoView({ behavior: "smooth" });
  });
}

const requested = Number(new URLSearchParams(location.search).get("run"));
const first = requested || data.active_run || data.watch_run;
if (first) watch(first);
