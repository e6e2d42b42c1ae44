// knobcap play: build the pedal's controls from /api/controls, render through the model on every move,
// A/B against the dry clip. No external code: this page works offline.
"use strict";

const state = {info: null, setting: {}, clip: null, mode: "model", urls: {model: null, dry: null},
               seq: 0, renders: 0, timer: null};
const $ = (id) => document.getElementById(id);
// The server writes a random token into the page; every POST carries it (other sites cannot read it).
const TOKEN = document.querySelector('meta[name="knobcap-token"]').content;

// Knob sliders move in the knob's own units (the dial), except log-taper knobs, which move in log(value).
function toSlider(knob, value) {
  return knob.taper === "log" ? Math.log(value / knob.min) / Math.log(knob.max / knob.min) : value;
}
function fromSlider(knob, position) {
  return knob.taper === "log" ? knob.min * Math.pow(knob.max / knob.min, position) : position;
}
function format(value, unit) {
  const text = Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(3).replace(/\.?0+$/, "");
  return unit ? `${text} ${unit}` : text;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function setStatus(text) {
  const status = $("status");
  status.textContent = text;
  status.dataset.renders = String(state.renders);
}

function buildControls(info) {
  const knobs = $("knobs");
  knobs.replaceChildren();
  for (const knob of info.knobs) {
    const box = document.createElement("div");
    box.className = "knob";
    const id = `knob-${knob.name}`;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = knob.name;
    const input = document.createElement("input");
    input.type = "range";
    input.id = id;
    input.name = knob.name;
    input.dataset.control = knob.name;
    const low = toSlider(knob, knob.min), high = toSlider(knob, knob.max);
    input.min = String(low);
    input.max = String(high);
    input.step = String((high - low) / 200);
    input.value = String(toSlider(knob, state.setting[knob.name]));
    const output = document.createElement("output");
    output.htmlFor = id;
    output.textContent = format(state.setting[knob.name], knob.unit);
    input.addEventListener("input", () => {
      state.setting[knob.name] = fromSlider(knob, Number(input.value));
      output.textContent = format(state.setting[knob.name], knob.unit);
      scheduleRender(250);
    });
    input.addEventListener("change", () => scheduleRender(0));
    box.append(label, input, output);
    knobs.append(box);
  }
  const switches = $("switches");
  switches.replaceChildren();
  for (const sw of info.switches) {
    const box = document.createElement("div");
    box.className = "switch";
    const id = `switch-${sw.name}`;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = sw.name;
    const select = document.createElement("select");
    select.id = id;
    select.name = sw.name;
    select.dataset.control = sw.name;
    for (const position of sw.positions) {
      const option = document.createElement("option");
      option.value = option.textContent = position;
      select.append(option);
    }
    select.value = state.setting[sw.name];
    select.addEventListener("change", () => {
      state.setting[sw.name] = select.value;
      scheduleRender(0);
    });
    box.append(label, select);
    switches.append(box);
  }
}

function buildClips(clips, selected) {
  const select = $("clip-select");
  select.replaceChildren();
  for (const clip of clips) {
    const option = document.createElement("option");
    option.value = clip.id;
    option.textContent = `${clip.name} (${clip.seconds.toFixed(1)} s${clip.source === "demo" ? ", demo" : ""})`;
    select.append(option);
  }
  if (selected) select.value = selected;
  state.clip = select.value || null;
  const clip = clips.find((c) => c.id === state.clip);
  $("clip-notes").textContent = clip && clip.notes.length ? `Note: ${clip.notes.join("; ")}.` : "";
}

async function jsonOrError(response) {
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) throw new Error((body && body.error) || `the server answered ${response.status}`);
  return body;
}

// Swap the player's source, keeping the playback position and whether it was playing.
function play(url) {
  const player = $("player");
  const wasPlaying = !player.paused;
  const position = player.currentTime || 0;
  player.src = url;
  player.addEventListener("loadedmetadata", () => {
    player.currentTime = Math.min(position, Math.max(0, player.duration - 0.05));
    if (wasPlaying) player.play().catch(() => {});
  }, {once: true});
}

function setMode(mode) {
  state.mode = mode;
  for (const [id, m] of [["ab-model", "model"], ["ab-dry", "dry"]]) {
    $(id).classList.toggle("active", m === mode);
    $(id).setAttribute("aria-pressed", String(m === mode));
  }
  if (state.urls[mode]) play(state.urls[mode]);
}

async function loadDry() {
  if (!state.clip) return;
  const response = await fetch(`/api/dry?clip=${encodeURIComponent(state.clip)}`);
  if (!response.ok) { await jsonOrError(response); return; }
  const blob = await response.blob();
  if (state.urls.dry) URL.revokeObjectURL(state.urls.dry);
  state.urls.dry = URL.createObjectURL(blob);
  if (state.mode === "dry") play(state.urls.dry);
}

function scheduleRender(delay) {
  clearTimeout(state.timer);
  state.timer = setTimeout(render, delay);
}

async function render() {
  if (!state.clip) { setStatus("Choose or upload a clip."); return; }
  const seq = ++state.seq;
  setStatus("Rendering…");
  try {
    const started = performance.now();
    const response = await fetch("/api/render", {
      method: "POST", headers: {"Content-Type": "application/json", "X-Knobcap-Token": TOKEN},
      body: JSON.stringify({clip: state.clip, setting: state.setting}),
    });
    if (!response.ok) { await jsonOrError(response); return; }
    const blob = await response.blob();
    if (seq !== state.seq) return;  // a newer move is on its way
    if (state.urls.model) URL.revokeObjectURL(state.urls.model);
    state.urls.model = URL.createObjectURL(blob);
    state.renders += 1;
    const $player = $("player");
    $player.dataset.modelUrl = state.urls.model;
    if (state.mode === "model") play(state.urls.model);
    const took = (performance.now() - started) / 1000;
    const label = Object.entries(state.setting)
      .map(([k, v]) => `${k}=${typeof v === "number" ? format(v, "") : v}`).join(" ");
    setStatus(`Rendered ${label} in ${took.toFixed(2)} s (render #${state.renders}).`);
    showError("");
  } catch (error) {
    if (seq === state.seq) { setStatus("Render failed."); showError(error.message); }
  }
}

async function upload(file) {
  showError("");
  if (file.size > state.info.limits.max_bytes) {
    showError(`${file.name}: ${(file.size / 1048576).toFixed(1)} MiB is too large; upload a clip under ` +
              `${state.info.limits.max_seconds} s.`);
    return;
  }
  setStatus(`Uploading ${file.name}…`);
  try {
    const response = await fetch("/api/upload", {
      method: "POST",
      headers: {"Content-Type": "application/octet-stream", "X-Filename": file.name, "X-Knobcap-Token": TOKEN},
      body: file,
    });
    const clip = await jsonOrError(response);
    const info = await jsonOrError(await fetch("/api/controls"));
    state.info.clips = info.clips;
    buildClips(info.clips, clip.id);
    await loadDry();
    await render();
  } catch (error) {
    setStatus("Upload refused.");
    showError(error.message);
  } finally {
    $("upload").value = "";
  }
}

async function main() {
  try {
    const info = await jsonOrError(await fetch("/api/controls"));
    state.info = info;
    state.setting = {...info.default};
    document.title = `knobcap play: ${info.title}`;
    $("title").textContent = info.title;
    $("subtitle").textContent = `${info.knobs.length} knob(s), ${info.switches.length} switch(es) · ` +
      `${info.sample_rate} Hz · ${info.engine}`;
    buildControls(info);
    buildClips(info.clips, null);
    $("clip-select").addEventListener("change", async () => {
      buildClips(state.info.clips, $("clip-select").value);
      await loadDry();
      await render();
    });
    $("upload").addEventListener("change", () => { if ($("upload").files.length) upload($("upload").files[0]); });
    $("ab-model").addEventListener("click", () => setMode("model"));
    $("ab-dry").addEventListener("click", () => setMode("dry"));
    $("reset").addEventListener("click", () => {
      state.setting = {...info.default};
      buildControls(info);
      scheduleRender(0);
    });
    await loadDry();
    await render();
  } catch (error) {
    setStatus("The model could not be loaded.");
    showError(error.message);
  }
}

main();
