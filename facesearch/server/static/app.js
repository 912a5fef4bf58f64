// facesearch's page: plain JavaScript over the JSON API (/docs). The query lives in the URL
// (/?text=...&k=...&where=...&weights=...; /?like=FACE_ID for "more like this face";
// &photo=ID opens a photo), so results can be bookmarked; an uploaded photo cannot be.
"use strict";
const $ = (id) => document.getElementById(id);
let regions = [], colors = {}, photoFile = null, busy = 0;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

async function api(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    let detail = body && body.detail;
    if (Array.isArray(detail)) detail = detail.map((d) => `${d.loc.slice(-1)[0]}: ${d.msg}`).join("; ");
    throw new Error(detail || `${response.status} ${response.statusText}`);
  }
  return body;
}

function showError(message) { $("error").textContent = message || ""; $("error").hidden = !message; }
function shortPath(path) {  // the last folder and the file: enough to tell photos apart
  const parts = path.split(/[\\/]/);
  return parts.length > 2 ? "…/" + parts.slice(-2).join("/") : path;
}

// --- region weights ---------------------------------------------------------------------
function buildSliders() {
  const box = $("sliders");
  box.replaceChildren();
  for (const name of regions) {
    const input = el("input", { type: "range", min: "0", max: "3", step: "0.25", value: "1", id: `w-${name}`, "data-region": name });
    const out = el("output", {}, "1");
    input.addEventListener("input", () => { out.textContent = input.value; weightsState(); });
    box.append(el("label", {}, el("span", { class: "swatch", style: `background:${colors[name]}` }),
                  el("span", { class: "name" }, name.replace("_", " ")), input, out));
  }
}
function weightsText() {
  const changed = regions.filter((n) => $(`w-${n}`).value !== "1");
  return changed.map((n) => `${n}=${$(`w-${n}`).value}`).join(",");
}
function setWeights(text) {
  for (const n of regions) { $(`w-${n}`).value = "1"; $(`w-${n}`).nextSibling.textContent = "1"; }
  for (const part of (text || "").split(",")) {
    const [name, value] = part.split("=");
    const input = $(`w-${(name || "").trim()}`);
    if (input && value !== undefined) { input.value = value; input.nextSibling.textContent = value; }
  }
  if (text) $("weights-box").open = true;
  weightsState();
}
function weightsState() {
  const text = weightsText();
  $("weights-state").textContent = text ? `(${text})` : "(all 1: plain sum)";
}

// --- the photo being searched by ---------------------------------------------------------
function setPhoto(file) {
  photoFile = file;
  $("preview").hidden = !file; $("clear-photo").hidden = !file; $("face-pick").hidden = !file;
  if (file) $("preview").src = URL.createObjectURL(file);
  else { $("preview").removeAttribute("src"); $("photo").value = ""; }
}

// --- searching ---------------------------------------------------------------------------
function queryFromForm() {
  return { text: $("text").value.trim(), k: $("k").value, where: $("where").value.trim(), weights: weightsText() };
}
function urlFor(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value) search.set(key, value);
  return "/" + (search.toString() ? "?" + search : "");
}

async function run(params, push) {
  showError(null);
  $("understood").hidden = true;
  const mine = ++busy;
  $("status").textContent = "searching…";
  try {
    let answer;
    const common = { k: params.k, where: params.where, weights: params.weights };
    if (params.like) {
      answer = await api(`/api/faces/${encodeURIComponent(params.like)}/similar?` + new URLSearchParams(clean(common)));
    } else if (photoFile && !params.fromUrl) {
      const form = new FormData();
      form.append("image", photoFile);
      form.append("face", $("face").value || "0");
      for (const [key, value] of Object.entries(clean({ ...common, text: params.text }))) form.append(key, value);
      answer = await api("/api/search", { method: "POST", body: form });
    } else {
      answer = await api("/api/search?" + new URLSearchParams(clean({ ...common, text: params.text })));
    }
    if (mine !== busy) return;
    const byPhoto = photoFile && !params.like && !params.fromUrl;
    if (byPhoto) history.replaceState(null, "", "/");  // an upload cannot be carried in a URL
    else if (push) history.pushState(null, "", urlFor({ text: params.text, like: params.like, k: params.k, where: params.where, weights: params.weights }));
    render(answer, params);
  } catch (error) {
    if (mine !== busy) return;
    $("status").textContent = "";
    showError(error.message);
  }
}
function clean(object) { return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined && v !== null && v !== "")); }

function render(answer, params) {
  const grid = $("results");
  grid.replaceChildren();
  if (answer.understood) {
    $("understood").textContent = `understood “${answer.understood.text}” as: ${answer.understood.understood}`;
    $("understood").hidden = false;
  }
  const what = params.like ? `faces like face ${params.like}` : "hits";
  $("status").textContent = answer.hits.length
    ? `${answer.hits.length} ${what} in ${answer.took_ms} ms` + (params.where ? ` (filter: ${params.where})` : "")
    : (params.where ? "no indexed face meets the filter" : "no hits");
  for (const hit of answer.hits) grid.append(hitCard(hit));
}

function thumb(hit) {
  if (hit.missing) return el("div", { class: "thumb missing", title: "the photo file is gone" }, "file missing");
  const img = el("img", { class: "thumb", loading: "lazy", alt: `face ${hit.face_id}`, src: `/api/faces/${hit.face_id}/thumbnail` });
  img.addEventListener("error", () => img.replaceWith(el("div", { class: "thumb missing" }, "file missing")));
  return img;
}

function hitCard(hit) {
  const bars = el("div", { class: "bars", title: "per-region cosine similarity with the query (−1 to 1)" });
  for (const name of regions) {
    const value = hit.regions[name];
    const width = Math.max(0, Math.min(1, (value + 1) / 2)) * 100;
    bars.append(el("span", {}, name.replace("_", " ")),
                el("div", { class: "bar" }, el("span", { style: `width:${width}%;background:${colors[name]}` })),
                el("span", { class: "num" }, value.toFixed(2)));
  }
  let fits = null;
  if (hit.fits) {
    fits = el("div", { class: "fits" }, "fits: ");
    Object.entries(hit.fits).forEach(([name, p], i) => { if (i) fits.append(", "); fits.append(el("b", {}, name), ` ${p.toFixed(2)}`); });
  }
  const card = el("article", { class: "hit", tabindex: "0", "data-face": hit.face_id, title: hit.path },
    thumb(hit),
    el("div", { class: "head" }, el("span", {}, `#${hit.rank}`), el("span", {}, hit.score.toFixed(3))),
    el("div", { class: "path" }, shortPath(hit.path), hit.missing ? el("span", { class: "badge" }, " missing") : null),
    bars, fits, el("div", { class: "attrs" }, hit.summary));
  card.addEventListener("click", () => openFace(hit.face_id, true));
  card.addEventListener("keydown", (event) => { if (event.key === "Enter") openFace(hit.face_id, true); });
  return card;
}

// --- the photo of a face -----------------------------------------------------------------
async function openFace(faceId, push) {
  try {
    const face = await api(`/api/faces/${faceId}`);
    await openPhoto(face.photo_id, faceId, push);
  } catch (error) { showError(error.message); }
}

async function openPhoto(photoId, chosenFace, push) {
  const photo = await api(`/api/photos/${photoId}`);
  $("photo-path").textContent = photo.path;
  $("photo-missing").hidden = !photo.missing;
  const frame = $("photo-frame");
  frame.querySelectorAll(".box").forEach((box) => box.remove());
  const img = $("photo-image");
  img.hidden = photo.missing;
  const faces = $("photo-faces");
  faces.replaceChildren();
  const place = () => {
    const width = photo.width || img.naturalWidth, height = photo.height || img.naturalHeight;
    photo.faces.forEach((face, i) => {
      const [x0, y0, x1, y1] = face.bbox;
      frame.append(el("div", {
        class: "box" + (face.face_id === chosenFace ? " chosen" : ""), title: `face ${i}: more like this face`,
        style: `left:${100 * x0 / width}%;top:${100 * y0 / height}%;width:${100 * (x1 - x0) / width}%;height:${100 * (y1 - y0) / height}%`,
        onclick: () => moreLike(face.face_id),
      }, el("span", {}, String(i))));
    });
  };
  if (!photo.missing) { img.onload = place; img.src = `/api/photos/${photoId}/image`; if (img.complete && img.naturalWidth) place(); }
  photo.faces.forEach((face, i) => {
    faces.append(el("div", { class: "face" + (face.face_id === chosenFace ? " chosen" : "") },
      photo.missing ? null : el("img", { src: `/api/faces/${face.face_id}/thumbnail`, alt: `face ${i}` }),
      el("span", {}, `face ${i}`),
      el("button", { type: "button", class: "more-like", "data-face": face.face_id, onclick: () => moreLike(face.face_id) }, "more like this face")));
  });
  $("photo-view").hidden = false;
  if (push) {
    const params = new URLSearchParams(location.search);
    params.set("photo", photoId);
    if (chosenFace) params.set("face", chosenFace); else params.delete("face");
    history.pushState(null, "", "/?" + params);
  }
}

function closePhoto(push) {
  $("photo-view").hidden = true;
  if (push) {
    const params = new URLSearchParams(location.search);
    params.delete("photo"); params.delete("face");
    history.pushState(null, "", urlFor(Object.fromEntries(params)));
  }
}

function moreLike(faceId) {
  closePhoto(false);
  setPhoto(null);
  $("text").value = "";
  run({ like: String(faceId), k: $("k").value, where: $("where").value.trim(), weights: weightsText() }, true);
}

// --- the URL ------------------------------------------------------------------------------
function fromUrl() {
  const params = new URLSearchParams(location.search);
  $("text").value = params.get("text") || "";
  $("where").value = params.get("where") || "";
  if (params.get("k")) $("k").value = params.get("k");
  setWeights(params.get("weights") || "");
  const query = { text: params.get("text") || "", like: params.get("like") || "", k: $("k").value,
                  where: params.get("where") || "", weights: params.get("weights") || "", fromUrl: true };
  if (query.text || query.like || query.where) run(query, false);
  else { $("results").replaceChildren(); $("status").textContent = ""; }
  if (params.get("photo")) openPhoto(params.get("photo"), Number(params.get("face")) || null, false).catch((e) => showError(e.message));
  else $("photo-view").hidden = true;
}

async function start() {
  const info = await api("/api/info").catch((error) => { showError(error.message); return null; });
  if (!info) return;
  regions = info.regions; colors = info.region_colors;
  $("info").textContent = `${info.faces} faces in ${info.photos} photos`;
  $("k").value = info.k; $("k").max = info.max_k;
  buildSliders();
  $("query").addEventListener("submit", (event) => {
    event.preventDefault();
    const params = queryFromForm();
    if (!params.text && !photoFile && !params.where) { showError("type a description, pick a photo, or both"); return; }
    run(params, true);
  });
  $("photo").addEventListener("change", () => setPhoto($("photo").files[0] || null));
  $("clear-photo").addEventListener("click", () => setPhoto(null));
  $("reset-weights").addEventListener("click", () => setWeights(""));
  $("close-photo").addEventListener("click", () => closePhoto(true));
  $("photo-view").addEventListener("click", (event) => { if (event.target === $("photo-view")) closePhoto(true); });
  document.addEventListener("keydown", (event) => { if (event.key === "Escape" && !$("photo-view").hidden) closePhoto(true); });
  const drop = $("drop");
  ["dragenter", "dragover"].forEach((name) => drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((name) => drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
  drop.addEventListener("drop", (e) => { const file = e.dataTransfer.files[0]; if (file) setPhoto(file); });
  // a photo dropped anywhere else must not make the browser leave the page to show it
  ["dragover", "drop"].forEach((name) => window.addEventListener(name, (e) => e.preventDefault()));
  window.addEventListener("popstate", fromUrl);
  fromUrl();
}
start();
