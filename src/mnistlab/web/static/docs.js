// Renders /openapi.json as a plain list of endpoints: every asset local, no CDN.
"use strict";

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

fetch("/openapi.json").then((r) => r.json()).then((api) => {
  const ops = document.getElementById("ops");
  ops.replaceChildren();
  ops.append(el("p", `${api.info.title} ${api.info.version}: ${api.info.description || ""}`));
  for (const [path, methods] of Object.entries(api.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const box = el("section", undefined, "op");
      const head = el("h2");
      head.append(el("span", method, "method"), el("code", path));
      box.append(head);
      if (op.summary) box.append(el("p", op.summary));
      const dl = el("dl");
      if (op.requestBody) {
        dl.append(el("dt", "request body"));
        for (const [type, spec] of Object.entries(op.requestBody.content)) {
          const dd = el("dd");
          dd.append(el("code", type), document.createTextNode(" "));
          dd.append(el("pre", JSON.stringify(spec.schema, null, 1)));
          dl.append(dd);
        }
      }
      dl.append(el("dt", "responses"));
      for (const [code, resp] of Object.entries(op.responses || {})) {
        dl.append(el("dd", `${code}: ${resp.description}`));
      }
      box.append(dl);
      ops.append(box);
    }
  }
}).catch((err) => {
  document.getElementById("ops").textContent = `cannot read /openapi.json (${err.message})`;
});
