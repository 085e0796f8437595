// camloc viewer: asks the server for an image's classes and raw maps once, then resamples the maps onto
// the image's pixels and applies the paper's box rule here, at every threshold the slider gives.
"use strict";

// Maps are resampled onto the image's own pixels up to this many; a larger image is worked on shrunk
// to it (its boxes are then scaled back and marked as approximate).
const MAX_FRAME_PIXELS = 4000000;
const BOX_COLOUR = "#00ff00";
const ALPHA = 0.5;

const $ = (id) => document.getElementById(id);
const state = {
  info: null,
  source: null, // {file} or {path}: what is shown
  answer: null, // the server's answer for it
  frame: null, // {width, height, scale}: the grid the maps are resampled onto
  panels: [], // per class: {map, base (ImageData), box, canvas, caption}
  photo: null, // ImageData of the picture on the frame
  selected: 0,
  request: 0,
};

// ---------------------------------------------------------------------------------------------
// The box rule and the resampling, as camloc computes them (float32 steps kept with Math.fround).

const f32 = Math.fround;

// The maps of the model's input resampled onto the frame's pixel centres: torch's grid_sample
// (bilinear, border padding, align_corners=False) at the grid camloc.maps.to_image_frame builds;
// NaN outside the window the model saw.
function resample(raw, mh, mw, g, frame) {
  const out = new Float32Array(frame.width * frame.height);
  const sx = g.width / g.resized_width;
  const sy = g.height / g.resized_height;
  // a pixel centre in grid_sample's [-1, 1] (float64, as camloc computes it, then float32)
  const column = (x) => ((x + 0.5) / frame.scale / sx - g.left) * (2 / g.input_width) - 1;
  const row = (y) => ((y + 0.5) / frame.scale / sy - g.top) * (2 / g.input_height) - 1;
  const where = (u, size) => {
    // un-normalize, clip to the border, split into a cell and the distances to its sides
    const half = f32(size / 2);
    const p = Math.min(size - 1, Math.max(0, f32(f32(f32(f32(u) + 1) * half) - 0.5)));
    const cell = Math.floor(p);
    const far = f32(p - cell);
    return { cell, far, near: f32(1 - far), next: cell + 1 < size, inside: Math.abs(u) <= 1 };
  };
  const xs = Array.from({ length: frame.width }, (_, x) => where(column(x), mw));
  for (let y = 0; y < frame.height; y++) {
    const r = where(row(y), mh);
    const top = r.cell * mw;
    const bottom = r.next ? top + mw : -1;
    for (let x = 0; x < frame.width; x++) {
      const c = xs[x];
      if (!r.inside || !c.inside) {
        out[y * frame.width + x] = NaN;
        continue;
      }
      const nw = f32(r.near * c.near), ne = f32(r.near * c.far), sw = f32(r.far * c.near), se = f32(r.far * c.far);
      let v = f32(raw[top + c.cell] * nw);
      v = f32(v + (c.next ? f32(raw[top + c.cell + 1] * ne) : 0));
      v = f32(v + (bottom >= 0 ? f32(raw[bottom + c.cell] * sw) : 0));
      v = f32(v + (bottom >= 0 && c.next ? f32(raw[bottom + c.cell + 1] * se) : 0));
      out[y * frame.width + x] = v;
    }
  }
  return out;
}

function maximum(map) {
  let top = -Infinity;
  for (const v of map) if (v > top) top = v; // NaN never wins
  return top;
}

// camloc.boxes.paper_box: pixels >= threshold x the map's max, the bounding box (inclusive) of the
// largest 8-connected component, the first met in raster order on a tie; null when none is kept.
function paperBox(map, width, height, threshold) {
  const top = maximum(map);
  if (top === -Infinity) return null;
  const level = f32(f32(threshold) * top);
  const seen = new Uint8Array(map.length);
  const stack = new Int32Array(map.length);
  let best = null;
  for (let start = 0; start < map.length; start++) {
    if (seen[start] || !(map[start] >= level)) continue;
    let size = 0, x0 = width, y0 = height, x1 = -1, y1 = -1, depth = 0;
    seen[start] = 1;
    stack[depth++] = start;
    while (depth) {
      const p = stack[--depth];
      const x = p % width, y = (p - x) / width;
      size++;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
      for (let dy = -1; dy <= 1; dy++) {
        const ny = y + dy;
        if (ny < 0 || ny >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const nx = x + dx;
          const q = ny * width + nx;
          if (nx < 0 || nx >= width || seen[q] || !(map[q] >= level)) continue;
          seen[q] = 1;
          stack[depth++] = q;
        }
      }
    }
    if (!best || size > best.size) best = { size, box: [x0, y0, x1, y1] };
  }
  return best && best.box;
}

// A frame box back in the image's pixels (the frame is the image itself unless it was shrunk).
function toImage(box, frame, answer) {
  if (!box || frame.scale === 1) return box;
  const s = frame.scale;
  return [
    Math.floor(box[0] / s),
    Math.floor(box[1] / s),
    Math.min(answer.width - 1, Math.ceil((box[2] + 1) / s) - 1),
    Math.min(answer.height - 1, Math.ceil((box[3] + 1) / s) - 1),
  ];
}

// ---------------------------------------------------------------------------------------------
// Pictures

function overlay(photo, map) {
  const top = maximum(map);
  const out = new ImageData(new Uint8ClampedArray(photo.data), photo.width, photo.height);
  const lut = state.info.colormap;
  for (let p = 0; p < map.length; p++) {
    let v = map[p];
    if (Number.isNaN(v)) continue; // outside what the model saw: the photo as it is
    if (top > 0) v /= top; // the map over its maximum, negatives at 0 (as camloc's grids)
    v = Math.min(1, Math.max(0, v));
    const colour = lut[Math.min(255, Math.floor(v * 256))];
    for (let c = 0; c < 3; c++) {
      out.data[4 * p + c] = Math.round(photo.data[4 * p + c] * (1 - ALPHA) + colour[c] * ALPHA);
    }
  }
  return out;
}

function drawBox(canvas, base, box) {
  const ctx = canvas.getContext("2d");
  ctx.putImageData(base, 0, 0);
  if (!box) return;
  const line = Math.max(2, Math.round(Math.max(canvas.width, canvas.height) / 150));
  ctx.strokeStyle = BOX_COLOUR;
  ctx.lineWidth = line;
  const [x0, y0, x1, y1] = box;
  ctx.strokeRect(x0 + line / 2, y0 + line / 2, x1 - x0 + 1 - line, y1 - y0 + 1 - line);
}

function frameOf(width, height) {
  const scale = Math.min(1, Math.sqrt(MAX_FRAME_PIXELS / (width * height)));
  return { scale, width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) };
}

async function pictureOf(source, answer) {
  if (answer.preview) return loadImage(answer.preview);
  if (source.path !== undefined) return loadImage("/api/image?path=" + encodeURIComponent(source.path));
  return createImageBitmap(source.file); // EXIF orientation applied, as the server does
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser could not show the picture"));
    img.src = url;
  });
}

// ---------------------------------------------------------------------------------------------
// The page

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function formatScore(p) {
  return p >= 0.001 ? `${(100 * p).toPrecision(3)} %` : `${(100 * p).toPrecision(2)} %`;
}

function threshold() {
  return Number($("threshold").value);
}

async function explain(source) {
  if (!source) return;
  const id = ++state.request;
  const form = new FormData();
  if (source.file) form.append("image", source.file, source.file.name);
  else form.append("path", source.path);
  form.append("method", $("method").value);
  form.append("topk", $("topk").value);
  form.append("threshold", String(threshold()));
  let wanted;
  try {
    wanted = chosenClass();
  } catch (err) {
    showError(err.message);
    return;
  }
  if (wanted !== null) form.append("classes", String(wanted));
  const name = source.file ? source.file.name : source.path;
  $("status").textContent = `explaining ${name} with ${$("method").value}…`;
  const started = performance.now();
  let response, answer;
  try {
    response = await fetch("/api/explain", { method: "POST", body: form });
    answer = await response.json();
  } catch (err) {
    if (id === state.request) {
      showError(`${name}: the server did not answer (${err.message})`);
      $("status").textContent = "";
    }
    return;
  }
  if (id !== state.request) return; // a newer request was made meanwhile
  if (!response.ok) {
    showError(answer.error || `${name}: error ${response.status}`);
    $("status").textContent = "";
    return;
  }
  let picture;
  try {
    picture = await pictureOf(source, answer);
  } catch (err) {
    showError(`${name}: ${err.message}`);
    return;
  }
  if (id !== state.request) return;
  showError("");
  show(source, answer, picture);
  const seconds = ((performance.now() - started) / 1000).toFixed(2);
  const approx = state.frame.scale < 1 ? "; boxes found on the image shrunk to 4 MP, so approximate" : "";
  $("status").textContent =
    `${answer.image.name}: ${answer.width}×${answer.height}, ${answer.settings.method}, ` +
    `${answer.predictions.length} class(es), ${seconds} s${approx}`;
}

function show(source, answer, picture) {
  state.source = source;
  state.answer = answer;
  const frame = frameOf(answer.width, answer.height);
  state.frame = frame;
  const scratch = document.createElement("canvas");
  scratch.width = frame.width;
  scratch.height = frame.height;
  const ctx = scratch.getContext("2d");
  ctx.drawImage(picture, 0, 0, frame.width, frame.height);
  state.photo = ctx.getImageData(0, 0, frame.width, frame.height);

  const [k, mh, mw] = answer.maps.shape;
  const bytes = Uint8Array.from(atob(answer.maps.data), (c) => c.charCodeAt(0));
  const raw = new Float32Array(bytes.buffer);
  const panels = $("panels");
  panels.replaceChildren(figure("input", answer.image.name, state.photo, -1));
  state.panels = [];
  answer.predictions.forEach((p, i) => {
    const map = resample(raw.subarray(i * mh * mw, (i + 1) * mh * mw), mh, mw, answer.geometry, frame);
    const base = overlay(state.photo, map);
    const node = figure(p.name, formatScore(p.score), base, i);
    node.dataset.rank = String(p.rank);
    node.dataset.index = String(p.index);
    panels.appendChild(node);
    state.panels.push({ map, base, node, canvas: node.querySelector("canvas"), box: null });
  });
  state.selected = Math.min(state.selected, state.panels.length - 1);
  select(Math.max(0, state.selected));
  redrawBoxes();
  $("download-json").disabled = false;
  $("download-png").disabled = false;
}

function figure(title, subtitle, image, i) {
  const node = document.createElement("figure");
  node.className = "panel";
  const canvas = document.createElement("canvas");
  canvas.width = image.width;
  canvas.height = image.height;
  canvas.getContext("2d").putImageData(image, 0, 0);
  const caption = document.createElement("figcaption");
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = title;
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = " " + subtitle;
  caption.append(name, score);
  if (i >= 0) {
    const box = document.createElement("div");
    box.className = "box";
    caption.append(box);
    node.addEventListener("click", () => select(i));
  }
  node.append(canvas, caption);
  return node;
}

function select(i) {
  state.selected = i;
  state.panels.forEach((p, j) => p.node.classList.toggle("selected", i === j));
}

let pending = false;
function redrawBoxes() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    const t = threshold();
    $("threshold-value").textContent = t.toFixed(2);
    if (!state.answer) return;
    for (const p of state.panels) {
      p.frameBox = paperBox(p.map, state.frame.width, state.frame.height, t);
      p.box = toImage(p.frameBox, state.frame, state.answer);
      drawBox(p.canvas, p.base, p.frameBox);
      p.node.querySelector(".box").textContent = p.box ? `box ${p.box.join(", ")}` : "no box";
    }
  });
}

// The class the Class field names: null (the top-k), or an index.
function chosenClass() {
  const text = $("class").value.trim();
  if (!text) return null;
  const names = state.info.classes;
  if (/^\d+$/.test(text)) {
    const index = Number(text);
    if (names.length && index >= names.length) throw new Error(`class ${text}: the model has ${names.length} classes`);
    return index;
  }
  let hits = names.flatMap((n, i) => (n === text ? [i] : []));
  if (!hits.length) hits = names.flatMap((n, i) => (n.toLowerCase() === text.toLowerCase() ? [i] : []));
  if (hits.length === 1) return hits[0];
  if (hits.length > 1) throw new Error(`“${text}” names several classes (${hits.join(", ")}); give an index`);
  throw new Error(`“${text}” is not a class name of this model`);
}

function download(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

function stem() {
  return state.answer.image.name.replace(/\.[^.]*$/, "") || "image";
}

function downloadJson() {
  const a = state.answer;
  const t = threshold();
  const result = {
    model: a.settings.model,
    settings: { ...a.settings, threshold: t },
    images: [
      {
        path: a.image.name,
        width: a.width,
        height: a.height,
        predictions: a.predictions.map((p, i) => ({ ...p, box: state.panels[i].box })),
        ...(a.window ? { window: a.window } : {}),
      },
    ],
  };
  download(new Blob([JSON.stringify(result, null, 2)], { type: "application/json" }), `${stem()}.json`);
}

function downloadPng() {
  const p = state.panels[state.selected];
  const name = state.answer.predictions[state.selected].name.replace(/[^\w-]+/g, "_");
  p.canvas.toBlob((blob) => download(blob, `${stem()}-${state.selected + 1}-${name}.png`), "image/png");
}

async function init() {
  const response = await fetch("/api/info");
  const info = await response.json();
  state.info = info;
  $("model").textContent =
    `${info.model} · ${info.classes.length || "unnamed"} classes · whole photo (${info.resize}) · camloc ${info.version}` +
    ` · uploads up to ${(info.max_bytes / 1e6).toFixed(0)} MB and ${(info.max_pixels / 1e6).toFixed(0)} MP`;
  $("rule").textContent = `Boxes: ${info.box_rule}; drawn in green, coordinates (x0, y0, x1, y1) inclusive.`;
  $("topk").max = String(info.max_topk);
  $("threshold").value = String(info.threshold); // the model's own box threshold (camloc train chose it)
  $("threshold-value").textContent = Number(info.threshold).toFixed(2);
  for (const m of info.methods) $("method").append(new Option(m, m));
  const list = $("class-names");
  info.classes.forEach((n, i) => list.append(new Option(`${i}`, n)));
  if (info.images) {
    const folder = await (await fetch("/api/images")).json();
    for (const path of folder.images) $("images").append(new Option(path, path));
    $("folder").hidden = false;
  }
}

function wire() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => {
    if (e.target.files.length) explain({ file: e.target.files[0] });
  });
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) explain({ file: e.dataTransfer.files[0] });
  });
  $("images").addEventListener("change", (e) => {
    if (e.target.value) explain({ path: e.target.value });
  });
  for (const id of ["method", "topk", "class"]) $(id).addEventListener("change", () => explain(state.source));
  $("threshold").addEventListener("input", redrawBoxes);
  $("download-json").addEventListener("click", downloadJson);
  $("download-png").addEventListener("click", downloadPng);
}

wire();
init().catch((err) => showError(`could not read the model's description: ${err.message}`));
