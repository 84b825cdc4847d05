// The paint studio's page: a label map of class ids painted with pointer events, rendered by the server's generator.
//
// The map is kept as ids (Uint8Array or Uint16Array, row-major), never as colours: the canvas only shows them. Strokes
// stamp whole pixels (no anti-aliasing) and join consecutive pointer positions. Renders are throttled while painting;
// one request is in flight at a time, the newest map is sent when it returns, and an answer older than the one shown
// is dropped.
"use strict";

const THROTTLE_MS = 150; // at most one render request per this many ms while painting
const MAX_UNDO = 100; // undo steps kept

const state = {
  info: null,
  width: 0,
  height: 0,
  ids: null, // the label map: class ids
  colours: null, // Uint8Array, 3 per id
  tool: "brush",
  classId: 0,
  brushSize: 4,
  stamp: [], // [dx, dy] offsets of the brush
  undo: [],
  redo: [],
  stroke: null, // {before, changed, last: [x, y], id}
  seed: 0,
  style: null, // {mu, logvar} from the encoder
  imageUrl: null,
  // rendering
  sent: 0, // number of the latest request sent
  shown: 0, // number of the request whose image is shown
  inFlight: false,
  dirty: false,
  urgent: false,
  lastSent: -Infinity,
  timer: null,
};

const $ = (id) => document.getElementById(id);
let mapContext = null;
let mapImage = null; // ImageData of the map's colours

// --- start -----------------------------------------------------------------------------------------------------------

async function start() {
  const info = await getJson("/api/info");
  state.info = info;
  state.width = info.width;
  state.height = info.height;
  state.ids = info.num_ids > 256 ? new Uint16Array(info.width * info.height) : new Uint8Array(info.width * info.height);
  state.colours = new Uint8Array(info.num_ids * 3);
  for (const c of info.classes) {
    const rgb = parseInt(c.colour.slice(1), 16);
    state.colours.set([(rgb >> 16) & 255, (rgb >> 8) & 255, rgb & 255], c.id * 3);
  }
  $("model-name").textContent =
    `${info.name} · ${info.dataset}, ${info.width}x${info.height}, ${info.classes.length} classes · ${info.device}`;
  $("class-source").textContent = `Names and colours: ${info.class_source}.`;
  setUpCanvas();
  buildPalette();
  setUpTools();
  setUpFiles();
  setUpStyle();
  document.addEventListener("keydown", onKey);
  selectClass(info.classes.find((c) => c.id !== info.background)?.id ?? info.background);
  state.ids.fill(info.background);
  if (info.validation_maps > 0) {
    const payload = await getJson("/api/validation/0");
    state.ids.set(decodeIds(payload.label));
  }
  redrawMap();
  requestRender(true);
}

// --- the label map -----------------------------------------------------------------------------------------------

function setUpCanvas() {
  const canvas = $("label-map");
  canvas.width = state.width;
  canvas.height = state.height;
  const scale = Math.max(1, Math.floor(512 / Math.max(state.width, state.height)));
  for (const element of [canvas, $("generated")]) {
    element.style.width = `${state.width * scale}px`;
    element.style.height = `${state.height * scale}px`;
  }
  mapContext = canvas.getContext("2d");
  mapImage = mapContext.createImageData(state.width, state.height);
  canvas.addEventListener("pointerdown", onPointerDown);
  canvas.addEventListener("pointermove", onPointerMove);
  canvas.addEventListener("pointerup", onPointerUp);
  canvas.addEventListener("pointercancel", onPointerUp);
  canvas.addEventListener("pointerleave", () => ($("cursor-class").textContent = ""));
}

function redrawMap() {
  const data = mapImage.data;
  for (let i = 0; i < state.ids.length; i++) {
    const c = state.ids[i] * 3;
    data[4 * i] = state.colours[c];
    data[4 * i + 1] = state.colours[c + 1];
    data[4 * i + 2] = state.colours[c + 2];
    data[4 * i + 3] = 255;
  }
  mapContext.putImageData(mapImage, 0, 0);
}

function setPixel(index, id) {
  if (state.ids[index] === id) return false;
  state.ids[index] = id;
  const c = id * 3;
  mapImage.data[4 * index] = state.colours[c];
  mapImage.data[4 * index + 1] = state.colours[c + 1];
  mapImage.data[4 * index + 2] = state.colours[c + 2];
  return true;
}

function mapPoint(event) {
  const rect = $("label-map").getBoundingClientRect();
  return [
    ((event.clientX - rect.left) * state.width) / rect.width,
    ((event.clientY - rect.top) * state.height) / rect.height,
  ];
}

function brushOffsets(size) {
  // Pixels whose centres lie within a disc of diameter `size` around the centre pixel's centre.
  const reach = Math.floor(size / 2);
  const limit = (size / 2) * (size / 2);
  const offsets = [];
  for (let dy = -reach; dy <= reach; dy++) {
    for (let dx = -reach; dx <= reach; dx++) {
      if (dx * dx + dy * dy <= limit) offsets.push([dx, dy]);
    }
  }
  return offsets;
}

function stampAt(x, y, id) {
  let changed = false;
  for (const [dx, dy] of state.stamp) {
    const px = x + dx;
    const py = y + dy;
    if (px >= 0 && py >= 0 && px < state.width && py < state.height) {
      changed = setPixel(py * state.width + px, id) || changed;
    }
  }
  return changed;
}

function strokeTo(point) {
  // Stamp every pixel step from the last position to `point`, so fast pointer moves leave no gaps; true if a pixel
  // changed.
  const stroke = state.stroke;
  let changed = false;
  const x1 = Math.floor(point[0]);
  const y1 = Math.floor(point[1]);
  const [x0, y0] = stroke.last;
  const steps = Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0));
  for (let s = 1; s <= steps; s++) {
    const x = Math.round(x0 + ((x1 - x0) * s) / steps);
    const y = Math.round(y0 + ((y1 - y0) * s) / steps);
    changed = stampAt(x, y, stroke.id) || changed;
  }
  stroke.last = [x1, y1];
  stroke.changed = stroke.changed || changed;
  return changed;
}

function floodFill(x, y, id) {
  const { width, height, ids } = state;
  const target = ids[y * width + x];
  if (target === id) return false;
  const stack = [y * width + x];
  while (stack.length) {
    const i = stack.pop();
    if (ids[i] !== target) continue;
    setPixel(i, id);
    const px = i % width;
    if (px > 0) stack.push(i - 1);
    if (px < width - 1) stack.push(i + 1);
    if (i >= width) stack.push(i - width);
    if (i < width * (height - 1)) stack.push(i + width);
  }
  return true;
}

function onPointerDown(event) {
  if (event.button !== 0 || state.stroke) return;
  event.preventDefault();
  const [fx, fy] = mapPoint(event);
  const x = Math.floor(fx);
  const y = Math.floor(fy);
  if (x < 0 || y < 0 || x >= state.width || y >= state.height) return;
  const before = state.ids.slice();
  if (state.tool === "fill") {
    if (floodFill(x, y, state.classId)) commit(before);
    return;
  }
  $("label-map").setPointerCapture(event.pointerId);
  const id = state.tool === "eraser" ? state.info.background : state.classId;
  state.stroke = { before, changed: false, last: [x, y], id, pointerId: event.pointerId };
  state.stroke.changed = stampAt(x, y, id);
  mapContext.putImageData(mapImage, 0, 0);
  if (state.stroke.changed) requestRender(false);
}

function onPointerMove(event) {
  const [fx, fy] = mapPoint(event);
  const x = Math.floor(fx);
  const y = Math.floor(fy);
  if (x >= 0 && y >= 0 && x < state.width && y < state.height) {
    $("cursor-class").textContent = className(state.ids[y * state.width + x]);
  }
  const stroke = state.stroke;
  if (!stroke || event.pointerId !== stroke.pointerId) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  let changed = false;
  for (const e of events.length ? events : [event]) changed = strokeTo(mapPoint(e)) || changed;
  if (!changed) return;
  mapContext.putImageData(mapImage, 0, 0);
  requestRender(false);
}

function onPointerUp(event) {
  const stroke = state.stroke;
  if (!stroke || event.pointerId !== stroke.pointerId) return;
  if (event.type === "pointerup") strokeTo(mapPoint(event));
  mapContext.putImageData(mapImage, 0, 0);
  state.stroke = null;
  if (stroke.changed) commit(stroke.before);
}

function commit(before) {
  // One undo step for a finished stroke, fill, clear or loaded map; render at once.
  state.undo.push(before);
  if (state.undo.length > MAX_UNDO) state.undo.shift();
  state.redo = [];
  mapContext.putImageData(mapImage, 0, 0);
  updateHistoryButtons();
  requestRender(true);
}

function replaceMap(ids) {
  const before = state.ids.slice();
  state.ids.set(ids);
  redrawMap();
  commit(before);
}

function undo() {
  if (!state.undo.length || state.stroke) return;
  state.redo.push(state.ids.slice());
  state.ids.set(state.undo.pop());
  afterHistory();
}

function redo() {
  if (!state.redo.length || state.stroke) return;
  state.undo.push(state.ids.slice());
  state.ids.set(state.redo.pop());
  afterHistory();
}

function afterHistory() {
  redrawMap();
  updateHistoryButtons();
  requestRender(true);
}

function updateHistoryButtons() {
  $("undo").disabled = state.undo.length === 0;
  $("redo").disabled = state.redo.length === 0;
}

function clearMap() {
  const ids = new Uint16Array(state.ids.length).fill(state.info.background);
  replaceMap(ids);
}

// --- palette and tools -------------------------------------------------------------------------------------------

function className(id) {
  const c = state.info.classes.find((k) => k.id === id);
  return c ? `${c.id} ${c.name}` : `${id}`;
}

function buildPalette() {
  const palette = $("palette");
  for (const c of state.info.classes) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "swatch-button";
    button.setAttribute("role", "radio");
    button.setAttribute("aria-checked", "false");
    button.dataset.id = String(c.id);
    button.dataset.name = c.name.toLowerCase();
    button.tabIndex = -1;
    const index = state.info.classes.indexOf(c);
    button.title = `${c.name} (id ${c.id})` + (index < 10 ? ` — key ${(index + 1) % 10}` : "");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = c.colour;
    const id = document.createElement("span");
    id.className = "swatch-id";
    id.textContent = String(c.id);
    const name = document.createElement("span");
    name.textContent = c.name;
    button.append(swatch, id, name);
    button.addEventListener("click", () => selectClass(c.id));
    palette.append(button);
  }
  palette.addEventListener("keydown", (event) => {
    const step = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1 }[event.key];
    if (!step) return;
    event.preventDefault();
    event.stopPropagation();
    moveClass(step, true);
  });
  $("class-filter").addEventListener("input", () => {
    const text = $("class-filter").value.trim().toLowerCase();
    for (const button of palette.children) {
      button.hidden = text !== "" && !button.dataset.name.includes(text) && button.dataset.id !== text;
    }
  });
}

function paletteButtons() {
  return Array.from($("palette").children).filter((b) => !b.hidden);
}

function selectClass(id, focus = false) {
  state.classId = id;
  for (const button of $("palette").children) {
    const on = Number(button.dataset.id) === id;
    button.setAttribute("aria-checked", String(on));
    button.tabIndex = on ? 0 : -1;
    if (on) {
      button.scrollIntoView({ block: "nearest" });
      if (focus) button.focus();
    }
  }
  if (state.tool === "eraser") setTool("brush");
}

function moveClass(step, focus) {
  const buttons = paletteButtons();
  if (!buttons.length) return;
  const at = buttons.findIndex((b) => Number(b.dataset.id) === state.classId);
  const next = buttons[(at + step + buttons.length) % buttons.length];
  selectClass(Number(next.dataset.id), focus);
}

function setTool(tool) {
  state.tool = tool;
  for (const button of document.querySelectorAll(".tool")) {
    button.setAttribute("aria-pressed", String(button.dataset.tool === tool));
  }
}

function setBrushSize(size) {
  const input = $("brush-size");
  const value = Math.min(Number(input.max), Math.max(Number(input.min), size));
  input.value = String(value);
  $("brush-size-value").textContent = String(value);
  state.brushSize = value;
  state.stamp = brushOffsets(value);
}

function setUpTools() {
  for (const button of document.querySelectorAll(".tool")) {
    button.addEventListener("click", () => setTool(button.dataset.tool));
  }
  $("brush-size").addEventListener("input", () => setBrushSize(Number($("brush-size").value)));
  setBrushSize(Number($("brush-size").value));
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("clear").addEventListener("click", clearMap);
}

function onKey(event) {
  const target = event.target;
  const typing = target instanceof HTMLInputElement && target.type !== "range" && target.type !== "file";
  if (typing) return;
  const key = event.key;
  const ctrl = event.ctrlKey || event.metaKey;
  if (ctrl && !event.altKey) {
    const lower = key.toLowerCase();
    if (lower === "z" && !event.shiftKey) undo();
    else if ((lower === "z" && event.shiftKey) || lower === "y") redo();
    else return;
    event.preventDefault();
    return;
  }
  if (event.altKey || event.metaKey) return;
  const actions = {
    b: () => setTool("brush"),
    f: () => setTool("fill"),
    e: () => setTool("eraser"),
    "[": () => setBrushSize(state.brushSize - 1),
    "]": () => setBrushSize(state.brushSize + 1),
    c: clearMap,
    v: loadValidation,
    r: reroll,
    ",": () => moveClass(-1, false),
    ".": () => moveClass(1, false),
  };
  let action = actions[key.toLowerCase()];
  if (!action && /^[0-9]$/.test(key)) {
    const index = (Number(key) + 9) % 10;
    const c = state.info.classes[index];
    if (c) action = () => selectClass(c.id);
  }
  if (!action) return;
  event.preventDefault();
  action();
}

// --- rendering ---------------------------------------------------------------------------------------------------

function requestRender(urgent) {
  state.dirty = true;
  state.urgent = state.urgent || urgent;
  showStatus("rendering…", "busy");
  pump();
}

function pump() {
  if (state.inFlight || !state.dirty) return;
  const wait = state.lastSent + THROTTLE_MS - performance.now();
  if (!state.urgent && wait > 0) {
    if (!state.timer) {
      state.timer = setTimeout(() => {
        state.timer = null;
        pump();
      }, wait);
    }
    return;
  }
  send();
}

async function send() {
  state.dirty = false;
  state.urgent = false;
  state.inFlight = true;
  state.lastSent = performance.now();
  const number = ++state.sent;
  const body = { label: encodeIds(state.ids), seed: state.seed, style: state.style, request: number };
  try {
    const answer = await postJson("/api/render", body);
    if (number > state.shown) {
      state.shown = number;
      state.imageUrl = answer.image;
      $("generated").src = answer.image;
      $("generated").dataset.request = String(number);
      $("generated").dataset.idsSha256 = answer.ids_sha256;
    }
    hideMessage();
    if (!state.dirty) showStatus(`ready · ${Math.round(answer.ms)} ms`, "");
  } catch (error) {
    showStatus("render failed", "error");
    showMessage(error.message);
  } finally {
    state.inFlight = false;
    pump();
  }
}

function showStatus(text, kind) {
  const status = $("status");
  status.textContent = text;
  status.className = kind;
  status.dataset.state = kind === "busy" ? "rendering" : kind === "error" ? "error" : "ready";
}

function showMessage(text) {
  $("message").textContent = text;
  $("message").hidden = false;
}

function hideMessage() {
  $("message").hidden = true;
}

// --- files -------------------------------------------------------------------------------------------------------

function setUpFiles() {
  $("download-image").addEventListener("click", () => {
    if (state.imageUrl) download(state.imageUrl, "generated.png");
  });
  $("download-map").addEventListener("click", downloadMap);
  $("upload-map").addEventListener("change", uploadMap);
  const count = state.info.validation_maps;
  if (count > 0) {
    $("validation-index").max = String(count - 1);
    $("load-validation").addEventListener("click", loadValidation);
  } else {
    $("validation-index").disabled = true;
    $("load-validation").disabled = true;
    $("validation").title = "No validation maps: start paint.py with --val-labels DIR to offer some";
  }
}

function download(url, name) {
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
}

async function downloadMap() {
  try {
    const response = await fetch("/api/label-png/write", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ label: encodeIds(state.ids) }),
    });
    if (!response.ok) throw new Error((await response.json()).error);
    const url = URL.createObjectURL(await response.blob());
    download(url, "label_map.png");
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    showMessage(error.message);
  }
}

async function uploadMap() {
  const input = $("upload-map");
  const file = input.files[0];
  input.value = "";
  if (!file) return;
  try {
    const answer = await postBytes("/api/label-png/read", await file.arrayBuffer());
    replaceMap(decodeIds(answer.label));
    hideMessage();
  } catch (error) {
    showMessage(error.message);
  }
}

async function loadValidation() {
  const count = state.info.validation_maps;
  if (!count) return;
  const index = Math.min(count - 1, Math.max(0, Math.floor(Number($("validation-index").value) || 0)));
  $("validation-index").value = String(index);
  try {
    const answer = await getJson(`/api/validation/${index}`);
    replaceMap(decodeIds(answer.label));
  } catch (error) {
    showMessage(error.message);
  }
}

// --- style -------------------------------------------------------------------------------------------------------

function setUpStyle() {
  const info = state.info;
  $("style-note").textContent = info.style_note;
  $("seed-controls").hidden = !info.use_vae;
  $("style-image-controls").hidden = !info.has_encoder;
  $("seed").addEventListener("change", () => {
    state.seed = Math.max(0, Math.floor(Number($("seed").value) || 0));
    $("seed").value = String(state.seed);
    requestRender(true);
  });
  $("reroll").addEventListener("click", reroll);
  $("upload-style").addEventListener("change", uploadStyle);
  $("clear-style").addEventListener("click", () => {
    state.style = null;
    $("clear-style").disabled = true;
    requestRender(true);
  });
}

function reroll() {
  if (!state.info.use_vae) return;
  state.seed = Math.floor(Math.random() * 2 ** 31);
  $("seed").value = String(state.seed);
  requestRender(true);
}

async function uploadStyle() {
  const input = $("upload-style");
  const file = input.files[0];
  input.value = "";
  if (!file) return;
  try {
    const answer = await postBytes("/api/style", await file.arrayBuffer());
    state.style = answer.style;
    $("clear-style").disabled = false;
    hideMessage();
    requestRender(true);
  } catch (error) {
    showMessage(error.message);
  }
}

// --- the wire ----------------------------------------------------------------------------------------------------

function encodeIds(ids) {
  const wide = state.info.num_ids > 256;
  const bytes = new Uint8Array(ids.length * (wide ? 2 : 1));
  if (wide) {
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < ids.length; i++) view.setUint16(2 * i, ids[i], true);
  } else {
    bytes.set(ids);
  }
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return { width: state.width, height: state.height, dtype: wide ? "uint16" : "uint8", ids: btoa(text) };
}

function decodeIds(payload) {
  const text = atob(payload.ids);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  if (payload.dtype === "uint16") {
    const view = new DataView(bytes.buffer);
    const ids = new Uint16Array(bytes.length / 2);
    for (let i = 0; i < ids.length; i++) ids[i] = view.getUint16(2 * i, true);
    return ids;
  }
  return bytes;
}

async function answerOf(response) {
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  return answer;
}

async function getJson(url) {
  return answerOf(await fetch(url));
}

async function postJson(url, value) {
  return answerOf(
    await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(value) }),
  );
}

async function postBytes(url, buffer) {
  return answerOf(
    await fetch(url, { method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: buffer }),
  );
}

window.addEventListener("DOMContentLoaded", () => {
  start().catch((error) => {
    showStatus("could not start", "error");
    showMessage(error.message);
  });
});
