// facesearch's page: plain JavaScript over the JSON API (/docs). The query lives in the URL
// (/?text=...&k=...&where=...&weights=...; /?like=FACE_ID for "more like this face";
// &match=person|look-alike for a photo's match mode; &person=ID for one person's faces;
// &photo=ID opens a photo), so results can be bookmarked; an uploaded photo cannot be.
// /people shows the people view: persons with a cover face, names edited in place.
"use strict";
const $ = (id) => document.getElementById(id);
let regions = [], colors = {}, photoFile = null, busy = 0, liking = "", personFilter = "";

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
  updateMatch();
}
// the match mode means something for a photo alone (or "more like this face"), not with a text
function updateMatch() { $("match").disabled = !(photoFile || liking) || !!$("text").value.trim(); }
function matchValue() { return $("match").disabled ? "" : $("match").value; }

// --- searching ---------------------------------------------------------------------------
function queryFromForm() {
  return { text: $("text").value.trim(), k: $("k").value, where: $("where").value.trim(), weights: weightsText(),
           match: matchValue(), person: personFilter };
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
    const common = { k: params.k, where: params.where, weights: params.weights, match: params.match, person: params.person };
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
    // an upload cannot be carried in a URL (its match mode and person filter can)
    if (byPhoto) history.replaceState(null, "", urlFor({ match: params.match, person: params.person }));
    else if (push) history.pushState(null, "", urlFor({ text: params.text, like: params.like, k: params.k, where: params.where,
                                                         weights: params.weights, match: params.match, person: params.person }));
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
  const what = params.like ? `faces like face ${params.like}` : params.person && !params.text ? "faces of this person" : "hits";
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
  // no query vector (pixel attributes alone, browsing): no region compared; score_is says what the score is
  if (!Object.keys(hit.regions).length) bars.append(el("span", { style: "grid-column:1/-1" }, `score: ${hit.score_is || "no region compared"}`));
  for (const name of Object.keys(hit.regions).length ? regions : []) {
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
    el("div", { class: "head", title: hit.score_is || "" }, el("span", {}, `#${hit.rank}`), el("span", {}, hit.score.toFixed(3))),
    el("div", { class: "path" }, shortPath(hit.path), hit.missing ? el("span", { class: "badge" }, " missing") : null),
    videoTimes(hit),
    personLine(hit),
    bars, fits, el("div", { class: "attrs" }, hit.summary));
  card.addEventListener("click", () => openFace(hit.face_id, true));
  card.addEventListener("keydown", (event) => { if (event.key === "Enter") openFace(hit.face_id, true); });
  return card;
}

function videoTimes(face) {  // a video's face is a track: when it is seen, and the frame shown
  if (face.media !== "video") return null;
  return el("div", { class: "times", title: `track ${face.track_id}: seen ${face.start.toFixed(1)}–${face.end.toFixed(1)} s, this frame at ${face.time.toFixed(1)} s` },
    `video track ${face.track_id}: ${face.start.toFixed(1)}–${face.end.toFixed(1)} s, frame ${face.time.toFixed(1)} s`);
}

function personLine(hit) {  // its person's name when known; for a photo, how sure it is the same person
  const name = hit.person && hit.person.name;
  const same = typeof hit.same_person === "number" ? `same person ${Math.round(hit.same_person * 100)}%` : null;
  if (!name && !same) return null;
  const link = name ? el("a", { class: "person-name", href: `/?person=${hit.person.id}`, title: "all faces of this person",
                                onclick: (event) => event.stopPropagation() }, name) : null;  // not the card's photo
  return el("div", { class: "person" }, link,
            name && same ? " · " : null, same ? el("span", { class: "same", title: "calibrated probability that this is the query face's person" }, same) : null);
}

// --- the people view ----------------------------------------------------------------------
function showPeopleError(message) { $("people-error").textContent = message || ""; $("people-error").hidden = !message; }

async function loadPeople() {
  showPeopleError(null);
  let answer;
  try { answer = await api("/api/people"); } catch (error) { showPeopleError(error.message); return; }
  const grid = $("people");
  grid.replaceChildren();
  if (!answer.people.length) grid.append(el("p", { class: "muted" }, "No persons yet: `facesearch index` groups faces of one person (3 or more) into persons."));
  for (const person of answer.people) grid.append(personCard(person));
}

function personCard(person) {
  const link = `/?person=${person.id}`;
  const cover = person.cover == null ? el("div", { class: "thumb missing" }, "no faces")
    : el("a", { href: link, title: "all faces of this person" },
         el("img", { class: "thumb", loading: "lazy", alt: `person ${person.id}`, src: `/api/faces/${person.cover}/thumbnail` }));
  const name = el("input", { type: "text", class: "person-name", value: person.name || "", placeholder: `person ${person.id}: name…`,
                             "aria-label": `name of person ${person.id}`, "data-person": person.id });
  const state = el("span", { class: "muted saved" });
  const save = async () => {
    const wanted = name.value.trim();
    if (wanted === (person.name || "")) return;
    showPeopleError(null);
    try {
      const answer = await api(`/api/people/${person.id}`, { method: "POST", headers: { "Content-Type": "application/json" },
                                                             body: JSON.stringify({ name: wanted }) });
      person.name = answer.name; name.value = answer.name; state.textContent = "saved";
      name.closest("article").dataset.label = answer.name;
    } catch (error) { showPeopleError(error.message); name.value = person.name || ""; state.textContent = ""; }
  };
  name.addEventListener("keydown", (event) => { if (event.key === "Enter") { event.preventDefault(); save(); } });
  name.addEventListener("change", save);
  const merge = el("select", { class: "merge", "aria-label": "merge another person into this one" },
                   el("option", { value: "" }, "merge in…"));
  merge.addEventListener("focus", () => {  // the other persons, listed when opened
    if (merge.options.length > 1) return;
    for (const other of [...document.querySelectorAll("#people .person-card")].map((c) => c.dataset)) {
      if (other.person !== String(person.id)) merge.append(el("option", { value: other.person }, other.label));
    }
  });
  merge.addEventListener("change", async () => {
    if (!merge.value) return;
    const other = merge.options[merge.selectedIndex].text;
    if (!confirm(`Merge ${other} into ${person.name || "person " + person.id}? Its faces move here.`)) { merge.value = ""; return; }
    try {
      await api(`/api/people/${person.id}/merge`, { method: "POST", headers: { "Content-Type": "application/json" },
                                                    body: JSON.stringify({ other: Number(merge.value) }) });
      loadPeople();
    } catch (error) { showPeopleError(error.message); merge.value = ""; }
  });
  return el("article", { class: "hit person-card", "data-person": person.id, "data-label": person.name || `person ${person.id}` },
    cover, name,
    el("div", { class: "head" }, el("a", { href: link }, `${person.count} face${person.count === 1 ? "" : "s"}`), state),
    merge);
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
  // a video: the frame of the chosen track (else the first), and the faces boxed in that frame
  const shown = photo.media === "video" ? (photo.faces.find((f) => f.face_id === chosenFace) || photo.faces[0]) : null;
  const place = () => {
    const width = photo.width || img.naturalWidth, height = photo.height || img.naturalHeight;
    photo.faces.forEach((face, i) => {
      if (shown && face.time !== shown.time) return;
      const [x0, y0, x1, y1] = face.bbox;
      frame.append(el("div", {
        class: "box" + (face.face_id === chosenFace ? " chosen" : ""), title: `face ${i}: more like this face`,
        style: `left:${100 * x0 / width}%;top:${100 * y0 / height}%;width:${100 * (x1 - x0) / width}%;height:${100 * (y1 - y0) / height}%`,
        onclick: () => moreLike(face.face_id),
      }, el("span", {}, String(i))));
    });
  };
  const at = shown ? `?time=${shown.time}` : "";
  if (!photo.missing) { img.onload = place; img.src = `/api/photos/${photoId}/image${at}`; if (img.complete && img.naturalWidth) place(); }
  photo.faces.forEach((face, i) => {
    faces.append(el("div", { class: "face" + (face.face_id === chosenFace ? " chosen" : "") },
      photo.missing ? null : el("img", { src: `/api/faces/${face.face_id}/thumbnail`, alt: `face ${i}` }),
      el("span", {}, `face ${i}`, videoTimes(face)),
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
  liking = String(faceId); updateMatch();
  run({ like: liking, k: $("k").value, where: $("where").value.trim(), weights: weightsText(), match: matchValue(), person: personFilter }, true);
}

// --- the URL ------------------------------------------------------------------------------
function fromUrl() {
  const people = location.pathname === "/people";
  $("people-view").hidden = !people; $("search-view").hidden = people;
  $("nav-people").classList.toggle("current", people); $("nav-search").classList.toggle("current", !people);
  if (people) { loadPeople(); return; }
  const params = new URLSearchParams(location.search);
  liking = params.get("like") || "";
  personFilter = params.get("person") || "";
  $("match").value = params.get("match") || "";
  $("person-filter").hidden = !personFilter;
  if (personFilter) showPersonFilter(personFilter);
  $("text").value = params.get("text") || "";
  $("where").value = params.get("where") || "";
  if (params.get("k")) $("k").value = params.get("k");
  setWeights(params.get("weights") || "");
  const query = { text: params.get("text") || "", like: params.get("like") || "", k: $("k").value,
                  where: params.get("where") || "", weights: params.get("weights") || "", fromUrl: true,
                  match: params.get("match") || "", person: personFilter };
  updateMatch();
  if (query.text || query.like || query.where || query.person) run(query, false);
  else { $("results").replaceChildren(); $("status").textContent = ""; }
  if (params.get("photo")) openPhoto(params.get("photo"), Number(params.get("face")) || null, false).catch((e) => showError(e.message));
  else $("photo-view").hidden = true;
}

async function showPersonFilter(person) {  // "faces of NAME": the person= filter of the search
  const box = $("person-filter");
  const all = el("a", { href: "#" }, "everyone");
  all.addEventListener("click", (event) => {
    event.preventDefault();
    const params = new URLSearchParams(location.search);
    params.delete("person");
    history.pushState(null, "", urlFor(Object.fromEntries(params)));
    fromUrl();
  });
  box.replaceChildren("only the faces of ", el("b", {}, `person ${person}`), " (search ", all, " instead)");
  const found = await api("/api/people").catch(() => null);
  const known = found && found.people.find((p) => String(p.id) === person || p.name === person);
  if (known && known.name) box.querySelector("b").textContent = known.name;
}

async function start() {
  const info = await api("/api/info").catch((error) => { showError(error.message); return null; });
  if (!info) return;
  regions = info.regions; colors = info.region_colors;
  const counted = (n, noun) => `${n} ${noun}${n === 1 ? "" : "s"}`;
  $("info").textContent = `${counted(info.faces, "face")} in ${counted(info.photos, "photo")}`;
  $("k").value = info.k; $("k").max = info.max_k;
  buildSliders();
  $("query").addEventListener("submit", (event) => {
    event.preventDefault();
    const params = queryFromForm();
    if (!params.text && !photoFile && !params.where && !params.person) { showError("type a description, pick a photo, or both"); return; }
    liking = ""; updateMatch(); params.match = matchValue();
    run(params, true);
  });
  $("photo").addEventListener("change", () => setPhoto($("photo").files[0] || null));
  $("clear-photo").addEventListener("click", () => setPhoto(null));
  $("text").addEventListener("input", updateMatch);
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
