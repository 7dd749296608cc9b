// csa dashboard. Everything that came from customers or the API is put on
// the page with textContent or DOM calls, never as HTML.
'use strict';

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem('csa-token') || '';
let current = null;   // the task on screen
let shownAt = 0;      // when it was shown, for the time to decide

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

// Every API call. A failure is an Error whose message says what failed:
// the server's detail, or that it could not be reached.
async function api(method, path, body) {
  const opt = { method, headers: { Authorization: 'Bearer ' + token } };
  if (body !== undefined) {
    opt.headers['Content-Type'] = 'application/json';
    opt.body = JSON.stringify(body);
  }
  let r;
  try { r = await fetch(path, opt); } catch (e) { throw new Error(`cannot reach the server (${method} ${path})`); }
  const j = await r.json().catch(() => ({}));
  if (r.status === 401) { showLogin('The token was refused: sign in again.'); throw new Error('unauthorized'); }
  if (!r.ok) {
    const err = new Error(`${method} ${path.split('?')[0]}: ${j.detail || j.error || 'HTTP ' + r.status}`);
    err.status = r.status; err.body = j;
    throw err;
  }
  return j;
}

// An error shown in a page's alert paragraph (hidden when there is none).
function showError(target, e) {
  target.textContent = e ? 'Error: ' + (e.message || e) : '';
  target.hidden = !e;
}

function showLogin(why) {
  for (const s of document.querySelectorAll('main > section')) s.hidden = true;
  $('login').hidden = false;
  if (why) $('login').querySelector('p').textContent = why;
}

// Pages: each script registers { show(arg), event(type, data), key(e) }.
// The hash names the page and its argument: #inbox, #ticket/T_NO, ...
const pages = {};
let pageNow = null;

function route() {
  let h = (location.hash || '#inbox').slice(1);
  try { h = decodeURIComponent(h); } catch (e) { /* a malformed escape: taken as typed */ }
  const i = h.indexOf('/');
  return i < 0 ? [h, ''] : [h.slice(0, i), h.slice(i + 1)];
}

function show() {
  if (!token) return showLogin();
  let [page, arg] = route();
  if (!pages[page]) page = 'inbox';
  for (const s of document.querySelectorAll('main > section')) s.hidden = true;
  $('page-' + page).hidden = false;
  for (const a of document.querySelectorAll('header nav a')) {
    const on = a.dataset.page === page;
    a.classList.toggle('active', on);
    if (on) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  pageNow = page;
  pages[page].show(arg);
  if (page !== 'phase') loadPhase().catch(() => {});
}

function pct(x) { return x === null || x === undefined ? '–' : (100 * x).toFixed(1) + '%'; }

function dl(target, pairs) {
  target.replaceChildren();
  for (const [k, v] of pairs) { target.append(el('dt', k), el('dd', v === null || v === undefined ? '–' : v)); }
}

// Times: an absolute one for titles, a relative one to read at a glance.
function fmtTime(ts) {
  const t = Date.parse(ts);
  return Number.isNaN(t) ? String(ts || '–') : new Date(t).toLocaleString();
}

function span(ms) {
  const m = Math.round(Math.abs(ms) / 60000);
  if (m < 1) return 'less than a minute';
  if (m < 60) return m + ' min';
  const h = Math.floor(m / 60);
  if (h < 48) return h + ' h' + (m % 60 ? ' ' + (m % 60) + ' min' : '');
  return Math.round(h / 24) + ' days';
}

function ago(ts) {
  const t = Date.parse(ts);
  if (Number.isNaN(t)) return '–';
  const d = Date.now() - t;
  if (Math.abs(d) < 60000) return 'just now';
  return d >= 0 ? span(d) + ' ago' : 'in ' + span(d);
}

// A <time> element: relative text, the exact time on hover.
function timeEl(ts, relative) {
  const e = el('time', ts ? (relative ? ago(ts) : fmtTime(ts)) : '–');
  if (ts) { e.dateTime = ts; e.title = fmtTime(ts); }
  if (ts && relative) e.dataset.rel = '1';
  return e;
}

// Relative times stay true while the page is open.
setInterval(() => { for (const t of document.querySelectorAll('time[data-rel]')) t.textContent = ago(t.dateTime); }, 30000);

const SLA_TEXT = { on_time: 'on time', at_risk: 'at risk', breached: 'breached' };

function badge(text, cls, title) {
  const b = el('span', text, 'badge ' + cls);
  if (title) b.title = title;
  return b;
}

const SIDES = {
  external: { tag: 'E', name: 'customer side' },
  internal: { tag: 'I', name: 'internal side' },
};

// The unified timeline of E and I messages, each marked with its side;
// with 'deliveries' (message_id -> outbox items), a reply's delivery state.
function timeline(target, items, deliveries) {
  target.replaceChildren();
  for (const m of items || []) {
    const side = m.side === 'internal' ? 'internal' : 'external';
    const li = el('li', null, side);
    li.dataset.side = side;
    const meta = el('div', null, 'meta');
    const tag = el('span', SIDES[side].tag, 'side-tag ' + side);
    tag.title = SIDES[side].name;
    meta.append(tag, el('span', SIDES[side].name, 'side-name'), el('strong', m.sender || '?'));
    if (m.sender_id) meta.append(el('span', '(' + m.sender_id + ')'));
    if (m.message_type) meta.append(el('span', m.message_type, 'pill'));
    if (m.platform) meta.append(el('span', 'via ' + m.platform));
    meta.append(timeEl(m.timestamp));
    li.append(meta, el('div', m.content, 'content'));
    const sent = deliveries && m.message_id ? deliveries.get(m.message_id) : null;
    if (sent && sent.length) {
      const st = el('div', null, 'delivery');
      for (const d of sent) {
        const b = badge(`${d.target}: ${d.state}`, 'del-' + d.state, d.last_error ? 'last error: ' + d.last_error : '');
        st.append(b);
        if (d.state !== 'delivered' && d.last_error) st.append(el('span', d.last_error, 'muted'));
      }
      li.append(st);
    }
    target.append(li);
  }
}

async function loadReview() {
  $('review-status').textContent = '';
  $('review-status').classList.remove('error');
  const [next, all] = await Promise.all([api('GET', '/api/reviews/next'), api('GET', '/api/reviews')]);
  $('queue-size').textContent = `(${all.tasks.length} open)`;
  current = next.task;
  $('task').hidden = !current;
  $('task-empty').hidden = !!current;
  if (!current) return;
  const t = current, st = t.ticket || {};
  const ext = st.external_conversation || {}, cust = (ext.participants || {}).customer || {};
  $('task-type').textContent = `${t.decision_type} · ${t.segment}`;
  $('task-kind').textContent = t.kind === 'audit' ? 'review of an autonomous decision' : 'decision needed';
  $('task-ticket').textContent = t.ticket_id;
  $('task-ticket').href = '#ticket/' + encodeURIComponent(t.ticket_id);
  $('task-due').textContent = t.due;
  dl($('customer'), [['name', cust.client_name], ['company', cust.company_name], ['tier', cust.subscription_tier], ['platform', ext.platform]]);
  const sla = ext.sla_tracking || {};
  dl($('sla'), [['status', sla.current_status], ['first response due', sla.first_response_due], ['resolution due', sla.resolution_due]]);
  timeline($('timeline'), st.unified_timeline);
  const sug = $('suggestion');
  sug.replaceChildren();
  if (t.suggestion === null) sug.append(el('em', 'Hidden in PHASE_1: decide on your own; your decision trains the model.'));
  else {
    sug.append(el('strong', t.suggestion), el('span', ` with ${pct(t.confidence)} confidence`));
    for (const a of t.alternatives || []) sug.append(el('span', ` · ${a.value} ${pct(a.confidence)}`));
  }
  const ch = $('choices');
  ch.replaceChildren();
  (t.labels || []).forEach((v, i) => {
    const b = el('button', `${i + 1}. ${v}`, v === t.suggestion ? 'suggested' : '');
    b.dataset.value = v;
    b.onclick = () => decide(v);
    ch.append(b);
  });
  shownAt = performance.now();
}

async function decide(value) {
  if (!current) return;
  const ms = Math.round(performance.now() - shownAt);
  const notes = $('notes').value || undefined;
  try {
    const r = await api('POST', `/api/reviews/${current.task_id}/decide`, { value, notes, decision_ms: ms });
    $('notes').value = '';
    $('review-status').textContent = `${r.correct ? 'Confirmed' : 'Overridden'}: ${value} (${(ms / 1000).toFixed(1)} s)`;
    await loadReview();
    $('review-status').textContent = `${r.correct ? 'Confirmed' : 'Overridden'}: ${value} (${(ms / 1000).toFixed(1)} s)`;
  } catch (e) { $('review-status').textContent = 'Error: ' + e.message; }
}

function reviewKey(e) {
  if (!current || e.target.tagName === 'INPUT' || e.target.tagName === 'BUTTON' || e.target.tagName === 'A') return;
  if (e.key === 'Enter' && current.suggestion) decide(current.suggestion);
  const n = parseInt(e.key, 10);
  if (n >= 1 && n <= 9 && current.labels[n - 1]) decide(current.labels[n - 1]);
}

const SVG = 'http://www.w3.org/2000/svg';
function svgEl(tag, attrs) { const e = document.createElementNS(SVG, tag); for (const k in attrs) e.setAttribute(k, attrs[k]); return e; }

function reliability(svg, rows) {
  svg.replaceChildren();
  const W = 300, H = 200, x = (v) => 10 + v * W, y = (v) => 10 + (1 - v) * H;
  svg.append(svgEl('rect', { x: 10, y: 10, width: W, height: H, fill: '#fff', stroke: '#999' }));
  svg.append(svgEl('line', { x1: x(0), y1: y(0), x2: x(1), y2: y(1), stroke: '#bbb', 'stroke-dasharray': '4 3' }));
  for (const r of rows || []) {
    svg.append(svgEl('rect', { x: x(r.bin - 0.045), y: y(r.accuracy), width: 0.09 * W, height: r.accuracy * H, fill: '#7aa6d8' }));
    svg.append(svgEl('circle', { cx: x(r.confidence), cy: y(r.accuracy), r: 3, fill: '#1f4e8c' }));
  }
}

// The decision log over time (GET /api/metrics/trend): the autonomous
// rate and the reviewed accuracy per bucket as lines (0..1), decisions per
// bucket as bars scaled to the busiest one.
function trend(svg, series) {
  svg.replaceChildren();
  const W = 620, H = 160, n = series.length;
  svg.append(svgEl('rect', { x: 10, y: 10, width: W, height: H, fill: '#fff', stroke: '#999' }));
  if (!n) return;
  const most = Math.max(...series.map((b) => b.decisions));
  const x = (i) => 10 + (n > 1 ? i / (n - 1) : 0.5) * W, y = (v) => 10 + (1 - v) * H;
  series.forEach((b, i) => svg.append(svgEl('rect', { x: x(i) - W / n / 3, y: y(b.decisions / most), width: Math.max(1, W / n / 1.5), height: (b.decisions / most) * H, fill: '#e3e8f0' })));
  for (const [key, color] of [['autonomous_rate', '#1f77b4'], ['accuracy', '#2ca02c']]) {
    const pts = series.map((b, i) => (typeof b[key] === 'number' ? `${x(i)},${y(b[key])}` : null)).filter(Boolean).join(' ');
    svg.append(svgEl('polyline', { points: pts, fill: 'none', stroke: color, 'stroke-width': 2 }));
  }
}

// The KPI tiles in spec §9.2's four groups. Counts of tickets come from
// the inbox index (count=1), the rest from GET /api/metrics.
async function ticketCount(args) {
  return (await api('GET', '/api/tickets?limit=1&count=1' + (args ? '&' + args : ''))).total;
}

function kpiGroup(title, tiles) {
  const sec = el('section', null, 'kpi-group');
  sec.append(el('h3', title));
  const box = el('div', null, 'kpis');
  for (const [name, v] of tiles) { const d = el('div'); d.append(el('b', v), el('span', name)); box.append(d); }
  sec.append(box);
  return sec;
}

async function loadMetrics() {
  const [m, tr, points, all, resolved, active, escalated, breached, waiting] = await Promise.all([
    api('GET', '/api/metrics'), api('GET', '/api/metrics/trend?bucket=hour'), api('GET', '/api/phase/points'),
    ticketCount(''), ticketCount('status=resolved'), ticketCount('status=active'), ticketCount('status=escalated'),
    ticketCount('sla=breached'), ticketCount('review=true')]);
  const o = m.overall || {};
  const num = (v, d) => (v === null || v === undefined ? '–' : Number(v).toFixed(d));
  const open = all - resolved;
  const k = $('kpis');
  k.replaceChildren(
    kpiGroup('Automation', [['phase', m.phase], ['automation rate', pct(o.automation_rate)], ['accuracy', pct(o.accuracy)],
      ['mean confidence', pct(o.mean_confidence)], ['autonomous accuracy', pct(o.autonomous_accuracy)]]),
    kpiGroup('Performance', [['first response (min)', num(o.mean_first_response_minutes, 0)], ['resolution (min)', num(o.mean_resolution_minutes, 0)],
      ['SLA compliance (open tickets)', open ? pct(1 - breached / open) : '–'], ['CSAT', num(o.csat, 2)]]),
    kpiGroup('Operational', [['tickets', all], ['active', active], ['escalated', escalated], ['waiting for review', waiting],
      ['decisions', o.decisions], ['reviewed', o.reviewed]]),
    kpiGroup('Quality', [['error rate', o.accuracy === null || o.accuracy === undefined ? '–' : pct(1 - o.accuracy)],
      ['calibration error', pct(o.calibration_ece)], ['escalation rate', pct(o.escalation_rate)], ['rollback points', points.points.length]]));
  trend($('trend'), tr.series);
  $('trend-note').textContent = tr.series.length
    ? `${tr.series.length} hours with decisions in the last ${tr.days} days; bars: decisions per hour (most ${Math.max(...tr.series.map((b) => b.decisions))}), blue: autonomous share, green: accuracy of the reviewed ones`
    : `no decision in the last ${tr.days} days`;
  reliability($('reliability'), o.reliability);
  const tb = $('gates').querySelector('tbody');
  tb.replaceChildren();
  const gates = m.gates || {};
  const rows = [Object.assign({ decision_type: 'workspace', segment: '' }, gates.workspace || {})].concat(gates.segments || []);
  for (const g of rows) {
    const tr = el('tr');
    tr.append(el('td', `${g.decision_type}${g.segment ? ' / ' + g.segment : ''}`), el('td', `${g.from} → ${g.to || '–'}`),
      el('td', g.pass ? 'ready' : 'blocked', g.pass ? 'pass' : 'block'), el('td', (g.blocking || []).join('; ')));
    tb.append(tr);
  }
}

async function loadPhase() {
  const s = await api('GET', '/api/phase');
  $('phase-now').textContent = s.phase;
  $('phase-badge').textContent = s.phase;
}


// Live updates: server-sent events read with fetch (the token stays in a
// header, never in a URL). Each event goes to the page on screen; the
// header says whether the stream is connected. With several nodes (Redis)
// events carry ids: a reconnection sends the last one as Last-Event-ID and
// gets what it missed, or a 'resync' event when that cannot be known, on
// which the page on screen loads itself again (as on any event of its kind).
let listening = false;
let lastEventId = null;
async function listen() {
  if (listening) return;
  listening = true;
  for (;;) {
    try {
      const headers = { Authorization: 'Bearer ' + token };
      if (lastEventId !== null) headers['Last-Event-ID'] = lastEventId;
      const r = await fetch('/api/events', { headers });
      if (r.status === 401 || r.status === 403) {
        // a revoked or wrong token: no point retrying until a new one is given
        listening = false;
        $('live-state').textContent = '○ not live';
        $('live-state').className = 'live off';
        return;
      }
      if (!r.ok) throw new Error('HTTP ' + r.status);
      $('live-state').textContent = '● live';
      $('live-state').className = 'live on';
      const reader = r.body.getReader(), dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const chunk = buf.slice(0, i); buf = buf.slice(i + 2);
          const ev = (chunk.match(/^event: (.*)$/m) || [])[1];
          const id = (chunk.match(/^id: (.*)$/m) || [])[1];
          if (id !== undefined) lastEventId = id;
          if (!ev) continue;
          let data = null;
          try { data = JSON.parse((chunk.match(/^data: (.*)$/m) || [])[1] || 'null'); } catch (e) { data = null; }
          const p = pages[pageNow];
          if (p && p.event && !$('page-' + pageNow).hidden) p.event(ev, data);
          if (ev === 'phase' || ev === 'resync') loadPhase().catch(() => {});
        }
      }
    } catch (e) { /* the server restarts or the token changed: retry */ }
    $('live-state').textContent = '○ reconnecting';
    $('live-state').className = 'live off';
    await new Promise((res) => setTimeout(res, 3000));
  }
}

pages.review = {
  show: () => loadReview().catch((e) => { $('review-status').textContent = 'Error: ' + e.message; $('review-status').classList.add('error'); }),
  event: () => { if (!current) loadReview().catch(() => {}); },
  key: reviewKey,
};
pages.metrics = {
  show: () => loadMetrics().catch((e) => { $('kpis').replaceChildren(el('p', 'Error: ' + e.message, 'error')); }),
  event: () => loadMetrics().catch(() => {}),
};

document.addEventListener('keydown', (e) => {
  if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
  const p = pages[pageNow];
  if (p && p.key && !$('page-' + pageNow).hidden) p.key(e);
});

window.addEventListener('DOMContentLoaded', () => {
  $('login-form').onsubmit = (e) => {
    e.preventDefault();
    token = $('token').value.trim();
    sessionStorage.setItem('csa-token', token);
    show();
    listen();
  };
  window.addEventListener('hashchange', show);
  show();
  if (token) listen();
  setInterval(() => { if (pageNow === 'metrics' && !$('page-metrics').hidden) loadMetrics().catch(() => {}); }, 5000);
});
