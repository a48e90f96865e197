// The retrain offer on the map and cluster pages: "N labels since the last run — retraining would
// use them", with "Retrain now" for admins (a default run through POST /api/datasets/{id}/runs/),
// disabled while a run is queued or running, whose progress it then shows and links to.
// The advice is the page's `retrain` data, the shape of GET /api/datasets/{id}/retrain/.
import { api, el, getJSON, pageData, showError } from "./common.js";

const POLL_MS = 3000;
const data = pageData();
const box = document.getElementById("retrain-offer");
let advice = data.retrain || null;
let pollTimer = null;

function plural(n, word) {
  return `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`;
}

function headline() {
  const n = advice.labels_new_to_map;
  if (advice.last_run_used_labels) return `${plural(n, "label")} since the last run — retraining would use them.`;
  return `${plural(n, "label")} the current map did not learn from — retraining would use them.`;
}

function runLink(run) {
  const percent = Math.round((run.progress || 0) * 100);
  const state = run.status === "running" ? `running, ${percent}%` : run.status;
  return el(
    "span",
    { class: "small", id: "retrain-run" },
    `Run ${run.id} is ${state}. `,
    el("a", { href: box.dataset.runsUrl, id: "retrain-progress-link" }, "Watch its progress"),
  );
}

function render(activeRun) {
  box.replaceChildren();
  const show = advice && (advice.suggested || activeRun);
  box.classList.toggle("hidden", !show);
  if (!show) return;
  if (advice.suggested) box.append(el("strong", { id: "retrain-headline" }, headline()), " ");
  if (advice.auto_retrain && advice.suggested && !activeRun) {
    box.append(el("span", { class: "small muted" }, "Auto-retrain is on: the app starts such a run by itself. "));
  }
  if (advice.can_start_run && advice.suggested) {
    box.append(
      el(
        "button",
        {
          type: "button",
          class: "small primary",
          id: "retrain-now",
          disabled: Boolean(activeRun),
          title: activeRun ? "One run at a time: wait for this one to finish." : "Start a run with the default parameters",
          onclick: start,
        },
        "Retrain now",
      ),
      " ",
    );
  }
  if (!advice.can_start_run && advice.suggested && !advice.auto_retrain) {
    box.append(el("span", { class: "small muted" }, "An admin of the dataset can start the run. "));
  }
  if (activeRun) box.append(runLink(activeRun));
}

async function start(event) {
  const button = event.currentTarget;
  button.disabled = true;
  try {
    const run = await api("POST", `/api/datasets/${data.dataset.id}/runs/`, {});
    watch({ id: run.id, status: run.status, progress: 0 });
  } catch (err) {
    // 409: someone started one meanwhile; show that run instead of an error.
    if (err.status === 409 && err.body && err.body.run_id) {
      watch({ id: err.body.run_id, status: "queued", progress: 0 });
      return;
    }
    button.disabled = false;
    showError(err);
  }
}

function watch(run) {
  render(run);
  clearTimeout(pollTimer);
  if (run.status !== "queued" && run.status !== "running") return;
  pollTimer = setTimeout(async () => {
    try {
      const fresh = await getJSON(`/api/runs/${run.id}/`);
      if (fresh.status === "queued" || fresh.status === "running") {
        watch(fresh);
      } else {
        // Finished: the offer is whatever the server now advises (a new map resets the count).
        advice = await getJSON(`/api/datasets/${data.dataset.id}/retrain/`);
        render(null);
        box.prepend(el("span", { class: "small", id: "retrain-finished" }, `Run ${fresh.id} ${fresh.status}. `));
        box.classList.remove("hidden");
      }
    } catch (err) {
      pollTimer = setTimeout(() => watch(run), POLL_MS * 2);
    }
  }, POLL_MS);
}

if (box && advice) {
  if (advice.active_run) watch({ ...advice.active_run, progress: 0 });
  else render(null);
}
