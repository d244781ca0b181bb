// The city map: district polygons and sensors on a <canvas>, no tiles, no library.
// Coordinates are projected equirectangularly around the city's mean latitude (exact
// enough at city scale); sensors are batched into one path per colour, so 20,000 of them
// draw in a few milliseconds. Exposes window.CityMap.
"use strict";
(function () {
  const SEV = { critical: "#e5484d", warning: "#f5a524", info: "#3e9bf5", none: "#3e9bf5" };
  const DOMAIN = { traffic: "#5b7fa6", environment: "#4f8f6b", water: "#3f8c9c", power: "#9c8441" };
  const MUTED = "#9b7bd4";

  class CityMap {
    constructor(canvas, data, onPick) {
      this.canvas = canvas; this.data = data; this.onPick = onPick;
      this.ctx = canvas.getContext("2d");
      this.state = { sensors: new Map(), districts: new Map() };  // id -> {severity, muted}
      this.selected = null;  // district id
      this.focus = null;     // sensor id
      const s = data.sensors, n = s.id.length;
      let lat0 = 0; for (let i = 0; i < n; i++) lat0 += s.lat[i];
      const rings = data.districts.flatMap(d => d.rings);
      if (!n && rings.length) lat0 = rings[0][0][1]; else lat0 /= Math.max(n, 1);
      this.kx = Math.cos(lat0 * Math.PI / 180);
      this.x = new Float64Array(n); this.y = new Float64Array(n);
      let minx = Infinity, maxx = -Infinity, miny = Infinity, maxy = -Infinity;
      const grow = (x, y) => { if (x < minx) minx = x; if (x > maxx) maxx = x; if (y < miny) miny = y; if (y > maxy) maxy = y; };
      for (let i = 0; i < n; i++) { this.x[i] = s.lon[i] * this.kx; this.y[i] = -s.lat[i]; grow(this.x[i], this.y[i]); }
      this.polys = data.districts.map(d => ({ id: d.id, rings: d.rings.map(r => r.map(([lon, lat]) => { const p = [lon * this.kx, -lat]; grow(p[0], p[1]); return p; })) }));
      for (const p of this.polys) {  // label position: mean of the outer ring
        const r = p.rings[0] || []; let cx = 0, cy = 0;
        for (const [x, y] of r) { cx += x; cy += y; }
        p.cx = r.length ? cx / r.length : 0; p.cy = r.length ? cy / r.length : 0;
      }
      if (!isFinite(minx)) { minx = 0; maxx = 1; miny = 0; maxy = 1; }
      this.bounds = { minx, maxx, miny, maxy };
      this.index = new Map(s.id.map((id, i) => [id, i]));
      this.view = null;
      this._wire();
      new ResizeObserver(() => this.resize()).observe(canvas);
      this.resize();
    }

    fit() {
      const { minx, maxx, miny, maxy } = this.bounds, w = this.w, h = this.h, pad = 24;
      const k = Math.min((w - 2 * pad) / Math.max(maxx - minx, 1e-9), (h - 2 * pad) / Math.max(maxy - miny, 1e-9));
      this.view = { k, tx: (w - (maxx - minx) * k) / 2 - minx * k, ty: (h - (maxy - miny) * k) / 2 - miny * k };
    }

    resize() {
      const r = this.canvas.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
      this.w = Math.max(r.width, 10); this.h = Math.max(r.height, 10); this.dpr = dpr;
      this.canvas.width = Math.round(this.w * dpr); this.canvas.height = Math.round(this.h * dpr);
      if (!this.view) this.fit();
      this.draw();
    }

    setState(sensors, districts) { this.state = { sensors, districts }; this.draw(); }

    draw() {
      if (this._queued) return;
      this._queued = true;
      requestAnimationFrame(() => { this._queued = false; this._draw(); });
    }

    drawNow() { this._draw(); }

    _draw() {
      const c = this.ctx, v = this.view, t0 = performance.now();
      c.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
      c.clearRect(0, 0, this.w, this.h);
      const px = x => x * v.k + v.tx, py = y => y * v.k + v.ty;
      // districts
      for (const p of this.polys) {
        const st = this.state.districts.get(p.id);
        c.beginPath();
        for (const ring of p.rings) ring.forEach(([x, y], i) => i ? c.lineTo(px(x), py(y)) : c.moveTo(px(x), py(y)));
        c.closePath();
        let fill = "rgba(90,110,135,0.10)";
        if (st && st.firing) fill = st.muted >= st.firing ? "rgba(155,123,212,0.16)" : (st.severity === "critical" ? "rgba(229,72,77,0.22)" : "rgba(245,165,36,0.20)");
        c.fillStyle = fill; c.fill();
        c.lineWidth = p.id === this.selected ? 2.5 : 1;
        c.strokeStyle = p.id === this.selected ? "#dbe4ee" : "rgba(160,180,200,0.45)";
        c.stroke();
      }
      // sensors, one path per colour; alerting ones on top and bigger
      const s = this.data.sensors, n = s.id.length, dom = this.data.domains;
      const size = Math.max(2.4, Math.min(5, v.k / 3000));
      const groups = new Map();
      for (let i = 0; i < n; i++) {
        const col = DOMAIN[dom[s.domain[i]]] || "#667";
        let g = groups.get(col); if (!g) groups.set(col, g = []);
        g.push(i);
      }
      for (const [col, idx] of groups) {
        c.fillStyle = col; c.beginPath();
        for (const i of idx) c.rect(px(this.x[i]) - size / 2, py(this.y[i]) - size / 2, size, size);
        c.fill();
      }
      const hot = [];
      for (const [id, st] of this.state.sensors) { const i = this.index.get(id); if (i !== undefined) hot.push([i, st]); }
      hot.sort((a, b) => (a[1].severity === "critical") - (b[1].severity === "critical"));
      for (const [i, st] of hot) {
        const x = px(this.x[i]), y = py(this.y[i]);
        c.beginPath(); c.arc(x, y, size + 3.5, 0, 2 * Math.PI);
        c.fillStyle = st.muted >= st.firing ? MUTED : (SEV[st.severity] || SEV.none);
        c.fill(); c.lineWidth = 1; c.strokeStyle = "#10151c"; c.stroke();
      }
      if (this.focus !== null && this.index.has(this.focus)) {
        const i = this.index.get(this.focus);
        c.beginPath(); c.arc(px(this.x[i]), py(this.y[i]), size + 8, 0, 2 * Math.PI);
        c.lineWidth = 2; c.strokeStyle = "#ffffff"; c.stroke();
      }
      // district names
      c.font = "12px system-ui, sans-serif"; c.textAlign = "center";
      for (const p of this.polys) {
        c.fillStyle = "rgba(0,0,0,0.55)"; c.fillText(p.id, px(p.cx) + 1, py(p.cy) + 1);
        c.fillStyle = "#dbe4ee"; c.fillText(p.id, px(p.cx), py(p.cy));
      }
      this.lastDrawMs = performance.now() - t0;
    }

    _wire() {
      const cv = this.canvas;
      let drag = null, moved = false;
      cv.addEventListener("wheel", e => {
        e.preventDefault();
        const f = Math.exp(-e.deltaY * 0.0015), r = cv.getBoundingClientRect();
        const mx = e.clientX - r.left, my = e.clientY - r.top, v = this.view;
        v.tx = mx - (mx - v.tx) * f; v.ty = my - (my - v.ty) * f; v.k *= f;
        this.draw();
      }, { passive: false });
      cv.addEventListener("mousedown", e => { drag = [e.clientX, e.clientY]; moved = false; cv.style.cursor = "grabbing"; });
      window.addEventListener("mousemove", e => {
        if (!drag) return;
        const dx = e.clientX - drag[0], dy = e.clientY - drag[1];
        if (Math.abs(dx) + Math.abs(dy) > 3) moved = true;
        this.view.tx += dx; this.view.ty += dy; drag = [e.clientX, e.clientY];
        if (moved) this.draw();
      });
      window.addEventListener("mouseup", e => {
        if (!drag) return;
        drag = null; cv.style.cursor = "grab";
        if (!moved) this._click(e);
      });
      cv.addEventListener("dblclick", () => { this.fit(); this.draw(); });
    }

    _click(e) {
      const r = this.canvas.getBoundingClientRect(), mx = e.clientX - r.left, my = e.clientY - r.top, v = this.view;
      let best = -1, bd = 64;  // within 8 px
      for (let i = 0; i < this.x.length; i++) {
        const dx = this.x[i] * v.k + v.tx - mx, dy = this.y[i] * v.k + v.ty - my, d = dx * dx + dy * dy;
        if (d < bd) { bd = d; best = i; }
      }
      if (best >= 0) { this.onPick({ sensor: this.data.sensors.id[best] }); return; }
      const wx = (mx - v.tx) / v.k, wy = (my - v.ty) / v.k;
      for (const p of this.polys) if (p.rings.some(ring => inside(ring, wx, wy))) { this.onPick({ district: p.id }); return; }
      this.onPick({});
    }
  }

  function inside(ring, x, y) {
    let hit = false;
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      const [xi, yi] = ring[i], [xj, yj] = ring[j];
      if ((yi > y) !== (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) hit = !hit;
    }
    return hit;
  }

  CityMap.SEV = SEV; CityMap.DOMAIN = DOMAIN; CityMap.MUTED = MUTED;
  window.CityMap = CityMap;
})();
