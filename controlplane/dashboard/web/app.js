// Sluice dashboard: polls the control plane's JSON API (/api/) and renders
// the fleet, the clusters with charts, the stored versions, and recent
// connections. Plain DOM, no framework; every string from the API goes in
// as text, never as HTML.
"use strict";

const POLL_MS = 1500;
const CHART_SECONDS = 300;

// h builds an element: h("td", {class: "num"}, "text", child, ...).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const fmt = {
  rate(v) {
    if (v >= 1000) return (v / 1000).toFixed(1) + "k/s";
    if (v >= 10) return v.toFixed(0) + "/s";
    return v.toFixed(1) + "/s";
  },
  count(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (v >= 1e4) return (v / 1e3).toFixed(1) + "k";
    return String(Math.round(v));
  },
  bytes(v) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(1) : String(v)) + units[i];
  },
  duration(ns) {
    const ms = ns / 1e6;
    if (ms < 1000) return ms.toFixed(ms < 10 ? 1 : 0) + "ms";
    const s = ms / 1000;
    if (s < 120) return s.toFixed(1) + "s";
    return Math.floor(s / 60) + "m" + Math.round(s % 60) + "s";
  },
  ago(iso) {
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 2) return "just now";
    if (s < 120) return Math.round(s) + "s ago";
    if (s < 7200) return Math.round(s / 60) + "m ago";
    return Math.round(s / 3600) + "h ago";
  },
  clock(iso) { return new Date(iso).toLocaleTimeString([], {hour12: false}); },
};

// Status colours: which badge class a state or reason gets.
const tone = {
  health: {UP: "ok", DOWN: "bad", EJECTED: "bad", DRAINING: "warn", CHECKING: "info", DISABLED: "", MIXED: "warn", UNKNOWN: ""},
  state: {ACTIVE: "ok", DRAINING: "warn", DISABLED: ""},
  reason(r) {
    if (/timeout|io_error|bad_request|no_endpoint|endpoint_down|denied/.test(r)) return /timeout/.test(r) ? "warn" : "bad";
    if (/drained|shutdown|rebalanced|node_draining|max_age|max_requests|listener_closed/.test(r)) return "info";
    return "";
  },
};

function badge(text, cls) { return h("span", {class: "badge " + (cls || "")}, text); }

// The bearer token of a control plane that checks tokens (sluice-cp
// --token-key) lives in sessionStorage: it is gone when the tab closes and
// is never sent anywhere but this page's own API.
const TOKEN_KEY = "sluice-token";

function withToken(headers) {
  const t = sessionStorage.getItem(TOKEN_KEY);
  if (t) headers.Authorization = "Bearer " + t;
  return headers;
}

// apiError is a failed API answer; 401 and 403 show the token field.
function apiError(resp, body) {
  if (resp.status === 401 || resp.status === 403) showTokenForm();
  const err = new Error(body.error || resp.statusText);
  err.status = resp.status;
  return err;
}

function showTokenForm() {
  const has = !!sessionStorage.getItem(TOKEN_KEY);
  document.getElementById("token-form").hidden = false;
  document.getElementById("token").placeholder = has ? "token set · paste another" : "paste a token";
  document.getElementById("token-forget").hidden = !has;
}

function setupTokenForm() {
  const form = document.getElementById("token-form");
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    const input = document.getElementById("token");
    const t = input.value.trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    input.value = "";
    showTokenForm();
    refresh();
  });
  document.getElementById("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showTokenForm();
    refresh();
  });
  if (sessionStorage.getItem(TOKEN_KEY)) showTokenForm();
}

async function getJSON(path) {
  const resp = await fetch(path, {headers: withToken({Accept: "application/json"}), cache: "no-store"});
  const body = await resp.json();
  if (!resp.ok) throw apiError(resp, body);
  return body;
}

function toast(text, bad) {
  const el = h("div", {class: "toast" + (bad ? " bad" : ""), role: "status"}, text);
  document.getElementById("toasts").append(el);
  setTimeout(() => el.remove(), bad ? 8000 : 4000);
}

// group is the node group whose clusters the page shows: each group has
// a snapshot of its own, and two may have a cluster of one name.
let group = "default";

// inGroup is the query that names the group shown.
function inGroup() { return "group=" + encodeURIComponent(group); }

// act posts an endpoint action through the same API sluicectl uses, to
// the group shown.
async function act(cluster, endpoint, action, body) {
  const what = (action === "weight" ? `set-weight ${cluster}/${endpoint} ${body.weight}` : `${action} ${cluster}/${endpoint}`) +
    (group === "default" ? "" : ` --group ${group}`);
  try {
    const resp = await fetch(`/api/clusters/${encodeURIComponent(cluster)}/endpoints/${encodeURIComponent(endpoint)}/${action}?${inGroup()}`, {
      method: "POST",
      headers: withToken({"Content-Type": "application/json", Accept: "application/json"}),
      body: JSON.stringify(body || {}),
    });
    const out = await resp.json();
    if (!resp.ok) throw apiError(resp, out);
    toast(out.changed ? `${what}: version ${out.version}` : `${what}: nothing to change`);
  } catch (err) {
    toast(`${what} failed: ${err.message}`, true);
  }
  refresh();
}

function renderSummary(fleet, clusters) {
  const connected = fleet.nodes.filter(n => n.state !== "DISCONNECTED").length;
  const inSync = fleet.nodes.filter(n => n.in_sync).length;
  const nacked = fleet.nodes.filter(n => n.nack_error).length;
  const kv = (k, v) => h("span", {class: "kv"}, k, h("b", {}, v));
  document.getElementById("summary").replaceChildren(...[
    kv("version", fleet.version ? "v" + fleet.version : "none applied"),
    kv("nodes", `${connected}/${fleet.nodes.length} connected`),
    kv("in sync", `${inSync}/${connected}`),
    nacked ? kv("NACKs", String(nacked)) : null,
    kv("clusters", String(clusters.clusters.length)),
  ].filter(Boolean));
}

function nodeTone(n) {
  if (n.state === "DISCONNECTED") return "";
  if (n.nack_error) return "bad";
  if (n.state === "DRAINING" || !n.in_sync) return "warn";
  return "ok";
}

function renderFleet(fleet) {
  const box = document.getElementById("nodes");
  if (!fleet.nodes.length) {
    box.replaceChildren(h("div", {class: "empty"}, "No node has connected yet. Start one with: sluice-dp --cp ADDR --node-id ID"));
    return;
  }
  box.replaceChildren(...fleet.nodes.map(n => {
    const t = nodeTone(n);
    const applied = n.applied_version ? "v" + n.applied_version : "none";
    return h("article", {class: "node " + t, "data-node": n.id},
      h("div", {class: "title"},
        h("span", {class: "id"}, n.id),
        badge(n.state === "CONNECTED" ? (n.in_sync ? "IN SYNC" : "BEHIND") : n.state, t)),
      h("div", {class: "labels"}, Object.entries(n.labels).sort().map(([k, v]) => h("span", {class: "label"}, `${k}=${v}`))),
      h("dl", {},
        h("dt", {}, "group"), h("dd", {class: "group"}, n.group || `none: ${n.group_problem || "not placed yet"}`),
        h("dt", {}, "applied"), h("dd", {class: "applied"}, applied, n.in_sync || !n.want_version ? "" : ` (current v${n.want_version})`),
        h("dt", {}, "traffic"), h("dd", {class: "traffic"}, n.stats_replica
          ? `reported to replica ${n.stats_replica}`
          : `${fmt.rate(n.rate.requests)} · ${n.active} active · ${n.conns} conns`),
        h("dt", {}, "peer"), h("dd", {class: "peer"}, n.peer || "–"),
        n.replica ? h("dt", {}, "replica") : null, n.replica ? h("dd", {class: "replica"}, n.replica) : null,
        h("dt", {}, n.state === "DISCONNECTED" ? "last seen" : "connected"),
        h("dd", {}, fmt.ago(n.state === "DISCONNECTED" ? n.last_seen : n.connected_since))),
      n.nack_error ? h("div", {class: "nack"}, `NACK of v${n.nacked_version}: ${n.nack_error}`) : null,
    );
  }));
}

// chart draws requests (area and line) and errors over the series as an
// SVG whose coordinates are seconds by rate; strokes keep their width
// whatever the scaling.
function chart(series) {
  const req = series ? series.requests : [];
  const err = series ? series.errors : [];
  const n = Math.max(req.length, 2);
  const peak = Math.max(1, ...req, ...err);
  const top = niceCeil(peak);
  const W = n - 1, H = 100;
  const pts = vals => vals.map((v, i) => `${i},${(H - (v / top) * H).toFixed(2)}`).join(" L");
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const add = (tag, attrs) => {
    const el = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    svg.append(el);
  };
  for (const y of [25, 50, 75]) add("line", {class: "grid", x1: 0, x2: W, y1: y, y2: y});
  if (req.length > 1) {
    add("path", {class: "area", d: `M0,${H} L${pts(req)} L${W},${H} Z`});
    add("path", {class: "requests", d: "M" + pts(req)});
    add("path", {class: "errors", d: "M" + pts(err)});
  }
  return h("div", {class: "plot"}, svg, h("span", {class: "ymax"}, fmt.rate(top)));
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// setWeight sets the weight typed in input. An empty field (nothing typed,
// or text a number field cannot read) is no weight, not weight 0; the
// API refuses what is no integer from 0 to 256 in sluicectl's words.
function setWeight(c, ep, input) {
  if (input.value.trim() === "") {
    toast(`set-weight ${c.name}/${ep.name} failed: type a weight, an integer from ${input.min} to ${input.max}`, true);
    return;
  }
  act(c.name, ep.name, "weight", {weight: Number(input.value)});
}

function endpointRow(c, ep) {
  const key = `${c.name}/${ep.name}`;
  const weight = h("input", {class: "weight", type: "number", min: 0, max: 256, value: ep.weight, "aria-label": `weight of ${key}`});
  const active = ep.state === "ACTIVE";
  return h("tr", {"data-endpoint": key, "data-state": ep.state},
    h("td", {}, h("div", {class: "epname"}, ep.name, ep.backup ? " " : "", ep.backup ? badge("BACKUP", "info") : null),
      h("div", {class: "addr"}, ep.address)),
    h("td", {}, h("span", {class: "badge state " + (tone.state[ep.state] ?? "")}, ep.state)),
    h("td", {}, h("div", {class: "health"},
      ep.nodes.length ? ep.nodes.map(n => h("span", {class: "badge " + (n.connected ? tone.health[n.health] ?? "" : ""), "data-health": n.health, title: `${n.node}: ${n.health}${n.detail ? " — " + n.detail : ""}`}, ep.nodes.length > 1 ? `${n.node} ${n.health}` : n.health))
        : badge("NO REPORT", ""))),
    h("td", {class: "num"}, fmt.rate(ep.rate.requests)),
    h("td", {class: "num"}, fmt.rate(ep.rate.errors)),
    h("td", {class: "num"}, String(ep.active)),
    h("td", {class: "num"}, String(ep.conns)),
    h("td", {class: "num requests"}, fmt.count(ep.requests)),
    h("td", {}, h("div", {class: "actions"},
      weight,
      h("button", {onclick: () => setWeight(c, ep, weight), "data-action": "weight"}, "Set"))),
    h("td", {}, h("div", {class: "actions"},
      active
        ? h("button", {class: "warn", "data-action": "drain", onclick: () => act(c.name, ep.name, "drain")}, "Drain")
        : h("button", {class: "primary", "data-action": "enable", onclick: () => act(c.name, ep.name, "enable")}, "Enable"),
      ep.state !== "DISABLED" ? h("button", {class: "danger", "data-action": "disable", onclick: () => act(c.name, ep.name, "disable")}, "Disable") : null)),
  );
}

// renderGroups offers the node groups, when there is more than one.
function renderGroups(clusters) {
  const label = document.getElementById("group-label");
  const sel = document.getElementById("group");
  label.hidden = clusters.groups.length < 2;
  if (document.activeElement === sel) return; // being chosen
  sel.replaceChildren(...clusters.groups.map(g => h("option", {value: g}, g)));
  sel.value = clusters.group;
}

function setupGroupSelect() {
  document.getElementById("group").addEventListener("change", e => {
    group = e.target.value;
    refresh();
  });
}

function renderClusters(clusters, histories) {
  const box = document.getElementById("clusters");
  if (!clusters.clusters.length) {
    box.replaceChildren(h("div", {class: "empty"}, "No cluster yet. Apply a snapshot: sluicectl apply -f examples/quickstart.yaml"));
    return;
  }
  // While a weight is being typed, the clusters wait: a refresh would throw
  // the typing away.
  if (document.activeElement && document.activeElement.classList.contains("weight")) return;
  box.replaceChildren(...clusters.clusters.map(c => {
    const hist = histories[c.name];
    const stat = (k, v, cls) => h("div", {class: "stat " + (cls || "")}, h("div", {class: "v"}, v), h("div", {class: "k"}, k));
    const active = c.endpoints.reduce((s, e) => s + e.active, 0);
    return h("article", {class: "cluster", "data-cluster": c.name},
      h("div", {class: "cluster-head"},
        h("span", {class: "cname"}, c.name), badge(c.lb_policy, "info"),
        h("span", {class: "hint"}, `${c.endpoints.length} endpoint${c.endpoints.length === 1 ? "" : "s"}`),
        h("div", {class: "stats"},
          stat("requests", fmt.rate(c.rate.requests)),
          stat("errors", fmt.rate(c.rate.errors), c.rate.errors > 0 ? "err" : ""),
          stat("active", String(active)))),
      h("div", {class: "cluster-body"},
        h("div", {class: "chart"},
          h("div", {class: "legend"}, h("span", {}, h("i", {class: "sw-req"}), "requests/s"), h("span", {}, h("i", {class: "sw-err"}), "errors/s")),
          chart(hist),
          h("div", {class: "axis"}, h("span", {}, "−5 min"), h("span", {}, "now"))),
        h("div", {class: "table-wrap"}, h("table", {class: "endpoints"},
          h("thead", {}, h("tr", {},
            h("th", {}, "Endpoint"), h("th", {}, "State"), h("th", {}, "Health"), h("th", {class: "num"}, "Req/s"), h("th", {class: "num"}, "Err/s"),
            h("th", {class: "num"}, "Active"), h("th", {class: "num"}, "Conns"), h("th", {class: "num"}, "Requests"), h("th", {}, "Weight"), h("th", {}, "Actions"))),
          h("tbody", {}, c.endpoints.map(ep => endpointRow(c, ep)))))),
    );
  }));
}

function renderConns({conns, reported_elsewhere: elsewhere}) {
  // Replicas on one etcd: each keeps the records of the nodes whose
  // streams are on it.
  const note = document.getElementById("conns-elsewhere");
  note.hidden = !elsewhere.length;
  note.textContent = elsewhere.length
    ? `Connections of nodes on ${elsewhere.length > 1 ? "replicas" : "replica"} ${elsewhere.join(", ")} are kept there and not listed here; sluicectl conns lists every replica's.`
    : "";
  const body = document.getElementById("conns");
  if (!conns.length) {
    body.replaceChildren(h("tr", {}, h("td", {colspan: 10, class: "hint"}, "No connection has ended yet.")));
    return;
  }
  body.replaceChildren(...conns.map(c => {
    const ended = new Date(Date.parse(c.start) + c.duration_ns / 1e6).toISOString();
    const served = c.cluster || c.endpoint ? `${c.cluster || "–"}/${c.endpoint || "–"}` : "–";
    return h("tr", {},
      h("td", {}, fmt.clock(ended)), h("td", {}, c.node), h("td", {}, c.listener || "–"),
      h("td", {class: "mono"}, c.client), h("td", {}, served),
      h("td", {class: "num"}, fmt.duration(c.duration_ns)), h("td", {class: "num"}, fmt.bytes(c.bytes_in)),
      h("td", {class: "num"}, fmt.bytes(c.bytes_out)), h("td", {class: "num"}, String(c.requests)),
      h("td", {}, h("span", {class: "badge reason " + tone.reason(c.reason)}, c.reason.replaceAll("_", " ")), failedBadge(c), ruleNote(c)));
  }));
}

// VERSIONS is how many of the newest stored versions the page lists.
const VERSIONS = 10;
// CHANGES_SHOWN is how many change lines a version shows before "+N more".
const CHANGES_SHOWN = 3;

function renderVersions({current, versions, error}) {
  const body = document.getElementById("versions");
  // The store may be away while the fleet and clusters still show what
  // the nodes are sent: the rest of the page stays.
  if (error) {
    body.replaceChildren(h("tr", {}, h("td", {colspan: 7, class: "hint"}, `Cannot read the stored versions: ${error}.`)));
    return;
  }
  if (!versions.length) {
    body.replaceChildren(h("tr", {}, h("td", {colspan: 7, class: "hint"}, "No version stored yet.")));
    return;
  }
  body.replaceChildren(...versions.map(v => {
    const more = v.changes_total - v.changes.length;
    const changes = v.changes.join("\n") + (more > 0 ? `\n+${more} more` : "");
    return h("tr", {"data-version": v.version},
      h("td", {class: "num"}, String(v.version), v.version === current ? [" ", badge("current", "ok")] : null),
      h("td", {title: new Date(v.created).toLocaleString()}, fmt.ago(v.created)),
      h("td", {}, v.group), h("td", {}, v.author || "–"),
      h("td", {class: "changes"}, changes || "–"), h("td", {}, v.comment || "–"),
      h("td", {class: "refused"}, refusedBy(v)));
  }));
}

// refusedBy names the nodes that refused a version, each with its reason
// on hover, and counts those the API does not list.
function refusedBy(v) {
  if (!v.refused_by) return "–";
  const more = v.refused_by - v.refusals.length;
  return [
    ...v.refusals.flatMap(r => [h("span", {class: "badge bad refusal", "data-node": r.node,
      title: `${r.node} refused it ${fmt.ago(r.at)}: ${r.error}`}, r.node), " "]),
    more > 0 ? h("span", {class: "hint"}, `+${more} more`) : null,
  ];
}

// failedBadge says how many of a connection's requests the node answered
// with an error, and why, when that is not just how it closed.
function failedBadge(c) {
  const why = c.failures || [];
  if (!c.failed_requests || c.failed_requests === 1 && why.length === 1 && why[0] === c.reason) return null;
  const text = why.map(r => r.replaceAll("_", " ")).join(", ");
  const cls = why.some(r => tone.reason(r) === "bad") ? "bad" : tone.reason(why[0] || "");
  return h("span", {class: "badge failed reason " + cls, title: "requests the node answered with an error" + (why.length ? ": " + why.join(", ") : "")},
    `${c.failed_requests} failed` + (text ? `: ${text}` : ""));
}

// ruleNote names the rule that decided the session, or the latest request
// a rule decided.
function ruleNote(c) {
  if (!c.rule) return null;
  return h("span", {class: "hint rule", title: "the rule that decided the session, or the latest request a rule decided"}, `by ${c.rule}`);
}

let timer = null;
let inflight = false;
let again = false;

async function refresh() {
  clearTimeout(timer);
  // A refresh asked for while one is on its way (a new token, an action)
  // runs as soon as that one ends: the answer on its way may predate it.
  if (inflight) { again = true; return; }
  inflight = true;
  again = false;
  const live = document.getElementById("live");
  const banner = document.getElementById("banner");
  try {
    const shown = group;
    let fellBack = false;
    const [fleet, clusters, conns, versions] = await Promise.all([getJSON("/api/fleet"),
      // A group deleted since it was chosen: back to the default one.
      getJSON(`/api/clusters?${inGroup()}`).catch(err => {
        if (err.status !== 404 || group === "default") throw err;
        group = "default";
        fellBack = true;
        return getJSON(`/api/clusters?${inGroup()}`);
      }),
      getJSON("/api/conns?limit=25"),
      // A few lines of each version's changes: an apply of thousands of
      // clusters lists thousands, which need not travel at every refresh.
      getJSON(`/api/versions?limit=${VERSIONS}&max_changes=${CHANGES_SHOWN}`).catch(err => ({error: err.message}))]);
    const histories = {};
    // A cluster removed since /api/clusters answered has no history to
    // show (404): its chart is left empty, and the next refresh drops it.
    await Promise.all(clusters.clusters.map(async c => {
      histories[c.name] = await getJSON(`/api/history?cluster=${encodeURIComponent(c.name)}&group=${encodeURIComponent(clusters.group)}&seconds=${CHART_SECONDS}`)
        .catch(err => { if (err.status === 404) return null; throw err; });
    }));
    // Another group was chosen meanwhile: its answer comes next.
    if (shown !== group && !fellBack) { again = true; return; }
    renderSummary(fleet, clusters);
    renderFleet(fleet);
    renderGroups(clusters);
    renderClusters(clusters, histories);
    renderVersions(versions);
    renderConns(conns);
    // Replicas on one etcd: the fleet may lack the others' nodes, while
    // etcd is away the versions shown are those this control plane sends
    // its nodes, and replicas whose security settings differ split the
    // fleet.
    const notes = [
      fleet.stale || clusters.stale ? `Configuration store unreachable: ${fleet.stale || clusters.stale}.` : "",
      fleet.incomplete ? `Fleet incomplete: ${fleet.incomplete}.` : "",
      ...(fleet.disagreements || []).map(d => `Replicas disagree: ${d}.`),
    ].filter(Boolean);
    banner.textContent = notes.join(" ");
    banner.hidden = !notes.length;
    live.classList.remove("stale");
    document.getElementById("updated").textContent = "live · " + new Date().toLocaleTimeString([], {hour12: false});
  } catch (err) {
    banner.textContent = `Cannot reach the control plane's API: ${err.message}. Retrying…`;
    banner.hidden = false;
    live.classList.add("stale");
  } finally {
    inflight = false;
    timer = setTimeout(refresh, again ? 0 : POLL_MS);
  }
}

setupTokenForm();
setupGroupSelect();
refresh();
