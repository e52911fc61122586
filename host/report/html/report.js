/* report.html's script: renders the run from the JSON data block.
 *
 * Rules this file keeps (report.html's guarantees depend on them):
 *  - Text from the data (thread names, paths, function and marker names) is
 *    only ever inserted with textContent / createTextNode or drawn with
 *    fillText; never as markup.
 *  - Nothing is loaded: no fetch, no XHR, no image or font URLs. The page's
 *    Content-Security-Policy would refuse them anyway.
 *  - No double slash anywhere in the file (comments are block comments), so
 *    the page contains none at all: it cannot hold a URL.
 *
 * The timeline keeps each thread's intervals as typed arrays and, for every
 * redraw, aggregates the visible ones per device pixel (time holding and
 * waiting in each pixel column), then paints the columns straight into an
 * ImageData. Cost per frame: the visible intervals plus the pixels, so a
 * million intervals redraw in tens of milliseconds.
 */
(() => {
  'use strict';

  const body = document.body;

  function fail(message) {
    body.setAttribute('data-timeline', 'error');
    body.setAttribute('data-error', String(message));
    const banner = document.getElementById('error-banner');
    banner.hidden = false;
    banner.textContent = 'This report could not be fully drawn: ' + String(message);
  }
  window.addEventListener('error', (e) => fail(e && e.message ? e.message : 'script error'));

  /* ---------------------------------------------------------------- helpers */

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function append(parent, ...children) {
    for (const c of children) {
      if (c === null || c === undefined) continue;
      parent.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return parent;
  }
  function swatch(color) {
    const s = el('span', 'swatch');
    s.style.background = color;
    return s;
  }

  /* A duration in ns, with a unit that keeps 3 significant figures. */
  function fmtNs(ns) {
    const a = Math.abs(ns);
    if (a < 1e3) return ns.toFixed(0) + ' ns';
    if (a < 1e6) return (ns / 1e3).toPrecision(3) + ' \u00b5s';
    if (a < 1e9) return (ns / 1e6).toPrecision(3) + ' ms';
    if (a < 1e11) return (ns / 1e9).toPrecision(4) + ' s';
    return (ns / 1e9).toFixed(0) + ' s';
  }
  function fmtS(s) { return fmtNs(s * 1e9); }
  function pct(x) { return (100 * x).toFixed(1) + '%'; }
  function fixed(x, digits) {
    return x === null || x === undefined || !isFinite(x) ? '\u2013' : Number(x).toFixed(digits);
  }
  /* A time on the axis (ns from the window start), with a step-aware precision. */
  function fmtAxis(ns, step) {
    if (step >= 1e9) return (ns / 1e9).toFixed(0) + ' s';
    if (step >= 1e8) return (ns / 1e9).toFixed(1) + ' s';
    if (step >= 1e6) return (ns / 1e6).toFixed(0) + ' ms';
    if (step >= 1e5) return (ns / 1e6).toFixed(1) + ' ms';
    if (step >= 1e4) return (ns / 1e6).toFixed(2) + ' ms';
    if (step >= 1e3) return (ns / 1e3).toFixed(0) + ' \u00b5s';
    return (ns / 1e3).toFixed(2) + ' \u00b5s';
  }

  function decode(b64, Type) {
    const standard = b64.split('-').join('+').split('_').join('/');
    const bin = atob(standard);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Type(bytes.buffer);
  }

  /* Holder colours, one per thread (cycled); none is the holding green or
   * the waiting amber, so GIL rows never read as thread states. */
  const PALETTE = ['#4263eb', '#ae3ec9', '#1098ad', '#d6336c', '#7048e8', '#1c7ed6',
    '#0b7285', '#a61e4d', '#5f3dc4', '#364fc7', '#862e9c', '#495057'];
  const COLORS = {
    holding: '#2f9e44', waiting: '#f08c00', released: '#dfe3e8', marker: '#5f3dc4',
    grid: 'rgba(29,35,48,0.07)', label: '#1d2330', muted: '#667085', labelBg: '#fafbfc', line: '#e3e6eb',
    phaseShade: 'rgba(52,81,178,0.07)', phaseEdge: '#3451b2',
  };
  function rgba32(hex) {
    const v = parseInt(hex.slice(1), 16);
    const r = (v >> 16) & 255, g = (v >> 8) & 255, b = v & 255;
    return ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0;
  }

  function threadName(t) { return t.name ? t.name : 'thread ' + t.native_id; }

  /* --------------------------------------------------------------- summary */

  function renderHeader(report) {
    const words = [report.script].concat(report.args || []);
    document.getElementById('run-title').textContent = words.join(' ');
    const status = document.getElementById('run-status');
    status.textContent = report.status + (report.exit_code ? ' (exit ' + report.exit_code + ')' : '');
    status.className = 'status ' + (report.status === 'ok' ? 'ok' : 'bad');
  }

  function taxSentence(report) {
    const tax = report.gil_tax;
    return 'The GIL cost this run ' + fmtS(tax.waiting_thread_s) + ' of thread time waiting; with every ' +
      'thread\u2019s Python work in parallel it could take ~' + fmtS(tax.ideal_wall_s) + ' (up to ' +
      tax.speedup_bound.toFixed(1) + '\u00d7 faster).';
  }

  function renderSummary(report) {
    const cards = document.getElementById('summary-cards');
    const card = (label, value, sub) => {
      const c = el('div', 'card');
      append(c, el('div', 'label', label), el('div', 'value', value));
      if (sub) c.appendChild(el('div', 'sub', sub));
      c.title = label + ': ' + value + (sub ? ' (' + sub + ')' : '');
      return c;
    };
    const gils = report.gils || [];
    /* Both cards are one GIL's, the busiest (ties: the more contended):
       each figure is a share of its own GIL's lifetime, so a busy share of
       one GIL beside the contended share of another describes neither. */
    let busy = 0, contended = 0, switches = 0;
    for (const g of gils) {
      if (g.busy_fraction > busy || (g.busy_fraction === busy && g.contended_fraction > contended)) {
        busy = g.busy_fraction;
        contended = g.contended_fraction;
      }
      switches += g.switches;
    }
    const several = gils.length > 1;
    append(cards,
      card('Status', report.status, 'exit code ' + report.exit_code),
      card('CPython', report.python.version || '?',
        report.gilscope_version ? 'gilscope ' + report.gilscope_version : ''),
      card('Mode', report.mode, report.instances + (report.instances === 1 ? ' instance' : ' instances')),
      card('Wall time', fmtS(report.wall_s), 'interval ' + fmtS(report.switch_interval_s)),
      card('GIL busy', pct(busy), several ? 'busiest of ' + gils.length + ' GILs' : 'held by a thread'),
      card('GIL contended', pct(contended), several ? 'others waiting, same GIL' : 'others waiting'),
      card('Switches', String(switches),
        report.wall_s > 0 ? (switches / report.wall_s).toFixed(0) + ' per second' : ''),
      card('Threads', String((report.threads || []).length), fmtS(report.gil_tax.waiting_thread_s) + ' waiting'),
      card('Speedup bound', report.gil_tax.speedup_bound.toFixed(2) + '\u00d7',
        '~' + fmtS(report.gil_tax.ideal_wall_s) + ', ' + report.gil_tax.cpu_count + ' cores'));
    document.getElementById('gil-tax').textContent = taxSentence(report);
  }

  function renderFindings(report) {
    const box = document.getElementById('findings');
    const findings = report.findings || [];
    if (findings.length === 0) {
      box.appendChild(el('p', 'none', 'No findings: nothing in this run matched a known GIL problem ' +
        '(convoy, GIL-bound threads, long holds, switch storms).'));
      return;
    }
    const phased = (report.phases || []).length > 1;
    for (const f of findings) {
      const card = el('div', 'finding ' + f.kind);
      const head = el('div');
      const who = f.thread ? f.thread : (f.gil !== null && f.gil !== undefined ? 'GIL ' + f.gil : 'whole run');
      append(head, el('span', 'kind', f.kind), el('span', 'who', who));
      if (phased) {
        const when = f.phase === null || f.phase === undefined ? 'whole run'
          : 'phase ' + (f.phase + 1) + ', ' + fmtWindow(f.start_s, f.end_s);
        head.appendChild(el('span', 'when', when));
      }
      const advice = el('p', 'advice');
      append(advice, el('b', null, 'What to do: '), f.advice);
      append(card, head, el('p', 'detail', f.detail), advice);
      box.appendChild(card);
    }
  }

  function fmtWindow(startS, endS) { return startS.toFixed(3) + '\u2013' + endS.toFixed(3) + ' s'; }

  /* The phases panel: shown when the run has several. Per phase its window,
   * why it begins there, each GIL's busy and contended shares, and the
   * threads that waited most in it with their wait medians. */
  const PHASE_THREADS = 4;
  function renderPhases(report) {
    const phases = report.phases || [];
    const panel = document.getElementById('phases-panel');
    if (phases.length <= 1) return;
    panel.hidden = false;
    const table = document.getElementById('phases-table');
    const head = el('tr');
    for (const [text, cls] of [['#'], ['window', 'l'], ['begins at', 'l'], ['GILs: busy / contended', 'l'],
      ['threads that waited most: waiting % of their time, wait p50, io wait p50 (count)', 'l']]) {
      head.appendChild(el('th', cls || null, text));
    }
    const thead = el('thead');
    thead.appendChild(head);
    const tbody = el('tbody');
    phases.forEach((p, i) => {
      const tr = el('tr');
      tr.className = 'phase-row ' + (i % 2 ? 'odd' : 'even');
      const gils = (p.gils || []).filter((g) => g.busy_fraction > 0)
        .map((g) => 'GIL ' + g.id + ': ' + pct(g.busy_fraction) + ' / ' + pct(g.contended_fraction)).join('; ');
      const threads = (p.threads || []).filter((t) => t.waiting_fraction > 0)
        .sort((a, b) => b.waiting_fraction * b.lifetime_s - a.waiting_fraction * a.lifetime_s)
        .slice(0, PHASE_THREADS)
        .map((t) => (t.name || 'thread') + ' ' + pct(t.waiting_fraction) + ', p50 ' + fixed(t.wait_p50_ms, 3) +
          ' ms' + (t.io_waits ? ', io ' + fixed(t.io_wait_p50_ms, 3) + ' ms (' + t.io_waits + ')' : '')).join('; ');
      append(tr, el('td', null, String(i + 1)), el('td', 'l', fmtWindow(p.start_s, p.end_s)),
        el('td', 'l', p.source), el('td', 'l', gils || '\u2013'), el('td', 'l wrap', threads || 'nobody waited'));
      tbody.appendChild(tr);
    });
    append(table, thead, tbody);
  }

  /* A wait median the whole run hides (as report.txt stars it): the largest
   * median of a phase, or of the waits after blocking calls that found the
   * GIL held (20 at least), when it is 4 times the whole-run median and a
   * quarter of a switch interval. Returns a sentence, or ''. */
  function hiddenWait(report, i) {
    const t = report.threads[i];
    const phases = report.phases || [];
    let best = { ms: 0, text: '' };
    const consider = (row, where) => {
      if (row.wait_p50_ms > best.ms) best = { ms: row.wait_p50_ms, text: where };
      if (row.io_waits >= 20 && row.io_wait_p50_ms > best.ms) {
        best = { ms: row.io_wait_p50_ms, text: 'after blocking calls that found the GIL held' + (where ? ', ' + where : '') };
      }
    };
    if (phases.length > 1) {
      phases.forEach((p, k) => {
        const row = (p.threads || []).find((r) => r.thread === i);
        if (row) consider(row, 'in phase ' + (k + 1) + ' (' + fmtWindow(p.start_s, p.end_s) + ')');
      });
    }
    consider(t, '');
    const interval = (report.switch_interval_s || 0.005) * 1e3;
    if (best.ms < 4 * t.wait_p50_ms || best.ms < 0.25 * interval) return '';
    return threadName(t) + ': wait p50 ' + fixed(t.wait_p50_ms, 3) + ' ms over the run, but a median ' +
      fixed(best.ms, 3) + ' ms' + (best.text ? ' ' + best.text : '');
  }

  /* ------------------------------------------------------------ the model */

  /* Threads with more intervals than this get a pre-aggregated summary for
   * zoomed-out views (see buildSummary). */
  const SUMMARY_MIN_INTERVALS = 20000;

  /* Time holding and waiting per fixed bucket of the window, built once, so a
   * view where a pixel spans many buckets is drawn from the buckets (cost:
   * the pixels) instead of every interval. Only for threads on one GIL: the
   * GIL row then reuses the holding buckets. */
  function buildSummary(t, windowNs) {
    const buckets = Math.max(1024, Math.min(1 << 16, t.n >> 3));
    const bucketNs = windowNs / buckets;
    const hold = new Float32Array(buckets), wait = new Float32Array(buckets);
    for (let i = 0; i < t.n; i++) {
      const arr = (t.codes[i] & 0x80000000) ? hold : wait;
      let s = t.starts[i];
      const e = s + t.durs[i];
      for (let b = Math.floor(s / bucketNs); s < e && b < buckets; b++) {
        const edge = Math.min(e, (b + 1) * bucketNs);
        arr[b] += edge - s;
        s = edge;
      }
    }
    return { bucketNs, buckets, hold, wait };
  }

  function buildModel(report, tl) {
    const gilSlot = new Map();
    (report.gils || []).forEach((g, i) => gilSlot.set(g.id, i));
    /* GIL id (0..255) -> slot, -1 for an unknown GIL: a typed array, as the
     * draw loop looks it up once per interval. */
    const slotOfGil = new Int16Array(256).fill(-1);
    (report.gils || []).forEach((g, i) => { if (g.id < 256 && slotOfGil[g.id] < 0) slotOfGil[g.id] = i; });
    const threads = (tl.threads || []).map((row, i) => {
      const info = report.threads[i] || { name: '', native_id: 0 };
      const n = row.count;
      const t = {
        index: i,
        info,
        label: threadName(info),
        color: PALETTE[i % PALETTE.length],
        start: row.start_ns,
        end: row.end_ns,
        n,
        starts: n ? decode(row.starts, Float64Array) : new Float64Array(0),
        durs: n ? decode(row.durations, Float32Array) : new Float32Array(0),
        codes: n ? decode(row.codes, Uint32Array) : new Uint32Array(0),
        histogram: row.wait_histogram || [],
        slots: new Set(),
        marks: [],
        regions: [],
      };
      let unknown = false;
      for (let k = 0; k < n; k++) {
        const slot = slotOfGil[(t.codes[k] >>> 23) & 255];
        if (slot >= 0) t.slots.add(slot); else unknown = true;
      }
      t.summary = n > SUMMARY_MIN_INTERVALS && t.slots.size === 1 && !unknown
        ? buildSummary(t, Math.max(tl.window_ns, 1)) : null;
      return t;
    });
    const names = tl.marker_names || [];
    for (const m of tl.markers || []) {
      const t = threads[m[0]];
      if (!t) continue;
      const marker = { start: m[1], end: m[2], name: names[m[3]], region: m[4] === 1, depth: m[5], open: m[6] === 1 };
      (marker.region ? t.regions : t.marks).push(marker);
    }
    const phases = (report.phases || []).map((p) => ({ start: p.start_s * 1e9, end: p.end_s * 1e9, source: p.source }));
    return {
      gilSlot, slotOfGil, threads, sites: tl.sites || [], windowNs: Math.max(tl.window_ns, 1), gils: report.gils || [],
      phases,
    };
  }

  function siteText(model, code) {
    const s = model.sites[code & 0x7fffff];
    if (!s) return '<unknown>';
    if (!s[1]) return s[0];
    return s[0] + ' (' + s[1] + (s[2] > 0 ? ':' + s[2] : '') + ')';
  }

  /* Index of the last interval starting at or before t; -1 if none. */
  function lastStartAtOrBefore(starts, n, t) {
    let lo = 0, hi = n - 1, found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (starts[mid] <= t) { found = mid; lo = mid + 1; } else { hi = mid - 1; }
    }
    return found;
  }

  /* -------------------------------------------------------------- timeline */

  const LABEL_W = 220, AXIS_H = 26, ROW_H = 22, ROW_GAP = 5, GROUP_GAP = 12, PAD_R = 12, PAD_B = 10;

  function Timeline(model) {
    const canvas = document.getElementById('timeline');
    const wrap = document.getElementById('timeline-wrap');
    const tooltip = document.getElementById('tooltip');
    const ctx = canvas.getContext('2d');
    const rows = [];
    let y = AXIS_H + 6;
    model.gils.forEach((g, slot) => {
      const interp = model.gils.length > 1 || g.interpreter ? ' (interp ' + g.interpreter + ')' : '';
      rows.push({ kind: 'gil', slot, gil: g, y, label: 'GIL ' + g.id + interp });
      y += ROW_H + ROW_GAP;
    });
    if (rows.length) y += GROUP_GAP - ROW_GAP;
    for (const t of model.threads) {
      rows.push({ kind: 'thread', t, y, label: t.label });
      y += ROW_H + ROW_GAP;
    }
    const cssHeight = y - ROW_GAP + PAD_B;

    const view = { v0: 0, v1: model.windowNs };
    const minSpan = Math.min(1000, model.windowNs);
    let hover = null;
    let drag = null;
    let pending = false;
    let lastDrawMs = 0;
    let geometry = null;

    const G = model.gils.length;
    const holdingColor = rgba32(COLORS.holding), waitingColor = rgba32(COLORS.waiting);
    const releasedColor = rgba32(COLORS.released), white = rgba32('#ffffff');
    const threadColors = model.threads.map((t) => rgba32(t.color));

    /* Adds the part of [s, e) inside the view to per-column pixel fractions. */
    function accumulate(arr, s, e, v0, nsPerPx, cols) {
      const fs = (s - v0) / nsPerPx, fe = (e - v0) / nsPerPx;
      if (fe <= 0 || fs >= cols) return;
      const a = Math.max(fs, 0), b = Math.min(fe, cols);
      const p0 = Math.floor(a), p1 = Math.floor(b);
      if (p0 === p1) { arr[p0] += b - a; return; }
      arr[p0] += p0 + 1 - a;
      for (let p = p0 + 1; p < p1; p++) arr[p] += 1;
      if (p1 < cols) arr[p1] += b - p1;
    }

    function fillColumn(px, stride, x, yTop, height, from, to, color) {
      for (let yy = yTop + height - to; yy < yTop + height - from; yy++) px[yy * stride + x] = color;
    }

    function draw() {
      const t0 = performance.now();
      const dpr = window.devicePixelRatio || 1;
      const cssW = Math.max(wrap.clientWidth, LABEL_W + 100);
      canvas.style.height = cssHeight + 'px';
      canvas.width = Math.round(cssW * dpr);
      canvas.height = Math.round(cssHeight * dpr);
      const plotX = Math.round(LABEL_W * dpr);
      const cols = Math.max(1, canvas.width - plotX - Math.round(PAD_R * dpr));
      const plotY = Math.round(AXIS_H * dpr);
      const plotH = Math.max(1, canvas.height - plotY);
      geometry = { dpr, cssW, plotCssX: LABEL_W, plotCssW: cols / dpr };
      const v0 = view.v0, v1 = view.v1;
      const nsPerPx = (v1 - v0) / cols;

      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.fillStyle = '#ffffff';
      ctx.fillRect(0, 0, canvas.width, canvas.height);

      const img = ctx.createImageData(cols, plotH);
      const px = new Uint32Array(img.data.buffer);
      px.fill(white);
      const hold = new Float32Array(cols), wait = new Float32Array(cols), alive = new Float32Array(cols);
      /* Per GIL: this thread's holding per column (cur), anyone's waiting
       * (waitG), and how much of the GIL row's column is painted (stacked). */
      const cur = [], waitG = [], stacked = [];
      for (let g = 0; g < G; g++) {
        cur.push(new Float32Array(cols)); waitG.push(new Float32Array(cols)); stacked.push(new Float32Array(cols));
      }
      const rowPx = Math.round(ROW_H * dpr);
      const rowTop = (row) => Math.round(row.y * dpr) - plotY;
      const gilRowTop = rows.filter((r) => r.kind === 'gil').map(rowTop);

      let visible = 0;
      for (const row of rows) {
        if (row.kind !== 'thread') continue;
        const t = row.t;
        hold.fill(0); wait.fill(0); alive.fill(0);
        for (const g of t.slots) cur[g].fill(0);
        accumulate(alive, Math.max(t.start, v0), Math.min(t.end, v1), v0, nsPerPx, cols);
        const sum = t.summary;
        if (sum && nsPerPx >= 4 * sum.bucketNs) {
          /* Zoomed out: each bucket is at most a quarter pixel, so it goes
           * whole into the pixel holding its centre. */
          const slot = t.slots.values().next().value;
          const b0 = Math.max(0, Math.floor(v0 / sum.bucketNs));
          const b1 = Math.min(sum.buckets, Math.ceil(v1 / sum.bucketNs));
          const c = cur[slot], wg = waitG[slot];
          for (let b = b0; b < b1; b++) {
            const x = Math.floor(((b + 0.5) * sum.bucketNs - v0) / nsPerPx);
            if (x < 0 || x >= cols) continue;
            const h = sum.hold[b] / nsPerPx, w = sum.wait[b] / nsPerPx;
            hold[x] += h; c[x] += h; wait[x] += w; wg[x] += w;
          }
          visible += lastStartAtOrBefore(t.starts, t.n, v1) - Math.max(0, lastStartAtOrBefore(t.starts, t.n, v0)) + 1;
        } else {
          let i = Math.max(0, lastStartAtOrBefore(t.starts, t.n, v0));
          for (; i < t.n; i++) {
            const s = t.starts[i];
            if (s >= v1) break;
            const e = s + t.durs[i];
            if (e <= v0) continue;
            visible++;
            const code = t.codes[i];
            const slot = model.slotOfGil[(code >>> 23) & 255];
            if (code & 0x80000000) {
              accumulate(hold, s, e, v0, nsPerPx, cols);
              if (slot >= 0) accumulate(cur[slot], s, e, v0, nsPerPx, cols);
            } else {
              accumulate(wait, s, e, v0, nsPerPx, cols);
              if (slot >= 0) accumulate(waitG[slot], s, e, v0, nsPerPx, cols);
            }
          }
        }
        const top = rowTop(row);
        for (let x = 0; x < cols; x++) {
          const a = Math.min(alive[x], 1);
          if (a <= 0) continue;
          const h = Math.min(hold[x], a), w = Math.min(wait[x], a - h);
          const hp = Math.round(h * rowPx), wp = Math.round((h + w) * rowPx), ap = Math.max(Math.round(a * rowPx), wp);
          fillColumn(px, cols, x, top, rowPx, 0, hp, holdingColor);
          fillColumn(px, cols, x, top, rowPx, hp, wp, waitingColor);
          fillColumn(px, cols, x, top, rowPx, wp, ap, releasedColor);
        }
        /* The GIL rows stack each holder's share of the column in its colour:
         * one colour when zoomed in, the mix of holders when zoomed out. */
        for (const g of t.slots) {
          const c = cur[g], st = stacked[g], top = gilRowTop[g];
          for (let x = 0; x < cols; x++) {
            if (c[x] <= 0) continue;
            const from = Math.round(Math.min(st[x], 1) * rowPx);
            st[x] += c[x];
            const to = Math.max(from + (from === 0 ? 1 : 0), Math.round(Math.min(st[x], 1) * rowPx));
            fillColumn(px, cols, x, top, rowPx, from, to, threadColors[t.index]);
          }
        }
      }
      const stripPx = Math.max(2, Math.round(3 * dpr));
      for (let g = 0; g < G; g++) {
        const top = gilRowTop[g];
        for (let x = 0; x < cols; x++) {
          if (waitG[g][x] > 0) fillColumn(px, cols, x, top, rowPx, rowPx - stripPx, rowPx, waitingColor);
        }
      }
      ctx.putImageData(img, plotX, plotY);

      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      drawPhases(v0, v1);
      drawAxis(v0, v1);
      drawMarkers(v0, v1);
      drawLabels();
      if (hover) drawCursor(hover.x);
      lastDrawMs = performance.now() - t0;
      const foot = document.getElementById('timeline-foot');
      foot.textContent = 'Showing ' + fmtNs(v0) + ' to ' + fmtNs(v1) + ' (' +
        fmtNs(v1 - v0) + ', ' + fmtNs(nsPerPx * dpr) + ' per pixel): ' + visible.toLocaleString() +
        ' intervals aggregated per pixel, drawn in ' + lastDrawMs.toFixed(0) + ' ms.';
      return visible;
    }

    function xOf(ns) { return LABEL_W + (ns - view.v0) / (view.v1 - view.v0) * geometry.plotCssW; }

    function drawAxis(v0, v1) {
      const span = v1 - v0;
      const target = span / Math.max(2, geometry.plotCssW / 110);
      const pow = Math.pow(10, Math.floor(Math.log10(target)));
      let step = pow;
      for (const m of [1, 2, 5, 10]) { if (m * pow >= target) { step = m * pow; break; } }
      ctx.font = '11px system-ui, sans-serif';
      ctx.textBaseline = 'middle';
      ctx.textAlign = 'center';
      ctx.fillStyle = COLORS.muted;
      const bottom = cssHeight - PAD_B;
      for (let tick = Math.ceil(v0 / step) * step; tick <= v1; tick += step) {
        const x = xOf(tick);
        ctx.fillStyle = COLORS.grid;
        ctx.fillRect(Math.round(x), AXIS_H - 4, 1, bottom - AXIS_H + 4);
        ctx.fillStyle = COLORS.muted;
        ctx.fillText(fmtAxis(tick, step), x, AXIS_H / 2);
      }
      ctx.fillStyle = COLORS.line;
      ctx.fillRect(0, AXIS_H - 1, geometry.cssW, 1);
    }

    /* Phases (when there are several): every other one shaded, each edge a
     * line across the rows, and the phase's number on the axis band. */
    function drawPhases(v0, v1) {
      if (model.phases.length <= 1) return;
      ctx.save();
      ctx.beginPath();
      ctx.rect(LABEL_W, 0, geometry.plotCssW, cssHeight);
      ctx.clip();
      ctx.font = '600 10px system-ui, sans-serif';
      ctx.textBaseline = 'top';
      ctx.textAlign = 'left';
      model.phases.forEach((p, i) => {
        if (p.end < v0 || p.start > v1) return;
        const x0 = xOf(Math.max(p.start, v0)), x1 = xOf(Math.min(p.end, v1));
        if (i % 2 === 1) {
          ctx.fillStyle = COLORS.phaseShade;
          ctx.fillRect(x0, AXIS_H, x1 - x0, cssHeight - AXIS_H - PAD_B);
        }
        if (i > 0 && p.start >= v0) {
          ctx.fillStyle = COLORS.phaseEdge;
          ctx.fillRect(Math.round(xOf(p.start)), 0, 1, cssHeight - PAD_B);
        }
        ctx.fillStyle = COLORS.phaseEdge;
        if (x1 - x0 > 24) ctx.fillText('phase ' + (i + 1), x0 + 3, 1);
      });
      ctx.restore();
    }

    function drawMarkers(v0, v1) {
      ctx.save();
      ctx.beginPath();
      ctx.rect(LABEL_W, AXIS_H, geometry.plotCssW, cssHeight - AXIS_H);
      ctx.clip();
      ctx.fillStyle = COLORS.marker;
      for (const row of rows) {
        if (row.kind !== 'thread') continue;
        for (const r of row.t.regions) {
          if (r.end < v0 || r.start > v1) continue;
          const x0 = xOf(r.start), x1 = Math.max(xOf(r.end), x0 + 1);
          ctx.globalAlpha = 0.85;
          ctx.fillRect(x0, row.y - 1 + 3 * Math.min(r.depth, 3), x1 - x0, 3);
        }
        ctx.globalAlpha = 1;
        let lastX = -10;
        for (const m of row.t.marks) {
          if (m.start < v0 || m.start > v1) continue;
          const x = xOf(m.start);
          if (x - lastX < 2) continue;
          lastX = x;
          ctx.fillRect(Math.round(x), row.y - 2, 1.5, ROW_H + 2);
          ctx.beginPath();
          ctx.moveTo(x - 4, row.y - 4);
          ctx.lineTo(x + 4.75, row.y - 4);
          ctx.lineTo(x + 0.75, row.y + 2);
          ctx.closePath();
          ctx.fill();
        }
      }
      ctx.restore();
    }

    function drawLabels() {
      ctx.fillStyle = COLORS.labelBg;
      ctx.fillRect(0, AXIS_H, LABEL_W - 8, cssHeight - AXIS_H);
      ctx.textAlign = 'left';
      ctx.textBaseline = 'middle';
      for (const row of rows) {
        const mid = row.y + ROW_H / 2;
        let x = 10;
        if (row.kind === 'thread') {
          ctx.fillStyle = row.t.color;
          ctx.fillRect(x, mid - 5, 10, 10);
          x += 16;
        }
        ctx.font = (row.kind === 'gil' ? '600 ' : '') + '12px system-ui, sans-serif';
        ctx.fillStyle = COLORS.label;
        const sub = row.kind === 'thread' ? ' ' + row.t.info.native_id : '';
        const room = LABEL_W - 14 - x;
        let text = row.label;
        const subWidth = ctx.measureText(sub).width;
        if (ctx.measureText(text).width + subWidth > room) {
          while (text.length > 1 && ctx.measureText(text + '\u2026').width + subWidth > room) text = text.slice(0, -1);
          text += '\u2026';
        }
        ctx.fillText(text, x, mid);
        if (sub) {
          const after = x + ctx.measureText(text).width + 2;
          ctx.fillStyle = COLORS.muted;
          ctx.font = '11px system-ui, sans-serif';
          ctx.fillText(sub, after, mid);
        }
      }
    }

    function drawCursor(x) {
      if (x < LABEL_W || x > LABEL_W + geometry.plotCssW) return;
      ctx.fillStyle = 'rgba(29,35,48,0.55)';
      ctx.fillRect(Math.round(x), AXIS_H, 1, cssHeight - AXIS_H - PAD_B);
    }

    function schedule() {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => { pending = false; draw(); if (hover) showTooltip(); });
    }

    function clampView() {
      let span = Math.max(view.v1 - view.v0, minSpan);
      span = Math.min(span, model.windowNs);
      let v0 = Math.max(0, Math.min(view.v0, model.windowNs - span));
      view.v0 = v0;
      view.v1 = v0 + span;
    }

    function timeAt(cssX) { return view.v0 + (cssX - LABEL_W) / geometry.plotCssW * (view.v1 - view.v0); }

    function zoom(factor, cssX) {
      const anchor = cssX === undefined ? (view.v0 + view.v1) / 2 : timeAt(cssX);
      view.v0 = anchor - (anchor - view.v0) * factor;
      view.v1 = anchor + (view.v1 - anchor) * factor;
      clampView();
      schedule();
    }

    function rowAt(cssY) {
      for (const row of rows) if (cssY >= row.y - 3 && cssY < row.y + ROW_H + 2) return row;
      return null;
    }

    /* Time in each state over [a, b) for one thread, and how many intervals. */
    function mix(t, a, b) {
      let hold = 0, wait = 0, count = 0;
      const lo = Math.max(a, t.start), hi = Math.min(b, t.end);
      if (hi <= lo) return null;
      for (let i = Math.max(0, lastStartAtOrBefore(t.starts, t.n, lo)); i < t.n && count < 200000; i++) {
        const s = t.starts[i];
        if (s >= hi) break;
        const e = s + t.durs[i];
        const d = Math.min(e, hi) - Math.max(s, lo);
        if (d <= 0) continue;
        count++;
        if (t.codes[i] & 0x80000000) hold += d; else wait += d;
      }
      const total = hi - lo;
      return { hold: hold / total, wait: wait / total, released: Math.max(0, 1 - (hold + wait) / total), count, total };
    }

    function tooltipLines(row, cssX, time) {
      const lines = [];
      const pixelNs = (view.v1 - view.v0) / geometry.plotCssW;
      if (row.kind === 'thread') {
        const t = row.t;
        lines.push(['title', t.label + ' (' + t.info.native_id + ')']);
        if (time < t.start || time >= t.end) {
          lines.push(['state', 'not running']);
        } else {
          const i = lastStartAtOrBefore(t.starts, t.n, time);
          if (i >= 0 && time < t.starts[i] + t.durs[i]) {
            const holding = (t.codes[i] & 0x80000000) !== 0;
            lines.push(['state', holding ? 'holding the GIL' : 'waiting for the GIL']);
            lines.push(['start', fmtNs(t.starts[i])]);
            lines.push(['end', fmtNs(t.starts[i] + t.durs[i])]);
            lines.push(['duration', fmtNs(t.durs[i])]);
            lines.push(['GIL', String((t.codes[i] >>> 23) & 255)]);
            if (holding) lines.push(['function', siteText(model, t.codes[i])]);
          } else {
            const from = i >= 0 ? t.starts[i] + t.durs[i] : t.start;
            const to = i + 1 < t.n ? t.starts[i + 1] : t.end;
            lines.push(['state', 'released (not using the GIL)']);
            lines.push(['start', fmtNs(from)]);
            lines.push(['end', fmtNs(to)]);
            lines.push(['duration', fmtNs(to - from)]);
            if (i >= 0 && (t.codes[i] & 0x80000000)) lines.push(['released at', siteText(model, t.codes[i])]);
          }
          const m = mix(t, time - pixelNs / 2, time + pixelNs / 2);
          if (m && m.count > 1) {
            lines.push(['this pixel', fmtNs(m.total) + ': holding ' + pct(m.hold) + ', waiting ' + pct(m.wait) +
              ', released ' + pct(m.released) + ' (' + m.count + ' intervals)']);
          }
        }
        for (const r of t.regions) {
          if (time >= r.start && time <= r.end) {
            lines.push(['region', r.name + ' (' + fmtNs(r.end - r.start) + (r.open ? ', still open' : '') + ')']);
          }
        }
        for (const mk of t.marks) {
          if (Math.abs(xOf(mk.start) - cssX) <= 4) lines.push(['marker', mk.name + ' at ' + fmtNs(mk.start)]);
        }
      } else {
        const slot = row.slot;
        lines.push(['title', row.label]);
        let holder = null, waiting = 0;
        for (const t of model.threads) {
          if (!t.slots.has(slot)) continue;
          const i = lastStartAtOrBefore(t.starts, t.n, time);
          if (i < 0 || time >= t.starts[i] + t.durs[i]) continue;
          if (model.gilSlot.get((t.codes[i] >>> 23) & 255) !== slot) continue;
          if (t.codes[i] & 0x80000000) holder = { t, i }; else waiting++;
        }
        if (holder) {
          const t = holder.t, i = holder.i;
          lines.push(['held by', t.label + ' (' + t.info.native_id + ')']);
          lines.push(['start', fmtNs(t.starts[i])]);
          lines.push(['end', fmtNs(t.starts[i] + t.durs[i])]);
          lines.push(['duration', fmtNs(t.durs[i])]);
          lines.push(['function', siteText(model, t.codes[i])]);
        } else {
          lines.push(['held by', 'nobody']);
        }
        lines.push(['waiting', waiting + (waiting === 1 ? ' thread' : ' threads')]);
      }
      if (model.phases.length > 1) {
        const i = model.phases.findIndex((p) => time >= p.start && time < p.end);
        if (i >= 0) {
          const p = model.phases[i];
          lines.push(['phase', (i + 1) + ' of ' + model.phases.length + ', ' + fmtNs(p.start) + ' to ' + fmtNs(p.end) +
            ' (' + p.source + ')']);
        }
      }
      return lines;
    }

    function showTooltip() {
      if (!hover || !geometry) return;
      const row = rowAt(hover.y);
      if (!row || hover.x < LABEL_W || hover.x > LABEL_W + geometry.plotCssW) {
        tooltip.hidden = true;
        return;
      }
      const time = timeAt(hover.x);
      tooltip.textContent = '';
      for (const [key, value] of tooltipLines(row, hover.x, time)) {
        if (key === 'title') {
          tooltip.appendChild(el('div', 't-title', value));
          continue;
        }
        const line = el('div', 't-row');
        append(line, el('span', 't-key', key), el('span', 't-val', value));
        tooltip.appendChild(line);
      }
      const at = el('div', 't-row');
      append(at, el('span', 't-key', 'time'), el('span', 't-val', fmtNs(time) + ' into the run'));
      tooltip.appendChild(at);
      tooltip.hidden = false;
      const w = tooltip.offsetWidth, h = tooltip.offsetHeight;
      let left = hover.x + 14, top = hover.y + 14;
      if (left + w > geometry.cssW - 4) left = hover.x - w - 14;
      if (top + h > cssHeight) top = Math.max(0, hover.y - h - 14);
      tooltip.style.left = Math.max(0, left) + 'px';
      tooltip.style.top = top + 'px';
    }

    function local(e) {
      const r = canvas.getBoundingClientRect();
      return { x: e.clientX - r.left, y: e.clientY - r.top };
    }

    canvas.addEventListener('wheel', (e) => {
      const p = local(e);
      if (p.x < LABEL_W) return;
      e.preventDefault();
      const unit = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? 400 : 1;
      if (Math.abs(e.deltaX) > Math.abs(e.deltaY) || e.shiftKey) {
        const d = (e.shiftKey ? e.deltaY : e.deltaX) * unit;
        const shift = d / geometry.plotCssW * (view.v1 - view.v0);
        view.v0 += shift; view.v1 += shift;
        clampView();
        schedule();
      } else {
        zoom(Math.exp(e.deltaY * unit * 0.002), p.x);
      }
    }, { passive: false });
    canvas.addEventListener('pointerdown', (e) => {
      const p = local(e);
      if (p.x < LABEL_W) return;
      drag = { x: p.x, v0: view.v0, v1: view.v1 };
      canvas.setPointerCapture(e.pointerId);
      canvas.classList.add('dragging');
    });
    canvas.addEventListener('pointermove', (e) => {
      const p = local(e);
      hover = p;
      if (drag) {
        const shift = (drag.x - p.x) / geometry.plotCssW * (drag.v1 - drag.v0);
        view.v0 = drag.v0 + shift; view.v1 = drag.v1 + shift;
        clampView();
      }
      schedule();
    });
    const endDrag = () => { drag = null; canvas.classList.remove('dragging'); };
    canvas.addEventListener('pointerup', endDrag);
    canvas.addEventListener('pointercancel', endDrag);
    canvas.addEventListener('pointerleave', () => { hover = null; tooltip.hidden = true; schedule(); });
    const reset = () => { view.v0 = 0; view.v1 = model.windowNs; schedule(); };
    canvas.addEventListener('dblclick', reset);
    document.getElementById('zoom-in').addEventListener('click', () => zoom(0.5));
    document.getElementById('zoom-out').addEventListener('click', () => zoom(2));
    document.getElementById('zoom-reset').addEventListener('click', reset);
    if (typeof ResizeObserver === 'function') new ResizeObserver(schedule).observe(wrap);
    else window.addEventListener('resize', schedule);

    return {
      rows,
      draw,
      lastDrawMs: () => lastDrawMs,
    };
  }

  function renderLegend() {
    const legend = document.getElementById('timeline-legend');
    const item = (color, text) => append(el('span', 'item'), swatch(color), text);
    append(legend, item(COLORS.holding, 'holding the GIL'), item(COLORS.waiting, 'waiting for it'),
      item(COLORS.released, 'released (I/O, sleep, C code)'), item(COLORS.marker, 'marker / region'),
      el('span', 'item', 'GIL rows: coloured by the holding thread, amber strip where threads waited'));
  }

  /* ---------------------------------------------------------------- tables */

  function renderThreads(report, model) {
    const table = document.getElementById('threads-table');
    const several = (report.gils || []).length > 1;
    const head = el('tr');
    const columns = [['Thread', 'l'], ['native id'], several ? ['GIL'] : null, ['lifetime'],
      ['time split', 'l'], ['held'], ['waiting'], ['released'], ['CPU'],
      ['acquired'], ['forced / vol.'], ['wait p50 ms'], ['p99 ms'], ['max ms'], ['held longest in', 'l']];
    for (const c of columns) if (c) head.appendChild(el('th', c[1] || null, c[0]));
    const thead = el('thead');
    thead.appendChild(head);
    const tbody = el('tbody');
    const notes = [];
    (report.threads || []).forEach((t, i) => {
      const tr = el('tr');
      const hidden = hiddenWait(report, i);
      const p50 = el('td', null, fixed(t.wait_p50_ms, 3) + (hidden ? '*' : ''));
      if (hidden) {
        p50.title = hidden;
        p50.className = 'hidden-wait';
        notes.push('* ' + hidden);
      }
      const name = el('td', 'l name');
      append(name, swatch(model.threads[i] ? model.threads[i].color : '#999'), ' ', threadName(t));
      name.title = threadName(t);
      const life = t.lifetime_s > 0 ? t.lifetime_s : 1;
      const split = el('div', 'split');
      for (const [value, color] of [[t.held_s, COLORS.holding], [t.waiting_s, COLORS.waiting]]) {
        const part = el('span');
        part.style.width = (100 * value / life) + '%';
        part.style.background = color;
        split.appendChild(part);
      }
      const splitCell = el('td', 'l');
      splitCell.appendChild(split);
      const top = (t.held_by_function || [])[0];
      const topCell = el('td', 'l fn', top ? top.function : '\u2013');
      if (top) topCell.title = top.function + ' (' + top.file + ':' + top.line + ')';
      append(tr, name, el('td', null, t.native_id), several ? el('td', null, t.gil === null ? '\u2013' : t.gil) : null,
        el('td', null, fmtS(t.lifetime_s)), splitCell,
        el('td', null, pct(t.held_s / life)), el('td', null, pct(t.waiting_s / life)),
        el('td', null, pct(t.released_s / life)), el('td', null, t.cpu_s === null ? '\u2013' : fmtS(t.cpu_s)),
        el('td', null, t.acquisitions), el('td', null, t.forced_releases + ' / ' + t.voluntary_releases),
        p50, el('td', null, fixed(t.wait_p99_ms, 3)),
        el('td', null, fixed(t.wait_max_ms, 3)), topCell);
      tbody.appendChild(tr);
    });
    append(table, thead, tbody);
    const box = document.getElementById('threads-notes');
    for (const note of notes) box.appendChild(el('p', 'note', note));
  }

  function siteTable(rows, key, total, color) {
    const table = el('table', 'sites');
    const tbody = el('tbody');
    for (const r of rows.slice(0, 8)) {
      const tr = el('tr');
      const fn = el('td', 'l fn');
      append(fn, r.function, el('span', 'muted-file', r.file ? '  ' + r.file + (r.line > 0 ? ':' + r.line : '') : ''));
      fn.title = r.function + (r.file ? ' (' + r.file + (r.line > 0 ? ':' + r.line : '') + ')' : '');
      const barCell = el('td', 'bar');
      const bar = el('div', 'b');
      bar.style.width = (total > 0 ? Math.max(2, 100 * r[key] / total) : 0) + '%';
      bar.style.background = color;
      barCell.appendChild(bar);
      append(tr, fn, el('td', 't', fmtS(r[key])), barCell);
      tbody.appendChild(tr);
    }
    if (rows.length > 8) {
      const tr = el('tr');
      const more = el('td', 'l', '\u2026 and ' + (rows.length - 8) + ' more (see report.json)');
      more.colSpan = 3;
      tr.appendChild(more);
      tbody.appendChild(tr);
    }
    table.appendChild(tbody);
    return table;
  }

  /* 1-2-5 bucket edges as short labels: 1\u00b5s, 20ms, 1s. */
  function shortNs(ns) {
    if (ns >= 1e9) return (ns / 1e9) + 's';
    if (ns >= 1e6) return (ns / 1e6) + 'ms';
    if (ns >= 1e3) return (ns / 1e3) + '\u00b5s';
    return ns + 'ns';
  }

  function histogramLabel(edges, b) {
    const f = shortNs;
    if (b === 0) return '< ' + f(edges[0]);
    if (b >= edges.length) return '\u2265 ' + f(edges[edges.length - 1]);
    return f(edges[b - 1]) + '\u2013' + f(edges[b]);
  }

  function histogram(counts, edges) {
    const wrap = el('div');
    const bars = el('div', 'hist');
    const axis = el('div', 'hist-axis');
    const max = Math.max(1, ...counts);
    counts.forEach((c, b) => {
      const col = el('div', 'col');
      const bar = el('div', 'bar' + (c === 0 ? ' zero' : ''));
      bar.style.height = (c === 0 ? 0 : Math.max(3, 100 * c / max)) + '%';
      col.title = histogramLabel(edges, b) + ': ' + c + (c === 1 ? ' wait' : ' waits');
      col.appendChild(bar);
      bars.appendChild(col);
      /* Label the decades only, at their bucket's lower edge: 1us ... 1s. */
      const lower = b === 0 ? 0 : edges[b - 1];
      const decade = b > 0 && Math.abs(Math.log10(lower) - Math.round(Math.log10(lower))) < 1e-9;
      axis.appendChild(el('span', null, decade ? shortNs(lower) : ''));
    });
    append(wrap, bars, axis);
    return wrap;
  }

  function renderThreadCards(report, model, edges) {
    const box = document.getElementById('thread-cards');
    (report.threads || []).forEach((t, i) => {
      const card = el('div', 'tcard');
      const title = el('div', 'tname');
      append(title, swatch(model.threads[i] ? model.threads[i].color : '#999'), ' ', threadName(t),
        el('span', 'tsub', '  native id ' + t.native_id));
      const sub = el('div', 'tsub', 'held ' + fmtS(t.held_s) + ' \u00b7 waited ' + fmtS(t.waiting_s) +
        ' \u00b7 released ' + fmtS(t.released_s) + (t.cpu_s === null ? '' : ' \u00b7 CPU ' + fmtS(t.cpu_s)));
      append(card, title, sub);
      const held = t.held_by_function || [], released = t.released_at || [];
      card.appendChild(el('h3', null, 'Held the GIL in'));
      card.appendChild(held.length ? siteTable(held, 'held_s', t.held_s, COLORS.holding)
        : el('p', 'none', 'No hold recorded.'));
      card.appendChild(el('h3', null, 'Released the GIL at (voluntary releases)'));
      card.appendChild(released.length ? siteTable(released, 'released_s', t.released_s, '#adb5bd')
        : el('p', 'none', 'No voluntary release recorded.'));
      const counts = model.threads[i] ? model.threads[i].histogram : [];
      const completed = counts.reduce((a, b) => a + b, 0);
      card.appendChild(el('h3', null, 'Wait for the GIL: ' + completed + ' completed waits' +
        (completed ? ', p50 ' + fixed(t.wait_p50_ms, 3) + ' ms, p99 ' + fixed(t.wait_p99_ms, 3) + ' ms' : '')));
      card.appendChild(completed ? histogram(counts, edges) : el('p', 'none', 'It never waited.'));
      box.appendChild(card);
    });
  }

  function renderNotes(report) {
    const glossary = document.getElementById('glossary');
    const terms = [
      ['holding', 'the thread owned the GIL and could run Python code.'],
      ['waiting', 'it asked for the GIL and was blocked until another thread let go.'],
      ['released', 'it did not need the GIL: sleep, blocking I/O, C code that released it.'],
      ['forced / voluntary', 'gave the GIL up because another thread asked (after the switch interval) / ' +
        'on its own (a blocking call).'],
      ['held longest in', 'the Python function running when the thread let go of the GIL, summed over its holds.'],
      ['GIL tax', 'waiting time summed over threads; the ideal wall time replays the run as if each GIL\u2019s ' +
        'runnable threads had run in parallel on the available cores.'],
    ];
    for (const [term, text] of terms) append(glossary, el('dt', null, term), el('dd', null, text));
    const meta = document.getElementById('meta');
    const ev = report.events || {};
    append(meta, 'gilscope ' + (report.gilscope_version || '') + ' \u00b7 CPython ' + report.python.version +
      ' \u00b7 ' + (ev.recorded || 0).toLocaleString() + ' events recorded, ');
    append(meta, ev.dropped ? el('span', 'warn', ev.dropped.toLocaleString() + ' dropped: figures may be off')
      : (ev.dropped || 0) + ' dropped');
    if (ev.gils_lost) {
      append(meta, ' \u00b7 ', el('span', 'warn', ev.gils_lost.toLocaleString() +
        (ev.gils_lost === 1 ? ' GIL' : ' GILs') + ' not recorded (too many interpreters): their events are missing'));
    }
    const merged = report.timeline && report.timeline.aggregated;
    if (report.trace) {
      append(meta, ' \u00b7 trace.json: ' + report.trace.events.toLocaleString() + ' events' +
        (report.trace.aggregated ? ' (aggregated to stay loadable: ' + report.trace.reason +
          (merged ? ')' : '; this page shows every interval)') : ''));
    }
    if (merged) {
      append(meta, ' \u00b7 timeline aggregated: the run is too long to keep every interval, so intervals shorter than ' +
        fmtNs(report.timeline.merge_below_s * 1e9) + ' are merged into their neighbours ' +
        '(every figure still counts every event)');
    }
  }

  /* ------------------------------------------------------------------ main */

  function main() {
    const data = JSON.parse(document.getElementById('gilscope-data').textContent);
    const report = data.report, tl = data.timeline;
    document.title = 'gilscope: ' + report.script;
    renderHeader(report);
    renderSummary(report);
    renderFindings(report);
    renderPhases(report);
    renderLegend();
    const model = buildModel(report, tl);
    renderThreads(report, model);
    renderThreadCards(report, model, tl.histogram_edges_ns || []);
    renderNotes(report);
    const timeline = Timeline(model);
    const visible = timeline.draw();
    const gilRows = timeline.rows.filter((r) => r.kind === 'gil').length;
    body.setAttribute('data-timeline-rows', String(timeline.rows.length));
    body.setAttribute('data-gil-rows', String(gilRows));
    body.setAttribute('data-thread-rows', String(timeline.rows.length - gilRows));
    body.setAttribute('data-phases', String(model.phases.length));
    body.setAttribute('data-intervals-drawn', String(visible));
    body.setAttribute('data-draw-ms', timeline.lastDrawMs().toFixed(1));
    /* Frames as a pan or zoom draws them (the first one also pays for canvas
     * and font set-up, and garbage from decoding may be collected in the next
     * few): the fastest of three. */
    let redraw = Infinity;
    for (let k = 0; k < 3; k++) {
      timeline.draw();
      redraw = Math.min(redraw, timeline.lastDrawMs());
    }
    body.setAttribute('data-redraw-ms', redraw.toFixed(1));
    /* From navigation start to here: parsing the page and its data included. */
    body.setAttribute('data-ready-ms', performance.now().toFixed(0));
    if (body.getAttribute('data-timeline') !== 'error') body.setAttribute('data-timeline', 'drawn');
  }

  try {
    main();
  } catch (e) {
    fail(e && e.stack ? e.stack : String(e));
  }
})();
