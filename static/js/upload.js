// Upload page: drag and drop or pick files (images and .zip archives), send them
// in batches with per-batch progress, then show what was stored, skipped and rejected.
import { csrfToken, el, errorMessage, pageData } from "./common.js";

const data = pageData();
const datasetId = data.dataset.id;
const limits = data.limits || {};
const MAX_FILES = Math.max(1, Math.min(limits.max_files_per_request || 100, 100));
const MAX_BATCH_BYTES = 64 * 1024 * 1024;
const ALLOWED = /\.(png|jpe?g|webp|bmp|tiff?|gif|zip)$/i;

const dropzone = document.getElementById("dropzone");
const input = document.getElementById("file-input");
const batchesBox = document.getElementById("batches");
const summary = document.getElementById("upload-summary");
const report = { stored: 0, skipped: 0, rejected: 0 };
const queue = [];
let running = false;
// Batches of this round (reset when the queue runs dry), for "Sending batch k of n".
const round = { total: 0, done: 0 };

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

// Archives travel alone; images are grouped up to the per-request file and byte limits.
function makeBatches(files) {
  const batches = [];
  let current = [];
  let bytes = 0;
  for (const file of files) {
    if (/\.zip$/i.test(file.name)) {
      batches.push([file]);
      continue;
    }
    if (current.length && (current.length >= MAX_FILES || bytes + file.size > MAX_BATCH_BYTES)) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(file);
    bytes += file.size;
  }
  if (current.length) batches.push(current);
  return batches;
}

function addReportRow(name, result, detail) {
  const row = el("tr", { class: `report-${result}` },
    el("td", { text: name }),
    el("td", {}, el("span", { class: `badge ${result === "stored" ? "succeeded" : result === "skipped" ? "cancelled" : "failed"}`, text: result })),
    el("td", { class: "small", text: detail || "" }));
  document.getElementById("report-rows").append(row);
}

function updateCounts() {
  document.getElementById("count-stored").textContent = String(report.stored);
  document.getElementById("count-skipped").textContent = String(report.skipped);
  document.getElementById("count-rejected").textContent = String(report.rejected);
}

function enqueue(fileList) {
  const files = [...fileList];
  if (!files.length) return;
  document.getElementById("upload-progress").classList.remove("hidden");
  // The report's totals are final only when every batch has answered: until then
  // it stays hidden and the progress card says how far the sending is.
  document.getElementById("upload-report").classList.add("hidden");
  delete document.body.dataset.uploadDone;
  for (const file of files.filter((f) => !ALLOWED.test(f.name))) {
    report.rejected += 1;
    addReportRow(file.name, "rejected", "Not an image or .zip file (by its name); not sent.");
  }
  updateCounts();
  for (const batch of makeBatches(files.filter((f) => ALLOWED.test(f.name)))) {
    const bytes = batch.reduce((sum, f) => sum + f.size, 0);
    const bar = el("div", {});
    const status = el("span", { class: "small muted", text: "waiting" });
    const names = batch.length === 1 ? batch[0].name : `${batch.length} files: ${batch.slice(0, 3).map((f) => f.name).join(", ")}${batch.length > 3 ? ", …" : ""}`;
    const row = el("div", { class: "batch" },
      el("div", { class: "names", title: names }, el("span", { text: names }), el("span", { class: "muted small", text: ` (${formatBytes(bytes)})` })),
      el("div", { class: "progress" }, bar), status);
    batchesBox.append(row);
    queue.push({ files: batch, bar, status, row });
    round.total += 1;
  }
  if (!running) runQueue();
}

async function runQueue() {
  running = true;
  while (queue.length) {
    const batch = queue.shift();
    summary.textContent = `Sending batch ${round.done + 1} of ${round.total}…`;
    await send(batch);
    round.done += 1;
  }
  running = false;
  round.total = 0;
  round.done = 0;
  summary.textContent = `Done: ${report.stored} stored, ${report.skipped} skipped, ${report.rejected} rejected.`;
  document.getElementById("upload-report").classList.remove("hidden");
  document.body.dataset.uploadDone = "true";
}

function send(batch) {
  return new Promise((resolve) => {
    const form = new FormData();
    for (const file of batch.files) form.append("files", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/datasets/${datasetId}/images/`);
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (event) => {
      if (!event.lengthComputable) return;
      const percent = Math.round((event.loaded / event.total) * 100);
      batch.bar.style.width = `${percent}%`;
      batch.status.textContent = percent < 100 ? `${percent}% sent` : "processing…";
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { body = null; }
      if (xhr.status >= 200 && xhr.status < 300 && body) {
        batch.bar.style.width = "100%";
        batch.row.querySelector(".progress").classList.add("done");
        const created = body.created || [];
        const skipped = body.skipped || [];
        const rejected = body.rejected || [];
        report.stored += created.length;
        report.skipped += skipped.length;
        report.rejected += rejected.length;
        for (const item of created) addReportRow(item.name, "stored", `image ${item.id}`);
        for (const item of skipped) addReportRow(item.name, "skipped", item.reason);
        for (const item of rejected) addReportRow(item.name, "rejected", item.error);
        batch.status.textContent = `${created.length} stored`;
      } else {
        const message = xhr.status === 0 ? "The connection failed." : errorMessage(body, xhr.status);
        batch.row.querySelector(".progress").classList.add("failed");
        batch.status.textContent = `failed (${xhr.status || "network"})`;
        for (const file of batch.files) addReportRow(file.name, "rejected", message);
        report.rejected += batch.files.length;
      }
      updateCounts();
      resolve();
    });
    xhr.addEventListener("error", () => {
      batch.row.querySelector(".progress").classList.add("failed");
      batch.status.textContent = "failed (network)";
      for (const file of batch.files) addReportRow(file.name, "rejected", "The connection failed before the server answered.");
      report.rejected += batch.files.length;
      updateCounts();
      resolve();
    });
    batch.status.textContent = "sending…";
    xhr.send(form);
  });
}

input.addEventListener("change", () => { enqueue(input.files); input.value = ""; });
for (const name of ["dragenter", "dragover"]) {
  dropzone.addEventListener(name, (event) => { event.preventDefault(); dropzone.classList.add("over"); });
}
for (const name of ["dragleave", "drop"]) {
  dropzone.addEventListener(name, (event) => { event.preventDefault(); dropzone.classList.remove("over"); });
}
dropzone.addEventListener("drop", (event) => enqueue(event.dataTransfer.files));
// A file dropped beside the zone must not navigate away from the page.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());
