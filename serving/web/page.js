// The slider page: plain JavaScript over the REST API of this server (docs/api.md#http-api).
// One control per factor of the model's factor card, raw latent sliders behind a toggle,
// live edits while a slider moves, reset / random, and a traversal strip of the factor last moved.
// An editor model (model info "kind": "editor", image-to-image translation without a latent space)
// gets the factor dials only, as edits of the chosen image: no raw latents, no traversal strip.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  model: "", version: "", info: null,
  editor: false,     // the model is an editor: edits are sent with the source image, not latents
  png: null,         // the source image as base64 PNG (an editor's edits carry it)
  z0: null,          // latents (D,) of the source image (an editor: its factor codes)
  start: {},         // factor -> value read from the source
  moved: [],         // targets in the order first moved: "f:<name>" or "d:<dim>"
  last: null,        // the target moved last (its traversal is shown)
  inflight: false, again: false,
  token: sessionStorage.getItem("latentdial-token") || "",
};

function setStatus(text, kind) {
  $("status").textContent = text;
  document.body.dataset.state = kind || "ready";
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.token) headers["Authorization"] = "Bearer " + state.token;
  const r = await fetch(path, Object.assign({}, options, { headers }));
  if (r.status === 401) {
    const token = window.prompt("This server wants a bearer token:");
    if (token) {
      state.token = token;
      sessionStorage.setItem("latentdial-token", token);
      return api(path, options);
    }
  }
  if (!r.ok) {
    let message = r.status + " " + r.statusText;
    try { message = (await r.json()).error || message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return r;
}

const q = () => "?version=" + encodeURIComponent(state.version);
const modelPath = (call) => "/v1/models/" + encodeURIComponent(state.model) + (call ? "/" + call : "");

function postJSON(call, body, extra = "") {
  return api(modelPath(call) + q() + extra, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
}

// ------------------------------------------------------------------ models
async function loadModels() {
  const { models } = await (await api("/v1/models")).json();
  const select = $("model");
  select.innerHTML = "";
  for (const m of models) {
    for (const v of [...m.versions].reverse()) {
      const o = document.createElement("option");
      o.value = m.name + "|" + v;
      o.textContent = m.name + " / " + v + (m.is_default && v === m.latest_version ? " (default)" : "");
      if (m.is_default && v === m.latest_version) o.selected = true;
      select.appendChild(o);
    }
  }
  const wanted = new URLSearchParams(location.search).get("model");
  if (wanted) for (const o of select.options) if (o.value.split("|")[0] === wanted) { o.selected = true; break; }
  await chooseModel();
}

async function chooseModel() {
  [state.model, state.version] = $("model").value.split("|");
  state.info = await (await api(modelPath("") + q())).json();
  state.z0 = null; state.png = null;
  showKind();
  tileSize(state.info.width, state.info.height);
  buildDials();
  ["source", "edited", "strip"].forEach((id) => $(id).removeAttribute("src"));
  $("edits").textContent = "no edit yet";
  setStatus(state.info.model.name + "/" + state.info.model.version + ": choose an image", "ready");
}

// An editor has no latent space: only EditAttributes on images is served, so the raw latent
// dimensions and the traversal strip are not shown, and the page says why.
function showKind() {
  state.editor = state.info.kind === "editor";
  document.body.dataset.kind = state.info.kind || "vae";
  const note = $("kind-note");
  note.hidden = !state.editor;
  note.textContent = state.editor
    ? state.info.model.name + "/" + state.info.model.version + " is an editor (image-to-image translation): it has " +
      "no latent space, so the dials edit the image you choose; there are no raw latent dimensions and no traversal."
    : "";
  $("raw-toggle").hidden = state.editor;
  if (state.editor) $("raw").checked = false;
  document.querySelector(".strip").hidden = state.editor;
}

// The source and edited images are drawn at a whole multiple of the model's size near 192 px
// (64 -> 192, 128 -> 256, 256 -> 256), so that pixelated scaling keeps every pixel square.
function tileSize(width, height) {
  const scale = Math.max(1, Math.round(192 / Math.max(width, height)));
  const root = document.documentElement.style;
  root.setProperty("--tile", scale * width + "px");
  root.setProperty("--aspect", width + " / " + height);
}

// ------------------------------------------------------------------- dials
function dial(id, label, kind, control, target) {
  const row = document.createElement("div");
  row.className = "dial";
  row.dataset.target = target;
  const l = document.createElement("label");
  l.htmlFor = id;
  l.innerHTML = label + ' <span class="kind">' + kind + "</span>";
  const out = document.createElement("output");
  control.id = id;
  // a range fires "input" while it moves; a select fires "change" once per choice
  const event = control.tagName === "SELECT" ? "change" : "input";
  control.addEventListener(event, () => { row.classList.add("moved"); show(row, control, out); moved(target); });
  row.append(l, control, out);
  return row;
}

function show(row, control, out) {
  out.textContent = control.tagName === "SELECT" ? "" : Number(control.value).toFixed(2);
}

function buildDials() {
  const factors = $("factors"), latents = $("latents");
  factors.innerHTML = ""; latents.innerHTML = "";
  for (const f of state.info.factors) {
    let control;
    if (f.kind === "categorical" && f.values.length) {
      control = document.createElement("select");
      f.values.forEach((v, i) => {
        const o = document.createElement("option");
        o.value = String(v);
        o.textContent = f.labels[i] || String(v);
        control.appendChild(o);
      });
    } else {
      control = document.createElement("input");
      control.type = "range";
      control.min = f.min; control.max = f.max;
      control.step = ((f.max - f.min) / 100) || 0.01;
    }
    control.dataset.factor = f.name;
    factors.appendChild(dial("factor-" + f.name, f.name, f.kind, control, "f:" + f.name));
  }
  if (!state.info.factors.length) {
    factors.textContent = state.editor ? "This editor has no factor card: it has nothing to edit."
      : "This model has no factor card: use the raw latent dimensions.";
    $("raw").checked = !state.editor;
  }
  for (let d = 0; d < state.info.latent_dim; d++) {
    const control = document.createElement("input");
    control.type = "range"; control.min = -3; control.max = 3; control.step = 0.05;
    control.dataset.dimension = d;
    latents.appendChild(dial("dim-" + d, "z" + d, "latent", control, "d:" + d));
  }
  latents.hidden = !$("raw").checked;
}

function controlOf(target) {
  return target.startsWith("f:") ? $("factor-" + target.slice(2)) : $("dim-" + target.slice(2));
}

function setControl(target, value) {
  const c = controlOf(target);
  if (c.tagName === "SELECT") {
    let best = c.options[0];
    for (const o of c.options) if (Math.abs(Number(o.value) - value) < Math.abs(Number(best.value) - value)) best = o;
    c.value = best.value;
  } else {
    c.value = value;
  }
  show(c.parentElement, c, c.parentElement.querySelector("output"));
}

function moved(target) {
  if (!state.z0) { setStatus("choose an image first", "ready"); return; }
  if (!state.moved.includes(target)) state.moved.push(target);
  state.last = target;
  render();
}

function edits() {
  return state.moved.map((t) => {
    const c = controlOf(t);
    if (t.startsWith("d:")) return { dimension: Number(t.slice(2)), set_value: Number(c.value) };
    return { factor: t.slice(2), set_value: Number(c.value) };
  });
}

function describe(e) {
  const target = e.factor !== undefined ? e.factor : "z" + e.dimension;
  const f = state.info.factors.find((x) => x.name === e.factor);
  if (f && f.labels.length) return target + " = " + (f.labels[f.values.indexOf(e.set_value)] || e.set_value);
  return target + " = " + e.set_value.toFixed(2);
}

// ----------------------------------------------------------------- source
async function setSource(pngBlob) {
  setStatus(state.editor ? "reading the image's factors…" : "encoding…", "busy");
  $("source").src = URL.createObjectURL(pngBlob);
  if (state.editor) {
    // no Encode on an editor: an edit with no changes returns the image's factor codes and their values
    state.png = await base64(pngBlob);
    const out = await (await postJSON("edit", { images: [state.png], edits: [] })).json();
    state.z0 = out.latents[0];
    state.start = {};
    for (const [name, values] of Object.entries(out.factors || {})) state.start[name] = values[0];
    reset();
    return;
  }
  const r = await api(modelPath("encode") + q(), { method: "POST", headers: { "Content-Type": "image/png" }, body: pngBlob });
  const enc = await r.json();
  state.z0 = enc.mean[0];
  state.start = {};
  for (const [name, values] of Object.entries(enc.factors)) state.start[name] = values[0];
  reset();
}

async function base64(blob) {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

async function sample() {
  const seed = Math.floor(Math.random() * 2 ** 31);
  setStatus("sampling…", "busy");
  const r = await api(modelPath("samples") + q() + "&format=png&seed=" + seed);
  await setSource(await r.blob());
}

async function upload(file) {
  const { width, height, channels } = state.info;
  if (file.type === "image/png") {
    const dims = await imageSize(file);
    if (dims[0] === width && dims[1] === height) return setSource(file);
  }
  // any other image: scale it to the model's size in a canvas (grey for 1-channel models) and send a PNG
  const bitmap = await createImageBitmap(file);
  const canvas = document.createElement("canvas");
  canvas.width = width; canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0, width, height);
  if (channels === 1) {
    const img = ctx.getImageData(0, 0, width, height);
    for (let i = 0; i < img.data.length; i += 4) {
      const g = Math.round(0.299 * img.data[i] + 0.587 * img.data[i + 1] + 0.114 * img.data[i + 2]);
      img.data[i] = img.data[i + 1] = img.data[i + 2] = g;
    }
    ctx.putImageData(img, 0, 0);
  }
  await setSource(await new Promise((ok) => canvas.toBlob(ok, "image/png")));
}

function imageSize(file) {
  return new Promise((ok, fail) => {
    const img = new Image();
    img.onload = () => ok([img.naturalWidth, img.naturalHeight]);
    img.onerror = () => fail(new Error("the browser cannot read this image"));
    img.src = URL.createObjectURL(file);
  });
}

// ----------------------------------------------------------------- render
async function render() {
  if (state.inflight) { state.again = true; return; }
  state.inflight = true;
  setStatus("editing…", "busy");
  try {
    do {
      state.again = false;
      const list = edits();
      const source = state.editor ? { images: [state.png] } : { latents: [state.z0] };
      const out = await (await postJSON("edit", Object.assign(source, { edits: list }))).json();
      $("edited").src = "data:image/png;base64," + out.images[0];
      $("edits").textContent = list.length ? list.map(describe).join(", ") : "reconstruction (no edit)";
      document.body.dataset.renders = String(Number(document.body.dataset.renders) + 1);
      if (state.last && !state.editor) await strip(out.latents[0]);
    } while (state.again);
    setStatus(state.info.model.name + "/" + state.info.model.version + ": ready", "ready");
  } catch (e) {
    setStatus(e.message, "error");
  } finally {
    state.inflight = false;
  }
}

async function strip(z) {
  const t = state.last;
  const body = { latents: [z], steps: 8 };
  if (t.startsWith("f:")) body.factors = [t.slice(2)]; else body.dimensions = [Number(t.slice(2))];
  const r = await postJSON("traverse", body, "&format=png");
  $("strip").src = URL.createObjectURL(await r.blob());
  $("strip-caption").textContent = "traversal of " + (t.startsWith("f:") ? t.slice(2) : "z" + t.slice(2));
}

function reset() {
  state.moved = []; state.last = null;
  for (const f of state.info.factors) if (f.name in state.start) setControl("f:" + f.name, state.start[f.name]);
  for (let d = 0; d < state.info.latent_dim; d++) setControl("d:" + d, state.z0[d]);
  document.querySelectorAll(".dial.moved").forEach((r) => r.classList.remove("moved"));
  $("strip").removeAttribute("src");
  $("strip-caption").textContent = "move a dial to see its traversal";
  render();
}

function randomise() {
  if (!state.z0) return;
  const factors = state.info.factors.filter((f) => f.calibrated);
  if (!factors.length) {
    for (let d = 0; d < state.info.latent_dim; d++) { setControl("d:" + d, (Math.random() * 2 - 1) * 2); moved("d:" + d); }
    return;
  }
  for (const f of factors) {
    const v = f.kind === "categorical" ? f.values[Math.floor(Math.random() * f.values.length)]
      : f.min + Math.random() * (f.max - f.min);
    setControl("f:" + f.name, v);
    if (!state.moved.includes("f:" + f.name)) state.moved.push("f:" + f.name);
  }
  state.last = "f:" + factors[0].name;
  render();
}

// ------------------------------------------------------------------ wire up
function guard(fn) {
  return (...args) => Promise.resolve(fn(...args)).catch((e) => setStatus(e.message, "error"));
}

$("model").addEventListener("change", guard(chooseModel));
$("sample").addEventListener("click", guard(sample));
$("upload").addEventListener("change", guard((e) => e.target.files[0] && upload(e.target.files[0])));
$("reset").addEventListener("click", () => state.z0 && reset());
$("random").addEventListener("click", randomise);
$("raw").addEventListener("change", () => { $("latents").hidden = !$("raw").checked || state.editor; });
guard(loadModels)();
