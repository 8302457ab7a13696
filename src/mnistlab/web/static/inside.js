// Look inside: below the prediction, what POST /inside says about the digit on the canvas: how
// the drawing was prepared, each hidden layer's activations, which pixels pushed the answer
// (integrated gradients) and which units of the last hidden layer. It follows the page's
// answers (app.js counts them in body's data-answers) and sends the same canvas, one request in
// flight at a time, the latest drawing always sent last; a cleared canvas clears the panel.
"use strict";
(() => {
  const panel = document.getElementById("inside");
  const pad = document.getElementById("pad");
  const labelEl = document.getElementById("label");
  if (!panel || !pad || !labelEl) return;
  const css = document.createElement("link");
  css.rel = "stylesheet";
  css.href = "/static/inside.css";
  document.head.appendChild(css);
  panel.innerHTML = `
    <h2>Inside the network</h2>
    <p class="inside-status" role="status"></p>
    <h3>How your drawing was prepared</h3>
    <ol class="steps"></ol>
    <h3>Each hidden layer's activations</h3>
    <div class="layers"></div>
    <h3 class="why-title">Which pixels pushed the answer</h3>
    <div class="why">
      <figure class="ig"><img alt="integrated gradients over the 28 by 28 input"><figcaption></figcaption></figure>
      <figure class="grad"><img alt="gradient of the predicted class over the 28 by 28 input"><figcaption>The plain gradient at your digit: where a little more ink would raise (red) or lower (blue) the class now.</figcaption></figure>
    </div>
    <h3 class="units-title">Units that push it up</h3>
    <p class="units-note"></p>
    <ol class="units"></ol>`;
  const q = (sel) => panel.querySelector(sel);
  let inFlight = false, dirty = false, generation = 0;

  function busy() {
    document.body.dataset.insideBusy = inFlight || dirty ? "1" : "0";
  }

  async function send() {
    dirty = false;
    inFlight = true;
    busy();
    const mine = generation;
    try {
      const form = new FormData();
      form.append("file", await snapshot(), "digit.png");
      const response = await fetch("/inside", { method: "POST", body: form });
      const body = await response.json();
      if (mine !== generation) return;
      if (response.ok) render(body);
      else q(".inside-status").textContent = body.error || `error ${response.status}`;
    } catch (err) {
      if (mine === generation) q(".inside-status").textContent = `no answer (${err.message})`;
    } finally {
      inFlight = false;
      busy();
      if (dirty && mine === generation) send();
    }
  }

  function clear() {
    generation += 1;
    dirty = false;
    panel.hidden = true;
    panel.dataset.label = "";
    busy();
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // A Dense layer's activations as a strip, one cell per unit: white at 0, orange at the
  // layer's largest value (blue below 0, for activations that go negative).
  function strip(values) {
    const canvas = el("canvas", "strip");
    canvas.width = values.length;
    canvas.height = 1;
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(values.length, 1);
    const top = values.reduce((m, v) => Math.max(m, Math.abs(v)), 0) || 1;
    values.forEach((v, i) => {
      const t = Math.min(1, Math.abs(v) / top);
      const [r, g, b] = v >= 0 ? [232, 112, 42] : [68, 119, 170];
      img.data[4 * i] = Math.round(255 + (r - 255) * t);
      img.data[4 * i + 1] = Math.round(255 + (g - 255) * t);
      img.data[4 * i + 2] = Math.round(255 + (b - 255) * t);
      img.data[4 * i + 3] = 255;
    });
    ctx.putImageData(img, 0, 0);
    return canvas;
  }

  function render(a) {
    panel.hidden = false;
    panel.dataset.label = a.label;
    q(".inside-status").textContent = "";
    q(".steps").replaceChildren(...a.steps.map((s) => {
      const li = el("li");
      li.dataset.step = s.name;
      const img = el("img");
      img.src = s.png;
      img.alt = s.title;
      li.append(img, el("span", "", s.title));
      if (s.note) li.title = s.note;
      return li;
    }));
    q(".layers").replaceChildren(...a.layers.map((layer) => {
      const div = el("div", "layer");
      div.dataset.layer = layer.name;
      if (layer.kind === "units") {
        const active = layer.values.filter((v) => v > 0).length;
        div.append(el("span", "layer-title", `${layer.title}: ${active} of ${layer.values.length} active`), strip(layer.values));
      } else {
        const img = el("img", "maps");
        img.src = layer.png;
        img.alt = layer.title;
        div.append(el("span", "layer-title", layer.title), img);
      }
      return div;
    }));
    const at = a.attribution;
    q(".why-title").textContent = `Which pixels pushed it to say ${a.label}`;
    q(".ig img").src = at.png;
    const how = at.exact ? "exactly" : `to within ${Math.abs(at.gap).toPrecision(2)}`;
    q(".ig figcaption").textContent =
      `Integrated gradients, from a black image to yours: red pixels raised the ${a.label} logit, ` +
      `blue ones lowered it; together they add up to its change, ${at.logit_change.toFixed(2)} (${how}).`;
    q(".grad img").src = at.gradient_png;
    const p = a.pushes;
    const num = (v) => (Math.abs(v) < 0.005 ? 0 : v).toFixed(2);  // no "-0.00"
    q(".units-title").textContent = `Units that push ${a.label} up`;
    q(".units-note").textContent =
      `In ${p.layer}: activation \u00d7 weight into the ${a.label} logit (${num(p.logit)} in all, bias ${num(p.bias)}).`;
    const top = p.units.length ? p.units[0].contribution : 1;
    q(".units").replaceChildren(...p.units.map((u) => {
      const li = el("li");
      li.dataset.unit = String(u.unit);
      const bar = el("span", "bar");
      bar.style.setProperty("--w", String(u.contribution / top));
      li.append(
        el("span", "unit", `unit ${u.unit}`),
        bar,
        el("span", "sum", `${u.activation.toFixed(2)} \u00d7 ${u.weight.toFixed(2)} = +${u.contribution.toFixed(2)}`),
      );
      return li;
    }));
    document.body.dataset.inside = String(Number(document.body.dataset.inside || 0) + 1);
  }

  new MutationObserver(() => {
    if (labelEl.dataset.label === "") {
      clear();
      return;
    }
    dirty = true;
    busy();
    if (!inFlight) send();
  }).observe(document.body, { attributes: true, attributeFilter: ["data-answers"] });
})();
