// The interest-tracker inspector: plain JavaScript over the service's own API.
//
// The API key lives in this tab's sessionStorage and travels only in the
// Authorization header (never in a URL, never written into the page). Everything the
// API returns is put into the page as text (textContent), never as HTML.
"use strict";

const KEY_SLOT = "interest-tracker.api-key";
const DAY_MS = 86400000;
const PROJECTION_DAYS = 14;
const STAGES = ["catalog", "ratings", "raters", "profiles", "training"];  // after "starting"
const STAGE_NAMES = {
  starting: "starting", catalog: "embedding the catalog", ratings: "storing the demo users' first sessions",
  raters: "storing the other raters' ratings", profiles: "replaying the demo users' sessions into profiles",
  training: "training the tenant's recommender models", done: "done",
};
const COLORS = ["#2f5fb3", "#2f7d4f", "#b2452f", "#8a4fb3", "#c07a00", "#1f8a8a",
  "#a23b72", "#5b6b1f", "#d0543a", "#3d4f7d"];

const state = {
  overview: null,          // GET /v1/tenant, for the half-lives and the header
  users: { prefix: "", cursor: null, next: null },
  user: null,              // the user page's id
  recs: null,              // the last list shown
  evidence: new Map(),     // event id -> evidence entry, to name cited events
  demoLoading: false,
};

// ---------------------------------------------------------------- small helpers

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "style") node.style.cssText = value;  // CSSOM: allowed by the CSP
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.setAttribute("class", value);
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(id, visible) { $(id).hidden = !visible; }

function showError(id, message) {
  const node = $(id);
  node.textContent = message || "";
  node.hidden = !message;
}

function ago(iso) {
  if (!iso) return "never";
  const seconds = (Date.now() - Date.parse(iso)) / 1000;
  const future = seconds < 0;
  const s = Math.abs(seconds);
  const text = s < 60 ? `${Math.round(s)} s` : s < 3600 ? `${Math.round(s / 60)} min`
    : s < 86400 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86400)} d`;
  return future ? `in ${text}` : `${text} ago`;
}

function shortDate(ms) {
  return new Date(ms).toLocaleDateString(undefined, { month: "short", day: "numeric" });
}

// ---------------------------------------------------------------- the API

function apiKey() { return sessionStorage.getItem(KEY_SLOT); }

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(method, path, body, key) {
  const headers = { Authorization: `Bearer ${key || apiKey()}`, Accept: "application/json" };
  const init = { method, headers, cache: "no-store", referrerPolicy: "no-referrer" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (!response.ok) {
    const error = (data && data.error) || {};
    if (response.status === 401 && !key) signOut("Your API key is no longer accepted. Sign in again.");
    throw new ApiError(response.status, error.code || "http_error",
      error.message || `The service answered ${response.status}.`);
  }
  return data;
}

const userPath = (id) => `/v1/users/${encodeURIComponent(id)}`;

// ---------------------------------------------------------------- sign-in

function signOut(message) {
  sessionStorage.removeItem(KEY_SLOT);
  state.overview = null;
  if (location.hash && location.hash !== "#/") location.hash = "#/";
  render();
  showError("signin-error", message || "");
}

async function signIn(event) {
  event.preventDefault();
  const input = $("key");
  const key = input.value.trim();
  input.value = "";  // not kept in the page
  showError("signin-error", "");
  if (!key) return;
  $("signin-button").disabled = true;
  try {
    state.overview = await api("GET", "/v1/tenant", undefined, key);
    sessionStorage.setItem(KEY_SLOT, key);
    location.hash = "#/";
    render();
  } catch (error) {
    showError("signin-error", error.status === 401
      ? "That API key was not accepted: it is unknown or has been revoked. Check the key " +
        "(make run prints it and keeps it in data/dev-api-key or data/demo-api-key)."
      : `Could not sign in: ${error.message}`);
  } finally {
    $("signin-button").disabled = false;
  }
}

// ---------------------------------------------------------------- demo progress

async function pollDemo() {
  let body = null;
  try {
    const response = await fetch("/readyz", { cache: "no-store" });
    body = await response.json();
  } catch (_) {
    setTimeout(pollDemo, 3000);
    return;
  }
  const demo = body && body.demo;
  const banner = $("demo-banner");
  if (!demo) { banner.hidden = true; return; }
  const wasLoading = state.demoLoading;
  state.demoLoading = demo.state === "loading";
  banner.classList.toggle("failed", demo.state === "failed");
  if (demo.state === "loading") {
    const step = Math.max(0, STAGES.indexOf(demo.stage));
    const part = demo.total > 0 ? demo.done / demo.total : 0;
    const fraction = (step + part) / STAGES.length;
    $("demo-text").textContent = `Loading the demo tenant (first start): ` +
      `${STAGE_NAMES[demo.stage] || demo.stage}` +
      (demo.total > 0 ? ` ${demo.done.toLocaleString()} of ${demo.total.toLocaleString()}` : "") +
      ` · ${Math.round(demo.seconds)} s. The service answers meanwhile; the demo's users ` +
      `appear here when it is loaded (its key is in data/demo-api-key).`;
    $("demo-bar").style.width = `${Math.round(fraction * 100)}%`;
    banner.dataset.state = "loading";
    banner.hidden = false;
    setTimeout(pollDemo, 1500);
    return;
  }
  banner.dataset.state = demo.state;
  if (demo.state === "failed") {
    $("demo-text").textContent = `The demo did not load: ${demo.error || "unknown error"}. ` +
      "The service works; the next start retries.";
    $("demo-bar").style.width = "0";
    banner.hidden = false;
  } else if (wasLoading) {
    $("demo-text").textContent = `The demo is loaded (${Math.round(demo.seconds)} s).` +
      (demo.error ? ` Note: ${demo.error}.` : "");
    $("demo-bar").style.width = "100%";
    banner.hidden = false;
    setTimeout(() => { banner.hidden = true; }, 8000);
    if (apiKey()) render();
  } else {
    banner.hidden = true;
  }
}

// ---------------------------------------------------------------- routing

function route() {
  const hash = location.hash || "#/";
  const match = hash.match(/^#\/user\/(.+)$/);
  return match ? { page: "user", id: decodeURIComponent(match[1]) } : { page: "overview" };
}

function render() {
  const signedIn = Boolean(apiKey());
  show("signin", !signedIn);
  show("sign-out", signedIn);
  show("overview", false);
  show("user", false);
  if (!signedIn) {
    $("tenant-name").textContent = "";
    $("key").focus();
    return;
  }
  const where = route();
  if (where.page === "user") renderUser(where.id);
  else renderOverview();
}

// ---------------------------------------------------------------- overview

function stat(value, label) {
  return el("div", { class: "stat" }, el("b", {}, value), el("span", {}, label));
}

async function loadOverview() {
  state.overview = await api("GET", "/v1/tenant");
  $("tenant-name").textContent = `tenant: ${state.overview.tenant}`;
  return state.overview;
}

async function renderOverview() {
  show("overview", true);
  let o;
  try { o = await loadOverview(); } catch (error) { showError("users-error", error.message); return; }
  const m = o.models;
  $("stats").replaceChildren(
    stat(o.users.toLocaleString(), "users"),
    stat(o.catalog_items.toLocaleString(), o.index_pending
      ? `catalog items (${o.index_pending} not indexed yet)` : "catalog items"),
    stat(m.llm_model, `language model (${m.llm_backend})`),
    stat(m.recommender_version ? (m.recommender_ranker ? "hybrid + ranker" : "hybrid")
      : "facets + popular", m.recommender_version
      ? `recommender ${m.recommender_version}, trained ${ago(m.recommender_trained_at)}`
      : "recommender (not trained yet)"),
    stat(String(o.failures_24h), "failed refreshes, 24 h"),
  );
  const q = o.refresh_queue;
  $("queue-summary").textContent = q.stale_users
    ? `${q.stale_users} user(s) with unread events; ${q.due_users} due now ` +
      `(${q.refresh_after_events}+ new events, or an old profile).`
    : "Nobody is waiting: every profile has read its user's events.";
  $("queue").replaceChildren(...q.next.map((u) => el("li", {},
    el("a", { href: `#/user/${encodeURIComponent(u.user_id)}` }, u.user_id),
    ` · ${u.events_since_refresh} new event(s)`, u.due ? " · due" : "")));
  $("runs").replaceChildren(...(o.recent_refreshes.length ? o.recent_refreshes.map((r) =>
    el("tr", { class: r.status === "ok" ? "" : "failed", title: r.error || "" },
      el("td", {}, ago(r.created_at)),
      el("td", {}, el("a", { href: `#/user/${encodeURIComponent(r.user_id)}` }, r.user_id)),
      el("td", {}, r.status === "ok" ? "ok" : `${r.status}: ${r.error_code || ""}`),
      el("td", {}, r.events_read), el("td", {}, r.latency_ms)))
    : [el("tr", {}, el("td", { colspan: 5 }, "No refreshes yet."))]));
  await loadUsers();
}

async function loadUsers() {
  const params = new URLSearchParams({ limit: "20" });
  if (state.users.prefix) params.set("prefix", state.users.prefix);
  if (state.users.cursor) params.set("cursor", state.users.cursor);
  showError("users-error", "");
  let page;
  try {
    page = await api("GET", `/v1/users?${params}`);
  } catch (error) {
    showError("users-error", error.message);
    return;
  }
  state.users.next = page.next_cursor;
  $("users-next").disabled = !page.next_cursor;
  $("users-first").disabled = !state.users.cursor;
  $("users").replaceChildren(...(page.users.length ? page.users.map((u) => el("tr", {},
    el("td", {}, el("a", { href: `#/user/${encodeURIComponent(u.user_id)}`, class: "user-link" },
      u.user_id)),
    el("td", {}, u.profile_version ? `v${u.profile_version}` : "none"),
    el("td", {}, ago(u.refreshed_at)),
    el("td", {}, String(u.events_since_refresh)))) : [el("tr", {}, el("td", { colspan: 4 },
      state.users.prefix ? `No user id starts with "${state.users.prefix}".`
        : state.demoLoading ? "No users yet: the demo is still loading." : "No users yet."))]));
}

// ---------------------------------------------------------------- a user

async function renderUser(id) {
  show("user", true);
  state.user = id;
  $("user-title").textContent = id;
  $("user-narrative").textContent = "";
  showError("user-error", "");
  $("facets").replaceChildren(el("p", { class: "hint" }, "Loading..."));
  $("recs").replaceChildren();
  $("chat-answer").textContent = "";
  $("chat-cites").replaceChildren();
  try {
    if (!state.overview) await loadOverview();
    await Promise.all([loadProfile(id), loadRecommendations(id)]);
  } catch (error) {
    showError("user-error", error.status === 404 ? `There is no user "${id}" in this tenant.`
      : error.message);
  }
}

async function loadProfile(id) {
  const [profile, history] = await Promise.all([
    api("GET", `${userPath(id)}/profile`),
    api("GET", `${userPath(id)}/profile/history?limit=200`),
  ]);
  if (state.user !== id) return;
  for (const f of [...profile.facets, ...profile.suppressed]) {
    for (const e of f.evidence) state.evidence.set(e.event_id, e);
  }
  $("user-narrative").textContent = profile.narrative ||
    (profile.version ? "" : "No profile yet: this user has not been refreshed.");
  $("facets").replaceChildren(...(profile.facets.length ? profile.facets.map((f) => facetView(id, f))
    : [el("p", { class: "hint" }, "No active interests.")]));
  $("suppressed-box").hidden = profile.suppressed.length === 0;
  $("suppressed").replaceChildren(...profile.suppressed.map((f) => facetView(id, f)));
  const evidence = new Map();  // facet id -> times of its evidence events
  for (const f of [...profile.facets, ...profile.suppressed]) {
    evidence.set(f.facet_id, f.evidence.filter((e) => e.ts).map((e) => Date.parse(e.ts)));
  }
  drawTimeline(history.versions.slice().reverse(), profile.as_of, evidence);
}

function evidenceLine(e) {
  const what = e.title || e.text || e.item_id || e.event_id;
  return `${e.type || "deleted event"} · ${what}${e.ts ? ` · ${ago(e.ts)}` : ""}`;
}

function facetView(userId, f) {
  const controls = el("div", { class: "controls" });
  const edit = async (patch) => {
    showError("user-error", "");
    controls.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    try {
      await api("PATCH", `${userPath(userId)}/profile/facets/${encodeURIComponent(f.facet_id)}`, patch);
      await Promise.all([loadProfile(userId), loadRecommendations(userId)]);
    } catch (error) {
      showError("user-error", `Could not change "${f.label}": ${error.message}`);
      controls.querySelectorAll("button").forEach((b) => { b.disabled = false; });
    }
  };
  const reword = el("form", { class: "reword", hidden: true, autocomplete: "off" },
    el("input", { type: "text", name: "label", value: f.label, maxlength: 60, "aria-label": "label" }),
    el("input", { type: "text", name: "description", value: f.description, "aria-label": "description" }),
    el("button", { type: "submit" }, "Save"));
  reword.addEventListener("submit", (event) => {
    event.preventDefault();
    const label = reword.elements.label.value.trim();
    const description = reword.elements.description.value.trim();
    const patch = {};
    if (label !== f.label) patch.label = label;
    if (description !== f.description) patch.description = description;
    if (Object.keys(patch).length) edit(patch);
  });
  if (f.suppressed) {
    controls.append(el("button", { type: "button", class: "small", onclick: () => edit({ suppressed: false }) }, "Restore"));
  } else {
    controls.append(
      el("button", { type: "button", class: "small pin", onclick: () => edit({ pinned: !f.pinned }) },
        f.pinned ? "Unpin" : "Pin"),
      el("button", { type: "button", class: "small suppress", onclick: () => edit({ suppressed: true }) }, "Suppress"),
      el("button", { type: "button", class: "small reword-toggle", onclick: () => { reword.hidden = !reword.hidden; } }, "Reword"));
  }
  return el("div", { class: `facet ${f.polarity}`, dataset: { facetId: f.facet_id } },
    el("div", { class: "head" },
      el("span", { class: "label" }, f.label),
      el("span", { class: `badge ${f.polarity}` }, f.polarity),
      el("span", { class: "badge" }, `${f.horizon}-term`),
      f.pinned ? el("span", { class: "badge pinned" }, "pinned") : null),
    el("div", { class: "desc" }, f.description),
    el("div", {},
      el("div", { class: "strength", title: `strength ${f.strength.toFixed(3)}` },
        el("div", { style: `width: ${Math.round(f.strength * 100)}%` })),
      el("span", { class: "value" }, `${f.strength.toFixed(2)} · reinforced ${f.reinforcements}× · last ${ago(f.last_reinforced)}`)),
    el("details", {}, el("summary", {}, `${f.evidence.length} evidence event(s)`),
      el("ul", {}, f.evidence.map((e) => el("li", { dataset: { eventId: e.event_id } }, evidenceLine(e))))),
    controls, reword);
}

// ---------------------------------------------------------------- the timeline

// Each facet's strength at each version (its points), decaying between versions by
// s(t) = s0 * 2^(-(t - t0) / H) with the half-life of its horizon (pinned: flat), to now,
// then dashed for PROJECTION_DAYS ahead. A facet missing from a version (archived,
// deleted) or suppressed there ends its line. Below the axis, one row of ticks per facet
// marks when its evidence events happened (the activity its strength was read from).
function drawTimeline(versions, asOf, evidence) {
  const box = $("timeline-box");
  const legend = $("timeline-legend");
  if (!versions.length) {
    box.replaceChildren(el("p", { class: "hint" }, "No profile versions yet."));
    legend.replaceChildren();
    return;
  }
  const halfLife = {
    short: (state.overview ? state.overview.models.half_life_short_days : 7) * DAY_MS,
    long: (state.overview ? state.overview.models.half_life_long_days : 90) * DAY_MS,
  };
  const now = Date.parse(asOf) || Date.now();
  const series = new Map();  // facet id -> {label, polarity, points: [{i, t, s, horizon, pinned}]}
  versions.forEach((v, i) => {
    const t = Date.parse(v.at);
    for (const f of v.facets) {
      if (f.archived || f.suppressed) continue;
      if (!series.has(f.facet_id)) series.set(f.facet_id, { label: f.label, polarity: f.polarity, points: [] });
      const entry = series.get(f.facet_id);
      entry.label = f.label;
      entry.points.push({ i, t, s: f.strength, horizon: f.horizon, pinned: f.pinned });
    }
  });
  const shown = [...series.keys()];
  const evidenceTimes = shown.flatMap((id) => evidence.get(id) || []);
  const t0 = Math.min(Date.parse(versions[0].at), ...evidenceTimes);
  const span = Math.max(now - t0, DAY_MS);
  const tEnd = now + Math.max(PROJECTION_DAYS * DAY_MS, span * 0.15);
  const RUG = 7;  // px per facet row of evidence ticks
  const W = 640, L = 36, R = 12, T = 12, B = 28 + RUG * shown.length + 6;
  const H = 230 + B;
  const x = (t) => L + ((t - t0) / (tEnd - t0)) * (W - L - R);
  const y = (s) => T + (1 - s) * (H - T - B);
  const rugTop = y(0) + 4;
  const dateRow = H - 8;
  const decay = (p, t) => (p.pinned ? p.s : p.s * Math.pow(2, -(t - p.t) / halfLife[p.horizon === "long" ? "long" : "short"]));
  const curve = (p, from, to, move) => {
    const steps = Math.max(2, Math.ceil((x(to) - x(from)) / 4));
    let d = move ? `M${x(from).toFixed(1)},${y(decay(p, from)).toFixed(1)}` : "";
    for (let k = move ? 1 : 0; k <= steps; k++) {
      const t = from + ((to - from) * k) / steps;
      d += ` L${x(t).toFixed(1)},${y(decay(p, t)).toFixed(1)}`;
    }
    return d;
  };
  const chart = svg("svg", { id: "timeline", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": "facet strengths over time" });
  for (const s of [0, 0.25, 0.5, 0.75, 1]) {
    chart.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y(s), y2: y(s) }),
      svg("text", { x: L - 6, y: y(s) + 4, "text-anchor": "end" }, s.toFixed(2)));
  }
  const ticks = 5;
  for (let k = 0; k <= ticks; k++) {
    const t = t0 + ((tEnd - t0) * k) / ticks;
    chart.append(svg("text", { x: x(t), y: dateRow, "text-anchor": k === 0 ? "start" : k === ticks ? "end" : "middle" }, shortDate(t)));
  }
  chart.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: y(0), y2: y(0) }),
    svg("line", { class: "now", x1: x(now), x2: x(now), y1: T, y2: y(0) }),
    svg("text", { x: x(now) + 3, y: T + 10 }, "now"));
  const items = [];
  let n = 0;
  for (const [facetId, entry] of series) {
    const color = COLORS[n++ % COLORS.length];
    const pts = entry.points;
    let d = "";
    pts.forEach((p, k) => {
      const next = pts[k + 1];
      const nextVersion = versions[p.i + 1];
      const until = next && next.i === p.i + 1 ? next.t
        : nextVersion ? Date.parse(nextVersion.at) : now;
      d += (d ? ` M${x(p.t).toFixed(1)},${y(p.s).toFixed(1)}` : `M${x(p.t).toFixed(1)},${y(p.s).toFixed(1)}`);
      d += curve(p, p.t, Math.max(until, p.t), false);
      if (next && next.i === p.i + 1) d += ` L${x(next.t).toFixed(1)},${y(next.s).toFixed(1)}`;
    });
    chart.append(svg("path", { class: "facet-line", d, fill: "none", stroke: color, "stroke-width": 2,
      "data-facet-id": facetId }, svg("title", {}, entry.label)));
    const last = pts[pts.length - 1];
    if (last.i === versions.length - 1) {
      chart.append(svg("path", { class: "facet-projection", d: curve(last, now, tEnd, true), fill: "none",
        stroke: color, "stroke-width": 1.5, "stroke-dasharray": "4 4" }));
    }
    for (const p of pts) {
      chart.append(svg("circle", { cx: x(p.t), cy: y(p.s), r: 3, fill: color },
        svg("title", {}, `${entry.label}: ${p.s.toFixed(2)} at version ${versions[p.i].version}`)));
    }
    const row = rugTop + RUG * (n - 1);
    for (const t of evidence.get(facetId) || []) {
      chart.append(svg("line", { class: "evidence-tick", x1: x(t), x2: x(t), y1: row, y2: row + RUG - 2,
        stroke: color, "stroke-width": 1.5 }));
    }
    items.push(el("li", {}, el("i", { style: `background: ${color}` }),
      entry.polarity === "avoid" ? `${entry.label} (avoid)` : entry.label));
  }
  box.replaceChildren(chart);
  legend.replaceChildren(...items);
}

// ---------------------------------------------------------------- recommendations

function reasonText(b) {
  if (!b) return "Popular with everyone (nothing personal to go on).";
  const cited = b.evidence.slice(0, 3).map((e) => e.title || e.text || e.event_id).join(", ");
  if (b.kind === "facet") {
    return `Interest "${b.label}"${b.strength != null ? ` (strength ${b.strength.toFixed(2)})` : ""}` +
      (cited ? ` · from ${cited}` : "");
  }
  const kinds = { co_occurrence: "people who liked what you liked", transition: "what people watched next",
    sequence: "your recent activity", content: "much like something you liked" };
  return `${kinds[b.kind] || b.kind}${cited ? ` · from ${cited}` : ""}`;
}

async function loadRecommendations(id) {
  const list = await api("GET", `${userPath(id)}/recommendations?k=10&explain=template`);
  if (state.user !== id) return;
  state.recs = list;
  for (const item of list.items) {
    for (const e of (item.because ? item.because.evidence : [])) state.evidence.set(e.event_id, e);
  }
  $("recs-meta").textContent = `${list.source} list ${list.recommendation_id} · ${ago(list.generated_at)}`;
  $("recs").replaceChildren(...list.items.map((item) => recommendationView(id, list, item)));
  const select = $("chat-item");
  select.replaceChildren(el("option", { value: "" }, "the whole list"),
    ...list.items.map((item) => el("option", { value: item.item_id }, item.title)));
}

function recommendationView(userId, list, item) {
  const b = item.because;
  const status = el("span", { class: "sent" });
  const feedback = el("div", { class: "feedback" });
  const send = async (type) => {
    feedback.querySelectorAll("button").forEach((button) => { button.disabled = true; });
    try {
      const result = await api("POST", "/v1/events", { events: [{
        user_id: userId, type, item_id: item.item_id, ts: new Date().toISOString(),
        recommendation_id: list.recommendation_id }] });
      status.textContent = result.accepted ? `${type} sent` : `${type} already sent`;
    } catch (error) {
      status.textContent = `could not send: ${error.message}`;
      feedback.querySelectorAll("button").forEach((button) => { button.disabled = false; });
    }
  };
  feedback.append(
    el("button", { type: "button", class: "small like", onclick: () => send("like") }, "Like"),
    el("button", { type: "button", class: "small skip", onclick: () => send("skip") }, "Skip"),
    status);
  return el("li", { dataset: { itemId: item.item_id } },
    el("div", {}, el("span", { class: "title" }, item.title),
      el("span", { class: "value" }, `  score ${item.score.toFixed(3)}`)),
    el("div", { class: "reason", dataset: { kind: b ? b.kind : "popular",
      facetId: b && b.facet_id ? b.facet_id : "", label: b && b.label ? b.label : "" } }, reasonText(b)),
    el("div", { class: "explanation" }, item.explanation),
    feedback);
}

// ---------------------------------------------------------------- why-chat (streamed)

function parseEvent(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (!data.length) return null;
  try { return { name, data: JSON.parse(data.join("\n")) }; } catch (_) { return null; }
}

async function ask(event) {
  event.preventDefault();
  if (!state.recs) return;
  const answer = $("chat-answer");
  const cites = $("chat-cites");
  const button = $("chat-ask");
  const body = { message: $("chat-message").value.trim() || "Why was this recommended?" };
  const itemId = $("chat-item").value;
  if (itemId) body.item_id = itemId;
  answer.textContent = "";
  answer.dataset.tokens = "0";
  answer.dataset.state = "asking";
  cites.replaceChildren();
  button.disabled = true;
  try {
    const response = await fetch(`/v1/recommendations/${encodeURIComponent(state.recs.recommendation_id)}/chat`, {
      method: "POST", cache: "no-store", referrerPolicy: "no-referrer",
      headers: { Authorization: `Bearer ${apiKey()}`, Accept: "text/event-stream",
        "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      let message = `The service answered ${response.status}.`;
      try { message = (await response.json()).error.message; } catch (_) { /* keep it */ }
      throw new Error(message);
    }
    answer.classList.add("streaming");
    answer.dataset.state = "streaming";
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const parsed = parseEvent(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
        if (!parsed) continue;
        if (parsed.name === "token") {
          answer.textContent += parsed.data.text;
          answer.dataset.tokens = String(Number(answer.dataset.tokens) + 1);
        } else if (parsed.name === "done") {
          answer.textContent = parsed.data.answer;  // the checked answer is authoritative
          answer.dataset.state = "done";
          cites.replaceChildren(...parsed.data.cited_event_ids.map((id) => {
            const e = state.evidence.get(id);
            return el("span", { class: "cite", dataset: { eventId: id } },
              e ? `[${id}] ${e.title || e.text || e.type}` : `[${id}]`);
          }));
        } else if (parsed.name === "error") {
          throw new Error(parsed.data.error.message);
        }
      }
    }
  } catch (error) {
    answer.dataset.state = "error";
    answer.textContent = `No answer: ${error.message}`;
  } finally {
    answer.classList.remove("streaming");
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- wiring

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut(""));
  $("user-search").addEventListener("submit", (event) => {
    event.preventDefault();
    state.users.prefix = $("user-prefix").value.trim();
    state.users.cursor = null;
    loadUsers();
  });
  $("users-next").addEventListener("click", () => { state.users.cursor = state.users.next; loadUsers(); });
  $("users-first").addEventListener("click", () => { state.users.cursor = null; loadUsers(); });
  $("recs-reload").addEventListener("click", () => {
    if (state.user) loadRecommendations(state.user).catch((error) => showError("user-error", error.message));
  });
  $("chat-form").addEventListener("submit", ask);
  window.addEventListener("hashchange", render);
  render();
  pollDemo();
});
