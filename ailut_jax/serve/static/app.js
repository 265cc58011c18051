// The page of `ailut serve`: uploads one request per photo, polls its progress, shows the
// previews and the learned vertices, and points the download links at the server.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const cards = new Map(); // photo id -> {card, status}
let config = { max_upload_bytes: Infinity, max_pixels: Infinity, n_vertices: 33 };

function strength() { return Number($("#strength").value); }
function bits() { return $("#bits").value; }
function cubeSize() { return $("#cube-size").value; }
function megabytes(n) { return (n / 2 ** 20).toFixed(0); }

async function loadConfig() {
  const response = await fetch("/api/config");
  config = await response.json();
  $("#limits").textContent = `JPEG, PNG or TIFF, 8 or 16 bit; up to ${megabytes(config.max_upload_bytes)} MB ` +
    `and ${(config.max_pixels / 1e6).toFixed(0)} megapixels per photo. Nothing leaves this machine.`;
}

function newCard(name) {
  const card = $("#card").content.firstElementChild.cloneNode(true);
  $(".name", card).textContent = name;
  const side = $("#view").value === "side";
  $(".compare", card).classList.toggle("side", side);
  $(".compare", card).classList.toggle("slider", !side);
  $(".forget", card).onclick = () => card.remove();
  $("#photos").prepend(card);
  return card;
}

function setProgress(card, fraction, text) {
  $(".bar", card).style.width = `${Math.round(fraction * 100)}%`;
  $(".stage", card).textContent = text;
}

function fail(card, message) {
  card.dataset.state = "error";
  const error = $(".error", card);
  error.textContent = message;
  error.hidden = false;
  setProgress(card, 1, "");
  updateZip();
}

function upload(file) {
  const card = newCard(file.name);
  if (file.size > config.max_upload_bytes) {
    fail(card, `${file.name}: the file is over the upload limit of ${megabytes(config.max_upload_bytes)} MB`);
    return;
  }
  const started = performance.now();
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `/api/photos?name=${encodeURIComponent(file.name)}`);
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) setProgress(card, 0.3 * e.loaded / e.total, `uploading ${Math.round(100 * e.loaded / e.total)} %`);
  };
  xhr.onerror = () => fail(card, `${file.name}: the upload failed (is the server running?)`);
  xhr.onload = () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
    if (xhr.status !== 202) {
      fail(card, body.error || `${file.name}: the server answered ${xhr.status}`);
      return;
    }
    card.dataset.id = body.id;
    cards.set(body.id, { card, status: body, started });
    $(".forget", card).onclick = () => forget(body.id);
    poll(body.id);
  };
  xhr.send(file);
}

const STAGES = { queued: "waiting for the model", decoding: "decoding", enhancing: "enhancing" };

async function poll(id) {
  const entry = cards.get(id);
  if (!entry) return;
  let status;
  try {
    const response = await fetch(`/api/photos/${id}`);
    status = await response.json();
    if (!response.ok) { fail(entry.card, status.error || `error ${response.status}`); return; }
  } catch (e) {
    fail(entry.card, "lost the server"); return;
  }
  entry.status = status;
  const card = entry.card;
  card.dataset.state = status.state;
  if (status.width) $(".dims", card).textContent = `${status.width} × ${status.height}, ${status.bit_depth} bit`;
  if (status.state === "error") { fail(card, `${status.name}: ${status.message}`); return; }
  if (status.state !== "done") {
    setProgress(card, 0.3 + 0.7 * status.progress, STAGES[status.state] || status.state);
    setTimeout(() => poll(id), 250);
    return;
  }
  const seconds = ((performance.now() - entry.started) / 1000).toFixed(1);
  setProgress(card, 1, `done in ${seconds} s`);
  showResult(id);
}

function showResult(id) {
  const { card, status } = cards.get(id);
  $(".before img", card).src = `/api/photos/${id}/input.jpg`;
  drawVertices($(".vertices", card), status.vertices);
  const split = $(".split", card);
  const compare = $(".compare", card);
  split.oninput = () => compare.style.setProperty("--split", `${split.value}%`);
  $(".result", card).hidden = false;
  for (const link of card.querySelectorAll(".downloads a")) {
    link.addEventListener("click", () => {
      const stage = $(".stage", card);
      stage.textContent = `preparing ${link.textContent} at full size; the download starts when it is ready`;
      setTimeout(() => { stage.textContent = ""; }, 6000);
    });
  }
  refresh(id);
  updateZip();
}

function refresh(id) {
  const { card, status } = cards.get(id);
  if (status.state !== "done") return;
  const s = strength();
  $(".after img", card).src = `/api/photos/${id}/output.jpg?strength=${s}`;
  $(".after figcaption", card).textContent = `after (${s} %)`;
  $("a.png", card).href = `/api/photos/${id}/image.png?strength=${s}&bits=${bits()}`;
  $("a.png", card).textContent = `PNG ${bits()} bit`;
  $("a.cube", card).href = `/api/photos/${id}/lut.cube?strength=${s}&size=${cubeSize()}`;
  $("a.cube", card).textContent = `.cube ${cubeSize()}`;
}

function refreshAll() {
  for (const id of cards.keys()) refresh(id);
  updateZip();
}

function updateZip() {
  const done = [...cards.entries()].filter(([, e]) => e.status.state === "done").map(([id]) => id);
  const zip = $("#zip");
  zip.classList.toggle("disabled", done.length === 0);
  zip.textContent = `download all (zip, ${done.length})`;
  zip.href = done.length ? `/api/zip?ids=${done.join(",")}&strength=${strength()}&bits=${bits()}&size=${cubeSize()}` : "#";
}

async function forget(id) {
  const entry = cards.get(id);
  cards.delete(id);
  if (entry) entry.card.remove();
  updateZip();
  await fetch(`/api/photos/${id}`, { method: "DELETE" });
}

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#d62728", "#2ca02c", "#1f77b4"];

function svgEl(name, attrs, parent) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  parent.appendChild(el);
  return el;
}

// The learned vertices of each channel against the uniform grid (the dashed diagonal):
// AdaInt moves lattice points to where the colour mapping bends.
function drawVertices(svg, vertices) {
  svg.textContent = "";
  const x0 = 30, y0 = 210, w = 200, h = 190;
  const px = (u) => x0 + u * w, py = (v) => y0 - v * h;
  svgEl("rect", { x: x0, y: y0 - h, width: w, height: h, fill: "#fff", stroke: "#ccc" }, svg);
  svgEl("line", { x1: px(0), y1: py(0), x2: px(1), y2: py(1), stroke: "#999", "stroke-dasharray": "4 3" }, svg);
  vertices.forEach((row, c) => {
    const d = row.length;
    const points = row.map((v, i) => `${px(i / (d - 1)).toFixed(1)},${py(v).toFixed(1)}`).join(" ");
    svgEl("polyline", { points, fill: "none", stroke: COLORS[c], "stroke-width": 1.4, class: `channel-${"rgb"[c]}` }, svg);
  });
  const d = vertices[0].length;
  svgEl("text", { x: x0, y: 12 }, svg).textContent = `learned vertices (D = ${d}), R G B`;
  svgEl("text", { x: x0 + w / 2 - 40, y: 232 }, svg).textContent = "vertex index / (D − 1)";
  svgEl("text", { x: 2, y: y0 + 4 }, svg).textContent = "0";
  svgEl("text", { x: 2, y: y0 - h + 4 }, svg).textContent = "1";
}

function setup() {
  loadConfig();
  const drop = $("#drop");
  const take = (files) => { for (const file of files) upload(file); };
  $("#files").onchange = (e) => { take(e.target.files); e.target.value = ""; };
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove("over"); take(e.dataTransfer.files); };
  let timer = null;
  $("#strength").oninput = () => {
    $("#strength-value").textContent = `${strength()} %`;
    clearTimeout(timer);
    timer = setTimeout(refreshAll, 120);
  };
  $("#bits").onchange = refreshAll;
  $("#cube-size").onchange = refreshAll;
  $("#view").onchange = () => {
    for (const el of document.querySelectorAll(".compare")) {
      el.classList.toggle("side", $("#view").value === "side");
      el.classList.toggle("slider", $("#view").value !== "side");
    }
  };
}

document.addEventListener("DOMContentLoaded", setup);
