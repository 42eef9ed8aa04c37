// Reynolds dashboard: the SVG drawings of a task (its DAG and the Gantt chart of its subtasks).
// No library: plain DOM. Exposed as window.ReynoldsDraw.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const MAX_NODES = 400; // drawn at most; a bigger plan is listed, not drawn
  const NODE_W = 132, NODE_H = 26, GAP_X = 46, GAP_Y = 8, PAD = 10;
  const ROW_H = 18, LABEL_W = 150, GANTT_W = 580, RIGHT = 30;

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function shorten(text, chars) {
    return text.length > chars ? text.slice(0, chars - 1) + "…" : text;
  }

  // Longest path from a root: the column each subtask is drawn in.
  function levels(subtasks) {
    const byId = new Map(subtasks.map((s) => [s.id, s]));
    const level = new Map();
    const visiting = new Set();
    function of(id) {
      if (level.has(id)) return level.get(id);
      if (visiting.has(id)) return 0; // a cycle cannot be planned; never loop on one
      visiting.add(id);
      const sub = byId.get(id);
      let depth = 0;
      for (const dep of (sub && sub.dependsOn) || []) {
        if (byId.has(dep)) depth = Math.max(depth, of(dep) + 1);
      }
      visiting.delete(id);
      level.set(id, depth);
      return depth;
    }
    subtasks.forEach((s) => of(s.id));
    return level;
  }

  function dag(subtasks, chosen, onPick) {
    const drawn = subtasks.slice(0, MAX_NODES);
    const level = levels(drawn);
    const columns = [];
    const where = new Map();
    for (const sub of drawn) {
      const col = level.get(sub.id);
      columns[col] = columns[col] || [];
      const row = columns[col].push(sub) - 1;
      where.set(sub.id, {
        x: PAD + col * (NODE_W + GAP_X),
        y: PAD + row * (NODE_H + GAP_Y),
      });
    }
    const rows = Math.max(1, ...columns.map((c) => (c ? c.length : 0)));
    const width = PAD * 2 + columns.length * (NODE_W + GAP_X) - GAP_X;
    const height = PAD * 2 + rows * (NODE_H + GAP_Y) - GAP_Y;
    const svg = el("svg", {
      class: "dag", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-label": `DAG of ${subtasks.length} subtasks`,
    });
    for (const sub of drawn) {
      const to = where.get(sub.id);
      for (const dep of sub.dependsOn || []) {
        const from = where.get(dep);
        if (!from) continue;
        const x1 = from.x + NODE_W, y1 = from.y + NODE_H / 2;
        const x2 = to.x, y2 = to.y + NODE_H / 2;
        const mid = (x1 + x2) / 2;
        svg.appendChild(el("path", { class: "edge", d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}` }));
      }
    }
    for (const sub of drawn) {
      const at = where.get(sub.id);
      const g = el("g", {
        class: "node" + (sub.id === chosen ? " chosen" : ""),
        "data-id": sub.id, "data-status": sub.status, transform: `translate(${at.x},${at.y})`,
        tabindex: 0,
      });
      g.appendChild(el("title", {}, `${sub.id}: ${sub.status}`));
      g.appendChild(el("rect", { width: NODE_W, height: NODE_H, rx: 5 }));
      g.appendChild(el("text", { x: 8, y: 17 }, shorten(sub.id, 20)));
      g.addEventListener("click", () => onPick(sub.id));
      svg.appendChild(g);
    }
    return svg;
  }

  function gantt(subtasks, nowMs) {
    const timed = subtasks.filter((s) => s.startedAt).slice(0, MAX_NODES);
    if (!timed.length) return null;
    const start = (s) => Date.parse(s.startedAt);
    const end = (s) => (s.finishedAt ? Date.parse(s.finishedAt) : nowMs);
    timed.sort((a, b) => start(a) - start(b));
    const t0 = Math.min(...timed.map(start));
    const t1 = Math.max(t0 + 1, ...timed.map(end));
    const scale = (GANTT_W - LABEL_W - RIGHT) / (t1 - t0);
    const height = PAD * 2 + timed.length * ROW_H + 16;
    const svg = el("svg", {
      class: "gantt", width: GANTT_W, height, viewBox: `0 0 ${GANTT_W} ${height}`, role: "img",
      "aria-label": "subtasks over time",
    });
    timed.forEach((sub, i) => {
      const y = PAD + i * ROW_H;
      svg.appendChild(el("text", { x: 0, y: y + 12 }, shorten(sub.id, 22)));
      const x = LABEL_W + (start(sub) - t0) * scale;
      const w = Math.max(2, (end(sub) - start(sub)) * scale);
      const bar = el("rect", { class: `bar-${sub.status}`, x, y: y + 2, width: w, height: ROW_H - 5, rx: 2 });
      bar.appendChild(el("title", {}, `${sub.id}: ${((end(sub) - start(sub)) / 1000).toFixed(2)} s`));
      svg.appendChild(bar);
    });
    const axisY = PAD + timed.length * ROW_H + 2;
    svg.appendChild(el("line", { class: "axis", x1: LABEL_W, x2: GANTT_W - RIGHT, y1: axisY, y2: axisY }));
    for (let k = 0; k <= 4; k++) {
      const x = LABEL_W + ((GANTT_W - LABEL_W - RIGHT) * k) / 4;
      const seconds = ((t1 - t0) * k) / 4 / 1000;
      svg.appendChild(el("text", { class: "tick", x: x - 8, y: axisY + 13 }, `${seconds.toFixed(1)}s`));
    }
    return svg;
  }

  window.ReynoldsDraw = { dag, gantt, MAX_NODES };
})();
