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

async function api(method, path, body) {
  const opt = { method, headers: { Authorization: 'Bearer ' + token } };
  if (body !== undefined) {
    opt.headers['Content-Type'] = 'application/json';
    opt.body = JSON.stringify(body);
  }
  const r = await fetch(path, opt);
  const j = await r.json().catch(() => ({}));
  if (r.status === 401) { showLogin(); throw new Error('unauthorized'); }
  if (!r.ok) throw new Error(j.detail || j.error || ('HTTP ' + r.status));
  return j;
}

function showLogin() {
  for (const s of document.querySelectorAll('main > section')) s.hidden = true;
  $('login').hidden = false;
}

function show(page) {
  if (!token) return showLogin();
  for (const s of document.querySelectorAll('main > section')) s.hidden = true;
  $('page-' + page).hidden = false;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.page === page);
  ({ review: loadReview, metrics: loadMetrics, ticket: () => {}, phase: loadPhase })[page]();
  if (page !== 'phase') loadPhase().catch(() => {});
}

function pct(x) { return x === null || x === undefined ? '–' : (100 * x).toFixed(1) + '%'; }

function dl(target, pairs) {
  target.replaceChildren();
  for (const [k, v] of pairs) { target.append(el('dt', k), el('dd', v === null || v === undefined ? '–' : v)); }
}

function timeline(target, items) {
  target.replaceChildren();
  for (const m of items || []) {
    const li = el('li', null, m.side === 'internal' ? 'internal' : 'external');
    li.append(el('span', `${m.timestamp} · ${m.side} · ${m.sender}${m.sender_id ? ' (' + m.sender_id + ')' : ''}`, 'meta'));
    li.append(el('span', m.content));
    target.append(li);
  }
}

async function loadReview() {
  $('review-status').textContent = '';
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
  $('task-ticket').href = '#ticket';
  $('task-ticket').onclick = () => { $('ticket-id').value = t.ticket_id; location.hash = 'ticket'; loadTicket(t.ticket_id); };
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

document.addEventListener('keydown', (e) => {
  if ($('page-review').hidden || !current || e.target.tagName === 'INPUT') return;
  if (e.key === 'Enter' && current.suggestion) decide(current.suggestion);
  const n = parseInt(e.key, 10);
  if (n >= 1 && n <= 9 && current.labels[n - 1]) decide(current.labels[n - 1]);
});

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

const history = [];
function trend(svg, m) {
  history.push({ t: Date.now(), rate: m.automation_rate || 0, acc: m.accuracy || 0, esc: m.escalation_rate || 0 });
  if (history.length > 120) history.shift();
  svg.replaceChildren();
  const W = 620, H = 160, n = history.length;
  svg.append(svgEl('rect', { x: 10, y: 10, width: W, height: H, fill: '#fff', stroke: '#999' }));
  for (const [key, color] of [['rate', '#1f77b4'], ['acc', '#2ca02c'], ['esc', '#d62728']]) {
    const pts = history.map((h, i) => `${10 + (n > 1 ? i / (n - 1) : 0) * W},${10 + (1 - h[key]) * H}`).join(' ');
    svg.append(svgEl('polyline', { points: pts, fill: 'none', stroke: color, 'stroke-width': 2 }));
  }
}

async function loadMetrics() {
  const m = await api('GET', '/api/metrics');
  const o = m.overall || {};
  const k = $('kpis');
  k.replaceChildren();
  for (const [name, v] of [['phase', m.phase], ['automation rate', pct(o.automation_rate)], ['accuracy', pct(o.accuracy)],
    ['autonomous accuracy', pct(o.autonomous_accuracy)], ['escalation rate', pct(o.escalation_rate)],
    ['calibration error', pct(o.calibration_ece)], ['first response (min)', o.mean_first_response_minutes == null ? '–' : o.mean_first_response_minutes.toFixed(0)],
    ['resolution (min)', o.mean_resolution_minutes == null ? '–' : o.mean_resolution_minutes.toFixed(0)], ['CSAT', o.csat == null ? '–' : o.csat.toFixed(2)],
    ['decisions', o.decisions], ['reviewed', o.reviewed], ['tickets', o.tickets]]) {
    const d = el('div'); d.append(el('b', v), el('span', name)); k.append(d);
  }
  trend($('trend'), o);
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

async function loadTicket(id) {
  const v = $('ticket-view');
  v.replaceChildren();
  $('audit').replaceChildren();
  try {
    const t = await api('GET', '/api/tickets/' + encodeURIComponent(id));
    const w = t.workflow;
    const info = el('dl');
    dl(info, [['client', w.client_name], ['company', w.company_name], ['priority', w.priority], ['stage', w.workflow_stage], ['phase', w.automation_phase], ['resolved', String(w.resolved)], ['assigned', w.assigned_member]]);
    // why: the terms that weighed most for each of the latest decisions
    const why = el('ul', null, 'why');
    const pats = ((w.active_learning_data || {}).decision_patterns || []).slice(-8);
    for (const p of pats) {
      const terms = (p.features || []).map((f) => f.feature.replace(/^word=/, '')).join(', ');
      why.append(el('li', `${p.decision_type} ${p.value} (${Math.round(100 * p.confidence)}%) because of ${terms || '–'}`));
    }
    const prog = el('ol', null, 'progress');
    for (const u of (t.internal_conversation.progress_updates || [])) {
      const blocked = (u.blockers || []).length ? ` (blocked: ${u.blockers.join('; ')})` : '';
      prog.append(el('li', `${u.timestamp} ${u.status} by ${u.updater}${u.notes ? ': ' + u.notes : ''}${blocked}`));
    }
    const tl = el('ol', null, 'timeline');
    timeline(tl, t.unified_timeline);
    v.append(info, el('h3', 'Why'), why, el('h3', 'Progress'), prog, tl);
    const a = await api('GET', '/api/audit/' + encodeURIComponent(id));
    for (const r of a.trail) $('audit').append(el('li', `#${r.seq} ${r.timestamp} ${r.type} ${JSON.stringify(r.payload)}`));
  } catch (e) { v.append(el('p', 'Error: ' + e.message)); }
}

async function loadPhase() {
  const s = await api('GET', '/api/phase');
  $('phase-now').textContent = s.phase;
  $('phase-badge').textContent = s.phase;
}

async function phaseAction(path, body) {
  try { $('phase-out').textContent = JSON.stringify(await api('POST', path, body), null, 2); await loadPhase(); }
  catch (e) { $('phase-out').textContent = 'Error: ' + e.message; }
}

// Live updates: server-sent events read with fetch (the token stays in a
// header, never in a URL). New tickets and decisions refresh the page.
async function listen() {
  for (;;) {
    try {
      const r = await fetch('/api/events', { headers: { Authorization: 'Bearer ' + token } });
      if (!r.ok) throw new Error('HTTP ' + r.status);
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
          if (!ev) continue;
          if (!$('page-review').hidden && !current) loadReview().catch(() => {});
          if (!$('page-metrics').hidden) loadMetrics().catch(() => {});
          if (ev === 'phase') loadPhase().catch(() => {});
        }
      }
    } catch (e) { /* the server restarts or the token changed: retry */ }
    await new Promise((res) => setTimeout(res, 3000));
  }
}

window.addEventListener('DOMContentLoaded', () => {
  $('login-form').onsubmit = (e) => { e.preventDefault(); token = $('token').value.trim(); sessionStorage.setItem('csa-token', token); show((location.hash || '#review').slice(1)); };
  $('ticket-form').onsubmit = (e) => { e.preventDefault(); loadTicket($('ticket-id').value.trim()); };
  $('btn-evaluate').onclick = () => phaseAction('/api/phase/evaluate', {});
  $('btn-advance').onclick = () => phaseAction('/api/phase/advance', {});
  $('btn-rollback').onclick = () => phaseAction('/api/phase/rollback', {});
  window.addEventListener('hashchange', () => show((location.hash || '#review').slice(1)));
  show((location.hash || '#review').slice(1));
  if (token) listen();
  setInterval(() => { if (!$('page-metrics').hidden) loadMetrics().catch(() => {}); }, 5000);
});
