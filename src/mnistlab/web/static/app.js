// Draw-a-digit page: pointer events (mouse, touch, pen) on a canvas; while drawing, the canvas
// goes to POST /predict at most every GAP ms (one request in flight at a time, the latest
// drawing always sent last), and the answer fills the bars and the 28x28 the model saw.
// How sure it is comes from the answer as the server judged it: "sure" with the probability,
// "not sure", or "not a digit I know"; the probabilities are calibrated where the run is, and
// the page says which.
"use strict";

const GAP = 120;        // ms between requests while drawing
const SEND_SIDE = 140;  // the canvas is sent at this size: ample for a 20 px digit box
const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const seen = document.getElementById("seen");
const ctxSeen = seen.getContext("2d");
const bars = document.getElementById("bars");
const statusLine = document.getElementById("status");
const labelEl = document.getElementById("label");
const confidenceEl = document.getElementById("confidence");
const kindEl = document.getElementById("kind");
const verdictEl = document.querySelector(".verdict");
const KIND = {
  calibrated: "calibrated probability",
  raw: "raw softmax: not calibrated, often surer than it is right",
};
let classes = [];
let drawing = null;     // the pointer id drawing now, with its last point
let inked = false;      // anything drawn since the last clear
let inFlight = false, dirty = false, lastSent = -Infinity, timer = null;
let generation = 0;     // bumped by Clear: answers to older drawings are dropped

function blank() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  ctx.strokeStyle = "#111";
  ctx.fillStyle = "#111";
  ctx.lineWidth = pad.width / 14;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
}

function point(e) {
  const r = pad.getBoundingClientRect();
  return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
}

function dot([x, y]) {
  ctx.beginPath();
  ctx.arc(x, y, ctx.lineWidth / 2, 0, 2 * Math.PI);
  ctx.fill();
}

pad.addEventListener("pointerdown", (e) => {
  if (drawing !== null || (e.pointerType === "mouse" && e.button !== 0)) return;
  e.preventDefault();
  pad.setPointerCapture(e.pointerId);
  drawing = { id: e.pointerId, last: point(e) };
  dot(drawing.last);
  inked = true;
  schedule();
});

pad.addEventListener("pointermove", (e) => {
  if (drawing === null || e.pointerId !== drawing.id) return;
  e.preventDefault();
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
  ctx.beginPath();
  ctx.moveTo(...drawing.last);
  for (const ev of events.length ? events : [e]) {
    drawing.last = point(ev);
    ctx.lineTo(...drawing.last);
  }
  ctx.stroke();
  schedule();
});

function endStroke(e) {
  if (drawing === null || e.pointerId !== drawing.id) return;
  drawing = null;
  schedule();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

document.getElementById("clear").addEventListener("click", () => {
  generation += 1;
  inked = false;
  dirty = false;
  clearTimeout(timer);
  timer = null;
  blank();
  show(null);
  setStatus("Draw with a mouse, a finger or a pen.");
  busy();
});

function busy() {
  document.body.dataset.busy = inFlight || dirty || timer !== null ? "1" : "0";
}

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

// Ask for a prediction soon: now if none is in flight and GAP has passed, else later.
function schedule() {
  if (!inked) return;
  dirty = true;
  busy();
  if (inFlight || timer !== null) return;
  const wait = lastSent + GAP - performance.now();
  if (wait > 0) {
    timer = setTimeout(() => { timer = null; schedule(); }, wait);
    busy();
    return;
  }
  send();
}

function snapshot() {
  const small = document.createElement("canvas");
  small.width = small.height = SEND_SIDE;
  const c = small.getContext("2d");
  c.imageSmoothingEnabled = true;
  c.imageSmoothingQuality = "high";
  c.drawImage(pad, 0, 0, SEND_SIDE, SEND_SIDE);
  return new Promise((resolve) => small.toBlob(resolve, "image/png"));
}

async function send() {
  dirty = false;
  inFlight = true;
  lastSent = performance.now();
  busy();
  const mine = generation;
  try {
    const form = new FormData();
    form.append("file", await snapshot(), "digit.png");
    const response = await fetch("/predict", { method: "POST", body: form });
    const body = await response.json();
    if (mine !== generation) return;
    if (response.ok) {
      show(body);
      setStatus("");
    } else {
      show(null);
      // A blank image is the usual 422: nothing drawn that stands out from the paper.
      setStatus(body.error || `error ${response.status}`, response.status !== 422);
    }
  } catch (err) {
    if (mine === generation) setStatus(`no answer from the server (${err.message})`, true);
  } finally {
    inFlight = false;
    busy();
    if (dirty && mine === generation) schedule();
  }
}

function buildBars() {
  bars.replaceChildren(...classes.map((name) => {
    const li = document.createElement("li");
    li.dataset.class = name;
    li.dataset.p = "0";
    li.innerHTML = '<span class="name"></span><span class="track"><span class="fill"></span></span><span class="pct">&ndash;</span>';
    li.querySelector(".name").textContent = name;
    return li;
  }));
}

function show(answer) {
  const items = bars.querySelectorAll("li");
  const image = ctxSeen.createImageData(28, 28);
  if (answer === null) {
    labelEl.textContent = "\u2013";
    labelEl.dataset.label = "";
    verdictEl.dataset.verdict = "";
    confidenceEl.textContent = "";
    kindEl.textContent = "";
    items.forEach((li) => {
      li.dataset.p = "0";
      li.classList.remove("top");
      li.style.setProperty("--p", "0");
      li.querySelector(".pct").textContent = "\u2013";
    });
  } else {
    labelEl.textContent = answer.label;
    labelEl.dataset.label = answer.label;
    verdictEl.dataset.verdict = answer.verdict;
    confidenceEl.textContent = sureness(answer);
    kindEl.textContent = KIND[answer.probabilities_are];
    items.forEach((li) => {
      const p = answer.probabilities[li.dataset.class];
      li.dataset.p = String(p);
      li.classList.toggle("top", li.dataset.class === answer.label);
      li.style.setProperty("--p", String(p));
      li.querySelector(".pct").textContent = `${(100 * p).toFixed(1)}%`;
    });
    answer.image.forEach((row, y) => row.forEach((v, x) => {
      const i = 4 * (28 * y + x);
      image.data[i] = image.data[i + 1] = image.data[i + 2] = v;
    }));
  }
  for (let i = 3; i < image.data.length; i += 4) image.data[i] = 255;
  ctxSeen.putImageData(image, 0, 0);
  document.body.dataset.answers = String(Number(document.body.dataset.answers) + 1);
}

// "99.2 % sure" only where the server judged it sure; otherwise its verdict, plainly.
function sureness(answer) {
  const pct = `${(100 * answer.probability).toFixed(1)} %`;
  if (answer.verdict === "sure") return `${pct} sure`;
  if (answer.verdict === "not sure") return `not sure (${pct})`;
  return `${answer.verdict} (closest: ${answer.label}, ${pct})`;
}

function describe(m) {
  const parts = [`run ${m.run}`, m.dataset];
  const acc = m.metrics && m.metrics.test && m.metrics.test.accuracy;
  if (acc) {
    const ci = m.test_accuracy_ci;
    const range = ci ? ` (95 % CI ${(100 * ci.low).toFixed(1)}\u2013${(100 * ci.high).toFixed(1)} %)` : "";
    parts.push(`${(100 * acc).toFixed(1)} % test accuracy${range}`);
  }
  const cal = m.calibration;
  parts.push(cal && cal.calibrated
    ? `calibrated probabilities (T = ${cal.temperature.toPrecision(3)})`
    : "raw probabilities: not calibrated");
  return parts.join(" \u00b7 ");
}

blank();
fetch("/model").then((r) => r.json()).then((m) => {
  classes = m.classes;
  buildBars();
  show(null);
  document.getElementById("model").textContent = describe(m);
}).catch((err) => setStatus(`cannot read the model (${err.message})`, true));
