// The browser page of haribo_camera: one self-contained HTML document (no external files, no
// GUI toolkit) showing the live MJPEG stream (/stream.mjpg) with the top class and its
// probability drawn over it, a dashed box marking the centre crop the network sees, the top
// classes as bars, the frame rates and per-stage times, and the recent label changes. It polls
// /status (JSON) every 200 ms. Class names come from folder names, so every string from the
// server is put in the page as text (textContent), never as markup; the one string the
// server writes into the HTML itself (the title) is escaped. For automated checks the page
// mirrors what it saw in attributes of <body>: data-stream-width (the decoded stream's
// width, 0 until a frame arrived), data-polls, data-label, data-labels-seen (JSON list).
#pragma once
#include <string>

namespace minicnn::camera {

// Safe in HTML text and quoted attribute values.
inline std::string html_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

inline std::string camera_page_html(const std::string& title) {
  const std::string t = html_escape(title);
  std::string html = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>haribo_camera &middot; )HTML" +
                     t +
                     R"HTML(</title>
<style>
  :root { --bg: #14161a; --panel: #1d2026; --text: #e8e8e8; --dim: #9aa0a8; --accent: #ffcc33;
          --good: #5fd35f; --warn: #ffb347; --bad: #ff6b6b; }
  * { box-sizing: border-box; }
  body { margin: 0; background: var(--bg); color: var(--text);
         font: 15px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; }
  header { display: flex; align-items: baseline; gap: 1em; padding: .6em 1em;
           background: var(--panel); border-bottom: 1px solid #2c3038; }
  header h1 { font-size: 1.15em; margin: 0; color: var(--accent); }
  #model { color: var(--dim); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  #state { margin-left: auto; padding: .1em .6em; border-radius: 1em; font-size: .9em;
           background: #333; }
  #state.ok { background: #1f4d2a; color: var(--good); }
  #state.warn { background: #4d3a1f; color: var(--warn); }
  #state.bad { background: #4d1f1f; color: var(--bad); }
  main { display: flex; flex-wrap: wrap; gap: 1em; padding: 1em; }
  .view { flex: 3 1 480px; min-width: 300px; }
  #stage { position: relative; display: inline-block; max-width: 100%; background: #000;
           line-height: 0; border-radius: 6px; overflow: hidden; min-height: 120px;
           min-width: 160px; }
  #live { display: block; max-width: 100%; max-height: 75vh; width: auto; height: auto; }
  #live.small { width: 640px; image-rendering: auto; }
  #crop { position: absolute; border: 2px dashed rgba(255, 204, 51, .8); display: none;
          pointer-events: none; }
  #overlay { position: absolute; left: 10px; top: 10px; line-height: 1.2; padding: .35em .7em;
             background: rgba(0, 0, 0, .62); border-radius: 6px; font-size: 1.6em;
             font-weight: 600; max-width: calc(100% - 20px); }
  #label { color: #fff; overflow-wrap: anywhere; }
  #prob { color: var(--accent); margin-left: .5em; }
  #waiting { position: absolute; inset: 0; display: flex; align-items: center;
             justify-content: center; color: var(--dim); line-height: 1.4; }
  #caption { color: var(--dim); font-size: .9em; margin-top: .4em; overflow-wrap: anywhere; }
  aside { flex: 1 1 280px; background: var(--panel); border-radius: 6px; padding: .4em 1em 1em; }
  aside h2 { font-size: .95em; color: var(--dim); text-transform: uppercase;
             letter-spacing: .06em; margin: 1em 0 .4em; }
  #top { list-style: none; margin: 0; padding: 0; }
  #top li { display: grid; grid-template-columns: minmax(0, 1fr) 5.2em; gap: .1em .6em;
            margin-bottom: .45em; }
  #top .name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  #top .pct { text-align: right; font-variant-numeric: tabular-nums; }
  #top .bar { grid-column: 1 / 3; height: 6px; background: #2c3038; border-radius: 3px; }
  #top .bar i { display: block; height: 100%; background: var(--accent); border-radius: 3px;
                transition: width .15s; }
  #top li:first-child .name { color: #fff; font-weight: 600; }
  dl { display: grid; grid-template-columns: auto 1fr; gap: .15em 1em; margin: 0; }
  dt { color: var(--dim); }
  dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; }
  #history { margin: 0; padding-left: 1.2em; color: var(--dim); font-size: .9em; }
  #history .l { color: var(--text); }
</style>
</head>
<body data-stream-width="0" data-polls="0" data-label="" data-labels-seen="[]">
<header>
  <h1>haribo_camera</h1>
  <span id="model">)HTML" +
                     t + R"HTML(</span>
  <span id="state">connecting&hellip;</span>
</header>
<main>
  <section class="view">
    <div id="stage">
      <img id="live" alt="live camera stream">
      <div id="crop" title="the part of the frame the network classifies"></div>
      <div id="waiting">waiting for frames&hellip;</div>
      <div id="overlay"><span id="label">&hellip;</span><span id="prob"></span></div>
    </div>
    <div id="caption"></div>
  </section>
  <aside>
    <h2>Top classes</h2>
    <ol id="top"></ol>
    <h2>Speed</h2>
    <dl>
      <dt>camera</dt><dd id="fps">&ndash;</dd>
      <dt>classified</dt><dd id="cfps">&ndash;</dd>
      <dt>latency</dt><dd id="latency">&ndash;</dd>
      <dt>decode</dt><dd id="t-decode">&ndash;</dd>
      <dt>crop + resize</dt><dd id="t-resize">&ndash;</dd>
      <dt>network</dt><dd id="t-network">&ndash;</dd>
      <dt>encode (stream)</dt><dd id="t-encode">&ndash;</dd>
      <dt>frames</dt><dd id="frames">&ndash;</dd>
    </dl>
    <div id="recording" hidden>
      <h2>Recording</h2>
      <dl><dt>saved</dt><dd id="recorded"></dd></dl>
      <div id="record-folder" style="color: var(--dim); font-size: .85em; overflow-wrap: anywhere"></div>
    </div>
    <h2>Label changes</h2>
    <ol id="history" reversed></ol>
  </aside>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const img = $("live");
const seen = [];
let lastLabel = null, polls = 0, retry = null;

function startStream() {
  retry = null;
  img.src = "/stream.mjpg?t=" + Date.now();
}
img.addEventListener("load", () => {
  $("waiting").style.display = "none";
  img.classList.toggle("small", img.naturalWidth < 400);
  document.body.dataset.streamWidth = String(img.naturalWidth);
});
img.addEventListener("error", () => {
  $("waiting").style.display = "flex";
  if (!retry) retry = setTimeout(startStream, 2000);
});
// The stream never finishes loading; starting it after the page's load event keeps that
// event (and anything waiting for it) from hanging.
window.addEventListener("load", startStream);

const pct = (p) => (100 * p).toFixed(1) + " %";
const ms = (v) => (v > 0 ? v.toFixed(1) + " ms" : "\u2013");
function text(id, s) { $(id).textContent = s; }

function setState(s, cls) {
  const e = $("state");
  e.textContent = s;
  e.className = cls;
}

function render(s) {
  polls++;
  document.body.dataset.polls = String(polls);
  if (img.naturalWidth > 0) {
    $("waiting").style.display = "none";
    document.body.dataset.streamWidth = String(img.naturalWidth);
  }
  if (s.error) setState("stopped: " + s.error, "bad");
  else if (s.finished) setState("source ended", "warn");
  else if (s.problem) setState(s.problem, "warn");
  else if (s.frame >= 0) setState("live", "ok");

  const top = s.top || [];
  if (top.length) {
    text("label", top[0].label);
    text("prob", pct(top[0].prob));
    document.body.dataset.label = top[0].label;
    if (top[0].label !== lastLabel) {
      lastLabel = top[0].label;
      if (!seen.includes(lastLabel)) seen.push(lastLabel);
      document.body.dataset.labelsSeen = JSON.stringify(seen);
      const li = document.createElement("li");
      const l = document.createElement("span");
      l.className = "l";
      l.textContent = lastLabel;
      li.append(l, " " + pct(top[0].prob) + " at " + new Date().toLocaleTimeString());
      const h = $("history");
      h.prepend(li);
      while (h.children.length > 10) h.lastChild.remove();
    }
  }
  const ol = $("top");
  ol.replaceChildren(...top.map((t) => {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = t.label;
    name.title = t.label;
    const p = document.createElement("span");
    p.className = "pct";
    p.textContent = pct(t.prob);
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("i");
    fill.style.width = Math.max(0, Math.min(100, 100 * t.prob)).toFixed(1) + "%";
    bar.append(fill);
    li.append(name, p, bar);
    return li;
  }));

  text("fps", s.capture_fps.toFixed(1) + " /s");
  text("cfps", s.classify_fps.toFixed(1) + " /s");
  text("latency", ms(s.latency_ms));
  text("t-decode", ms(s.times_ms.decode));
  text("t-resize", ms(s.times_ms.resize));
  text("t-network", ms(s.times_ms.network));
  text("t-encode", s.stream_passthrough ? "none (camera JPEG)" : ms(s.times_ms.encode));
  text("frames", s.classified + " / " + s.captured);
  text("caption", (s.frame_name ? s.frame_name + " \u00b7 " : "") + s.source +
       (s.frame_width ? " \u00b7 " + s.frame_width + "\u00d7" + s.frame_height : ""));

  const c = $("crop");
  if (s.frame_width > 0 && s.crop && img.naturalWidth > 0 &&
      (s.crop[2] < s.frame_width || s.crop[3] < s.frame_height)) {
    c.style.display = "block";
    c.style.left = (100 * s.crop[0] / s.frame_width) + "%";
    c.style.top = (100 * s.crop[1] / s.frame_height) + "%";
    c.style.width = (100 * s.crop[2] / s.frame_width) + "%";
    c.style.height = (100 * s.crop[3] / s.frame_height) + "%";
  } else {
    c.style.display = "none";
  }
  if (s.record_folder) {
    $("recording").hidden = false;
    text("recorded", String(s.recorded));
    text("record-folder", s.record_folder);
  }
}

async function poll() {
  try {
    const r = await fetch("/status", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
  } catch (e) {
    setState("server unreachable", "bad");
  } finally {
    setTimeout(poll, 200);
  }
}
poll();
</script>
</body>
</html>
)HTML";
  return html;
}

}  // namespace minicnn::camera
