// latentlab embedding explorer: plain canvas, no libraries, no network.
// Points are drawn once per view change onto one canvas; hover and selection go on a second
// canvas above it, and a uniform grid over screen space finds the point under the cursor,
// so 10,000 points stay responsive.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("explorer-data").textContent);
  const RESOLUTION = 10000; // map coordinates arrive as integers 0..RESOLUTION
  const PAD = 14; // pixels kept free around the map
  const CELL = 16; // grid cell size in CSS pixels for hit testing
  const $ = (id) => document.getElementById(id);
  const box = $("explorer-map");
  const base = $("explorer-points");
  const overlay = $("explorer-overlay");
  const tooltip = $("explorer-tooltip");
  const tipCanvas = $("explorer-tooltip-image");
  const tipLabel = $("explorer-tooltip-label");
  const chooser = $("explorer-model");
  const info = $("explorer-info");
  const legend = $("explorer-legend");
  const panel = $("explorer-neighbours");

  const sprites = data.galleries.map((g) => {
    const image = new Image();
    image.src = g.uri;
    image.addEventListener("load", () => { refreshThumbnails(); });
    return image;
  });
  const spritesReady = Promise.all(sprites.map((s) => s.decode().catch(() => null)));

  const state = {
    model: 0, scale: 1, dx: 0, dy: 0, width: 0, height: 0, dpr: 1,
    hovered: -1, selected: -1, sx: new Float32Array(0), sy: new Float32Array(0),
    gridStart: new Int32Array(0), gridItems: new Int32Array(0), cols: 0, rows: 0,
    members: [], radius: 3, positionOf: null, bounds: [0, RESOLUTION, 0, RESOLUTION],
  };

  function model() { return data.models[state.model]; }

  // ---------------------------------------------------------------- thumbnails

  function drawThumbnail(canvas, m, p) {
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    canvas.dataset.testIndex = m.testIndex[p];
    const sprite = m.gallery === null ? null : sprites[m.gallery];
    if (!sprite || !sprite.complete || sprite.naturalWidth === 0) {
      ctx.fillStyle = m.colours[m.label[p]];
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      canvas.dataset.drawn = sprite ? "pending" : "no-image";
      return;
    }
    const g = data.galleries[m.gallery];
    const [h, w] = g.tile;
    const t = m.tile[p];
    ctx.drawImage(sprite, (t % g.columns) * w, Math.floor(t / g.columns) * h, w, h,
                  0, 0, canvas.width, canvas.height);
    canvas.dataset.drawn = "image";
  }

  function refreshThumbnails() {
    if (state.hovered >= 0) drawThumbnail(tipCanvas, model(), state.hovered);
    if (state.selected >= 0) showNeighbours(state.selected);
  }

  function thumbnailCanvas(m, p, size) {
    const canvas = document.createElement("canvas");
    canvas.width = size;
    canvas.height = size;
    drawThumbnail(canvas, m, p);
    return canvas;
  }

  // ---------------------------------------------------------------- layout and drawing

  function layout() {
    const width = Math.max(200, box.clientWidth);
    const height = Math.round(Math.min(680, Math.max(320, width * 0.72)));
    const dpr = window.devicePixelRatio || 1;
    state.width = width;
    state.height = height;
    state.dpr = dpr;
    for (const canvas of [base, overlay]) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
      canvas.style.width = width + "px";
      canvas.style.height = height + "px";
    }
    box.style.height = height + "px";
    drawPoints();
  }

  function project() {
    // the map's bounding box fills the canvas (aspect kept), then the zoom/pan transform
    const m = model();
    const n = m.x.length;
    const [x0, x1, y0, y1] = state.bounds;
    const fit = Math.min((state.width - 2 * PAD) / Math.max(1, x1 - x0),
                         (state.height - 2 * PAD) / Math.max(1, y1 - y0));
    const ox = (state.width - (x1 - x0) * fit) / 2;
    const oy = (state.height - (y1 - y0) * fit) / 2;
    if (state.sx.length !== n) {
      state.sx = new Float32Array(n);
      state.sy = new Float32Array(n);
    }
    for (let i = 0; i < n; i++) {
      state.sx[i] = (ox + (m.x[i] - x0) * fit) * state.scale + state.dx;
      state.sy[i] = (oy + (y1 - m.y[i]) * fit) * state.scale + state.dy;
    }
  }

  function buildGrid() {
    // counting sort of on-screen points into CELL x CELL buckets
    const n = state.sx.length;
    const cols = Math.ceil(state.width / CELL) + 1;
    const rows = Math.ceil(state.height / CELL) + 1;
    const cellOf = new Int32Array(n);
    const counts = new Int32Array(cols * rows + 1);
    for (let i = 0; i < n; i++) {
      const cx = Math.floor(state.sx[i] / CELL);
      const cy = Math.floor(state.sy[i] / CELL);
      if (cx < 0 || cy < 0 || cx >= cols || cy >= rows) { cellOf[i] = -1; continue; }
      cellOf[i] = cy * cols + cx;
      counts[cellOf[i] + 1]++;
    }
    for (let c = 1; c < counts.length; c++) counts[c] += counts[c - 1];
    const items = new Int32Array(counts[counts.length - 1]);
    const fill = counts.slice(0, cols * rows);
    for (let i = 0; i < n; i++) if (cellOf[i] >= 0) items[fill[cellOf[i]]++] = i;
    state.gridStart = counts;
    state.gridItems = items;
    state.cols = cols;
    state.rows = rows;
  }

  function drawPoints() {
    const m = model();
    project();
    buildGrid();
    const n = m.x.length;
    const size = n > 5000 ? 1.8 : n > 1000 ? 2.6 : 3.6;
    state.radius = size * Math.min(3, Math.sqrt(state.scale));
    const r = state.radius;
    const ctx = base.getContext("2d");
    ctx.setTransform(state.dpr, 0, 0, state.dpr, 0, 0);
    ctx.clearRect(0, 0, state.width, state.height);
    ctx.globalAlpha = 0.85;
    for (let c = 0; c < state.members.length; c++) {
      ctx.fillStyle = m.colours[c % m.colours.length];
      ctx.beginPath();
      for (const i of state.members[c]) {
        const x = state.sx[i], y = state.sy[i];
        if (x < -r || y < -r || x > state.width + r || y > state.height + r) continue;
        ctx.moveTo(x + r, y);
        ctx.arc(x, y, r, 0, 2 * Math.PI);
      }
      ctx.fill();
    }
    ctx.globalAlpha = 1;
    drawOverlay();
  }

  function ring(ctx, p, radius, colour, width) {
    ctx.beginPath();
    ctx.arc(state.sx[p], state.sy[p], radius, 0, 2 * Math.PI);
    ctx.strokeStyle = colour;
    ctx.lineWidth = width;
    ctx.stroke();
  }

  function drawOverlay() {
    const ctx = overlay.getContext("2d");
    ctx.setTransform(state.dpr, 0, 0, state.dpr, 0, 0);
    ctx.clearRect(0, 0, state.width, state.height);
    const m = model();
    const r = state.radius;
    if (state.selected >= 0) {
      const s = state.selected;
      ctx.strokeStyle = "rgba(30,35,48,0.45)";
      ctx.lineWidth = 1;
      ctx.beginPath();
      for (let j = 0; j < m.k; j++) {
        const q = m.neighbours[s * m.k + j];
        ctx.moveTo(state.sx[s], state.sy[s]);
        ctx.lineTo(state.sx[q], state.sy[q]);
      }
      ctx.stroke();
      for (let j = 0; j < m.k; j++) ring(ctx, m.neighbours[s * m.k + j], r + 2, "#1d2330", 1.5);
      ring(ctx, s, r + 4, "#fff", 4);
      ring(ctx, s, r + 4, "#1d2330", 2);
    }
    if (state.hovered >= 0) ring(ctx, state.hovered, r + 3, "#1d2330", 2);
  }

  // ---------------------------------------------------------------- hit testing

  function pointAt(x, y) {
    // nearest on-screen point within reach of (x, y) in CSS pixels, or -1
    const reach = Math.max(6, state.radius + 3);
    let best = -1, bestD = reach * reach;
    const c0 = Math.max(0, Math.floor((x - reach) / CELL));
    const c1 = Math.min(state.cols - 1, Math.floor((x + reach) / CELL));
    const r0 = Math.max(0, Math.floor((y - reach) / CELL));
    const r1 = Math.min(state.rows - 1, Math.floor((y + reach) / CELL));
    for (let row = r0; row <= r1; row++) {
      for (let col = c0; col <= c1; col++) {
        const cellIndex = row * state.cols + col;
        for (let k = state.gridStart[cellIndex]; k < state.gridStart[cellIndex + 1]; k++) {
          const i = state.gridItems[k];
          const ddx = state.sx[i] - x, ddy = state.sy[i] - y;
          const d = ddx * ddx + ddy * ddy;
          if (d <= bestD) { bestD = d; best = i; }
        }
      }
    }
    return best;
  }

  // ---------------------------------------------------------------- hover, selection

  function className(m, p) { return m.classNames[m.label[p]] ?? String(m.label[p]); }

  function hover(p, x, y) {
    state.hovered = p;
    drawOverlay();
    if (p < 0) { tooltip.hidden = true; return; }
    const m = model();
    drawThumbnail(tipCanvas, m, p);
    tipLabel.textContent = `${className(m, p)} · test image ${m.testIndex[p]}`;
    tooltip.hidden = false;
    const px = x === undefined ? state.sx[p] : x;
    const py = y === undefined ? state.sy[p] : y;
    const w = tooltip.offsetWidth, h = tooltip.offsetHeight;
    tooltip.style.left = Math.min(state.width - w - 4, px + 14) + "px";
    tooltip.style.top = (py + 14 + h > state.height ? Math.max(0, py - h - 14) : py + 14) + "px";
  }

  function showNeighbours(p) {
    const m = model();
    panel.textContent = "";
    const query = document.createElement("div");
    query.className = "query";
    query.appendChild(thumbnailCanvas(m, p, 72));
    const same = Array.from({ length: m.k }, (_, j) => m.neighbours[p * m.k + j])
      .filter((q) => m.label[q] === m.label[p]).length;
    const text = document.createElement("div");
    text.innerHTML = `<strong></strong><br>${same} of ${m.k} nearest neighbours share its class`;
    text.querySelector("strong").textContent =
      `${className(m, p)} · test image ${m.testIndex[p]}`;
    query.appendChild(text);
    panel.appendChild(query);
    const list = document.createElement("ol");
    list.className = "neighbours";
    for (let j = 0; j < m.k; j++) {
      const q = m.neighbours[p * m.k + j];
      const item = document.createElement("li");
      item.className = "neighbour " + (m.label[q] === m.label[p] ? "same" : "other");
      item.dataset.point = q;
      item.title = `test image ${m.testIndex[q]}`;
      item.appendChild(thumbnailCanvas(m, q, 64));
      const label = document.createElement("div");
      label.textContent = `${className(m, q)} · ${m.distances[p * m.k + j].toPrecision(2)}`;
      item.appendChild(label);
      item.addEventListener("click", () => select(q));
      list.appendChild(item);
    }
    panel.appendChild(list);
  }

  function select(p) {
    state.selected = p;
    drawOverlay();
    if (p >= 0) showNeighbours(p);
    else panel.innerHTML = '<p class="hint">Click a point to list its nearest neighbours.</p>';
  }

  // ---------------------------------------------------------------- models

  function setModel(index) {
    // a selection carries over when the other model was tested on the same images
    const before = model();
    const previous = state.selected >= 0 ? before.testIndex[state.selected] : null;
    state.model = index;
    chooser.value = String(index);
    const m = model();
    state.members = m.classNames.map(() => []);
    m.label.forEach((c, i) => {
      while (state.members.length <= c) state.members.push([]);
      state.members[c].push(i);
    });
    state.positionOf = new Map(m.testIndex.map((t, i) => [t, i]));
    let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
    for (let i = 0; i < m.x.length; i++) {
      x0 = Math.min(x0, m.x[i]); x1 = Math.max(x1, m.x[i]);
      y0 = Math.min(y0, m.y[i]); y1 = Math.max(y1, m.y[i]);
    }
    state.bounds = [x0, x1, y0, y1];
    state.hovered = -1;
    tooltip.hidden = true;
    info.textContent = `${m.x.length.toLocaleString()} of ${m.testCount.toLocaleString()} ` +
      `test images (${m.dataset}) · ${m.dim}-D embeddings · neighbours found among the ` +
      `mapped images by Euclidean distance` + (m.gallery === null ? " · images unavailable" : "");
    legend.textContent = "";
    m.classNames.forEach((name, c) => {
      const entry = document.createElement("span");
      entry.innerHTML = `<span class="swatch" style="background:${m.colours[c]}"></span>`;
      entry.appendChild(document.createTextNode(`${name} (${state.members[c].length})`));
      legend.appendChild(entry);
    });
    drawPoints();
    const kept = previous === null || before.testSet !== m.testSet ? undefined
      : state.positionOf.get(previous);
    select(kept === undefined ? -1 : kept);
  }

  data.models.forEach((m, i) => {
    const option = document.createElement("option");
    option.value = String(i);
    option.textContent = m.name;
    chooser.appendChild(option);
  });
  chooser.addEventListener("change", () => setModel(Number(chooser.value)));

  // ---------------------------------------------------------------- mouse

  let drag = null;
  let frame = 0;
  function redrawSoon() {
    if (!frame) frame = requestAnimationFrame(() => { frame = 0; drawPoints(); });
  }
  function local(event) {
    const rect = box.getBoundingClientRect();
    return [event.clientX - rect.left, event.clientY - rect.top];
  }
  box.addEventListener("mousedown", (event) => {
    const [x, y] = local(event);
    drag = { x, y, dx: state.dx, dy: state.dy, moved: false };
    event.preventDefault();
  });
  window.addEventListener("mousemove", (event) => {
    const [x, y] = local(event);
    if (drag) {
      if (Math.abs(x - drag.x) + Math.abs(y - drag.y) > 3) drag.moved = true;
      if (drag.moved) {
        state.dx = drag.dx + x - drag.x;
        state.dy = drag.dy + y - drag.y;
        hover(-1);
        redrawSoon();
        return;
      }
    }
    const inside = x >= 0 && y >= 0 && x < state.width && y < state.height;
    const p = inside ? pointAt(x, y) : -1;
    if (p !== state.hovered || p >= 0) hover(p, x, y);
  });
  window.addEventListener("mouseup", (event) => {
    if (!drag) return;
    const wasClick = !drag.moved;
    drag = null;
    if (wasClick) {
      const [x, y] = local(event);
      const p = pointAt(x, y);
      if (p >= 0 || event.target === overlay) select(p);
    }
  });
  box.addEventListener("mouseleave", () => { if (!drag) hover(-1); });
  box.addEventListener("wheel", (event) => {
    event.preventDefault();
    const [x, y] = local(event);
    const factor = Math.exp(-event.deltaY * 0.0015);
    const scale = Math.min(60, Math.max(1, state.scale * factor));
    const applied = scale / state.scale;
    state.dx = x - (x - state.dx) * applied;
    state.dy = y - (y - state.dy) * applied;
    state.scale = scale;
    if (scale === 1) { state.dx = 0; state.dy = 0; }
    redrawSoon();
  }, { passive: false });
  $("explorer-reset").addEventListener("click", () => {
    state.scale = 1; state.dx = 0; state.dy = 0; drawPoints();
  });
  if (window.ResizeObserver) {
    new ResizeObserver(() => { if (box.clientWidth !== state.width) layout(); }).observe(box);
  } else {
    window.addEventListener("resize", layout);
  }

  // ---------------------------------------------------------------- start, and a test API

  layout();
  setModel(0);

  window.latentlabExplorer = {
    ready: spritesReady,
    sprites: () => sprites.map((s) => s.complete && s.naturalWidth > 0),
    models: () => data.models.map((m) => m.name),
    setModel, select,
    state: () => ({ model: state.model, hovered: state.hovered, selected: state.selected,
                    points: model().x.length, scale: state.scale }),
    // where point p is drawn, in viewport coordinates
    screenPosition(p) {
      const rect = box.getBoundingClientRect();
      return { x: rect.left + state.sx[p], y: rect.top + state.sy[p] };
    },
    // milliseconds for one full redraw and for one hit test, averaged
    benchmark(repeats) {
      let start = performance.now();
      for (let i = 0; i < repeats; i++) drawPoints();
      const draw = (performance.now() - start) / repeats;
      start = performance.now();
      let found = 0;
      for (let i = 0; i < 1000; i++) {
        if (pointAt(Math.random() * state.width, Math.random() * state.height) >= 0) found++;
      }
      return { drawMs: draw, hitMs: (performance.now() - start) / 1000, found };
    },
  };
})();
