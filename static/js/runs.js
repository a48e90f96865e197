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
let timer = null;
let chartDrawn = false;

function lossSeries(curve) {
  // loss_curve entries are numbers or {step|epoch, loss} objects.
  const x = [];
  const y = [];
  (curve || []).forEach((point, k) => {
    if (typeof point === "number") { x.push(k + 1); y.push(point); }
    else if (point && typeof point === "object") { x.push(point.step ?? point.epoch ?? k + 1); y.push(point.loss ?? point.value); }
  });
  return { x, y };
}

function drawLoss(run) {
  const { x, y } = lossSeries(run.loss_curve);
  const chart = document.getElementById("loss-chart");
  if (!x.length) { chart.classList.add("hidden"); return; }
  chart.classList.remove("hidden");
  const usesEpochs = !(run.loss_curve || []).some((p) => p && typeof p === "object" && p.step !== undefined);
  const trace = { type: "scatter", mode: "lines+markers", x, y, line: { color: "#3b5bdb" }, marker: { size: 4 }, name: "loss" };
  const layout = {
    margin: { l: 50, r: 10, t: 10, b: 40 }, height: 260,
    xaxis: { title: { text: usesEpochs ? "epoch" : "step" } }, yaxis: { title: { text: "reconstruction loss" } },
  };
  (chartDrawn ? Plotly.react : Plotly.newPlot)(chart, [trace], layout, { displaylogo: false, responsive: true });
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
  if (cancelButton) cancelButton.classList.toggle("hidden", !canCancel || !["queued", "running"].includes(run.status) || run.cancel_requested);
  document.getElementById("open-map").classList.toggle("hidden", run.status !== "succeeded");
  const metrics = run.metrics || {};
  const timings = Object.entries(run.stage_timings || {}).map(([stage, s]) => `${stage} ${formatSeconds(Number(s))}`);
  const facts = [];
  if (metrics.final_loss != null) facts.push(`final loss ${Number(metrics.final_loss).toFixed(4)}`);
  if (run.image_count) facts.push(`${run.image_count} images`);
  if (run.cluster_count) facts.push(`${run.cluster_count} clusters`);
  if (metrics.epochs_run != null) facts.push(`${metrics.epochs_run} epochs`);
  if (timings.length) facts.push(timings.join(" · "));
  document.getElementById("live-metrics").textContent = facts.join(" · ");
  drawLoss(run);
  document.body.dataset.runStatus = run.status;
}

async function poll() {
  if (!watched) return;
  try {
    const run = await getJSON(`/api/runs/${watched}/`);
    showRun(run);
    if (["queued", "running"].includes(run.status)) {
      timer = setTimeout(poll, POLL_MS);
    } else {
      const button = document.getElementById("start-run-button");
      if (button) button.disabled = false;
      const note = document.getElementById("start-run-note");
      if (note) note.textContent = "";
      if (run.status === "succeeded") loadReconstructions(run.id);
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

async function loadReconstructions(runId) {
  const section = document.getElementById("reconstructions");
  try {
    const answer = await getJSON(`/datasets/${datasetId}/runs/${runId}/reconstructions.json?n=16`);
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
    const params = {};
    for (const input of form.querySelectorAll("input, select")) {
      if (!input.name || input.value === "") continue;
      params[input.name] = input.type === "number" || input.name === "channels" ? Number(input.value) : input.value;
    }
    const button = document.getElementById("start-run-button");
    button.disabled = true;
    try {
      const run = await postJSON(`/api/datasets/${datasetId}/runs/`, params);
      toast(`Run ${run.id} started.`, { kind: "success" });
      document.getElementById("start-run-note").textContent = `Run ${run.id} is ${run.status}: one run at a time.`;
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
