// mmsearch's page: plain JavaScript over the JSON endpoints (see mmsearch/web/app.py), no build step.
// Everything that comes from the index (names, folders, passages) goes into the page as text nodes,
// never as HTML.
"use strict";

const TOKEN = document.querySelector('meta[name="mmsearch-token"]').content;
const PAGE = 50;
const $ = (id) => document.getElementById(id);

const state = {
  app: null,          // GET /api/app
  query: null,        // {kind: "text", q} | {kind: "image", file, url} | {kind: "similar", item, name}
  k: PAGE,
  all: false,         // a search by words shows the files below the relevance floor too ("Show less alike")
  hits: [],           // every result shown, in the order of the page (section by section, photos first)
  groups: [],         // the sections: {title, hits, marks}
  found: 0,           // how many results the search itself gave (more can be asked for while it gives k)
  seq: 0,             // the latest search: older answers arriving late are dropped
  viewer: -1,         // the hit shown in the larger view
  events: null,       // the EventSource of "index now"
  lastJob: null,
  ready: Promise.resolve(),
  dupSeq: 0,          // the latest look for duplicates: older answers are dropped
  dupGroups: [],      // its groups (GET /api/duplicates)
  dupShown: 0,        // how many of them are on the page
};

// -- talking to the server ------------------------------------------------------------------------

async function api(path, options = {}) {
  const res = await fetch(path, options);
  let body = null;
  try {
    body = await res.json();
  } catch (e) {
    body = null;
  }
  if (!res.ok) {
    const err = new Error(body && body.error ? body.error : `${res.status} ${res.statusText}`);
    err.status = res.status;
    err.state = body && body.state;
    throw err;
  }
  return body;
}

function post(path, options = {}) {
  return api(path, {method: "POST", ...options, headers: {"X-Mmsearch-Token": TOKEN, ...(options.headers || {})}});
}

// -- small helpers --------------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

// What separates folders in a path on the server's system: "/" (where "\\" is a character of a name),
// or "\\" and "/" on Windows.
function lastSep(path) {
  const windows = state.app && state.app.sep === "\\";
  return windows ? Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\")) : path.lastIndexOf("/");
}

function basename(path) {
  return path.slice(lastSep(path) + 1) || path;
}

// A path as the page shows it: the home folder written as ~ (the full path stays in the link's title).
function shown(path) {
  const home = state.app && state.app.home;
  if (home && home !== "/" && (path === home || path.startsWith(home + "/") || path.startsWith(home + "\\"))) {
    return "~" + path.slice(home.length);
  }
  return path;
}

function dirname(path) {
  const at = lastSep(path);
  return at > 0 ? path.slice(0, at) : path.slice(0, at + 1) || path;
}

function bytes(n) {
  if (n == null) return "";
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return i === 0 ? `${n} bytes` : `${n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

function pad(n) {
  return String(n).padStart(2, "0");
}

function nextDay(iso) {
  const [y, m, d] = iso.split("-").map(Number);
  const t = new Date(y, m - 1, d + 1);
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())}`;
}

function hasThumb(hit) {
  return hit.kind === "image" || hit.kind === "video" || (hit.page != null && /\.pdf$/i.test(hit.path));
}

// A picture in the grid: a photo, or a video's moment (its frame).
function isPicture(hit) {
  return hit.kind === "image" || hit.kind === "video";
}

// A moment in a video as a player shows it: 01:05, 1:02:05.
function clock(seconds) {
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600);
  const mmss = `${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
  return h ? `${h}:${mmss}` : mmss;
}

// The file of a hit as the page links it: a video from its moment (a media fragment), a PDF at its page.
function fileUrl(h) {
  if (h.kind === "video" && h.time_s != null) return `/api/file/${h.item_id}#t=${h.time_s}`;
  return `/api/file/${h.item_id}` + (h.page ? `#page=${h.page}` : "");
}

function thumbUrl(hit, size) {
  return `/api/thumb/${hit.item_id}` + (size ? `?size=${size}` : "");
}

// -- marking the query's words in a passage ---------------------------------------------------------

// One character for one, as the index compares (mmsearch.catalog.fold): lower case, accents dropped.
function foldChar(ch) {
  const base = Array.from(ch.normalize("NFD"))[0] || ch;
  return Array.from(base.toLowerCase())[0] || base;
}

const WORDISH = /[\p{L}\p{N}]/u;
const UNSPACED = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]/u;

function queryWords(q) {
  const words = new Set();
  for (const raw of q.split(/\s+/)) {
    const w = raw.replace(/^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu, "");
    if (!w || (w.length < 2 && /^[\x00-\x7f]$/.test(w))) continue; // one Latin letter would mark everything
    words.add(Array.from(w, foldChar));
  }
  return [...words];
}

function marked(text, q) {
  const frag = document.createDocumentFragment();
  const chars = Array.from(text);
  const folded = chars.map(foldChar);
  const mark = new Array(chars.length).fill(false);
  for (const word of q ? queryWords(q) : []) {
    for (let i = 0; i + word.length <= folded.length; i++) {
      let j = 0;
      while (j < word.length && folded[i + j] === word[j]) j++;
      if (j < word.length) continue;
      // Whole words, as keyword search matches them (runs of Chinese, Japanese or Korean are not spaced).
      const before = i > 0 ? chars[i - 1] : "";
      const after = i + j < chars.length ? chars[i + j] : "";
      const open = !before || !WORDISH.test(before) || UNSPACED.test(chars[i]);
      const close = !after || !WORDISH.test(after) || UNSPACED.test(chars[i + j - 1]);
      if (open && close) for (let m = i; m < i + j; m++) mark[m] = true;
    }
  }
  let i = 0;
  while (i < chars.length) {
    let j = i;
    while (j < chars.length && mark[j] === mark[i]) j++;
    const piece = chars.slice(i, j).join("");
    frag.append(mark[i] ? el("mark", {textContent: piece}) : document.createTextNode(piece));
    i = j;
  }
  return frag;
}

// -- notices --------------------------------------------------------------------------------------

function notice(message, kind = "error") {
  const box = $("notice");
  if (!message) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  box.className = kind;
  box.replaceChildren(el("pre", {textContent: message}),
    el("button", {type: "button", class: "link", textContent: "Dismiss", onclick: () => notice(null)}));
  box.hidden = false;
}

// -- the search -----------------------------------------------------------------------------------

function filterParams() {
  const p = new URLSearchParams();
  const type = $("f-type").value;
  if (type !== "all") p.set("type", type);
  const under = $("f-under").value.trim();
  if (under) p.set("under", under);
  if ($("f-after").value) p.set("after", $("f-after").value);
  if ($("f-before").value) p.set("before", nextDay($("f-before").value)); // "To" includes that day
  return p;
}

function filtersActive() {
  return $("f-type").value !== "all" || $("f-under").value.trim() || $("f-after").value || $("f-before").value;
}

function pageUrl() {
  const p = new URLSearchParams();
  if (state.query && state.query.kind === "text") p.set("q", state.query.q);
  if (state.query && state.query.kind === "similar") p.set("like", state.query.item);
  if ($("f-type").value !== "all") p.set("type", $("f-type").value);
  if ($("f-under").value.trim()) p.set("under", $("f-under").value.trim());
  if ($("f-after").value) p.set("from", $("f-after").value);
  if ($("f-before").value) p.set("to", $("f-before").value);
  if (state.k !== PAGE) p.set("k", state.k);
  if (state.all && state.query && state.query.kind === "text") p.set("all", "1");
  const s = p.toString();
  return s ? `/?${s}` : "/";
}

function readUrl() {
  const p = new URLSearchParams(location.search);
  $("f-type").value = ["image", "document"].includes(p.get("type")) ? p.get("type") : "all";
  $("f-under").value = p.get("under") || "";
  $("f-after").value = p.get("from") || "";
  $("f-before").value = p.get("to") || "";
  state.k = Math.max(PAGE, parseInt(p.get("k") || PAGE, 10) || PAGE);
  state.all = p.get("all") === "1";
  if (p.get("q")) {
    state.query = {kind: "text", q: p.get("q")};
    $("q").value = p.get("q");
  } else if (p.get("like")) {
    state.query = {kind: "similar", item: p.get("like"), name: null};
    $("q").value = "";
  } else {
    state.query = null;
    $("q").value = "";
  }
}

async function run({push = true} = {}) {
  const query = state.query;
  if (!query) return home();
  const seq = ++state.seq;
  const p = filterParams();
  p.set("k", state.k);
  document.body.classList.add("busy");
  showView("results");
  $("home-hint").hidden = true;
  showQueryCard(query);
  let hits;
  let split = null;
  try {
    if (query.kind === "text") {
      p.set("q", query.q);
      // A search by words hides files found by meaning below the model's relevance floor, unless asked.
      if (state.all) p.set("min_similarity", "-1");
      hits = await api(`/api/search?${p}`);
      split = byWords(hits);
    } else if (query.kind === "image") {
      hits = await api(`/api/search/image?${p}`, {
        method: "POST", body: query.file,
        headers: {"Content-Type": query.file.type || "application/octet-stream"},
      });
    } else {
      p.set("item", query.item);
      hits = await api(`/api/similar?${p}`);
    }
  } catch (e) {
    if (seq !== state.seq) return;
    document.body.classList.remove("busy");
    show([], 0);
    $("summary").textContent = "";
    notice(e.message);
    return;
  }
  await state.ready; // the page's settings (how paths are shown) come with /api/app, asked at the same time
  if (seq !== state.seq) return;
  document.body.classList.remove("busy");
  if ($("notice").className === "error") notice(null); // an earlier search's error (the state's notices stay)
  if (split) {
    const groups = [];
    if (split.words.length) groups.push({title: containTitle(split.words, query.q), hits: split.words, marks: true});
    if (split.related.length) {
      groups.push({title: split.words.length ? relatedTitle("Related")
                                             : relatedTitle(`No file contains “${query.q}”. Related`),
                   hits: split.related, marks: true});
    }
    show(groups, hits.length);
  } else {
    show([{title: null, hits, marks: false}], hits.length);
  }
  if (push && query.kind !== "image") {
    const url = pageUrl();
    if (url !== location.pathname + location.search) history.pushState(null, "", url);
  }
}

// Which results hold the query's words, and which are only alike in meaning: each result says why it is
// there (`match`: "words", "meaning" or "both"; a score of 0.5 and up holds all the words).
function byWords(hits) {
  const holds = (h) => h.match !== "meaning" && h.score >= 0.5;
  return {words: hits.filter(holds), related: hits.filter((h) => !holds(h))};
}

function counted(hits) {
  const photos = hits.filter((h) => h.kind === "image").length;
  const videos = hits.filter((h) => h.kind === "video").length;
  const docs = hits.length - photos - videos;
  const parts = [];
  if (photos) parts.push(`${photos} photo${photos === 1 ? "" : "s"}`);
  if (videos) parts.push(`${videos} moment${videos === 1 ? "" : "s"} in videos`);
  if (docs) parts.push(`${docs} document${docs === 1 ? "" : "s"}`);
  return parts.join(" and ");
}

function containTitle(hits, q) {
  const words = q.trim().split(/\s+/).length > 1 ? "the words " : "";
  return `${counted(hits)} contain${hits.length === 1 ? "s" : ""} ${words}“${q}”`;
}

function relatedTitle(text) {
  return el("span", {}, text, el("span", {class: "quiet", textContent: " · alike in meaning"}));
}

// The item a search is about, at the top: the image searched by, or the file "more like this" started from.
async function showQueryCard(q) {
  const card = $("query-card");
  const img = card.querySelector("img");
  card.hidden = !(q && (q.kind === "image" || q.kind === "similar"));
  if (card.hidden) return;
  img.hidden = false;
  if (q.kind === "image") {
    img.alt = "The image searched by";
    img.src = q.url;
    card.querySelector(".what").textContent = "Photos and documents like this image";
    card.querySelector(".where").textContent = q.file.name || "";
    return;
  }
  img.hidden = true;
  img.removeAttribute("src");
  card.querySelector(".what").textContent = `Like ${q.name || "item " + q.item}`;
  card.querySelector(".where").textContent = "";
  try {
    const d = await api(`/api/item/${q.item}`);
    await state.ready;
    if (state.query !== q) return;
    q.name = d.name;
    card.querySelector(".what").textContent = `Like ${d.name}`;
    card.querySelector(".where").textContent = [d.location, shown(d.folder)].filter(Boolean).join(" · ");
    if (d.thumbnail) {
      img.alt = d.name;
      img.src = thumbUrl(d);
      img.hidden = false;
    }
    summarize();
  } catch (e) {
    img.hidden = true;
  }
}

function describeQuery() {
  const q = state.query;
  if (!q) return "";
  if (q.kind === "text") return `for “${q.q}”`;
  if (q.kind === "image") return "like the image";
  return `like ${q.name || "item " + q.item}`;
}

// The results, section by section: each section's photos as a grid, its documents as a list.
function show(groups, found) {
  state.groups = groups;
  state.found = found;
  state.hits = [];
  const grid = $("grid");
  const sections = [];
  let firstPhotos = "";
  let firstDocs = "";
  for (const [g, group] of groups.entries()) {
    const photos = group.hits.filter(isPicture);
    const docs = group.hits.filter((h) => !isPicture(h));
    const both = photos.length > 0 && docs.length > 0;
    const body = el("div", {class: "group-body" + (both ? " both" : "")});
    if (photos.length) {
      const id = firstPhotos ? `photos-${g}` : "photos";
      firstPhotos = firstPhotos || id;
      body.append(el("div", {class: "block", id},
        both ? el("h3", {class: "block-title", textContent: counted(photos)}) : null,
        el("div", {class: "photos", role: "list"}, ...photos.map((h) => photoTile(h, state.hits.push(h) - 1)))));
    }
    if (docs.length) {
      const id = firstDocs ? `documents-${g}` : "documents";
      firstDocs = firstDocs || id;
      body.append(el("div", {class: "block", id},
        both ? el("h3", {class: "block-title", textContent: counted(docs)}) : null,
        el("div", {class: "docs", role: "list"},
           ...docs.map((h) => docCard(h, state.hits.push(h) - 1, group.marks)))));
    }
    sections.push(el("section", {class: "group"},
      group.title ? el("h2", {class: "group-title"}, group.title) : null, body));
  }
  grid.replaceChildren(...sections);
  grid.dataset.photos = firstPhotos;
  grid.dataset.docs = firstDocs;
  const first = grid.querySelector(".hit");
  if (first) first.tabIndex = 0;
  summarize();
  $("more").hidden = !state.query || found < state.k;
  $("less-alike").hidden = !state.query || state.query.kind !== "text" || state.all;
}

// How many photos and documents (each count a link to its list where there are both), and what for.
function summarize() {
  const summary = $("summary");
  const q = state.query;
  const hits = state.hits;
  if (!q) return;
  if (!hits.length) {
    summary.replaceChildren(`No results ${describeQuery()}` + (filtersActive() ? " with these filters. " : ". "),
      filtersActive() ? el("button", {type: "button", class: "link", textContent: "Clear the filters",
                                     onclick: clearFilters})
                      : "Try other words, or search by a picture.");
    return;
  }
  const photos = hits.filter(isPicture).length;
  const docs = hits.length - photos;
  const jump = (n, noun, id) => {
    const text = `${n} ${noun}${n === 1 ? "" : "s"}`;
    if (!(photos && docs)) return text;
    return el("button", {type: "button", class: "link jump", textContent: text,
                         onclick: () => document.getElementById(id).scrollIntoView({block: "start"})});
  };
  const parts = [];
  if (photos) parts.push(jump(photos, "photo", $("grid").dataset.photos));
  if (photos && docs) parts.push(" and ");
  if (docs) parts.push(jump(docs, "document", $("grid").dataset.docs));
  summary.replaceChildren(...parts, ` ${describeQuery()}`);
}

// -- the start page -------------------------------------------------------------------------------

// No search yet: what the index holds, and its most recent photos (by the time they were taken).
async function home() {
  const seq = ++state.seq;
  showQueryCard(null);
  $("more").hidden = true;
  $("less-alike").hidden = true;
  await state.ready;
  if (seq !== state.seq || state.query) return;
  const a = state.app;
  const hint = $("home-hint");
  hint.hidden = true;
  if (!a || !a.counts) {
    show([], 0);
    $("summary").textContent = "";
    return;
  }
  const c = a.counts;
  if (!(c.image + c.document + (c.video || 0))) {
    show([], 0);
    $("summary").textContent = "This index holds no files yet.";
    hint.replaceChildren("Add a folder from a terminal: ",
      el("code", {textContent: `mmsearch index ~/Pictures --index ${shown(a.index)}`}),
      ", then reload this page.");
    hint.hidden = false;
    return;
  }
  let recent = [];
  try {
    recent = c.image ? await api(`/api/recent?k=${PAGE / 2}&type=image`) : [];
  } catch (e) {
    notice(e.message);
  }
  if (seq !== state.seq || state.query) return;
  show(recent.length ? [{title: "Recent photos", hits: recent, marks: false}] : [], 0);
  const parts = [];
  if (c.image) parts.push(`${c.image.toLocaleString()} photo${c.image === 1 ? "" : "s"}`);
  if (c.document) parts.push(`${c.document.toLocaleString()} document${c.document === 1 ? "" : "s"}`);
  if (c.video) parts.push(`${c.video.toLocaleString()} video${c.video === 1 ? "" : "s"}`);
  const listed = parts.length > 2 ? `${parts.slice(0, -1).join(", ")} and ${parts[parts.length - 1]}` : parts.join(" and ");
  $("summary").textContent = `This index holds ${listed}. Search by words, or drop a picture anywhere.`;
}

function hitLink(h, i, cls) {
  const a = el("a", {class: `hit ${cls}`, href: fileUrl(h),
                     role: "listitem", tabIndex: -1, title: h.path, dataset: {index: String(i), item: String(h.item_id)}});
  a.addEventListener("click", (e) => {
    if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return; // a new tab opens the file itself
    e.preventDefault();
    openViewer(i);
  });
  return a;
}

function thumbImg(h, size) {
  const img = el("img", {alt: basename(h.path), decoding: "async", draggable: false});
  img.addEventListener("error", () => img.closest(".hit") && img.closest(".hit").classList.add("broken"));
  img.src = thumbUrl(h, size);
  return img;
}

function photoTile(h, i) {
  const a = hitLink(h, i, "photo");
  const name = basename(h.path) + (h.kind === "video" && h.time_s != null ? ` · ${clock(h.time_s)}` : "");
  a.append(thumbImg(h), el("span", {class: "name", textContent: name}));
  return a;
}

function docCard(h, i, marks) {
  const a = hitLink(h, i, "doc");
  if (hasThumb(h)) a.append(el("div", {class: "page-thumb"}, thumbImg(h)));
  const meta = [h.location, shown(dirname(h.path))].filter(Boolean).join(" · ");
  a.append(el("div", {class: "doc-body"},
    el("h3", {textContent: basename(h.path)}),
    el("p", {class: "meta", textContent: meta}),
    h.snippet ? el("p", {class: "snippet"}, marked(h.snippet, marks ? textQuery() : "")) : null));
  return a;
}

function textQuery() {
  return state.query && state.query.kind === "text" ? state.query.q : "";
}

// -- keyboard navigation in the grid --------------------------------------------------------------

function tiles() {
  return Array.from($("grid").querySelectorAll(".hit"));
}

function focusTile(j) {
  const all = tiles();
  if (!all.length) return;
  j = Math.max(0, Math.min(all.length - 1, j));
  for (const t of all) t.tabIndex = -1;
  all[j].tabIndex = 0;
  all[j].focus();
  all[j].scrollIntoView({block: "nearest"});
}

// The tile in the next row up or down whose centre is nearest this one's (rows are read from the layout:
// document cards are wider than photos).
function vertical(i, dir) {
  const all = tiles();
  const r = all[i].getBoundingClientRect();
  const cx = r.left + r.width / 2;
  let rowTop = null;
  let best = -1;
  let bestDx = Infinity;
  for (let j = i + dir; j >= 0 && j < all.length; j += dir) {
    const rj = all[j].getBoundingClientRect();
    const beyond = dir > 0 ? rj.top >= r.bottom - 2 : rj.bottom <= r.top + 2;
    if (!beyond) continue;
    if (rowTop === null) rowTop = rj.top;
    if (Math.abs(rj.top - rowTop) > 2) break;
    const dx = Math.abs(rj.left + rj.width / 2 - cx);
    if (dx < bestDx) {
      best = j;
      bestDx = dx;
    }
  }
  return best < 0 ? i : best;
}

function onGridKey(e) {
  const tile = e.target.closest(".hit");
  if (!tile) return;
  const i = Number(tile.dataset.index);
  const moves = {
    ArrowRight: () => i + 1, ArrowLeft: () => i - 1, ArrowDown: () => vertical(i, 1), ArrowUp: () => vertical(i, -1),
    Home: () => 0, End: () => tiles().length - 1,
  };
  if (moves[e.key]) {
    e.preventDefault();
    focusTile(moves[e.key]());
  } else if (e.key === "Enter" || e.key === " ") {
    e.preventDefault();
    openViewer(i);
  }
}

// -- the larger view ------------------------------------------------------------------------------

async function openViewer(i) {
  const h = state.hits[i];
  if (!h) return;
  state.viewer = i;
  const dialog = $("viewer");
  const img = $("v-img");
  const player = $("v-video");
  const playing = h.kind === "video";
  player.hidden = !playing;
  player.pause();
  player.removeAttribute("src");
  if (playing) {
    // Played from its moment: the file is served in byte ranges, so the browser fetches only from there.
    player.poster = thumbUrl(h, "large");
    player.src = fileUrl(h);
  }
  img.hidden = !hasThumb(h) || playing;
  img.removeAttribute("src");
  if (hasThumb(h) && !playing) {
    img.alt = basename(h.path);
    img.src = thumbUrl(h, "large");
  }
  img.parentElement.classList.toggle("textdoc", !hasThumb(h));
  const text = $("v-text");
  text.hidden = hasThumb(h) || !h.snippet;
  text.replaceChildren(h.snippet && !hasThumb(h) ? marked(h.snippet, textQuery()) : "");
  const snippet = $("v-snippet");
  snippet.hidden = !(h.snippet && hasThumb(h));
  snippet.replaceChildren(h.snippet && hasThumb(h) ? marked(h.snippet, textQuery()) : "");
  $("v-name").textContent = basename(h.path);
  $("v-folder").textContent = shown(dirname(h.path));
  $("v-date").textContent = "";
  $("v-size").textContent = "";
  // "slide 3": the label says what the number counts ("Slide"), the value the number.
  const [where, number] = (h.location || "").split(" ");
  $("v-page-label").textContent = where ? where[0].toUpperCase() + where.slice(1) : "Page";
  $("v-page").textContent = number || "";
  $("v-page").hidden = $("v-page-label").hidden = !h.page;
  $("v-time").textContent = playing && h.time_s != null ? clock(h.time_s) : "";
  $("v-time").hidden = $("v-time-label").hidden = !(playing && h.time_s != null);
  // A photo or a text opens in a tab; a PDF is downloaded (its viewer would run its script), for the
  // reader of the user's choice.
  const opens = h.kind === "image" || h.kind === "video" || !/\.pdf$/i.test(h.path);
  $("v-open").href = h.kind === "video" ? fileUrl(h) : `/api/file/${h.item_id}`;
  $("v-open").textContent = opens ? "Open file" : "Download";
  $("v-open").toggleAttribute("download", !opens);
  $("v-reveal").hidden = !(state.app && state.app.can_reveal);
  $("v-message").textContent = "";
  dialog.dataset.item = String(h.item_id);
  if (!dialog.open) dialog.showModal();
  try {
    const d = await api(`/api/item/${h.item_id}`);
    if (state.viewer !== i) return;
    $("v-date").textContent = d.date ? new Date(d.date).toLocaleString() : "";
    const dims = d.width && d.height ? ` · ${d.width} × ${d.height}` : "";
    $("v-size").textContent = bytes(d.size) + dims;
  } catch (e) {
    if (state.viewer === i) $("v-message").textContent = e.message;
  }
}

function closeViewer() {
  $("v-video").pause();
  const dialog = $("viewer");
  if (dialog.open) dialog.close();
}

function onViewerClosed() {
  $("v-video").pause(); // (closed by Escape too)
  const i = state.viewer;
  state.viewer = -1;
  // After the dialog gives focus back to where it was opened from: to the tile last shown instead.
  if (i >= 0 && i < tiles().length) setTimeout(() => focusTile(i), 0);
}

function moreLikeThis() {
  const h = state.hits[state.viewer];
  if (!h) return;
  closeViewer();
  state.query = {kind: "similar", item: String(h.item_id), name: basename(h.path)};
  state.k = PAGE;
  $("q").value = "";
  run();
}

async function reveal() {
  const h = state.hits[state.viewer];
  if (!h) return;
  try {
    const r = await post(`/api/reveal?item=${h.item_id}`);
    $("v-message").textContent = `Shown in the file manager: ${shown(dirname(r.revealed))}`;
  } catch (e) {
    $("v-message").textContent = e.message;
  }
}

// -- searching by an image ------------------------------------------------------------------------

function searchByImage(file) {
  if (!file) return;
  if (!file.type.startsWith("image/") && !/\.(jpe?g|png|webp|gif|bmp|tiff?|hei[cf])$/i.test(file.name)) {
    notice(`${file.name}: not an image. Drop a photo (JPEG, PNG, WebP, ...) to find what looks like it.`);
    return;
  }
  const limit = state.app ? state.app.max_upload_bytes : Infinity;
  if (file.size > limit) {
    notice(`${file.name} is ${bytes(file.size)}; this server takes images up to ${bytes(limit)} ` +
           "(start it with mmsearch serve --max-upload-mb N for more).");
    return;
  }
  if (state.query && state.query.kind === "image") URL.revokeObjectURL(state.query.url);
  state.query = {kind: "image", file, url: URL.createObjectURL(file)};
  state.k = PAGE;
  $("q").value = "";
  history.pushState(null, "", "/");
  run({push: false});
}

function setupDrop() {
  const overlay = $("drop-overlay");
  let depth = 0;
  const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files");
  document.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    depth++;
    overlay.hidden = false;
  });
  document.addEventListener("dragleave", (e) => {
    if (!hasFiles(e)) return;
    depth = Math.max(0, depth - 1);
    if (!depth) overlay.hidden = true;
  });
  document.addEventListener("dragover", (e) => {
    if (hasFiles(e)) e.preventDefault();
  });
  document.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0;
    overlay.hidden = true;
    searchByImage(e.dataTransfer.files[0]);
  });
}

// -- the views: results, duplicates, status ---------------------------------------------------------

const VIEWS = ["results", "duplicates", "status"];

function showView(which) {
  for (const v of VIEWS) {
    $(`${v}-view`).hidden = v !== which;
    $(`tab-${v}`).setAttribute("aria-pressed", String(v === which));
  }
  $("filters").hidden = which !== "results";
  if (which === "status") loadStatus();
  if (which === "duplicates") loadDuplicates();
}

// -- the duplicates view ----------------------------------------------------------------------------

// Groups of files held twice (GET /api/duplicates), the most space to gain first, a page of groups at a
// time. The first file of each is the one to keep; the page deletes nothing.
const DUP_PAGE = 30;

async function loadDuplicates() {
  const seq = ++state.dupSeq;
  const identical = $("dup-identical").checked;
  $("dup-summary").textContent = "Looking for duplicates…";
  $("dup-groups").replaceChildren();
  $("dup-more").hidden = true;
  let groups;
  try {
    groups = await api("/api/duplicates" + (identical ? "?identical=true" : ""));
    await state.ready; // how paths are shown
  } catch (e) {
    if (seq === state.dupSeq) $("dup-summary").textContent = e.message;
    return;
  }
  if (seq !== state.dupSeq) return;
  state.dupGroups = groups;
  state.dupShown = 0;
  if (!groups.length) {
    $("dup-summary").textContent = identical ? "No duplicates: no two files hold the same bytes." : "No duplicates.";
    return;
  }
  const gain = groups.reduce((n, g) => n + g.gain_bytes, 0);
  $("dup-summary").textContent = `${groups.length} group${groups.length === 1 ? "" : "s"} · ${bytes(gain)} to gain ` +
                                 "by keeping the first file of each";
  moreDuplicates();
}

function moreDuplicates() {
  const next = state.dupGroups.slice(state.dupShown, state.dupShown + DUP_PAGE);
  $("dup-groups").append(...next.map(dupGroup));
  state.dupShown += next.length;
  $("dup-more").hidden = state.dupShown >= state.dupGroups.length;
}

function dupGroup(g) {
  return el("section", {class: "dup-group"},
    el("h3", {class: "dup-title"},
       el("span", {class: `dup-kind ${g.kind}`, textContent: g.kind === "identical" ? "same bytes" : "near-identical"}),
       ` ${bytes(g.gain_bytes)} to gain · ${g.files.length} files`),
    el("ul", {class: "dup-files"}, ...g.files.map((f, i) => dupFile(f, i === 0))));
}

function dupFile(f, keep) {
  const name = basename(f.path);
  const thumb = el("div", {class: "dup-thumb"});
  if (f.item_id != null && (f.kind === "image" || /\.pdf$/i.test(f.path))) {
    const img = el("img", {alt: name, decoding: "async", loading: "lazy", draggable: false});
    img.addEventListener("error", () => thumb.classList.add("broken"));
    img.src = `/api/thumb/${f.item_id}`;
    thumb.append(img);
  } else {
    const dot = name.lastIndexOf(".");
    thumb.append(el("span", {class: "ext", textContent: dot > 0 ? name.slice(dot + 1, dot + 6).toUpperCase() : "file"}));
  }
  const dims = f.width && f.height ? `${f.width} × ${f.height} · ` : "";
  const parts = [thumb, keep ? el("span", {class: "keep", textContent: "keep"}) : null,
    el("span", {class: "name", textContent: name}),
    el("span", {class: "meta folder", textContent: shown(dirname(f.path))}),
    el("span", {class: "meta", textContent: dims + bytes(f.size)})];
  // Opened as the larger view's "Open file" does: a photo or a text in a tab, a PDF downloaded.
  const opens = f.kind === "image" || !/\.pdf$/i.test(f.path);
  const box = f.item_id == null ? el("div", {title: f.path}, ...parts)
    : el("a", {href: `/api/file/${f.item_id}`, target: "_blank", rel: "noopener", title: f.path,
               ...(opens ? {} : {download: ""})}, ...parts);
  return el("li", {class: "dup-file" + (keep ? " kept" : "")}, box);
}

// -- the status view and "index now" ----------------------------------------------------------------

async function loadStatus() {
  let s;
  try {
    s = await api("/api/status");
  } catch (e) {
    $("st-where").textContent = e.message;
    $("index-now").disabled = true;
    return;
  }
  $("st-where").textContent = `${shown(s.index)} · model ${s.model || "none"} · ${bytes(s.size_bytes)} on disk`;
  const c = s.counts;
  $("st-counts").replaceChildren(
    el("div", {}, el("dt", {textContent: "Photos"}), el("dd", {textContent: c.image.toLocaleString()})),
    el("div", {}, el("dt", {textContent: "Documents"}),
       el("dd", {textContent: `${c.document.toLocaleString()} (${c.chunks.toLocaleString()} passages)`})),
    el("div", {}, el("dt", {textContent: "Files in error"}), el("dd", {textContent: c.errors.toLocaleString()})));
  $("st-roots").replaceChildren(...(s.roots.length ? s.roots.map((r) => el("li", {textContent: shown(r)}))
    : [el("li", {textContent: "No folders yet: add one from a terminal with mmsearch index FOLDER."})]));
  setRoots(s.roots);
  $("st-runs").tBodies[0].replaceChildren(...(s.runs || []).map((r) => {
    const m = r.summary || {};
    const cells = [r.started_at ? new Date(r.started_at).toLocaleString() : "", r.status, m.added, m.updated, m.removed,
                   m.errors ? m.errors.length : m.errors, m.seconds != null ? m.seconds.toFixed(1) : ""];
    // Each cell named after its column, for a phone's layout (one run a block, each number named).
    const labels = [null, null, "added", "updated", "removed", "errors", "seconds"];
    return el("tr", {}, ...cells.map((v, c) => el("td", {textContent: v == null ? "" : String(v),
                                                        ...(labels[c] ? {"data-label": labels[c]} : {})})));
  }));
  $("st-error-count").textContent = s.errors.length ? `(${s.errors.length})` : "";
  $("st-errors").replaceChildren(...(s.errors.length
    ? s.errors.map((e) => el("li", {}, el("span", {class: "path", textContent: shown(e.path)}),
                                el("span", {class: "reason", textContent: e.reason})))
    : [el("li", {textContent: "None."})]));
  $("index-now").disabled = !(state.app && state.app.writable) || !s.roots.length || Boolean(state.lastJob && state.lastJob.running);
}

function setRoots(roots) {
  $("roots").replaceChildren(...roots.map((r) => el("option", {value: r})));
}

const PHASES = {
  starting: "Starting", scanning: "Scanning folders", encoding: "Indexing", "reading text": "Reading the words in pictures",
  "computing vectors": "Computing the documents' vectors", saving: "Saving the index",
};
const UNITS = {starting: "files", scanning: "files", encoding: "files", "reading text": "files", "computing vectors": "chunks"};

function showJob(job) {
  const was = state.lastJob;
  state.lastJob = job;
  $("status-dot").hidden = !job.running;
  $("progress").hidden = !job.running;
  $("index-cancel").hidden = !job.running;
  $("index-cancel").disabled = job.cancelling;
  $("index-now").disabled = job.running;
  if (job.running) {
    // Every phase is counted, with a bar that moves: the scan's total is the files the index held
    // (marked ~), saving is the end of the run's count.
    const bar = $("progress-bar");
    const total = Math.max(job.total, job.done, 0);
    bar.max = Math.max(total, 1);
    bar.value = job.phase === "saving" ? bar.max : Math.min(job.done, bar.max);
    let text = PHASES[job.phase] || job.phase;
    if (job.phase !== "saving" && total) {
      text += ` ${job.done.toLocaleString()} of ${job.estimated ? "~" : ""}${total.toLocaleString()}`;
      if (UNITS[job.phase]) text += ` ${UNITS[job.phase]}`;
    }
    if (job.path) text += ` · ${job.path}`;
    if (job.cancelling) text += " · stopping…";
    $("progress-text").textContent = text;
    $("run-result").textContent = "";
  } else if (was && was.running) {
    $("run-result").textContent = jobResult(job);
    stopListening();
    refresh().then(() => state.query || home()); // the start page's counts and photos, as the run left them
  } else if (!was && job.finished_at) {
    $("run-result").textContent = jobResult(job);
  }
}

function jobResult(job) {
  const skipped = (job.skipped_roots || []).map((r) => ` Skipped ${r.path}: ${r.reason}.`).join("");
  if (job.phase === "error") return `The index run failed: ${job.error}`;
  const r = job.report;
  if (!r) return "";
  const what = `added ${r.added}, updated ${r.updated}, moved ${r.moved}, removed ${r.removed}, ` +
               `unchanged ${r.unchanged}, errors ${r.errors.length} (${r.seconds.toFixed(1)} s)`;
  return (job.phase === "cancelled" ? `Stopped early, what was finished is kept: ${what}.` : `Done: ${what}.`) + skipped;
}

function listen() {
  if (state.events) return;
  const es = new EventSource("/api/index/events");
  es.addEventListener("state", (ev) => showJob(JSON.parse(ev.data)));
  state.events = es;
}

function stopListening() {
  if (state.events) state.events.close();
  state.events = null;
}

async function indexNow() {
  $("run-result").textContent = "";
  try {
    showJob(await post("/api/index"));
    listen();
  } catch (e) {
    $("run-result").textContent = e.message;
  }
}

async function cancelIndex() {
  try {
    showJob(await post("/api/index/cancel"));
  } catch (e) {
    $("run-result").textContent = e.message;
  }
}

// -- the page's state -----------------------------------------------------------------------------

async function refresh() {
  try {
    state.app = await api("/api/app");
  } catch (e) {
    notice(e.message);
    return;
  }
  const a = state.app;
  if (a.state === "no_index" || a.state === "no_model") notice(a.message, "info"); // (an empty one: the start page says)
  if (!$("status-view").hidden) loadStatus();
  if (a.state === "ready" || a.state === "empty") {
    api("/api/status").then((s) => setRoots(s.roots)).catch(() => {});
  }
  if (a.job.running) {
    showJob(a.job);
    listen();
  }
}

function clearFilters() {
  $("f-type").value = "all";
  $("f-under").value = "";
  $("f-after").value = "";
  $("f-before").value = "";
  state.k = PAGE;
  showFiltersOn();
  run();
}

function onFilterChange() {
  state.k = PAGE;
  showFiltersOn();
  if (state.query) run();
}

// The folded filters' button says when some are set.
function showFiltersOn() {
  $("filters-on").hidden = !filtersActive();
}

function setup() {
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = $("q").value.trim();
    if (!q) {
      $("q").focus();
      return;
    }
    state.query = {kind: "text", q};
    state.k = PAGE;
    state.all = false;
    run();
  });
  $("pick").addEventListener("change", (e) => {
    searchByImage(e.target.files[0]);
    e.target.value = "";
  });
  for (const id of ["f-type", "f-after", "f-before"]) $(id).addEventListener("change", onFilterChange);
  $("f-under").addEventListener("change", onFilterChange);
  $("f-clear").addEventListener("click", clearFilters);
  $("more").addEventListener("click", () => {
    state.k += PAGE;
    run({push: true});
  });
  $("less-alike").addEventListener("click", () => {
    state.all = true;
    run({push: true});
  });
  $("grid").addEventListener("keydown", onGridKey);
  $("grid").addEventListener("focusin", (e) => {
    const t = e.target.closest(".hit");
    if (!t) return;
    for (const other of tiles()) other.tabIndex = other === t ? 0 : -1;
  });
  $("tab-results").addEventListener("click", () => showView("results"));
  $("tab-status").addEventListener("click", () => showView("status"));
  $("tab-duplicates").addEventListener("click", () => showView("duplicates"));
  $("dup-identical").addEventListener("change", loadDuplicates);
  $("dup-more").addEventListener("click", moreDuplicates);
  $("index-now").addEventListener("click", indexNow);
  $("index-cancel").addEventListener("click", cancelIndex);
  $("v-close").addEventListener("click", closeViewer);
  $("v-similar").addEventListener("click", moreLikeThis);
  $("v-reveal").addEventListener("click", reveal);
  $("viewer").addEventListener("close", onViewerClosed);
  $("viewer").addEventListener("click", (e) => {
    if (e.target === $("viewer")) closeViewer(); // a click on the backdrop
  });
  $("viewer").addEventListener("keydown", (e) => {
    if (e.key === "ArrowRight" && state.viewer < state.hits.length - 1) openViewer(state.viewer + 1);
    else if (e.key === "ArrowLeft" && state.viewer > 0) openViewer(state.viewer - 1);
  });
  document.addEventListener("keydown", (e) => {
    const typing = /^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName);
    if (e.key === "/" && !typing && !$("viewer").open) {
      e.preventDefault();
      $("q").focus();
      $("q").select();
    }
  });
  window.addEventListener("popstate", () => {
    readUrl();
    run({push: false});
  });
  $("filters-toggle").addEventListener("click", () => {
    const open = document.body.classList.toggle("filters-open");
    $("filters-toggle").setAttribute("aria-expanded", String(open));
  });
  setupDrop();
  readUrl();
  showFiltersOn();
  state.ready = refresh();
  run({push: false});  // at once, beside refresh(): the first results come sooner
  if (!state.query) $("q").focus();
}

setup();
