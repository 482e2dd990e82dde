// PicoSAM3 teleop page: drag a box to add a prompt, click a box to remove it. With the sensor
// node's `follow` on, each box is drawn where the node followed it to (Segmentation.box): drag
// once and the box stays on the object; the node keeps the prompt alive as long as this page
// republishes it (the dragged box, unchanged, every republish_period).
// Everything the page needs comes from the node (no external scripts). The page sends
// drags in display pixels with the size the image is drawn at; the node converts them
// to stream pixels, validates and clips them (see teleop_prompts.py).
"use strict";

const CLICK_SLOP_PX = 4;      // a press that moves less than this (CSS px) is a click, not a drag
const POLL_MS = 300;

const stage = document.getElementById("stage");
const overlay = document.getElementById("overlay");
const stream = document.getElementById("stream");
const waiting = document.getElementById("waiting");
const statusLine = document.getElementById("status");
const rows = document.getElementById("prompt-rows");
const countLabel = document.getElementById("count");
const messageBox = document.getElementById("message");

let state = null;
let drag = null;
let messageTimer = null;

function clamp(v, lo, hi) { return Math.min(hi, Math.max(lo, v)); }

function showMessage(text) {
  messageBox.textContent = text;
  clearTimeout(messageTimer);
  if (text) messageTimer = setTimeout(() => { messageBox.textContent = ""; }, 4000);
}

function pointerInStage(ev) {
  const r = overlay.getBoundingClientRect();
  return { x: clamp(ev.clientX - r.left, 0, r.width), y: clamp(ev.clientY - r.top, 0, r.height),
           w: r.width, h: r.height };
}

async function post(body) {
  try {
    const resp = await fetch("/api/prompts", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const reply = await resp.json();
    if (reply.state) render(reply.state);
    if (!reply.ok) showMessage(reply.error || `request failed (${resp.status})`);
    return reply;
  } catch (err) {
    showMessage(`cannot reach the node: ${err}`);
    return null;
  }
}

function drawRubber() {
  let band = overlay.querySelector(".rubber");
  if (!drag) { if (band) band.remove(); return; }
  if (!band) { band = document.createElement("div"); band.className = "rubber"; overlay.appendChild(band); }
  band.style.left = `${Math.min(drag.x0, drag.x1)}px`;
  band.style.top = `${Math.min(drag.y0, drag.y1)}px`;
  band.style.width = `${Math.abs(drag.x1 - drag.x0)}px`;
  band.style.height = `${Math.abs(drag.y1 - drag.y0)}px`;
}

overlay.addEventListener("pointerdown", (ev) => {
  if (ev.button !== 0) return;
  ev.preventDefault();
  overlay.setPointerCapture(ev.pointerId);
  const p = pointerInStage(ev);
  const box = ev.target.closest(".prompt-box, .remove");
  drag = { x0: p.x, y0: p.y, x1: p.x, y1: p.y, w: p.w, h: p.h, promptId: box ? Number(box.dataset.promptId) : null };
  drawRubber();
});

overlay.addEventListener("pointermove", (ev) => {
  if (!drag) return;
  const p = pointerInStage(ev);   // clamped: a drag that leaves the image stops at its edge
  drag.x1 = p.x; drag.y1 = p.y;
  drawRubber();
});

overlay.addEventListener("pointercancel", () => { drag = null; drawRubber(); });
document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && drag) { drag = null; drawRubber(); }   // abandon the box being drawn
});

overlay.addEventListener("pointerup", (ev) => {
  if (!drag) return;
  const p = pointerInStage(ev);
  const d = drag;
  d.x1 = p.x; d.y1 = p.y;
  drag = null;
  drawRubber();
  if (Math.hypot(d.x1 - d.x0, d.y1 - d.y0) < CLICK_SLOP_PX) {
    if (d.promptId !== null) post({ action: "remove", id: d.promptId });
    return;   // a click on the picture itself does nothing
  }
  // Skip boxes the node would refuse anyway (it checks again: this only saves a round trip).
  if (state && state.stream.width > 0) {
    const w = Math.abs(d.x1 - d.x0) * state.stream.width / d.w;
    const h = Math.abs(d.y1 - d.y0) * state.stream.height / d.h;
    if (w < state.min_box_size || h < state.min_box_size) {
      showMessage(`box too small: at least ${state.min_box_size} px each way`);
      return;
    }
  }
  // A drag that starts on a prompt's box gives that prompt a new box (its follower starts again).
  const corners = { x0: d.x0, y0: d.y0, x1: d.x1, y1: d.y1, display_width: d.w, display_height: d.h };
  if (d.promptId !== null) post({ action: "replace", id: d.promptId, ...corners });
  else post({ action: "add", ...corners });
});

document.getElementById("clear").addEventListener("click", () => post({ action: "clear" }));

rows.addEventListener("click", (ev) => {
  const btn = ev.target.closest("button[data-prompt-id]");
  if (btn) post({ action: "remove", id: Number(btn.dataset.promptId) });
});

function statusClass(status, carried) {
  if (carried) return "st-carried";
  if (status === "OK") return "st-OK";
  if (status === "NOT_SERVED") return "st-wait";
  if (status === "LOST") return "st-lost";
  return "st-bad";
}

function rgb(c) { return `rgb(${c[0]}, ${c[1]}, ${c[2]})`; }

function render(s) {
  state = s;
  const st = s.stream;
  if (st.width > 0) {
    stage.style.setProperty("--aspect", `${st.width} / ${st.height}`);
    stage.style.setProperty("--aspect-num", String(st.width / st.height));
  }
  waiting.classList.toggle("hidden", st.frames_received > 0);
  waiting.textContent = st.error ? st.error : `Waiting for camera frames on ${s.image_topic}\u2026`;
  if (st.error && st.frames_received > 0) waiting.classList.remove("hidden");

  const parts = [];
  parts.push(`backend: ${s.backend || "-"}`);
  parts.push(`latency: ${s.latency_ms === null ? "-" : s.latency_ms.toFixed(1) + " ms"}`);
  parts.push(`stream: ${st.width}\u00d7${st.height} @ ${st.sent_fps.toFixed(1)} fps`);
  parts.push(`topic: ${s.image_topic}`);
  const stale = s.results_age_s === null || s.results_age_s > 2.0;
  if (s.prompts.length > 0 && stale) parts.push("no results: is the sensor node running?");
  if (s.prompts_note) parts.push(s.prompts_note);  // the stream changed: the prompts stay until cleared
  statusLine.textContent = parts.join("  \u00b7  ");
  statusLine.title = statusLine.textContent;  // the whole line, where a narrow window cuts it
  statusLine.classList.toggle("warn", (s.prompts.length > 0 && stale) || Boolean(s.prompts_note));
  statusLine.dataset.backend = s.backend || "";
  countLabel.textContent = `(${s.prompts.length}/${s.max_prompts})`;

  // Boxes over the image, in percent of the size of the stream they were drawn on, so they
  // follow any resize. Elements are kept and updated (not rebuilt each poll), so a click in
  // progress never loses its target.
  const ps = s.prompts_stream || st;
  const ids = new Set(s.prompts.map((p) => String(p.id)));
  for (const el of overlay.querySelectorAll(".prompt-box")) if (!ids.has(el.dataset.promptId)) el.remove();
  for (const el of rows.querySelectorAll("tr")) if (!ids.has(el.dataset.promptId)) el.remove();
  for (const p of s.prompts) {
    const res = p.result;
    const followed = Boolean(res && res.box);
    const b = followed ? res.box : p.box;   // where the object is now, else where it was dragged
    const color = rgb(p.color);
    let el = overlay.querySelector(`.prompt-box[data-prompt-id="${p.id}"]`);
    if (!el) {
      el = document.createElement("div");
      el.className = "prompt-box";
      el.dataset.promptId = p.id;
      el.title = `prompt ${p.id}: click to remove`;
      el.appendChild(document.createElement("span")).className = "label";
      overlay.appendChild(el);
    }
    el.hidden = !(ps.width > 0);
    if (ps.width > 0) {
      el.style.left = `${100 * b.x / ps.width}%`;
      el.style.top = `${100 * b.y / ps.height}%`;
      el.style.width = `${100 * b.width / ps.width}%`;
      el.style.height = `${100 * b.height / ps.height}%`;
    }
    el.style.borderColor = color;
    el.classList.toggle("followed", followed);
    // A carried result: the prompt's last mask, from a frame age_ms older (shown dimmed).
    const age = res && res.age_ms !== null && res.age_ms !== undefined ? `${(res.age_ms / 1000).toFixed(1)} s ago` : "";
    el.classList.toggle("carried", Boolean(age));
    const label = el.querySelector(".label");
    label.style.background = color;
    label.textContent = res ? `#${p.id} ${age ? "last " + age : res.status} ${res.score.toFixed(2)}` : `#${p.id}`;

    let tr = rows.querySelector(`tr[data-prompt-id="${p.id}"]`);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.promptId = p.id;
      tr.innerHTML = `<td><span class="swatch"></span></td><td class="id"></td><td class="box"></td>` +
        `<td><span class="status"></span></td><td class="score"></td><td class="latency"></td>` +
        `<td><button type="button" class="remove" data-prompt-id="${p.id}" title="remove">\u00d7</button></td>`;
      rows.appendChild(tr);
    }
    tr.querySelector(".swatch").style.background = color;
    tr.querySelector(".id").textContent = String(p.id);
    tr.querySelector(".box").textContent = `${b.x},${b.y} ${b.width}\u00d7${b.height}${followed ? " (followed)" : ""}`;
    const status = tr.querySelector(".status");
    status.textContent = res ? (age ? `${res.status}, last mask ${age}` : res.status) : "-";
    status.className = `status ${res ? statusClass(res.status, Boolean(age)) : ""}`;
    tr.querySelector(".score").textContent = res ? res.score.toFixed(3) : "-";
    tr.querySelector(".latency").textContent = res ? `${res.latency_ms.toFixed(1)} ms` : "-";
  }
  if (drag) drawRubber();
}

async function poll() {
  try {
    const resp = await fetch("/api/state", { cache: "no-store" });
    render(await resp.json());
  } catch (err) {
    statusLine.textContent = `cannot reach the node: ${err}`;
    statusLine.classList.add("warn");
  }
  setTimeout(poll, POLL_MS);
}

// If the node restarts, the MJPEG stream ends: reconnect.
stream.addEventListener("error", () => {
  setTimeout(() => { stream.src = `/stream.mjpg?t=${Date.now()}`; }, 1000);
});
// The stream never finishes loading: start it after the page's load event, so the page
// counts as loaded even before the first frame arrives.
if (document.readyState === "complete") stream.src = "/stream.mjpg";
else window.addEventListener("load", () => { stream.src = "/stream.mjpg"; });

poll();
