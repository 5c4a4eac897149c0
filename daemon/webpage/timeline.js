// voicewatch timeline page: one row per channel, detections as spans coloured by speaker, live updates
// over server-sent events, history from the core's event log. No libraries: the page is this file.
"use strict";

const MIN_SPAN_S = 10, MAX_SPAN_S = 7 * 86400, DEFAULT_SPAN_S = 3600;
const TICK_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
const HEALTH_WORDS = { idle: "idle", silent: "silent", eos: "ended", source_input_dead: "input dead",
                       source_reconnecting: "reconnecting", overload: "overload" };

const params = new URLSearchParams(location.search);
const state = {
  span: Number(params.get("span")) || DEFAULT_SPAN_S,
  end: params.get("end") ? Number(params.get("end")) : null,  // null: follow live
  spans: new Map(),      // key → span (segments and notices), from the log and live
  reviews: {},           // clip → newest review
  health: {},            // stream → last health word
  streams: {},           // stream → live status from the core
  clockOffset: 0,        // server clock − browser clock, seconds
  lastHeartbeat: 0,
  selected: null,
};
const $ = (id) => document.getElementById(id);
const now = () => Date.now() / 1000 + state.clockOffset;

function colour(name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${(hash * 137) % 360} 62% 46%)`;
}

function view() {
  let t1 = state.end;
  if (t1 === null) {  // live: now, or the newest span when a source's clock runs ahead
    t1 = now();
    for (const s of state.spans.values()) if (s.t1 > t1 && s.t1 < now() + 86400) t1 = s.t1;
    t1 += state.span * 0.02;
  }
  return [t1 - state.span, t1];
}

function clock(t, step) {
  const d = new Date(t * 1000);
  const hm = `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
  return step >= 60 ? hm : `${hm}:${String(d.getSeconds()).padStart(2, "0")}`;
}

function stamp(t) {
  const d = new Date(t * 1000);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")} ${clock(t, 1)}`;
}

function duration(seconds) {
  const m = Math.floor(seconds / 60), s = seconds - 60 * m;
  return m ? `${m} min ${Math.round(s)} s` : `${s.toFixed(1)} s`;
}

function renderAxis(t0, t1) {
  const axis = $("axis"), grid = $("grid");
  axis.replaceChildren();
  grid.replaceChildren();
  const step = TICK_STEPS.find((s) => (t1 - t0) / s <= 10) || 86400;
  const offset = new Date().getTimezoneOffset() * 60;  // ticks on local round times
  for (let t = Math.ceil((t0 - offset) / step) * step + offset; t <= t1; t += step) {
    const tick = document.createElement("span");
    tick.className = "tick";
    tick.style.left = `${((t - t0) / (t1 - t0)) * 100}%`;
    tick.textContent = clock(t, step);
    axis.append(tick);
    const line = document.createElement("span");
    line.className = "gridline";
    line.style.left = tick.style.left;
    grid.append(line);
  }
  $("range").textContent = `${stamp(t0)} – ${clock(t1, 1)} (${duration(t1 - t0)})`;
}

function rowFor(stream) {
  let row = document.querySelector(`.row[data-stream="${CSS.escape(stream)}"]`);
  if (row) return row;
  row = document.createElement("div");
  row.className = "row";
  row.dataset.stream = stream;
  const head = document.createElement("div");
  head.className = "rowhead";
  const name = document.createElement("span");
  name.className = "stream";
  name.textContent = stream;
  const health = document.createElement("span");
  health.className = "health";
  head.append(name, health);
  const track = document.createElement("div");
  track.className = "track";
  row.append(head, track);
  const rows = [...$("rows").children];
  const after = rows.find((r) => r.dataset.stream > stream);
  $("rows").insertBefore(row, after || null);
  return row;
}

function render() {
  const [t0, t1] = view();
  renderAxis(t0, t1);
  $("rows").dataset.t0 = t0;
  $("rows").dataset.t1 = t1;
  const streams = new Set(Object.keys(state.streams));
  const visible = new Set();
  for (const s of state.spans.values()) {
    if (s.stream === "_core") continue;
    streams.add(s.stream);
    if (s.t1 < t0 || s.t0 > t1 || (s.kind === "status" && !HEALTH_WORDS[s.reason])) continue;
    const track = rowFor(s.stream).querySelector(".track");
    let el = track.querySelector(`[data-key="${CSS.escape(s.key)}"]`);
    if (!el) {
      el = document.createElement("div");
      el.dataset.key = s.key;
      if (s.kind === "segment") el.addEventListener("click", () => select(s.key));
      track.append(el);
    }
    visible.add(el);
    const left = Math.max(s.t0, t0), right = Math.min(Math.max(s.t1, s.t0), t1);
    el.style.left = `${((left - t0) / (t1 - t0)) * 100}%`;
    el.style.width = `${Math.max(((right - left) / (t1 - t0)) * 100, s.kind === "status" ? 0 : 0.25)}%`;
    el.dataset.t0 = s.t0;
    el.dataset.t1 = s.t1;
    if (s.kind === "segment") {
      const review = s.clip && state.reviews[s.clip];
      const verdict = review && !review.undone_at ? review.verdict : "";
      el.className = `span${s.open ? " open" : ""}${verdict ? " " + verdict : ""}${state.selected === s.key ? " selected" : ""}`;
      el.style.background = colour(s.speaker);
      el.dataset.speaker = s.speaker;
      if (s.clip) el.dataset.clip = s.clip;
      el.title = `${s.speaker} ${clock(s.t0, 1)}–${clock(s.t1, 1)}  peak ${s.peak.toFixed(2)}` +
        (s.programme ? `  · ${s.programme}` : "") + (verdict ? `  · ${verdict}ed` : "");
    } else {
      el.className = s.kind === "gap" ? "gap" : "notice";
      el.title = `${s.kind}: ${HEALTH_WORDS[s.reason] || s.reason}`;
    }
  }
  for (const el of document.querySelectorAll(".track > div")) if (!visible.has(el)) el.remove();
  for (const stream of streams) if (stream !== "_core") rowFor(stream);
  for (const row of $("rows").children) {
    const live = state.streams[row.dataset.stream];
    const word = HEALTH_WORDS[state.health[row.dataset.stream]];
    const health = row.querySelector(".health");
    health.textContent = word || (live ? `live · rtf ${live.real_time_factor ?? "–"}` : "");
    health.className = `health ${word ? "bad" : live ? "good" : ""}`;
  }
  $("empty").hidden = $("rows").children.length > 0;
  renderLegend();
  renderCore();
}

function renderLegend() {
  const speakers = [...new Set([...state.spans.values()].filter((s) => s.speaker).map((s) => s.speaker))].sort();
  $("legend").replaceChildren(...speakers.map((name) => {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = colour(name);
    item.append(swatch, name);
    return item;
  }));
}

function renderCore() {
  const age = now() - state.lastHeartbeat;
  const el = $("core-state");
  el.textContent = state.lastHeartbeat ? (age < 5 ? "core live" : `core silent for ${Math.round(age)} s`) : "waiting for the core";
  el.className = `core-state ${state.lastHeartbeat && age < 5 ? "good" : "bad"}`;
}

function merge(span) {
  const old = state.spans.get(span.key);
  if (old && !old.open && span.open) return;  // a late update never reopens an ended segment
  state.spans.set(span.key, span);
  if (span.kind === "status" || span.kind === "gap") {
    state.health[span.stream] = span.reason === "recovered" || span.reason === "source_recovered" ? "" : span.reason;
  }
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

async function fetchRange() {
  const [t0, t1] = view();
  const margin = state.span / 2;
  try {
    const body = await getJSON(`/api/timeline?from=${t0 - margin}&to=${t1 + margin}`);
    state.clockOffset = body.now - Date.now() / 1000;
    for (const span of body.spans) merge(span);
    Object.assign(state.reviews, body.reviews);
    render();
  } catch (error) {
    $("core-state").textContent = `history unavailable: ${error.message}`;
  }
}

async function pollStatus() {
  try {
    const status = await getJSON("/api/status");
    state.streams = status.streams || {};
  } catch (error) {
    state.streams = {};
  }
}

function follow() {
  const source = new EventSource("/api/live");
  source.onmessage = (message) => {
    const data = JSON.parse(message.data);
    if (data.type === "heartbeat") {
      state.lastHeartbeat = data.at;
      return;
    }
    merge(data.span);
    render();
    if (state.selected === data.span.key) showDetails();
  };
  source.onerror = () => { state.lastHeartbeat = 0; renderCore(); };
  source.onopen = () => fetchRange();
}

function select(key) {
  state.selected = key;
  render();
  showDetails(true);
}

function showDetails(play) {
  const s = state.spans.get(state.selected);
  if (!s) return;
  $("details").hidden = false;
  $("d-title").textContent = `${s.stream} · ${s.speaker}`;
  $("d-title").style.color = colour(s.speaker);
  $("d-times").textContent = `${stamp(s.t0)} – ${clock(s.t1, 1)} (${duration(s.t1 - s.t0)})` +
    (s.open ? " · still speaking" : "") + (s.programme ? ` · ${s.programme}` : "");
  $("d-scores").textContent = `peak ${s.peak.toFixed(3)} · mean ${s.mean.toFixed(3)}` + (s.clip ? ` · clip ${s.clip}` : "");
  const player = $("player");
  $("d-noclip").hidden = Boolean(s.clip) || s.open;
  player.hidden = !s.clip;
  $("d-review").hidden = !s.clip;
  if (s.clip && play) {
    player.dataset.state = "loading";
    player.src = `/api/clips/${encodeURIComponent(s.clip)}`;
    player.play().catch(() => {});
  }
  const review = s.clip && state.reviews[s.clip];
  const active = review && !review.undone_at;
  $("d-verdict").textContent = review ? `${review.verdict}ed by ${review.who}` + (review.note ? ` — “${review.note}”` : "") +
    (review.undone_at ? ` (undone by ${review.undone_by})` : ` · threshold ${review.threshold_after.toFixed(3)}`) : "";
  $("confirm").disabled = $("reject").disabled = Boolean(active);
  $("undo").hidden = !active;
}

async function review(verdict) {
  const s = state.spans.get(state.selected);
  const who = $("reviewer").value.trim() || "web";
  localStorage.setItem("voicewatch.reviewer", who);
  $("d-verdict").textContent = `${verdict === "confirm" ? "confirming" : "rejecting"}…`;
  try {
    const result = await getJSON("/api/review", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ clip: s.clip, verdict, note: $("d-note").value, who }) });
    state.reviews[s.clip] = { id: result.review, verdict, who, note: $("d-note").value, threshold_after: result.threshold,
                              undone_at: null };
    render();
    showDetails();
    $("d-verdict").textContent += ` · ${result.added} windows ${verdict === "confirm" ? "added as exemplars" : "added to the impostor cohort"}`;
  } catch (error) {
    $("d-verdict").textContent = `not done: ${error.message}`;
  }
}

async function undo() {
  const s = state.spans.get(state.selected);
  const review = state.reviews[s.clip];
  try {
    await getJSON("/api/undo", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ review: review.id, who: $("reviewer").value.trim() || "web" }) });
    review.undone_at = now();
    review.undone_by = $("reviewer").value.trim() || "web";
    render();
    showDetails();
  } catch (error) {
    $("d-verdict").textContent = `not undone: ${error.message}`;
  }
}

async function showSpeakers() {
  const body = $("speakers").querySelector("tbody");
  try {
    const { speakers } = await getJSON("/api/speakers");
    body.replaceChildren(...speakers.map((sp) => {
      const row = document.createElement("tr");
      row.dataset.speaker = sp.name;
      const swatch = document.createElement("i");
      swatch.className = "swatch";
      swatch.style.background = colour(sp.name);
      const cells = [swatch, sp.name, sp.exemplars, sp.cohort, sp.threshold.toFixed(3), sp.detections_24h,
        duration(sp.airtime_24h_s), sp.last_seen ? `${sp.last_stream} · ${stamp(sp.last_seen)}` : "–"];
      for (const value of cells) {
        const cell = document.createElement("td");
        if (value instanceof Node) cell.append(value); else cell.textContent = value;
        row.append(cell);
      }
      return row;
    }));
  } catch (error) {
    body.replaceChildren();
    body.insertRow().insertCell().textContent = `speakers unavailable: ${error.message}`;
  }
}

function setView(span, end) {
  state.span = Math.min(MAX_SPAN_S, Math.max(MIN_SPAN_S, span));
  state.end = end;
  $("live").classList.toggle("on", end === null);
  render();
  fetchRange();
}

function zoom(factor, anchor) {
  const [t0, t1] = view();
  if (state.end === null && anchor === undefined) { setView(state.span * factor, null); return; }
  const at = anchor ?? (t0 + t1) / 2;
  const span = Math.min(MAX_SPAN_S, Math.max(MIN_SPAN_S, state.span * factor));
  setView(span, at + (t1 - at) * (span / state.span));
}

function pan(fraction) {
  const [, t1] = view();
  const end = t1 + state.span * fraction;
  setView(state.span, end >= now() ? null : end);
}

function tab(name) {
  $("tab-timeline").classList.toggle("active", name === "timeline");
  $("tab-speakers").classList.toggle("active", name === "speakers");
  $("timeline-view").hidden = name !== "timeline";
  $("speakers-view").hidden = name !== "speakers";
  $("controls").hidden = name !== "timeline";
  if (name === "speakers") showSpeakers();
}

$("zoom-in").onclick = () => zoom(0.5);
$("zoom-out").onclick = () => zoom(2);
$("back").onclick = () => pan(-0.5);
$("forward").onclick = () => pan(0.5);
$("live").onclick = () => setView(state.span, null);
$("close").onclick = () => { $("details").hidden = true; state.selected = null; $("player").pause(); render(); };
$("confirm").onclick = () => review("confirm");
$("reject").onclick = () => review("reject");
$("undo").onclick = undo;
$("tab-timeline").onclick = () => tab("timeline");
$("tab-speakers").onclick = () => tab("speakers");
$("reviewer").value = localStorage.getItem("voicewatch.reviewer") || "";
$("rows").addEventListener("wheel", (e) => {
  const track = e.target.closest(".track");
  if (!track) return;
  e.preventDefault();
  const [t0, t1] = view();
  if (e.shiftKey) { pan(Math.sign(e.deltaY) * 0.1); return; }
  const box = track.getBoundingClientRect();
  zoom(e.deltaY < 0 ? 0.8 : 1.25, t0 + ((e.clientX - box.left) / box.width) * (t1 - t0));
}, { passive: false });
const player = $("player");
player.addEventListener("canplay", () => { player.dataset.state = "loaded"; });
player.addEventListener("playing", () => { player.dataset.state = "playing"; });
player.addEventListener("error", () => { player.dataset.state = "error"; });

fetchRange();
follow();
pollStatus().then(render);
setInterval(() => { if (state.end === null) render(); else renderCore(); }, 1000);
setInterval(() => { pollStatus(); fetchRange(); }, 5000);
