"use strict";
// The kiosk page's script: renders the daemon's frames (server-sent events from /events),
// in the language the driver picked with the language button. Every string comes from the
// frame (translated by the daemon's gettext catalogs) and goes in with textContent, never as
// markup; the only markup taken is the QR code's SVG, which the daemon draws.

// Which step of a session each screen belongs to (tap -> plug -> charging -> done).
const STEPS = {
  "idle": 1, "authorizing": 1, "declined": 1, "no-answer": 1, "tap-again": 1,
  "not-accepted": 1, "expired": 1, "in-use": 3, "timed-out": 2, "cancelled": 2,
  "plug-in": 2, "charging": 3, "suspended": 3, "stopping": 3, "receipt": 4,
  "web-payment": 1, "reserved": 1,
};
const PICTURES = {
  "idle": "i-tap", "authorizing": "i-tap", "plug-in": "i-plug", "charging": "i-car",
  "suspended": "i-car", "stopping": "i-car", "receipt": "i-phone", "web-payment": "i-phone",
};
// A language picked at the screen holds until the session it was picked for has ended.
const SESSION_ENDS = new Set(["receipt", "timed-out", "cancelled"]);
const MIN_SCALE = 0.6;

let current = null;   // the last frame, with its variants
let chosen = null;    // the language picked with the button, or null for the station's
let previous = null;  // the previous screen's name

function variant(frame) {
  if (chosen === null) return frame;
  if (frame.language === chosen) return frame;
  return frame.variants.find((v) => v.language === chosen) || frame;
}

function text(id, value) { document.getElementById(id).textContent = value; }

function render(frame) {
  if (previous !== null && SESSION_ENDS.has(previous) && frame.name === "idle") chosen = null;
  previous = frame.name;
  current = frame;
  show(variant(frame), frame);
}

function show(view, frame) {
  text("title", view.title);
  document.getElementById("lines").replaceChildren(...view.lines.map((line) => {
    const p = document.createElement("p"); p.textContent = line;
    // A receipt's link code: the driver reads it off the screen to type it on the portal.
    if (view.code && line.includes(view.code[1])) p.className = "code";
    return p;
  }));
  document.getElementById("fields").replaceChildren(...view.fields.map(([label, value]) => {
    const row = document.createElement("tr");
    const name = document.createElement("td"); name.textContent = label;
    const cell = document.createElement("td"); cell.className = "value";
    cell.textContent = value; row.append(name, cell);
    if (view.total && label === view.total[0] && value === view.total[1]) row.className = "total";
    return row;
  }));
  const total = document.getElementById("total");
  if (view.total) {
    text("total-label", view.total[0]); text("total-value", view.total[1]); total.hidden = false;
  } else {
    total.hidden = true;
  }
  for (const [key, value] of Object.entries(view.labels)) {
    const node = document.getElementById(key === "language" ? "language-name" : key);
    if (node) node.textContent = value;
  }
  document.getElementById("language").hidden = frame.variants.length === 0;
  const step = STEPS[frame.name] || 0;
  document.querySelectorAll("#steps li").forEach((li) => {
    li.classList.toggle("done", Number(li.dataset.step) < step);
  });
  const picture = PICTURES[frame.name] || (frame.tone === "error" ? "i-warning" : "i-tap");
  document.getElementById("picture-use").setAttribute("href", "#" + picture);
  const qr = document.getElementById("qr");
  if (frame.qr_svg) {
    // Trusted markup: drawn by the daemon from the receipt URL, not from user input.
    const doc = new DOMParser().parseFromString(frame.qr_svg, "image/svg+xml");
    document.getElementById("qr-code").replaceChildren(document.importNode(doc.documentElement, true));
    text("qr-url", frame.qr_url);
    qr.hidden = false;
  } else {
    qr.hidden = true;
    document.getElementById("qr-code").replaceChildren();
  }
  document.documentElement.lang = view.language;
  document.body.dataset.lang = view.language;
  document.body.dataset.step = String(step);
  document.body.dataset.tone = frame.tone;
  document.body.dataset.screen = frame.name;
  fit();
  document.body.dataset.seq = String(frame.seq);
}

// Shrinks the type, a step at a time, only while something does not fit the screen.
function fit() {
  const root = document.documentElement;
  const main = document.querySelector("main");
  let scale = 1;
  root.style.setProperty("--scale", "1");
  while (scale > MIN_SCALE && (main.scrollHeight > main.clientHeight + 1
         || main.scrollWidth > main.clientWidth + 1
         || document.body.scrollHeight > window.innerHeight + 1)) {
    scale = Math.round((scale - 0.05) * 100) / 100;
    root.style.setProperty("--scale", String(scale));
  }
}

function nextLanguage() {
  if (current === null) return;
  const languages = [current.language, ...current.variants.map((v) => v.language)];
  const now = chosen === null ? current.language : chosen;
  chosen = languages[(languages.indexOf(now) + 1) % languages.length];
  show(variant(current), current);
}

document.getElementById("language").addEventListener("click", nextLanguage);
window.addEventListener("resize", () => { if (current !== null) fit(); });
const source = new EventSource("/events");
source.addEventListener("frame", (e) => render(JSON.parse(e.data)));
source.onopen = () => { text("link", ""); };
source.onerror = () => {
  const view = current === null ? null : variant(current);
  const offline = view ? view.labels.offline : "";
  text("link", offline);
};
