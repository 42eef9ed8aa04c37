// Reynolds dashboard: state, the server's read-only JSON and its event stream, and the page.
// Everything shown comes from this server (no CDN, no library); data goes into the page as
// text, never as HTML.
"use strict";

(function () {
  const TASKS_SHOWN = 1000; // the list's cap; rows are added and updated, never all redrawn
  const TASKS_RECENT = 50; // what an event re-reads: the newest tasks, where changes happen
  const REFRESH_MS = 5000;
  const STREAMS = /\/events$|^\/mcp$/;
  const FINISHED = new Set(["succeeded", "failed", "cancelled", "skipped", "loop_blocked"]);
  const state = {
    tasks: new Map(), // taskId → the row of GET /tasks
    rows: new Map(), // taskId → <tr>
    selected: null, // taskId
    detail: null, // GET /tasks/{id}
    subtask: null, // the subtask chosen in the detail
    pools: [],
    scaling: [],
    source: null,
  };
  const timers = {};

  // -- small helpers ---------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) node.setAttribute(k, String(v));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function badge(status) {
    return h("span", { class: `badge ${status}` }, status || "—");
  }

  function pct(value) {
    return Number.isFinite(value) ? `${(value * 100).toFixed(1)} %` : "—";
  }

  function clock(iso) {
    return iso ? new Date(iso).toLocaleTimeString() : "—";
  }

  function seconds(a, b) {
    if (!a) return "—";
    const ms = (b ? Date.parse(b) : Date.now()) - Date.parse(a);
    return `${(ms / 1000).toFixed(2)} s`;
  }

  // Work an event asks for, run once after `ms` however many events ask in the meantime.
  function later(name, ms, fn) {
    if (timers[name]) return;
    const handle = setTimeout(() => {
      timers[name] = null;
      fn();
    }, ms);
    timers[name] = { handle, fn };
  }

  // Run what events asked for now, and wait for it (benchmarks/dashboard.py measures with it).
  async function settle() {
    const pending = Object.entries(timers).filter(([, t]) => t);
    for (const [name, t] of pending) {
      clearTimeout(t.handle);
      timers[name] = null;
    }
    await Promise.all(pending.map(([, t]) => t.fn()));
  }

  async function api(path) {
    const response = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401) {
      location.reload(); // the session ended: the page is the login form again
      throw new Error("session ended");
    }
    if (!response.ok) throw new Error(`${path}: ${response.status}`);
    const type = response.headers.get("content-type") || "";
    return type.startsWith("application/json") ? response.json() : response.text();
  }

  // -- tasks -----------------------------------------------------------------------------
  function counts(task) {
    const c = task.subtaskCounts || {};
    const total = Object.values(c).reduce((a, b) => a + b, 0);
    return `${c.succeeded || 0}/${total}` + (c.failed ? ` (${c.failed} failed)` : "");
  }

  function taskRow(task) {
    let tr = state.rows.get(task.taskId);
    if (!tr) {
      tr = h("tr", { "data-task-id": task.taskId, tabindex: 0 });
      tr.addEventListener("click", () => select(task.taskId));
      tr.addEventListener("keydown", (e) => e.key === "Enter" && select(task.taskId));
      state.rows.set(task.taskId, tr);
    }
    const label = task.description || task.type || task.taskId;
    tr.dataset.status = task.status;
    tr.setAttribute("aria-selected", String(task.taskId === state.selected));
    tr.replaceChildren(
      h("td", { title: `${task.taskId}\n${label}` }, label),
      h("td", {}, badge(task.status)),
      h("td", {}, counts(task)),
      h("td", {}, clock(task.createdAt)),
    );
    return tr;
  }

  function showTasks(list) {
    const body = $("tasks").tBodies[0];
    const fresh = [];
    for (const task of list.slice(0, TASKS_SHOWN)) {
      const old = state.tasks.get(task.taskId);
      state.tasks.set(task.taskId, task);
      if (!old || JSON.stringify(old) !== JSON.stringify(task) || !state.rows.has(task.taskId)) fresh.push(task);
    }
    // Newest first: the list arrives newest first; put each row where the list has it.
    for (const task of fresh) taskRow(task);
    let before = body.firstChild;
    for (const task of list.slice(0, TASKS_SHOWN)) {
      const tr = state.rows.get(task.taskId);
      if (tr !== before) body.insertBefore(tr, before);
      before = tr.nextSibling;
    }
    while (body.rows.length > TASKS_SHOWN) {
      const last = body.lastElementChild;
      state.rows.delete(last.dataset.taskId);
      state.tasks.delete(last.dataset.taskId);
      last.remove();
    }
    $("task-count").textContent = `(${state.tasks.size}${state.tasks.size >= TASKS_SHOWN ? "+" : ""})`;
  }

  async function refreshTasks(limit = TASKS_RECENT) {
    try {
      showTasks((await api(`/tasks?limit=${limit}`)).tasks);
    } catch (e) {
      console.warn(e);
    }
  }

  // -- one task's detail -----------------------------------------------------------------
  function select(taskId) {
    state.selected = taskId;
    state.subtask = null;
    for (const [id, tr] of state.rows) tr.setAttribute("aria-selected", String(id === taskId));
    $("detail").replaceChildren(h("p", { class: "muted" }, `Loading ${taskId}…`));
    refreshDetail();
  }

  async function refreshDetail() {
    const taskId = state.selected;
    if (!taskId) return;
    try {
      const result = await api(`/tasks/${encodeURIComponent(taskId)}`);
      if (state.selected === taskId) {
        state.detail = result;
        showDetail(result);
      }
    } catch (e) {
      console.warn(e);
    }
  }

  function legend() {
    const items = ["pending", "running", "succeeded", "failed", "skipped", "cancelled"];
    return h("div", { class: "legend" }, ...items.map((s) => h("span", {}, h("i", { class: s }), s)));
  }

  function facts(pairs) {
    return h("div", { class: "facts" }, ...pairs.map(([k, v]) => h("span", {}, h("b", {}, `${k} `), v)));
  }

  function routingTable(subtasks) {
    const rows = subtasks.slice(0, window.ReynoldsDraw.MAX_NODES).map((s) => {
      const r = s.routing || {};
      return h("tr", { "data-subtask-id": s.id },
        h("td", {}, s.id), h("td", {}, badge(s.status)), h("td", {}, r.pool || s.agentType || "—"),
        h("td", { title: r.reason || "" }, r.reason || "—"), h("td", {}, s.attempts ?? 0),
        h("td", {}, s.exitCode ?? "—"), h("td", {}, seconds(s.startedAt, s.finishedAt)));
    });
    const head = ["subtask", "status", "pool", "why this pool", "attempts", "exit", "time"];
    return h("table", { class: "routing" }, h("thead", {}, h("tr", {}, ...head.map((t) => h("th", {}, t)))), h("tbody", {}, ...rows));
  }

  function subtaskPanel(sub) {
    if (!sub) return h("p", { class: "muted" }, "Click a node for its routing, attempts and output.");
    return h("div", { class: "subtask", "data-subtask-id": sub.id },
      h("h3", {}, `Subtask ${sub.id}`),
      facts([["status", badge(sub.status)], ["attempts", sub.attempts ?? 0], ["exit code", sub.exitCode ?? "—"],
        ["reason", sub.reason || "—"], ["pool", (sub.routing || {}).pool || sub.agentType || "—"]]),
      h("h3", {}, "routing"), h("pre", {}, JSON.stringify(sub.routing || {}, null, 1)),
      h("h3", {}, "output"), h("pre", { class: "output" }, sub.output || "(none)"),
      sub.error ? h("h3", {}, "error") : null, sub.error ? h("pre", {}, sub.error) : null);
  }

  function showDetail(result) {
    const subtasks = result.subtasks || [];
    const chosen = subtasks.find((s) => s.id === state.subtask) || null;
    const m = result.metrics || {};
    const draw = window.ReynoldsDraw;
    const dag = draw.dag(subtasks, state.subtask, (id) => {
      state.subtask = id;
      showDetail(state.detail);
    });
    const gantt = draw.gantt(subtasks, Date.now());
    const total = ((result.truncated || {}).subtasks || {}).total || subtasks.length;
    const capped = total > draw.MAX_NODES ? h("p", { class: "muted" }, `${Math.min(draw.MAX_NODES, subtasks.length)} of ${total} subtasks drawn.`) : null;
    const parts = [
      h("h2", { "data-task-id": result.taskId }, h("span", {}, `Task ${result.taskId.slice(0, 12)}`), badge(result.status)),
      facts([["type", result.type || "—"], ["priority", result.priority || "—"], ["created", clock(result.createdAt)],
        ["took", seconds(result.startedAt, result.finishedAt)], ["speedup", m.speedup ? `${m.speedup}×` : "—"],
        ["parallel ratio", pct(m.parallelExecutionRatio)], ["overhead", pct(m.orchestrationOverhead)]]),
      result.reynoldsComment ? h("p", { class: "muted" }, result.reynoldsComment) : null,
      h("h3", {}, "DAG"), legend(), h("div", { class: "scroll-x" }, dag), capped,
      h("h3", {}, "Timeline"), h("div", { id: "gantt" }, gantt || h("p", { class: "muted" }, "Nothing has started yet.")),
      subtaskPanel(chosen),
      h("h3", {}, "Routing and attempts"), routingTable(subtasks),
      h("h3", {}, "Plan"), h("pre", { class: "plan" }, JSON.stringify(result.plan || {}, null, 1)),
      h("h3", {}, "Results"), h("pre", { class: "results" }, JSON.stringify(result.results || {}, null, 1)),
    ];
    $("detail").replaceChildren(...parts.filter((part) => part !== null));
  }

  // A subtask event changes its node at once; the full result follows shortly after.
  function markNode(subtaskId, status, at) {
    if (!subtaskId || !status) return;
    const sub = ((state.detail || {}).subtasks || []).find((s) => s.id === subtaskId);
    if (sub) {
      sub.status = status;
      if (status === "running") sub.startedAt = sub.startedAt || at;
      else if (FINISHED.has(status)) sub.finishedAt = sub.finishedAt || at;
    }
    for (const node of $("detail").querySelectorAll("svg.dag .node")) {
      if (node.getAttribute("data-id") === subtaskId) node.setAttribute("data-status", status);
    }
  }

  // -- pools, numbers, loops, experiments ------------------------------------------------
  function showPools(pools) {
    state.pools = pools;
    const rows = pools.map((p) => {
      const util = Number(p.utilization) || 0;
      const breaker = (p.breaker && p.breaker.state) || p.circuit || "—";
      return h("tr", { "data-pool": p.type },
        h("td", { title: p.description || "" }, `${p.type} (${p.name})`),
        h("td", {}, `${p.replicas} [${p.minReplicas}–${p.maxReplicas}]`), h("td", {}, p.busy),
        h("td", {}, p.queueDepth), h("td", {}, h("span", { class: "bar-box" }, h("span", { class: "bar", style: null })), pct(util)),
        h("td", {}, badge(breaker)));
    });
    $("pools").tBodies[0].replaceChildren(...rows);
    // Widths through the CSSOM: the page's policy allows no inline style attribute.
    $("pools").querySelectorAll(".bar").forEach((bar, i) => {
      bar.style.width = `${Math.min(100, (Number(pools[i].utilization) || 0) * 100)}%`;
    });
  }

  async function refreshStatus() {
    try {
      showPools((await api("/status")).pools || []);
    } catch (e) {
      console.warn(e);
    }
  }

  function parseProm(text) {
    const out = [];
    for (const line of text.split("\n")) {
      if (!line || line[0] === "#") continue;
      const m = line.match(/^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
      if (!m) continue;
      const labels = {};
      for (const l of (m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
      out.push({ name: m[1], labels, value: Number(m[3]) });
    }
    return out;
  }

  const sum = (samples, name, keep) =>
    samples.filter((s) => s.name === name && (!keep || keep(s.labels))).reduce((a, s) => a + s.value, 0);

  function quantile(samples, name, q, keep) {
    const buckets = new Map();
    for (const s of samples) {
      if (s.name !== `${name}_bucket` || (keep && !keep(s.labels))) continue;
      const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
      buckets.set(le, (buckets.get(le) || 0) + s.value);
    }
    const bounds = [...buckets.keys()].sort((a, b) => a - b);
    const total = buckets.get(Infinity) || 0;
    if (!total) return NaN;
    const rank = q * total;
    let lower = 0, below = 0;
    for (const le of bounds) {
      const count = buckets.get(le);
      if (count >= rank) {
        if (le === Infinity) return lower;
        return lower + ((le - lower) * (rank - below)) / Math.max(count - below, 1e-9);
      }
      lower = le;
      below = count;
    }
    return lower;
  }

  function showNumbers(samples) {
    const ratio = sum(samples, "reynolds_parallel_execution_busy_seconds_total") /
      sum(samples, "reynolds_parallel_execution_capacity_seconds_total");
    const tasks = sum(samples, "reynolds_tasks_total");
    const succeeded = sum(samples, "reynolds_tasks_total", (l) => l.status === "succeeded");
    const util = sum(samples, "reynolds_agent_busy_slot_seconds_total") /
      sum(samples, "reynolds_agent_available_slot_seconds_total");
    const overhead = sum(samples, "reynolds_orchestration_overhead_seconds_total") /
      sum(samples, "reynolds_orchestration_makespan_seconds_total");
    // Streams last as long as their listener: they would say nothing about response times.
    const p95 = quantile(samples, "reynolds_http_request_duration_seconds", 0.95, (l) => !STREAMS.test(l.path || ""));
    $("k-parallel").textContent = pct(ratio);
    $("k-success").textContent = tasks ? pct(succeeded / tasks) : "—";
    $("k-util").textContent = pct(util);
    $("k-overhead").textContent = pct(overhead);
    $("k-p95").textContent = Number.isFinite(p95) ? `${(p95 * 1000).toFixed(1)} ms` : "—";
  }

  async function refreshNumbers() {
    try {
      showNumbers(parseProm(await api("/mcp/resources/metrics")));
    } catch (e) {
      console.warn(e);
    }
  }

  function list(id, items, line) {
    const target = $(id);
    if (!items.length) return target.replaceChildren(h("li", { class: "muted" }, "none yet"));
    target.replaceChildren(...items.slice(0, 30).map((item) => h("li", {}, ...line(item))));
  }

  async function refreshLoops() {
    try {
      const view = await api("/mcp/resources/loop-prevention");
      const found = view.detections || []; // newest first
      list("loops", found, (d) => [badge(d.detector || d.reason || d.kind || "loop"), " ",
        d.taskId ? `task ${String(d.taskId).slice(0, 12)} ` : "", d.subtaskId || "", " ",
        d.message || d.explanation || (d.confidence !== undefined ? `confidence ${d.confidence}` : "")]);
      const transitions = ((view.breakers || {}).transitions || []).slice(0, 10).reverse();
      for (const t of transitions) addScaling(breakerLine(t), t.at);
    } catch (e) {
      console.warn(e);
    }
  }

  async function refreshExperiments() {
    try {
      const found = (await api("/experiments?limit=10")).experiments || [];
      list("experiments", found, (x) => [badge(x.status), " ", x.name || x.experimentId || x.id || "",
        " ", x.winner ? `winner ${x.winner}` : "", " ", clock(x.createdAt || x.startedAt)]);
    } catch (e) {
      console.warn(e);
    }
  }

  function breakerLine(d) {
    return `breaker ${d.agentType || d.downstream || ""}: ${d.from || ""} → ${d.to || ""} ${d.reason ? `(${d.reason})` : ""}`;
  }

  function addScaling(text, at) {
    if (state.scaling.some((s) => s.text === text && s.at === at)) return;
    state.scaling.unshift({ text, at });
    state.scaling = state.scaling.slice(0, 30);
    list("scaling", state.scaling, (s) => [h("span", { class: "muted" }, `${clock(s.at)} `), s.text]);
  }

  // -- the event stream ------------------------------------------------------------------
  const TASK_EVENTS = ["subtask_started", "subtask_finished", "subtask_retry", "loop_detected", "budget_exceeded", "task_finished"];

  function onTaskEvent(kind, event) {
    if (event.taskId === state.selected) {
      if (kind === "subtask_started") markNode(event.subtaskId, "running", event.at);
      if (kind === "subtask_finished") markNode(event.subtaskId, (event.data || {}).status, event.at);
      later("detail", 250, refreshDetail);
    }
    later("tasks", 500, refreshTasks);
    if (kind === "task_finished") later("numbers", 500, refreshNumbers);
    if (kind === "loop_detected") later("loops", 500, refreshLoops);
  }

  function connect() {
    if (state.source) state.source.close();
    const source = new EventSource("/mcp/events");
    state.source = source;
    const conn = $("conn");
    source.onopen = () => {
      conn.dataset.state = "live";
      conn.textContent = "live";
    };
    source.onerror = () => {
      conn.dataset.state = "down";
      conn.textContent = "reconnecting…";
    };
    source.addEventListener("snapshot", (e) => {
      const snap = JSON.parse(e.data);
      showTasks(snap.tasks || []);
      showPools(snap.pools || []);
      later("tasks-all", 0, () => refreshTasks(TASKS_SHOWN));
    });
    for (const kind of TASK_EVENTS) {
      source.addEventListener(kind, (e) => onTaskEvent(kind, JSON.parse(e.data)));
    }
    source.addEventListener("agent_scaled", (e) => {
      const ev = JSON.parse(e.data);
      const d = ev.data || {};
      addScaling(`${d.agentType}: ${d.from} → ${d.to} replicas (${d.reason || d.source || ""})`, ev.at);
      later("status", 200, refreshStatus);
    });
    source.addEventListener("circuit_breaker", (e) => {
      const ev = JSON.parse(e.data);
      addScaling(breakerLine(ev.data || {}), ev.at);
      later("status", 200, refreshStatus);
    });
    source.addEventListener("experiment_progress", () => later("experiments", 1000, refreshExperiments));
    source.addEventListener("overflow", () => setTimeout(connect, 500));
  }

  function start() {
    if (document.documentElement.dataset.auth === "session") {
      const out = $("logout");
      out.hidden = false;
      out.addEventListener("click", async () => {
        await fetch("/logout", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
        location.assign("/");
      });
    }
    connect();
    refreshStatus();
    refreshNumbers();
    refreshLoops();
    refreshExperiments();
    setInterval(() => {
      refreshStatus();
      refreshNumbers();
    }, REFRESH_MS);
    setInterval(refreshLoops, REFRESH_MS * 3);
    // A running task's Gantt bars grow with time even between events.
    setInterval(() => {
      const d = state.detail;
      const box = $("gantt");
      if (!d || !box || FINISHED.has(d.status)) return;
      const gantt = window.ReynoldsDraw.gantt(d.subtasks || [], Date.now());
      if (gantt) box.replaceChildren(gantt);
    }, 1000);
  }

  // For benchmarks/dashboard.py: apply task events as the stream would, then wait until the
  // page shows them.
  window.ReynoldsDashboard = {
    async apply(events) {
      for (const event of events) onTaskEvent(event.kind, event);
      await settle();
    },
  };

  document.addEventListener("DOMContentLoaded", start);
})();
