// The dashboard shell: sign-in, navigation (hash routes), the error banner, and page lifecycle.
// Each page module exports render(view, ctx); ctx.signal aborts its polling and streams on leave.

import { api, ApiError, session } from "./api.js";
import { destroyAll } from "./charts.js";
import { h, replace } from "./dom.js";

const PAGES = {
  overview: () => import("./pages/overview.js"),
  datasets: () => import("./pages/datasets.js"),
  train: () => import("./pages/train.js"),
  jobs: () => import("./pages/jobs.js"),
  models: () => import("./pages/models.js"),
  synthetic: () => import("./pages/synthetic.js"),
  predict: () => import("./pages/predict.js"),
};

const $ = (id) => document.getElementById(id);
let current = null; // {controller}

export function showError(err, context) {
  const banner = $("banner");
  banner.className = "";
  let text;
  if (err instanceof ApiError && err.status === 403) {
    text = `Not allowed${context ? ` (${context})` : ""}: ${err.message}. Ask an admin for a token with that role, ` +
      "then sign out and in again.";
  } else if (err instanceof ApiError) {
    text = `${context ? context + ": " : ""}${err.message}` + (err.status ? ` (HTTP ${err.status}, ${err.code})` : "");
  } else {
    text = `${context ? context + ": " : ""}${err && err.message ? err.message : err}`;
  }
  replace(banner, h("span", {}, text), h("button", { type: "button", class: "secondary", onclick: clearBanner }, "Dismiss"));
}

export function showInfo(text) {
  const banner = $("banner");
  banner.className = "info";
  replace(banner, h("span", {}, text), h("button", { type: "button", class: "secondary", onclick: clearBanner }, "Dismiss"));
}

export function clearBanner() { replace($("banner")); $("banner").className = ""; }

// A button for an action that needs `role`: disabled with the reason when the token lacks it.
export function actionButton(label, role, onclick, attrs = {}) {
  const allowed = session.can(role);
  return h("button", {
    type: "button", ...attrs, disabled: !allowed || attrs.disabled,
    title: allowed ? attrs.title : `needs the '${role}' role (you are '${session.me?.role}')`,
    onclick: allowed ? onclick : undefined,
  }, label);
}

// The one-click start for a new platform: the shipped AI4I sample becomes a dataset.
export async function importSample(button) {
  button.disabled = true;
  button.textContent = "Importing the AI4I sample…";
  try {
    const ds = await api("dataset-samples/ai4i2020/import", { method: "POST" });
    if (button.isConnected) navigate(`#/datasets/${ds.id}`); // not if the user has moved on meanwhile
  } catch (err) {
    showError(err, "import the sample");
    button.disabled = false;
    button.textContent = "Upload the bundled AI4I sample";
  }
}

export function navigate(hash) {
  if (location.hash === hash) route(); else location.hash = hash;
}

// "#/page/arg1/arg2?k=v" → {page, args, query}; each part decoded once, after splitting.
export function parseHash(hash) {
  const raw = hash.replace(/^#\/?/, "");
  const q = raw.indexOf("?");
  const path = q < 0 ? raw : raw.slice(0, q);
  const decode = (x) => { try { return decodeURIComponent(x); } catch { return x; } };
  const [page, ...args] = path.split("/").map(decode);
  return { page: page || "overview", args: args.filter((x) => x !== ""), query: new URLSearchParams(q < 0 ? "" : raw.slice(q + 1)) };
}

let moveFocus = false; // not on the first page after sign-in (focus goes to main then)

async function route() {
  if (!session.me) return;
  if (current) current.controller.abort();
  destroyAll();
  clearBanner();
  const { page, args, query } = parseHash(location.hash);
  const load = PAGES[page];
  const main = $("view");
  main.dataset.page = page;
  main.dataset.ready = "false";
  // Each visit renders into its own element: whatever a page left running writes into a detached
  // node once another page has replaced it, never over the new page.
  const view = h("div", { class: "page" });
  replace(main, view);
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.getAttribute("href") === `#/${page}`) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const controller = new AbortController();
  current = { controller };
  if (!load) {
    replace(view, h("h1", {}, "Not found"), h("p", {}, `There is no page '${page}'. `, h("a", { href: "#/overview" }, "Go to the overview")));
    main.dataset.ready = "true";
    return;
  }
  replace(view, h("p", { class: "muted" }, "Loading…"));
  try {
    const mod = await load();
    if (controller.signal.aborted) return;
    await mod.render(view, { args, query, signal: controller.signal });
    if (!controller.signal.aborted) {
      main.dataset.ready = "true";
      const h1 = view.querySelector("h1");
      document.title = `${h1?.textContent || page} · Predictive Maintenance`;
      if (h1 && moveFocus) { h1.tabIndex = -1; h1.focus({ preventScroll: true }); } // screen readers hear the new page
    }
  } catch (err) {
    if (controller.signal.aborted || err.name === "AbortError") return;
    replace(view, h("h1", {}, "Could not load this page"), h("p", { class: "error" }, err.message));
    showError(err);
    main.dataset.ready = "true";
  }
}

async function signIn(token) {
  session.token = token;
  try {
    [session.me, session.platform] = await Promise.all([api("me"), api("platform")]);
  } catch (err) {
    session.me = null;
    if (err.status === 401) session.token = null; // else (API restarting) the tab keeps it for a retry
    throw err;
  }
  $("whoami").textContent = `${session.me.name} · ${session.me.role}`;
  $("signin-panel").hidden = true;
  $("topbar").hidden = false;
  route();
  $("view").focus();
}

function signOut(message, { keepToken = false } = {}) {
  if (current) current.controller.abort();
  destroyAll();
  if (!keepToken) session.token = null;
  session.me = null;
  replace($("view"));
  delete $("view").dataset.page;
  $("topbar").hidden = true;
  $("signin-panel").hidden = false;
  $("signin-error").textContent = message || "";
  $("signin-token").value = keepToken && session.token ? session.token : "";
  $("signin-token").focus();
}

function signInFailed(err) {
  return err.status === 401
    ? "That token is unknown or revoked. Check it, or create one with `python -m server token create`."
    : `Could not sign in: ${err.message}. Try again in a moment.`;
}

$("signin").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("signin-error").textContent = "";
  const token = $("signin-token").value.trim();
  try {
    await signIn(token);
  } catch (err) {
    $("signin-error").textContent = signInFailed(err);
  }
});
$("signout").addEventListener("click", () => signOut("Signed out."));
window.addEventListener("pm:unauthorized", () => {
  if (session.me) signOut("Your token was rejected (revoked or expired): sign in again.");
});
window.addEventListener("hashchange", () => { moveFocus = true; route(); });

if (session.token) {
  signIn(session.token).catch((err) => signOut(err.status === 401 ? "" : signInFailed(err), { keepToken: err.status !== 401 }));
} else {
  signOut("");
}
