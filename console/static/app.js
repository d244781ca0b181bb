// The operations console's page: state from /api/state, live changes from /api/events (SSE),
// actions as POSTs carrying the session's CSRF token. Plain DOM building with textContent
// only (never innerHTML with data), so an alert's labels cannot inject markup.
"use strict";
(function () {
  const $ = id => document.getElementById(id);
  const S = {
    me: null, alerts: new Map(), resolved: new Map(), silences: [], audit: [], counts: {},
    kpis: {}, kpiFields: {}, map: null, district: null, filter: "", lags: [],
  };
  const MAX_ROWS = 200;  // rows drawn per list; the rest is a filter away
  window.ubStats = { lags: S.lags, ready: null, mapDrawMs: null, updates: 0 };

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else if (k === "style") el.style.cssText = v;  // CSSOM: allowed by the CSP, unlike style=""
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids.flat()) if (kid !== null && kid !== undefined && kid !== false)
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    return el;
  }
  const ago = ms => {
    const s = Math.max(0, (Date.now() - ms) / 1000);
    if (s < 90) return `${Math.round(s)} s ago`;
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    if (s < 172800) return `${(s / 3600).toFixed(1)} h ago`;
    return `${Math.round(s / 86400)} d ago`;
  };
  const until = ms => { const s = (ms - Date.now()) / 1000; return s <= 0 ? "ended" : s < 5400 ? `${Math.ceil(s / 60)} min left` : `${(s / 3600).toFixed(1)} h left`; };
  const clock = ms => new Date(ms).toLocaleString();
  const can = a => S.me && S.me.can.includes(a);
  const fmt = (v, d) => (v === null || v === undefined || Number.isNaN(v)) ? "–" : Number(v).toLocaleString(undefined, { maximumFractionDigits: d, minimumFractionDigits: d });

  async function api(path, body) {
    const opt = body === undefined ? {} : {
      method: "POST", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json", "X-CSRF-Token": S.me.csrf },
    };
    const r = await fetch(path, { credentials: "same-origin", ...opt });
    if (r.status === 401) { location.href = "/login"; throw new Error("logged out"); }
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
    return data;
  }

  // ------------------------------------------------------------------ state
  function takeAlert(a) {
    if (a.active) { S.alerts.set(a.fingerprint, a); S.resolved.delete(a.fingerprint); }
    else { S.alerts.delete(a.fingerprint); S.resolved.set(a.fingerprint, a); }
  }
  function loadState(st) {
    S.alerts.clear(); S.resolved.clear();
    st.alerts.forEach(takeAlert); st.resolved.forEach(takeAlert);
    S.silences = st.silences; S.audit = st.audit; S.counts = st.counts;
    S.kpis = st.kpis; S.kpiFields = st.kpi_fields;
  }
  function applyUpdate(u) {
    u.alerts.forEach(takeAlert);
    if (u.silences) S.silences = u.silences;
    if (u.audit.length) S.audit = u.audit.slice().reverse().concat(S.audit).slice(0, 500);
    S.counts = u.counts;
  }

  // ------------------------------------------------------------------ rendering
  function matchesFilter(a) {
    if (!S.filter) return true;
    const hay = [a.alertname, a.rule, ...Object.values(a.labels), a.annotations.summary || ""].join(" ").toLowerCase();
    return S.filter.split(/\s+/).every(w => hay.includes(w));
  }
  function inDistrict(a) { return !S.district || a.labels.district === S.district; }

  function renderCounts() {
    const c = S.counts;
    $("counts").replaceChildren(
      h("span", { class: c.critical ? "crit" : "", id: "count-firing" }, `${c.firing || 0} firing`),
      h("span", {}, `${c.critical || 0} critical`),
      h("span", {}, `${c.acked || 0} acknowledged`),
      h("span", {}, `${c.silenced || 0} silenced`));
    $("n-alerts").textContent = c.firing || 0;
    $("n-silences").textContent = c.silences || 0;
  }

  function alertItem(a, resolvedList) {
    const muted = a.silenced_by.length > 0 || a.acked_by;
    const sensor = a.labels.sensor, district = a.labels.district;
    const acts = [];
    if (!resolvedList) {
      if (can("ack")) acts.push(a.acked_by
        ? h("button", { "data-act": "unack", onclick: () => act(a, "unack") }, "Unack")
        : h("button", { "data-act": "ack", onclick: () => act(a, "ack") }, "Ack"));
      if (can("assign")) acts.push(h("button", { "data-act": "assign", onclick: () => ask(`Assign ${a.alertname} to`, a.assignee || S.me.user, t => act(a, "assign", t)) }, "Assign"));
      if (can("comment")) acts.push(h("button", { "data-act": "comment", onclick: () => ask(`Comment on ${a.alertname}`, "", t => act(a, "comment", t), true) }, "Comment"));
      if (can("silence")) acts.push(h("button", { "data-act": "silence", onclick: () => openSilence(a) }, "Silence…"));
      if (can("resolve")) acts.push(h("button", { "data-act": "resolve", onclick: () => ask(`Resolve ${a.alertname} by hand: why?`, "", t => act(a, "resolve", t), true) }, "Resolve"));
    }
    acts.push(h("button", { "data-act": "details", class: "link", onclick: () => drill(a) }, "details"));
    return h("li", { class: `alert ${a.severity} ${muted ? "muted" : ""}`, dataset: { fp: a.fingerprint } },
      h("div", { class: "title" },
        h("b", { onclick: () => drill(a) }, a.alertname),
        h("span", { class: "meta" }, resolvedList ? (a.resolved_by_hand ? `resolved by ${a.resolved_by_hand.user} ${ago(a.resolved_by_hand.at)}` : `resolved ${ago(a.seen_ms)}`) : `since ${ago(a.starts_at)}`)),
      h("div", { class: "meta" }, [district && `district ${district}`, sensor && `sensor ${sensor}`, a.severity, a.value !== null && a.value !== undefined && `value ${fmt(a.value, 2)}`].filter(Boolean).join(" · ")),
      a.annotations.summary && h("div", { class: "summary" }, a.annotations.summary),
      h("div", { class: "badges" },
        a.acked_by && h("span", { class: "badge ack" }, `acknowledged by ${a.acked_by}`),
        a.assignee && h("span", { class: "badge asg" }, `assigned to ${a.assignee}`),
        a.silenced_by.length > 0 && h("span", { class: "badge sil" }, `silenced (${a.silenced_by.join(", ")})`),
        a.resolved_by_hand && h("span", { class: "badge hand" }, `resolved by hand: ${a.resolved_by_hand.text}`)),
      a.comments.length > 0 && h("ul", { class: "comments" }, a.comments.map(c => h("li", {}, `${c.user}: ${c.text} (${ago(c.at)})`))),
      h("div", { class: "actions" }, acts));
  }

  function renderAlerts() {
    const rank = { critical: 3, warning: 2, info: 1 };
    const list = [...S.alerts.values()].filter(a => matchesFilter(a) && inDistrict(a))
      .sort((x, y) => (rank[y.severity] || 0) - (rank[x.severity] || 0) || y.starts_at - x.starts_at);
    const shown = list.slice(0, MAX_ROWS).map(a => alertItem(a, false));
    if (list.length > MAX_ROWS) shown.push(h("li", { class: "meta" }, `… and ${list.length - MAX_ROWS} more: filter or pick a district to narrow`));
    $("alerts").replaceChildren(...(list.length ? shown
      : [h("li", { class: "meta empty" }, S.district ? `no alert firing in ${S.district}` : "no alert firing")]));
    const res = [...S.resolved.values()].filter(a => matchesFilter(a) && inDistrict(a)).sort((x, y) => y.seen_ms - x.seen_ms);
    $("resolved").replaceChildren(...res.slice(0, MAX_ROWS).map(a => alertItem(a, true)));
  }

  function renderSilences() {
    $("new-silence").hidden = !can("silence");
    $("silences").replaceChildren(...S.silences.map(s => h("li", { class: `silence ${s.state === "active" ? "" : "muted"}`, dataset: { id: s.id } },
      h("div", { class: "title" }, h("b", {}, s.matchers.join(", ")), h("span", { class: "meta" }, s.state === "active" ? until(s.ends_at) : s.state)),
      h("div", { class: "meta" }, `by ${s.created_by} · ${clock(s.starts_at)} → ${clock(s.ends_at)} · ${s.alerts.length} alert(s) muted now`),
      h("div", { class: "summary" }, s.comment),
      s.state !== "expired" && can("expire") && h("div", { class: "actions" },
        h("button", { "data-act": "expire", onclick: () => api(`/api/silences/${encodeURIComponent(s.id)}/expire`, { text: "expired from the console" }).catch(e => alert(e.message)) }, "Expire now")))));
  }

  function renderAudit() {
    $("audit").replaceChildren(...S.audit.map(r => h("li", { class: "audit-row", dataset: { action: r.action } },
      h("div", {}, h("span", { class: "who" }, r.user), ` (${r.role}) `, h("b", {}, r.action), " ",
        h("code", {}, r.target.slice(0, 16))),
      h("div", { class: "meta" }, clock(r.at)),
      r.text && h("div", { class: "summary" }, r.text))));
  }

  function renderKpis() {
    const k = S.kpis || {}, src = S.district ? (k.districts || {})[S.district] || {} : (k.city || {});
    $("kpi-title").textContent = S.district ? `District ${S.district}` : "City";
    $("kpi-city").hidden = !S.district;
    $("kpi-at").textContent = k.error ? `KPIs unavailable: ${k.error}` : k.at ? `roll-ups of ${clock(k.at)}` : "no roll-ups yet";
    const firingBy = {};
    for (const a of S.alerts.values()) {
      if (S.district && a.labels.district !== S.district) continue;
      const d = a.labels.domain || domainOfRule(a); if (!d) continue;
      const cur = firingBy[d] || { n: 0, sev: "none" };
      cur.n++; if (a.severity === "critical" || (a.severity === "warning" && cur.sev !== "critical")) cur.sev = a.severity;
      firingBy[d] = cur;
    }
    const tiles = Object.entries(S.kpiFields || {}).map(([domain, fields]) => {
      const vals = src[domain] || {}, f = firingBy[domain];
      return h("div", { class: `kpi ${f ? f.sev : ""}`, dataset: { domain } },
        h("h3", {}, domain, h("span", {}, f ? `${f.n} alert${f.n > 1 ? "s" : ""}` : "ok")),
        Object.keys(vals).length ? fields.map(([field, label, unit, dec]) => h("div", { class: "row" }, h("span", {}, label), h("b", {}, `${fmt(vals[field], dec)} ${unit}`)))
          : h("div", { class: "none" }, "no data in the last 15 min"));
    });
    $("kpis").replaceChildren(...tiles);
  }
  function domainOfRule(a) {
    if (a.labels.sensor && S.map) {
      const i = S.map.index.get(a.labels.sensor);
      if (i !== undefined) return S.map.data.domains[S.map.data.sensors.domain[i]];
    }
    return null;
  }

  function renderMap() {
    if (!S.map) return;
    const sensors = new Map(), districts = new Map();
    const rank = { critical: 3, warning: 2, info: 1 };
    for (const a of S.alerts.values()) {
      const muted = a.silenced_by.length > 0 || !!a.acked_by ? 1 : 0;
      for (const [key, m] of [["sensor", sensors], ["district", districts]]) {
        const v = a.labels[key]; if (!v) continue;
        const st = m.get(v) || { severity: "none", firing: 0, muted: 0 };
        if ((rank[a.severity] || 0) > (rank[st.severity] || 0)) st.severity = a.severity;
        st.firing++; st.muted += muted; m.set(v, st);
      }
    }
    S.map.selected = S.district;
    S.map.setState(sensors, districts);
  }

  function renderAll() { renderCounts(); renderAlerts(); renderSilences(); renderAudit(); renderKpis(); renderMap(); }

  // ------------------------------------------------------------------ actions
  async function act(a, action, text) {
    try { await api(`/api/alerts/${a.fingerprint}/${action}`, { text: text || "" }); }
    catch (e) { alert(`${action}: ${e.message}`); }
  }

  function ask(title, value, then, required) {
    const d = $("text-dialog");
    $("text-title").textContent = title; $("text-input").value = value; $("text-error").textContent = "";
    $("text-input").required = !!required;
    d.onclose = () => { if (d.returnValue === "ok") then($("text-input").value); };
    d.showModal();
  }

  function openSilence(a) {
    const lines = [];
    if (a) {
      lines.push(`alertname="${a.alertname}"`);
      for (const k of ["sensor", "district"]) if (a.labels[k]) { lines.push(`${k}="${a.labels[k]}"`); if (k === "sensor") break; }
    }
    $("silence-matchers").value = lines.join("\n");
    $("silence-comment").value = ""; $("silence-error").textContent = "";
    $("silence-dialog").showModal();
  }

  async function submitSilence(ev) {
    if (ev.submitter && ev.submitter.value === "cancel") return;
    ev.preventDefault();
    const sel = $("silence-duration").value;
    const seconds = sel === "custom" ? Number($("silence-seconds").value) : Number(sel);
    try {
      await api("/api/silences", {
        matchers: $("silence-matchers").value.split("\n").map(s => s.trim()).filter(Boolean),
        duration_s: seconds, comment: $("silence-comment").value,
      });
      $("silence-dialog").close("ok");
    } catch (e) { $("silence-error").textContent = e.message; }
  }

  // ------------------------------------------------------------------ drill-down
  async function drill(a) {
    $("drill").hidden = false;
    $("drill-title").textContent = `${a.alertname} · ${a.labels.sensor || a.labels.district || ""}`;
    const body = $("drill-body");
    body.replaceChildren(h("div", { class: "meta" }, "loading…"));
    const [rule, sensor, audit] = await Promise.all([
      api(`/api/rules/${encodeURIComponent(a.rule)}`).catch(e => ({ error: e.message })),
      a.labels.sensor ? api(`/api/sensors/${encodeURIComponent(a.labels.sensor)}`).catch(e => ({ error: e.message })) : null,
      api(`/api/audit?target=${a.fingerprint}`).catch(() => []),
    ]);
    if (S.map && a.labels.sensor) { S.map.focus = a.labels.sensor; S.map.draw(); }
    const left = h("div", { class: "charts" });
    if (sensor) left.append(...sensorCharts(sensor));
    else left.append(h("div", { class: "meta" }, "a district alert: no single sensor series"));
    const right = h("div", {},
      h("h4", {}, "Alert"),
      h("dl", { class: "attrs" }, ...Object.entries(a.labels).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
        h("dt", {}, "fingerprint"), h("dd", {}, a.fingerprint), h("dt", {}, "firing since"), h("dd", {}, clock(a.starts_at))),
      h("h4", {}, `Rule ${rule.id || a.rule}`),
      rule.error ? h("div", { class: "error" }, rule.error) : [
        h("div", { class: "meta" }, `${rule.file}:${rule.line} · ${rule.kind}, ${rule.scope} scope · watches ${rule.sensors ?? "?"} sensor(s) · ${rule.firing} firing`),
        h("pre", { class: "rule", id: "drill-rule" }, rule.source || "(source not readable)")],
      h("h4", {}, "Audit trail of this alert"),
      h("ul", { class: "comments", id: "drill-audit" }, (audit.length ? audit : [{ user: "", action: "no action yet", at: null, text: "" }])
        .map(r => h("li", {}, r.at ? `${clock(r.at)} ${r.user} (${r.role}) ${r.action}${r.text ? ": " + r.text : ""}` : r.action))));
    body.replaceChildren(left, right);
  }

  function sensorCharts(sensor) {
    const out = [h("h4", {}, `Sensor ${sensor.sensor} (${sensor.domain}, ${sensor.district || "?"}) · last ${sensor.range}`)];
    if (sensor.error) out.push(h("div", { class: "error" }, sensor.error));
    const t = sensor.series.time || [];
    const metrics = Object.keys(sensor.series).filter(k => k !== "time").slice(0, 4);
    if (!t.length) out.push(h("div", { class: "meta" }, "no readings stored in that range"));
    for (const m of metrics) {
      const cv = h("canvas", { "data-metric": m });
      out.push(h("h4", {}, m), cv);
      requestAnimationFrame(() => lineChart(cv, t, sensor.series[m]));
    }
    return out;
  }

  function lineChart(cv, t, v) {
    const r = cv.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
    cv.width = r.width * dpr; cv.height = r.height * dpr;
    const c = cv.getContext("2d"); c.scale(dpr, dpr);
    const pts = t.map((x, i) => [x, v[i]]).filter(p => typeof p[1] === "number");
    if (pts.length < 1) return;
    let x0 = pts[0][0], x1 = pts[pts.length - 1][0], y0 = Infinity, y1 = -Infinity;
    for (const [, y] of pts) { if (y < y0) y0 = y; if (y > y1) y1 = y; }
    if (x1 === x0) x1 = x0 + 1; if (y1 === y0) { y1 += 1; y0 -= 1; }
    const W = r.width, H = r.height, L = 46, B = 16;
    const X = x => L + (x - x0) / (x1 - x0) * (W - L - 6), Y = y => 6 + (1 - (y - y0) / (y1 - y0)) * (H - B - 12);
    c.fillStyle = "#8a9aab"; c.font = "10px system-ui"; c.textAlign = "right";
    c.fillText(fmt(y1, 1), L - 4, 12); c.fillText(fmt(y0, 1), L - 4, H - B);
    c.textAlign = "left"; c.fillText(new Date(x0).toLocaleTimeString(), L, H - 3);
    c.textAlign = "right"; c.fillText(new Date(x1).toLocaleTimeString(), W - 6, H - 3);
    c.strokeStyle = "#3e9bf5"; c.lineWidth = 1.5; c.beginPath();
    pts.forEach(([x, y], i) => i ? c.lineTo(X(x), Y(y)) : c.moveTo(X(x), Y(y)));
    c.stroke();
  }

  async function pick(p) {
    if (p.sensor) {
      const alerting = [...S.alerts.values()].find(a => a.labels.sensor === p.sensor);
      if (alerting) return drill(alerting);
      $("drill").hidden = false; $("drill-title").textContent = `Sensor ${p.sensor}`;
      S.map.focus = p.sensor; S.map.draw();
      const sensor = await api(`/api/sensors/${encodeURIComponent(p.sensor)}`).catch(e => ({ error: e.message, series: {} }));
      const rules = h("div", {}, h("h4", {}, "Attributes"),
        h("dl", { class: "attrs" }, ...Object.entries(sensor.attrs || {}).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, Array.isArray(v) ? v.join(", ") : v)])),
        h("h4", {}, "Rules watching it"), h("ul", { class: "comments" }, (sensor.rules || []).map(r => h("li", {}, r))),
        h("h4", {}, "Its alerts"), h("ul", { class: "comments" }, (sensor.alerts || []).map(a => h("li", {}, `${a.alertname} ${a.status} ${ago(a.seen_ms)}`))));
      $("drill-body").replaceChildren(h("div", { class: "charts" }, sensorCharts({ ...sensor, series: sensor.series || {} })), rules);
      return;
    }
    S.district = p.district || null;
    renderAlerts(); renderKpis(); renderMap();
  }

  // ------------------------------------------------------------------ live
  // Updates are folded as they arrive but drawn once per animation frame: a burst of a
  // thousand alerts is one render, not a thousand.
  let pending = [], queued = false;
  function scheduleRender() {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      renderAll();
      const now = Date.now();
      let last = null;
      for (const p of pending) if (p.t) { last = now - p.t; S.lags.push({ lag: last, t: p.t, fps: p.fps }); }
      while (S.lags.length > 5000) S.lags.shift();
      pending = [];
      if (last !== null) $("live").textContent = `live · last update drawn ${last} ms after the event`;
    });
  }

  function connect() {
    const es = new EventSource("/api/events");
    es.addEventListener("hello", async () => {
      $("live").className = "live on"; $("live").textContent = "live";
      loadState(await api("/api/state")); renderAll();
      if (window.ubStats.ready === null) { window.ubStats.ready = performance.now(); performance.mark("ub-ready"); }
    });
    es.addEventListener("update", e => {
      const u = JSON.parse(e.data);
      applyUpdate(u);
      window.ubStats.updates++;
      pending.push({ t: u.t, fps: u.alerts.map(a => a.fingerprint) });
      scheduleRender();
    });
    es.addEventListener("kpis", e => { S.kpis = JSON.parse(e.data); renderKpis(); });
    es.onerror = () => { $("live").className = "live off"; $("live").textContent = "reconnecting…"; };
  }

  async function main() {
    S.me = await api("/api/me");
    $("me").textContent = `${S.me.user} (${S.me.role})`;
    $("logout").onclick = async () => { await api("/logout", {}).catch(() => {}); location.href = "/login"; };
    document.querySelectorAll(".tabs button").forEach(b => b.onclick = () => {
      document.querySelectorAll(".tabs button").forEach(x => x.classList.toggle("active", x === b));
      document.querySelectorAll(".pane").forEach(p => p.hidden = p.id !== `pane-${b.dataset.tab}`);
    });
    $("filter").oninput = e => { S.filter = e.target.value.trim().toLowerCase(); renderAlerts(); };
    $("drill-close").onclick = () => { $("drill").hidden = true; if (S.map) { S.map.focus = null; S.map.draw(); } };
    $("kpi-city").onclick = () => pick({});
    $("new-silence").onclick = () => openSilence(null);
    $("silence-form").addEventListener("submit", submitSilence);
    $("silence-duration").onchange = e => { $("silence-seconds").hidden = e.target.value !== "custom"; };
    $("text-form").addEventListener("submit", ev => {
      if (ev.submitter && ev.submitter.value === "ok" && $("text-input").required && !$("text-input").value.trim()) {
        ev.preventDefault(); $("text-error").textContent = "say why";
      }
    });
    $("legend").replaceChildren(
      ...Object.entries(CityMap.DOMAIN).flatMap(([d, c]) => [h("i", { style: `background:${c}` }), d]),
      h("br"), h("i", { style: `background:${CityMap.SEV.critical}` }), "critical",
      h("i", { style: `background:${CityMap.SEV.warning}` }), "warning",
      h("i", { style: `background:${CityMap.MUTED}` }), "acknowledged / silenced");
    const t0 = performance.now();
    const data = await api("/api/map");
    S.map = new CityMap($("map"), data, pick);
    S.map.drawNow();
    window.ubStats.mapDrawMs = S.map.lastDrawMs; window.ubStats.mapFetchMs = performance.now() - t0;
    window.ubStats.sensors = data.sensors.id.length;
    connect();
    setInterval(() => { renderAlerts(); renderSilences(); }, 30000);  // "x min ago" texts
  }
  main().catch(e => { $("live").textContent = `error: ${e.message}`; });
})();
