import { actionButton, navigate, showError } from "../app.js";
import { api, events } from "../api.js";
import { lines } from "../charts.js";
import { duration, grid, h, pager, progressBar, replace, statusBadge, when } from "../dom.js";

const PAGE = 50;
const STATUSES = ["", "queued", "running", "succeeded", "failed", "cancelled"];
const QUEUES = ["", "gan", "ml", "llm", "system"];
const TERMINAL = ["succeeded", "failed", "cancelled"];

export async function render(view, ctx) {
  if (ctx.args[0]) return renderJob(view, ctx.args[0], ctx);
  return renderList(view, ctx);
}

function listHash(q) {
  const p = new URLSearchParams();
  for (const k of ["status", "queue", "kind", "offset"]) if (q[k]) p.set(k, q[k]);
  const s = p.toString();
  return `#/jobs${s ? `?${s}` : ""}`;
}

async function renderList(view, { query, signal }) {
  const q = { status: query.get("status") || "", queue: query.get("queue") || "", kind: query.get("kind") || "",
    offset: Number(query.get("offset") || 0) };
  const go = (change) => navigate(listHash({ ...q, offset: 0, ...change }));
  const sel = (name, options) => h("select", { id: `filter-${name}`, name, onchange: (e) => go({ [name]: e.target.value }) },
    options.map((o) => h("option", { value: o, selected: q[name] === o }, o || `any ${name}`)));
  const kind = h("input", { type: "text", id: "filter-kind", name: "kind", value: q.kind, placeholder: "e.g. train_failure", size: "16",
    onchange: (e) => go({ kind: e.target.value.trim() }) });
  const listBox = h("div", { id: "job-list" });
  replace(view, h("h1", {}, "Jobs"),
    h("form", { class: "row panel", role: "search", onsubmit: (e) => e.preventDefault() },
      h("label", { for: "filter-status" }, "Status"), sel("status", STATUSES),
      h("label", { for: "filter-queue" }, "Queue"), sel("queue", QUEUES),
      h("label", { for: "filter-kind" }, "Kind"), kind),
    listBox);
  let shown = null;
  async function refresh() {
    const page = await api("jobs", { query: { status: q.status, queue: q.queue, kind: q.kind, limit: PAGE, offset: q.offset }, signal });
    const key = JSON.stringify([page.total, page.items.map((j) => [j.id, j.status, j.progress, j.finished_at])]);
    if (key === shown) return page; // unchanged: keep the DOM (and the keyboard focus in it)
    shown = key;
    replace(listBox, page.items.length
      ? h("div", { class: "panel" },
        grid(["job", "kind", "queue", "status", "progress", "submitted", "by", "ran for"], page.items.map((j) => [
          h("a", { href: `#/jobs/${j.id}` }, j.id.slice(0, 8)), j.kind, j.queue, statusBadge(j.status),
          progressBar(j.progress, `progress of job ${j.id.slice(0, 8)}`), when(j.created_at), j.submitted_by || "—",
          j.started_at ? duration(j.started_at, j.finished_at) : "—"])),
        pager(page, (o) => navigate(listHash({ ...q, offset: o }))))
      : h("p", { class: "empty" }, q.status || q.queue || q.kind ? "No job matches these filters." : "No jobs yet: start one from Train."));
    return page;
  }
  await refresh();
  (async () => {
    while (!signal.aborted) {
      await new Promise((r) => setTimeout(r, 3000));
      if (signal.aborted) return;
      try { await refresh(); } catch (err) { if (!signal.aborted) showError(err, "refresh jobs"); }
    }
  })();
}

function resultLinks(result) {
  if (!result) return null;
  const links = [];
  if (result.model_id) links.push(h("a", { class: "button", href: `#/models/${result.model_id}` }, "Open the model"));
  if (result.dataset_id) links.push(h("a", { class: "button", href: `#/datasets/${result.dataset_id}` }, "Open the dataset"));
  for (const id of Object.values(result.dataset_ids || {})) links.push(h("a", { class: "button secondary", href: `#/datasets/${id}` }, `Dataset ${id.slice(0, 8)}`));
  if (result.explanation_id) links.push(h("a", { class: "button", href: `#/predict?explanation=${result.explanation_id}` }, "Read the explanation"));
  return links.length ? h("div", { class: "row" }, links) : null;
}

async function renderJob(view, id, { signal }) {
  let job = await api(`jobs/${encodeURIComponent(id)}`, { signal });
  const head = h("div", { id: "job-head" });
  const barBox = h("div", { id: "job-progress" });
  const msg = h("p", { id: "job-message", class: "hint" });
  const log = h("div", { class: "log", id: "job-log", "aria-label": "event log" });
  const detail = h("div", { id: "job-detail" });
  const isTvae = job.task_name === "gan.train_tvae";
  const lossCanvas = isTvae ? h("canvas", { id: "loss-chart" }) : null;
  const loss = [];
  let chart = null;
  let lossDirty = false;
  replace(view, h("h1", {}, `Job ${job.kind}`), head,
    h("section", { class: "panel" }, h("h2", {}, "Progress"), barBox, msg,
      isTvae ? h("div", {}, h("h3", {}, "Training loss per epoch"), h("div", { class: "chart-box" }, lossCanvas)) : null),
    detail,
    h("section", { class: "panel" }, h("h2", {}, "Event log"), log));

  // The head is built once and updated in place: progress events arrive several times a second,
  // and rebuilding the Cancel button each time would drop keyboard focus and clicks in flight.
  const badge = statusBadge(job.status);
  const cancel = actionButton("Cancel", "operator", async () => {
    cancel.disabled = true;
    try { job = await api(`jobs/${job.id}/cancel`, { method: "POST" }); drawHead(); } catch (err) { showError(err, "cancel"); }
  }, { class: "danger", id: "cancel-job" });
  const bar = progressBar(job.progress, "job progress");
  const percent = h("span", { id: "job-percent" });
  replace(head, h("div", { class: "row" }, badge,
    h("span", {}, `${job.task_name} on queue '${job.queue}'`), h("span", { class: "muted" }, `submitted ${when(job.created_at)} by ${job.submitted_by || "?"}`),
    h("span", { class: "spacer" }), cancel));
  replace(barBox, bar, percent);
  function drawHead() {
    badge.className = `badge s-${job.status}`;
    badge.textContent = job.status;
    if (TERMINAL.includes(job.status)) cancel.remove();
    else if (job.cancel_requested) { cancel.disabled = true; cancel.textContent = "Cancelling…"; }
    const p = Math.round(job.progress * 100);
    bar.setAttribute("aria-valuenow", String(p));
    bar.firstChild.style.width = `${p}%`;
    percent.textContent = `${p} %`;
    msg.textContent = job.message || "";
  }
  function drawDetail() {
    replace(detail, h("div", { class: "grid" },
      h("section", { class: "panel" }, h("h2", {}, "Parameters"), h("pre", { id: "job-params" }, JSON.stringify(job.params, null, 2))),
      job.error ? h("section", { class: "panel" }, h("h2", { class: "bad" }, "Error"), h("p", { id: "job-error" }, `${job.error.type}: ${job.error.message}`)) : null,
      job.result ? h("section", { class: "panel" }, h("h2", {}, "Result"), resultLinks(job.result),
        h("pre", { id: "job-result" }, JSON.stringify(job.result, null, 2).slice(0, 20000))) : null,
      h("section", { class: "panel" }, h("h2", {}, "Timing"), grid(["", ""], [
        ["started", when(job.started_at)], ["finished", when(job.finished_at)], ["ran for", job.started_at ? duration(job.started_at, job.finished_at) : "—"],
        ["worker", job.worker || "—"], ["attempts", String(job.attempts)], ["time limit", `${job.timeout_s} s`]]))));
  }
  async function drawLoss() {
    if (!isTvae || !lossDirty) return;
    lossDirty = false;
    const pts = loss.map(([x, y]) => ({ x, y }));
    if (chart && chart.canvas.isConnected) {
      chart.data.datasets[0].data = pts;
      chart.update("none");
      lossCanvas.dataset.points = String(pts.length);
    } else {
      chart = await lines(lossCanvas, [{ label: "loss", points: pts }], { x: "epoch", y: "mean loss", label: "TVAE training loss per epoch" });
    }
  }
  // Progress writes are throttled, so live events can skip an epoch: once the generator is
  // registered, its stored loss curve (every epoch) replaces what was collected live.
  async function lossFromReport() {
    if (!isTvae || !job.result?.model_id) return;
    try {
      const rep = await api(`models/${job.result.model_id}/report`, { signal });
      loss.splice(0, loss.length, ...(rep.loss_curve || []).map((v, i) => [i + 1, v]));
      lossDirty = true;
    } catch { /* the live curve stays */ }
  }
  drawHead();
  drawDetail();
  if (TERMINAL.includes(job.status)) await lossFromReport();
  const addLog = (text, cls) => {
    log.append(h("div", { class: cls || "" }, text));
    log.scrollTop = log.scrollHeight;
  };
  const timer = setInterval(drawLoss, 500);
  signal.addEventListener("abort", () => clearInterval(timer));
  const seenEpochs = new Set(loss.map(([e]) => e));
  events(`jobs/${job.id}/events`, (ev) => {
    const d = ev.data || {};
    const t = d.ts ? when(d.ts) : "";
    if (ev.event === "progress") {
      job.progress = d.fraction ?? job.progress;
      job.message = d.message ?? job.message;
      if (d.metrics && d.metrics.epoch && d.metrics.loss !== undefined && !seenEpochs.has(d.metrics.epoch)) {
        seenEpochs.add(d.metrics.epoch);
        loss.push([d.metrics.epoch, d.metrics.loss]);
        loss.sort((a, b) => a[0] - b[0]);
        lossDirty = true;
      }
      addLog(`${t} progress ${Math.round((d.fraction || 0) * 100)} % ${d.message || ""}`);
      drawHead();
    } else if (ev.event === "status") {
      addLog(`${t} status → ${d.status}${d.message ? `: ${d.message}` : ""}`, d.status === "failed" ? "bad" : "");
      job.status = d.status;
      drawHead();
      if (TERMINAL.includes(d.status)) {
        api(`jobs/${job.id}`, { signal }).then(async (j) => { job = j; drawHead(); drawDetail(); await lossFromReport(); drawLoss(); })
          .catch((err) => { if (!signal.aborted) showError(err, "load the job's result"); });
      }
    } else if (ev.event === "log") {
      addLog(`${t} ${d.level || "info"}: ${d.message}`, d.level === "error" ? "bad" : d.level === "warning" ? "warn" : "");
    } else if (ev.event === "token_reset") {
      addLog(`${t} streamed text discarded (${d.reason})`, "warn");
    } else if (ev.event === "error") {
      addLog(`stream error: ${d.message || ""}`, "bad");
    }
  }, signal).catch((err) => { if (!signal.aborted) showError(err, "live events"); });
  await drawLoss();
}
