// Dataset page, "Import labels": sends the file to POST /api/datasets/{id}/annotations/import/ and shows
// what happened: how many images were labeled, the rows that matched no image (and why), the ambiguous
// ones, and an Undo for the one action the import made. User text only ever goes in with textContent.
import { ApiError, csrfToken, el, errorMessage, pageData, undoAction } from "./common.js";

const datasetId = pageData().dataset.id;
const form = document.getElementById("import-labels-form");
const result = document.getElementById("import-labels-result");
const submit = document.getElementById("import-labels-submit");

async function send(body) {
  let response;
  try {
    response = await fetch(`/api/datasets/${datasetId}/annotations/import/`, {
      method: "POST",
      body,
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
    });
  } catch (err) {
    throw new ApiError(0, "The server could not be reached. Check your connection and try again.", null);
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text.slice(0, 300); }
  if (!response.ok) throw new ApiError(response.status, errorMessage(data, response.status), data);
  return data;
}

function show(...children) {
  result.replaceChildren(...children.filter(Boolean));
  result.classList.remove("hidden");
}

function rowsTable(title, rows, count) {
  if (!count) return null;
  const body = el("tbody", {}, rows.map((row) => el("tr", { class: "import-row" },
    el("td", { text: String(row.row) }),
    el("td", { class: "small", text: row.sha256 ? `${row.sha256.slice(0, 12)}…` : row.name || "—" }),
    el("td", { text: row.class || "—" }),
    el("td", { class: "small", text: row.reason }))));
  const more = count > rows.length ? el("p", { class: "muted small", text: `… and ${count - rows.length} more.` }) : null;
  return el("div", { class: "import-rows" },
    el("h3", { text: `${title} (${count})` }),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "Row" }), el("th", { text: "Image" }),
      el("th", { text: "Class" }), el("th", { text: "Why" }))), body),
    more);
}

function showReport(report) {
  const parts = [`${report.updated} image(s) labeled`];
  if (report.unchanged) parts.push(`${report.unchanged} already had that class`);
  if (report.kept) parts.push(`${report.kept} kept their class`);
  const problems = [];
  if (report.unmatched_count) problems.push(`${report.unmatched_count} unmatched`);
  if (report.ambiguous_count) problems.push(`${report.ambiguous_count} ambiguous`);
  const summary = el("div", { class: `notice ${problems.length ? "warning" : "success"}`, id: "import-summary" },
    `Read ${report.rows} row(s): ${parts.join(", ")}.`,
    problems.length ? ` Left out: ${problems.join(", ")} (listed below).` : "");
  const created = report.created_classes.length
    ? el("p", { class: "small", text: `Classes created: ${report.created_classes.join(", ")}.` }) : null;
  const buttons = el("p", { class: "row" },
    el("a", { class: "button", href: window.location.pathname, text: "Show the new labels" }));
  if (report.action_id && report.updated) {
    buttons.prepend(el("button", {
      type: "button", id: "import-undo", class: "danger",
      onclick: async (event) => {
        const button = event.currentTarget;
        button.disabled = true;
        await undoAction(datasetId, report.action_id, (undone) => show(
          el("div", { class: "notice success", id: "import-undone" },
            `Import undone: ${undone.restored} image(s) restored`,
            undone.conflicts.length ? `; ${undone.conflicts.length} changed since kept their new class.` : "."),
          el("p", { class: "row" }, el("a", { class: "button", href: window.location.pathname, text: "Show the labels" }))));
        button.disabled = false; // still there only when the undo failed (a toast says why): try again
      },
    }, "Undo this import"));
  }
  show(summary, created, buttons,
    rowsTable("Unmatched rows", report.unmatched, report.unmatched_count),
    rowsTable("Ambiguous rows", report.ambiguous, report.ambiguous_count));
}

function showError(err) {
  const body = err instanceof ApiError ? err.body : null;
  const notice = el("div", { class: "notice error", role: "alert", id: "import-error", text: err.message });
  let hint = null;
  if (body && body.code === "unknown_classes") {
    const box = document.getElementById("id_import_create_classes");
    hint = el("p", { class: "small" }, box
      ? "Tick “Create classes this dataset does not have yet” to create them, or add them under Classes."
      : "Ask a dataset admin to add these classes, then import again.");
  }
  show(notice, hint);
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = new FormData(form);
  submit.disabled = true;
  submit.textContent = "Importing…";
  try {
    showReport(await send(body));
  } catch (err) {
    showError(err);
  } finally {
    submit.disabled = false;
    submit.textContent = "Import labels";
  }
});
