import { actionButton, importSample, showError } from "../app.js";
import { api, session } from "../api.js";
import { duration, emptyState, grid, h, progressBar, replace, statusBadge, when } from "../dom.js";

const POLL_MS = 2000;

function flowerLink() {
  const f = session.platform?.flower;
  if (!f) return null;
  const host = ["0.0.0.0", "::", ""].includes(f.host) ? location.hostname : f.host;
  return h("p", {}, h("a", { href: `http://${host}:${f.port}/`, target: "_blank", rel: "noopener" }, "Open Flower"),
    h("span", { class: "hint" }, ` — per-task monitoring; ${f.note}.`));
}

function jobRow(j) {
  return [
    h("a", { href: `#/jobs/${j.id}` }, j.kind), j.queue, statusBadge(j.status),
    h("div", {}, progressBar(j.progress, `progress of ${j.kind}`), h("span", { class: "hint" }, `${Math.round(j.progress * 100)} % ${j.message || ""}`)),
    duration(j.started_at || j.created_at),
  ];
}

export async function render(view, { signal }) {
  const health = h("div", { class: "kpis", id: "health" });
  const queues = h("div", { id: "queues" });
  const running = h("div", { id: "running-jobs" });
  const failures = h("div", { id: "recent-failures" });
  const start = h("div", { id: "getting-started" });
  replace(view,
    h("h1", {}, "Overview"),
    start,
    health,
    h("div", { class: "grid" },
      h("section", { class: "panel", "aria-labelledby": "q-h" }, h("h2", { id: "q-h" }, "Queues"), queues, flowerLink()),
      h("section", { class: "panel", "aria-labelledby": "r-h" }, h("h2", { id: "r-h" }, "Running now"), running)),
    h("section", { class: "panel", "aria-labelledby": "f-h" }, h("h2", { id: "f-h" }, "Recent failures"), failures));

  async function gettingStarted() {
    const datasets = await api("datasets", { query: { limit: 1 }, signal });
    if (datasets.total !== 0) return;
    const b = actionButton("Upload the bundled AI4I sample", "operator", (e) => importSample(e.currentTarget), { id: "import-sample" });
    replace(start, emptyState("No datasets yet",
      "Start with the AI4I 2020 milling-machine sample shipped with the platform (10,000 readings, 339 failures), or drop your own CSV on the Datasets page.",
      b, h("a", { class: "button secondary", href: "#/datasets" }, "Upload my own file")));
  }

  let shown = null;
  async function refresh() {
    const [hl, run, queued, failed] = await Promise.all([
      api("/api/health", { signal }),
      api("jobs", { query: { status: "running", limit: 20 }, signal }),
      api("jobs", { query: { status: "queued", limit: 1 }, signal }),
      api("jobs", { query: { status: "failed", limit: 5 }, signal }),
    ]);
    const key = JSON.stringify([hl, run, queued.total, failed.items.map((j) => j.id)]);
    if (key === shown) return; // unchanged: keep the DOM (and the keyboard focus in it)
    shown = key;
    replace(health,
      h("div", { class: "kpi" }, h("b", { class: hl.status === "ok" ? "ok" : "bad" }, hl.status), h("span", {}, "platform")),
      h("div", { class: "kpi" }, h("b", { class: hl.database.ok ? "ok" : "bad" }, hl.database.ok ? "up" : "down"), h("span", {}, `database (${session.platform?.database})`)),
      h("div", { class: "kpi" }, h("b", { class: hl.broker.ok ? "ok" : "bad" }, hl.broker.ok ? "up" : "down"), h("span", {}, "broker")),
      h("div", { class: "kpi" }, h("b", {}, String(run.total)), h("span", {}, "jobs running")),
      h("div", { class: "kpi" }, h("b", {}, String(queued.total)), h("span", {}, "jobs queued")));
    replace(queues,
      grid(["queue", "workers", "waiting messages", "worker names"], Object.entries(hl.queues).map(([q, st]) => [
        q, String(st.workers), st.depth === null ? "–" : String(st.depth), (st.worker_names || []).join(", ") || "none"])),
      hl.problems.length ? h("ul", { class: "error" }, hl.problems.map((p) => h("li", {}, p))) : null);
    replace(running, run.items.length
      ? grid(["job", "queue", "status", "progress", "time"], run.items.map(jobRow))
      : h("p", { class: "muted" }, "Nothing is running. Start a job from ", h("a", { href: "#/train" }, "Train"), "."));
    replace(failures, failed.items.length
      ? grid(["job", "queue", "error", "finished"], failed.items.map((j) => [
        h("a", { href: `#/jobs/${j.id}` }, j.kind), j.queue, j.error ? `${j.error.type}: ${j.error.message}` : "—", when(j.finished_at)]))
      : h("p", { class: "muted" }, "No failed jobs."));
  }

  await Promise.all([gettingStarted(), refresh()]);
  (async function poll() {
    while (!signal.aborted) {
      await new Promise((r) => setTimeout(r, POLL_MS));
      if (signal.aborted) return;
      try { await refresh(); } catch (err) { if (!signal.aborted) showError(err, "refresh the overview"); }
    }
  })();
}
