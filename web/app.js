/* app.js -- the page at `/`: a playground for the served model and a live
 * view of /metrics. It calls the server's public API only (relative URLs,
 * so it also works behind a proxy under a prefix). The API key, when the
 * server needs one, lives in the variable below and nowhere else: not in
 * the URL, not in storage. */
'use strict';

let apiKey = '';
let card = null;        /* /v1/models data[0] */
const DIGITS = 3;       /* printed precision of the similarities */

const $ = (id) => document.getElementById(id);

/* An element: h('td', {className: 'x', title: 't'}, 'text', child, ...). */
function h(tag, props, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === 'dataset') Object.assign(e.dataset, v);
    else e[k] = v;
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}

/* ---- the API ------------------------------------------------------------ */

class ApiError extends Error {
  constructor(status, msg) { super(msg); this.status = status; }
}

async function api(path, body) {
  const headers = {};
  if (body) headers['Content-Type'] = 'application/json';
  if (apiKey) headers['Authorization'] = 'Bearer ' + apiKey;
  let r;
  try {
    r = await fetch(path, {method: body ? 'POST' : 'GET', headers, cache: 'no-store',
                           body: body ? JSON.stringify(body) : undefined});
  } catch (e) {
    throw new ApiError(0, 'The server did not answer (' + e.message + ').');
  }
  const text = await r.text();
  let j = null;
  try { j = JSON.parse(text); } catch (e) { /* not JSON */ }
  if (!r.ok) {
    let msg = (j && (j.detail || (j.error && j.error.message) || j.error)) || text || r.statusText;
    if (r.status === 401) {
      showAuth(true);
      msg += apiKey ? ' The key in the field above was refused.'
                    : ' This server needs an API key: enter it in the field above.';
    }
    throw new ApiError(r.status, r.status + (j && j.code ? ' ' + j.code : '') + ': ' + msg);
  }
  return j;
}

function showError(msg) {
  const e = $('error');
  e.textContent = msg || '';
  e.hidden = !msg;
}

function showAuth(on) {
  $('auth').hidden = !on;
}

/* ---- the model card and the pickers ------------------------------------- */

async function loadCard() {
  try {
    const j = await api('v1/models');
    card = j.data[0];
  } catch (e) {
    $('model-name').textContent = e.status === 401 ? 'model card: needs the API key'
                                                   : 'model card unavailable: ' + e.message;
    if (e.status === 503) setTimeout(loadCard, 2000); /* still loading */
    renderCard();
    return;
  }
  $('model-name').textContent = card.id + ' · ' + card.dimensions + ' dimensions · ' +
                                card.context_length + ' tokens';
  fillPickers();
  renderCard();
}

function option(value, text) {
  return h('option', {value, textContent: text});
}

function fillPickers() {
  const tasks = card ? card.tasks || [] : [];
  const pairs = document.querySelector('input[name=mode]:checked').value === 'pairs';
  const canPair = tasks.includes('retrieval.query') && tasks.includes('retrieval.passage');
  for (const id of ['taskA', 'taskB']) {
    const sel = $(id), old = sel.value;
    sel.replaceChildren();
    if (pairs && canPair) sel.append(option('retrieval', 'retrieval (pair)'));
    for (const t of tasks) sel.append(option(t, t));
    sel.append(option('', 'none (no adapter)'));
    /* a choice the user made stays; the first fill with the card's tasks
     * picks the usual task of the mode */
    if (sel.dataset.filled && [...sel.options].some((o) => o.value === old)) sel.value = old;
    else if (id === 'taskA' && pairs && canPair) sel.value = 'retrieval';
    else sel.value = tasks.includes('text-matching') ? 'text-matching' : '';
    if (tasks.length) sel.dataset.filled = '1';
  }
  const dims = card ? (card.matryoshka_dimensions || []).slice() : [];
  if (card && !dims.includes(card.dimensions)) dims.push(card.dimensions);
  dims.sort((a, b) => b - a);
  for (const id of ['dimsA', 'dimsB']) {
    const sel = $(id), old = sel.value;
    sel.replaceChildren(...dims.map((d) => option(String(d), String(d))));
    if (!dims.length) sel.append(option('', 'model default'));
    if ([...sel.options].some((o) => o.value === old)) sel.value = old;
  }
}

/* ---- the playground ----------------------------------------------------- */

const lines = (id) => $(id).value.split('\n').map((s) => s.trim()).filter((s) => s.length);

/* Tasks for the query side and the passage side of a picker value. */
function sides(task) {
  if (task === 'retrieval') return ['retrieval.query', 'retrieval.passage'];
  return [task || null, task || null];
}

async function embed(texts, task, dims, late, truncate) {
  const body = {input: texts, late_chunking: late, truncate};
  if (card) body.model = card.id;
  if (dims) body.dimensions = dims;
  if (task) body.task = task;
  const j = await api('v1/embeddings', body);
  return j.data.sort((a, b) => a.index - b.index).map((d) => d.embedding);
}

async function tokenize(texts, task, truncate) {
  const body = {input: texts, return_pieces: true, truncate};
  if (task) body.task = task;
  const withTask = await api('v1/tokenize', body);
  let plain = null;
  if (task) {
    delete body.task;
    plain = await api('v1/tokenize', body);
  }
  return withTask.data.sort((a, b) => a.index - b.index).map((d, i) => {
    /* the task prefix: the pieces after <s> that the same text without a
     * task does not have (only when the rest matches exactly) */
    let prefix = 0;
    if (plain) {
      const p = plain.data.find((x) => x.index === d.index);
      const k = d.pieces.length - p.pieces.length;
      if (k > 0 && d.pieces.slice(k + 1).join('\u0000') === p.pieces.slice(1).join('\u0000'))
        prefix = k;
    }
    return {text: texts[i], n: d.n_tokens, pieces: d.pieces, prefix};
  });
}

function cosine(a, b) {
  let d = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    d += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return d / Math.sqrt(na * nb);
}

/* Diverging colour scale: -1 blue, 0 white, +1 red. */
function heatColour(v) {
  const t = Math.max(-1, Math.min(1, v));
  const lo = [33, 102, 172], mid = [247, 247, 247], hi = [178, 24, 43];
  const to = t < 0 ? lo : hi, a = Math.abs(t);
  const c = mid.map((m, i) => Math.round(m + (to[i] - m) * a));
  return 'rgb(' + c.join(',') + ')';
}

function short(s, n) {
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}

async function runOne(cfg) {
  const [qTask, pTask] = sides(cfg.task);
  const late = $('late').checked, truncate = $('truncate').checked;
  let Q, P, qEmb, pEmb, qTok, pTok;
  if (cfg.mode === 'pairs') {
    Q = lines('queries');
    P = lines('passages');
    /* late chunking joins the passages into one document; queries stay on their own */
    [qEmb, pEmb, qTok, pTok] = await Promise.all([
      embed(Q, qTask, cfg.dims, false, truncate), embed(P, pTask, cfg.dims, late, truncate),
      tokenize(Q, qTask, truncate), tokenize(P, pTask, truncate)]);
  } else {
    Q = P = lines('texts');
    [qEmb, qTok] = await Promise.all([embed(Q, qTask, cfg.dims, late, truncate),
                                      tokenize(Q, qTask, truncate)]);
    pEmb = qEmb;
    pTok = null;
  }
  const sim = qEmb.map((q) => pEmb.map((p) => cosine(q, p)));
  return {cfg, Q, P, sim, qTok, pTok, qTask, pTask, late};
}

function renderRun(run, key) {
  const {cfg, Q, P, sim} = run;
  const same = cfg.mode === 'lines';
  const taskName = cfg.task === 'retrieval' ? 'retrieval.query → retrieval.passage'
                                            : cfg.task || 'no task';
  const col = h('div', {className: 'run', dataset: {run: key}});
  col.append(h('h3', {}, 'Run ' + key + ': ', h('span', {className: 'k'}, taskName), ' · ',
               h('span', {className: 'k'}, cfg.dims + ' dims'),
               run.late ? ' · late chunking' : ''));

  const table = h('table', {className: 'heat', dataset: {run: key}});
  const head = h('tr', {}, h('th', {className: 'corner', textContent: same ? '' : 'query \\ passage'}));
  P.forEach((p, j) => head.append(h('th', {scope: 'col', title: p, textContent: (same ? 'T' : 'P') + (j + 1)})));
  table.append(h('thead', {}, head));
  const body = h('tbody');
  sim.forEach((row, i) => {
    const tr = h('tr', {}, h('th', {scope: 'row', title: Q[i], className: 'rowh'},
                             h('span', {className: 'idx'}, (same ? 'T' : 'Q') + (i + 1)), ' ',
                             h('span', {className: 'txt'}, short(Q[i], 28))));
    row.forEach((v, j) => {
      const td = h('td', {textContent: v.toFixed(DIGITS), title: Q[i] + '\n× ' + P[j],
                          dataset: {q: String(i), p: String(j)}});
      td.style.backgroundColor = heatColour(v);
      td.style.color = Math.abs(v) > 0.55 ? '#fff' : '#111';
      tr.append(td);
    });
    body.append(tr);
  });
  table.append(body);
  col.append(h('div', {className: 'heat-wrap'}, table));

  const legend = h('div', {className: 'scale'});
  for (let k = -10; k <= 10; k++) {
    const sw = h('span', {className: 'sw'});
    sw.style.backgroundColor = heatColour(k / 10);
    legend.append(sw);
  }
  col.append(h('div', {className: 'scale-row'}, h('span', {}, '−1'), legend, h('span', {}, '+1')),
             h('p', {className: 'muted small scale-text'},
               'Cosine similarity, printed to ' + DIGITS + ' decimals. Colour: −1 blue, 0 white, +1 red (linear).'));

  const near = h('ol', {className: 'nearest', dataset: {run: key}});
  sim.forEach((row, i) => {
    let best = -1, bv = -Infinity;
    row.forEach((v, j) => { if (!(same && i === j) && v > bv) bv = v, best = j; });
    if (best < 0) return;
    near.append(h('li', {dataset: {q: String(i), p: String(best)}},
                  h('span', {className: 'idx'}, (same ? 'T' : 'Q') + (i + 1)), ' → ',
                  h('span', {className: 'idx'}, (same ? 'T' : 'P') + (best + 1)),
                  ' ' + bv.toFixed(DIGITS) + ' ', h('span', {className: 'muted'}, short(P[best], 60))));
  });
  col.append(h('h4', {}, 'Nearest ' + (same ? 'other text' : 'passage')), near);

  col.append(h('h4', {}, 'Tokens ', h('span', {className: 'muted small'},
                                     'as the model sees them: ', h('span', {className: 'tok special'}, '<s>'), ' ',
                                     h('span', {className: 'tok prefix'}, 'task prefix'), ' ',
                                     h('span', {className: 'tok'}, 'text'))));
  const toks = h('div', {className: 'tokens', dataset: {run: key}});
  const addToks = (list, letter, task) => list.forEach((t, i) => {
    const row = h('div', {className: 'tokrow', dataset: {side: letter, i: String(i), n: String(t.n)}});
    row.append(h('div', {className: 'tokhead'}, h('span', {className: 'idx'}, letter + (i + 1)),
                 ' ' + t.n + ' tokens' + (task ? ' · ' + task : '') +
                 (t.prefix ? ' · prefix ' + t.prefix : '')));
    const chips = h('div', {className: 'chips'});
    t.pieces.forEach((p, k) => {
      const special = (k === 0 || k === t.pieces.length - 1) && /^<\/?s>$/.test(p);
      const cls = 'tok' + (special ? ' special' : k >= 1 && k <= t.prefix ? ' prefix' : '');
      chips.append(h('span', {className: cls, textContent: p}));
    });
    row.append(chips);
    toks.append(row);
  });
  addToks(run.qTok, same ? 'T' : 'Q', run.qTask);
  if (run.pTok) addToks(run.pTok, 'P', run.pTask);
  col.append(toks);
  return col;
}

async function onRun(ev) {
  ev.preventDefault();
  showError('');
  const mode = document.querySelector('input[name=mode]:checked').value;
  const cfgs = [{mode, task: $('taskA').value, dims: Number($('dimsA').value)}];
  if ($('compare').checked) cfgs.push({mode, task: $('taskB').value, dims: Number($('dimsB').value)});
  const n = mode === 'pairs' ? lines('queries').length * lines('passages').length : lines('texts').length;
  if (!n) {
    showError('Enter at least one ' + (mode === 'pairs' ? 'query and one passage.' : 'text.'));
    return;
  }
  if (!card) await loadCard();
  $('run').disabled = true;
  $('status').textContent = 'embedding…';
  const t0 = performance.now();
  try {
    const runs = await Promise.all(cfgs.map(runOne));
    const out = $('results');
    out.replaceChildren(...runs.map((r, i) => renderRun(r, 'AB'[i])));
    out.classList.toggle('two', runs.length > 1);
    $('status').textContent = 'done in ' + Math.round(performance.now() - t0) + ' ms';
    document.body.dataset.state = 'done';
  } catch (e) {
    showError(e.message);
    $('status').textContent = '';
    document.body.dataset.state = 'error';
  } finally {
    $('run').disabled = false;
  }
}

function onMode() {
  const pairs = document.querySelector('input[name=mode]:checked').value === 'pairs';
  $('pairs-in').hidden = !pairs;
  $('lines-in').hidden = pairs;
  fillPickers();
}

/* ---- live metrics --------------------------------------------------------- */

const POLL_MS = 2000, HISTORY = 150; /* 5 minutes */
const LAT_WINDOW = 15;               /* samples: 30 s */
const hist = [];                     /* [{t, m}] parsed scrapes, oldest first */

/* Prometheus text format -> Map "name{sorted labels}" -> value, plus
 * samples as {name, labels, value}. */
function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    let l;
    while ((l = re.exec(m[2] || ''))) labels[l[1]] = l[2].replace(/\\n/g, '\n').replace(/\\(.)/g, '$1');
    out.push({name: m[1], labels, value: Number(m[3])});
  }
  return out;
}

const sum = (m, name, pred) => m.filter((s) => s.name === name && (!pred || pred(s.labels)))
                                 .reduce((a, s) => a + s.value, 0);
const one = (m, name) => m.find((s) => s.name === name);

/* histogram_quantile over bucket deltas: linear inside the bucket. */
function quantile(q, buckets) {
  const bs = buckets.filter((b) => isFinite(b.le) || b.le === Infinity).sort((a, b) => a.le - b.le);
  if (!bs.length) return null;
  const total = bs[bs.length - 1].n;
  if (total <= 0) return null;
  const rank = q * total;
  let prevLe = 0, prevN = 0;
  for (const b of bs) {
    if (b.n >= rank) {
      if (b.le === Infinity) return prevLe;
      return prevLe + (b.le - prevLe) * (b.n - prevN > 0 ? (rank - prevN) / (b.n - prevN) : 1);
    }
    prevLe = b.le;
    prevN = b.n;
  }
  return prevLe;
}

function latencyBuckets(m) {
  const map = new Map();
  for (const s of m)
    if (s.name === 'embedserve_request_duration_seconds_bucket' && s.labels.route === '/v1/embeddings')
      map.set(s.labels.le, s.value);
  return map;
}

const PROBES = new Set(['/health', '/ready', '/metrics']);

/* The plotted series, from consecutive scrapes. */
function series() {
  const out = {rps: [], tps: [], queue: [], waiting: [], seqs: [], reqs: [], p50: [], p90: [], p99: []};
  for (let i = 1; i < hist.length; i++) {
    const a = hist[i - 1], b = hist[i], dt = (b.t - a.t) / 1000, t = b.t;
    if (dt <= 0) continue;
    const api = (m) => sum(m, 'embedserve_requests_total', (l) => !PROBES.has(l.route));
    const d = (m1, m2, name) => Math.max(0, sum(m2, name) - sum(m1, name));
    out.rps.push([t, Math.max(0, api(b.m) - api(a.m)) / dt]);
    out.tps.push([t, d(a.m, b.m, 'embedserve_tokens_total') / dt]);
    out.queue.push([t, sum(b.m, 'embedserve_queue_depth')]);
    out.waiting.push([t, sum(b.m, 'embedserve_queue_waiting')]);
    const nb = d(a.m, b.m, 'embedserve_batch_sequences_count');
    out.seqs.push([t, nb ? d(a.m, b.m, 'embedserve_batch_sequences_sum') / nb : null]);
    out.reqs.push([t, nb ? d(a.m, b.m, 'embedserve_batch_requests_sum') / nb : null]);
    const w = hist[Math.max(0, i - LAT_WINDOW)];
    const b0 = latencyBuckets(w.m), b1 = latencyBuckets(b.m);
    const buckets = [...b1].map(([le, n]) => ({le: le === '+Inf' ? Infinity : Number(le),
                                               n: n - (b0.get(le) || 0)}));
    for (const [k, q] of [['p50', 0.5], ['p90', 0.9], ['p99', 0.99]]) {
      const v = quantile(q, buckets);
      out[k].push([t, v == null ? null : v * 1000]);
    }
  }
  return out;
}

const COLOURS = ['#2563eb', '#dc2626', '#16a34a'];

function fmt(v) {
  if (v == null || !isFinite(v)) return '–';
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toFixed(3);
}

/* A line chart of named series [[t, v]...] over the last HISTORY polls. */
function plot(canvasId, legendId, named, unit) {
  const cv = $(canvasId), ctx = cv.getContext('2d');
  const dpr = window.devicePixelRatio || 1;
  const w = cv.clientWidth || 280, hgt = cv.clientHeight || 110;
  if (cv.width !== Math.round(w * dpr)) cv.width = Math.round(w * dpr);
  if (cv.height !== Math.round(hgt * dpr)) cv.height = Math.round(hgt * dpr);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, hgt);
  /* the last 5 minutes, or less while there is less history (at least 1) */
  const now = Date.now();
  const first = named.reduce((a, [, s]) => (s.length && s[0][0] < a ? s[0][0] : a), now);
  const span = Math.min(HISTORY * POLL_MS, Math.max(60000, Math.ceil((now - first) / 60000) * 60000));
  let max = 0;
  for (const [, s] of named) for (const [, v] of s) if (v != null && v > max) max = v;
  max = max > 0 ? max * 1.15 : 1;
  const padL = 4, padR = 4, padT = 14, padB = 14;
  const x = (t) => padL + (w - padL - padR) * (1 - (now - t) / span);
  const y = (v) => padT + (hgt - padT - padB) * (1 - v / max);
  ctx.strokeStyle = '#d4d4d8';
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(padL, y(0) + 0.5);
  ctx.lineTo(w - padR, y(0) + 0.5);
  ctx.moveTo(padL, padT + 0.5);
  ctx.lineTo(w - padR, padT + 0.5);
  ctx.stroke();
  ctx.fillStyle = '#71717a';
  ctx.font = '10px system-ui, sans-serif';
  ctx.textBaseline = 'bottom';
  ctx.fillText(fmt(max) + (unit ? ' ' + unit : ''), padL, padT - 1);
  ctx.textBaseline = 'top';
  ctx.fillText('−' + Math.round(span / 60000) + ' min', padL, hgt - padB + 2);
  ctx.textAlign = 'right';
  ctx.fillText('now', w - padR, hgt - padB + 2);
  ctx.textAlign = 'left';
  named.forEach(([, s], k) => {
    ctx.strokeStyle = COLOURS[k % COLOURS.length];
    ctx.lineWidth = 1.5;
    ctx.fillStyle = ctx.strokeStyle;
    ctx.beginPath();
    const ok = (i) => i >= 0 && i < s.length && s[i][1] != null && now - s[i][0] <= span;
    for (let i = 0; i < s.length; i++) {
      if (!ok(i)) continue;
      const [t, v] = s[i];
      if (ok(i - 1)) ctx.lineTo(x(t), y(v));
      else ctx.moveTo(x(t), y(v));
      if (!ok(i - 1) && !ok(i + 1)) ctx.fillRect(x(t) - 1.5, y(v) - 1.5, 3, 3); /* a lone point */
    }
    ctx.stroke();
  });
  const lg = $(legendId);
  lg.replaceChildren(...named.map(([name, s], k) => {
    const known = s.filter(([, v]) => v != null), last = known.length ? known[known.length - 1][1] : null;
    const sw = h('span', {className: 'dot'});
    sw.style.backgroundColor = COLOURS[k % COLOURS.length];
    return h('span', {className: 'item', dataset: {series: name}}, sw, name + ' ',
             h('b', {}, fmt(last) + (unit ? ' ' + unit : '')));
  }));
}

function renderLive() {
  const s = series();
  plot('c-rps', 'l-rps', [['requests/s', s.rps]], '');
  plot('c-tps', 'l-tps', [['tokens/s', s.tps]], '');
  plot('c-queue', 'l-queue', [['admitted', s.queue], ['waiting', s.waiting]], '');
  plot('c-batch', 'l-batch', [['sequences', s.seqs], ['requests', s.reqs]], '');
  plot('c-lat', 'l-lat', [['p50', s.p50], ['p90', s.p90], ['p99', s.p99]], 'ms');
}

function renderCard() {
  const dl = $('card-dl'), m = hist.length ? hist[hist.length - 1].m : [];
  const rows = [];
  if (card) {
    rows.push(['model', card.id], ['weights', card.hugging_face_id || ''],
              ['dimensions', card.dimensions + ' (Matryoshka: ' + (card.matryoshka_dimensions || []).join(', ') + ')'],
              ['context', card.context_length + ' tokens'], ['tasks', (card.tasks || []).join(', ')]);
  }
  const mi = one(m, 'embedserve_model_info'), bi = one(m, 'embedserve_build_info');
  if (mi) rows.push(['layers', mi.labels.n_layer], ['batch budget', mi.labels.max_batch_tokens + ' tokens']);
  if (bi) {
    rows.push(['precision', bi.labels.dtype || '–'], ['CPU kernels', bi.labels.kernels || '–'],
              ['version', bi.labels.version + ' (' + bi.labels.commit + ')']);
    $('kernel').textContent = (bi.labels.dtype || '') + ' · ' + (bi.labels.kernels || '');
  }
  const rss = one(m, 'process_resident_memory_bytes');
  if (rss) rows.push(['memory', (rss.value / 1048576).toFixed(0) + ' MiB resident']);
  const ready = one(m, 'embedserve_ready');
  if (ready) rows.push(['ready', ready.value ? 'yes' : 'no']);
  if (!card) rows.unshift(['model', 'card not loaded' + ($('auth').hidden ? '' : ' (API key needed)')]);
  dl.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', {textContent: k}),
                                                 h('dd', {textContent: v, dataset: {k}})]));
}

async function poll() {
  try {
    const r = await fetch('metrics', {cache: 'no-store'});
    if (!r.ok) throw new Error('HTTP ' + r.status);
    hist.push({t: Date.now(), m: parseMetrics(await r.text())});
    if (hist.length > HISTORY + LAT_WINDOW) hist.shift();
    $('live-msg').textContent = '';
  } catch (e) {
    $('live-msg').textContent = '/metrics is not reachable from this address (' + e.message +
                                '; a load balancer may hide it). Open a replica directly for the live view.';
  }
  renderLive();
  renderCard();
}

/* ---- start ---------------------------------------------------------------- */

function start() {
  $('queries').value = ['How do I reset my password?', 'Wie hoch ist der Eiffelturm?'].join('\n');
  $('passages').value = ['To reset your password, open Settings, then Account, and choose "Forgot password".',
                         'The Eiffel Tower is 330 metres tall.',
                         'Der Eiffelturm ist 330 Meter hoch.',
                         'Matryoshka embeddings can be cut to fewer dimensions.'].join('\n');
  $('texts').value = ['A cat sits on the mat.', 'Eine Katze sitzt auf der Matte.',
                      'Stock markets fell sharply today.', 'The kitten is resting on a rug.'].join('\n');
  $('form').addEventListener('submit', onRun);
  for (const r of document.querySelectorAll('input[name=mode]')) r.addEventListener('change', onMode);
  $('compare').addEventListener('change', () => { $('settingsB').hidden = !$('compare').checked; });
  const useKey = () => {
    apiKey = $('apikey').value.trim();
    $('authmsg').textContent = apiKey ? 'Key set (kept in this page only).' : 'No key set.';
    showError('');
    loadCard();
  };
  $('keyset').addEventListener('click', useKey);
  $('apikey').addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); useKey(); } });
  window.addEventListener('resize', renderLive);
  fillPickers();
  loadCard();
  poll();
  setInterval(poll, POLL_MS);
}

start();
