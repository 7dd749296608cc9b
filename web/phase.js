// The autonomy map: every decision type x segment with its phase, what it
// has earned, what blocks the next phase and when that would pass at the
// current pace; caps an admin sets from the map; the workspace's gate,
// open alerts and rollback points. Text from the API goes in as text.
'use strict';

const PHASE_NAMES = ['', 'PHASE_1', 'PHASE_2', 'PHASE_3', 'PHASE_4', 'PHASE_5'];

// "in about 4 min", from the gate's estimated_timeline
function whenText(gate) {
  if (gate.pass) return 'passes at the next tick';
  if (gate.cap) return `held at ${PHASE_NAMES[gate.cap]} by a cap`;
  const t = gate.estimated_timeline || {};
  if (typeof t.days !== 'number') {
    const what = (t.not_estimated || []).join(', ');
    return what ? `not by waiting alone (${what})` : 'no pace to go by yet';
  }
  const min = t.days * 24 * 60;
  if (min < 1) return 'in under a minute at the current pace';
  if (min < 120) return `in about ${Math.round(min)} min at the current pace`;
  if (min < 48 * 60) return `in about ${Math.round(min / 60)} h at the current pace`;
  return `in about ${Math.round(min / 1440)} days at the current pace`;
}

// A cap control: none or 1..5, posted at once (admins only; others get
// the server's refusal on the page).
function capSelect(scope, now) {
  const s = el('select');
  s.setAttribute('aria-label', `Phase cap of ${scope}`);
  s.dataset.scope = scope;
  for (const v of ['none', '1', '2', '3', '4', '5']) {
    const o = el('option', v === 'none' ? 'no cap' : `cap ${v}`);
    o.value = v;
    if ((now ? String(now) : 'none') === v) o.selected = true;
    s.append(o);
  }
  s.onchange = async () => {
    try {
      await api('POST', '/api/phase/cap', { scope, max_phase: s.value === 'none' ? null : Number(s.value) });
      showError($('phase-error'), null);
      await loadMap();
    } catch (e) {
      showError($('phase-error'), new Error(`cap of ${scope}: ${e.message}`));
      await loadMap().catch(() => {});
    }
  };
  return s;
}

function mapCell(seg, gate, kpi) {
  const td = el('td', null, 'cell p' + seg.phase);
  td.dataset.scope = `${seg.decision_type}/${seg.segment}`;
  const head = el('div', null, 'cell-head');
  head.append(el('strong', PHASE_NAMES[seg.phase]));
  if (seg.cap) head.append(document.createTextNode(' '), badge(`cap ${seg.cap}`, 'cap'));
  td.append(head);
  const facts = el('dl', null, 'facts small');
  dl(facts, [
    ['readiness', pct(seg.readiness)],
    ['threshold', typeof seg.autonomy_threshold === 'number' ? pct(seg.autonomy_threshold) : 'none yet'],
    ['autonomous', kpi ? pct(kpi.automation_rate) : '–'],
    ['accuracy ≥', kpi ? pct(kpi.accuracy_lower_bound) : '–'],
    ['reviewed', seg.reviewed],
  ]);
  td.append(facts);
  if (gate) {
    const next = el('p', null, 'next');
    next.append(el('span', gate.pass ? 'ready for ' + gate.to : (gate.blocking || [])[0] || '', gate.pass ? 'ok' : 'blocked'));
    next.append(el('span', ' — ' + whenText(gate), 'when'));
    td.append(next);
  }
  td.append(capSelect(td.dataset.scope, seg.cap));
  return td;
}

function drawMap(status, evaluation, metrics) {
  const box = $('phase-map');
  box.replaceChildren();
  const segs = status.segments || [];
  if (!segs.length) {
    box.append(el('p', 'No decision yet: the map fills as tickets are decided.', 'muted'));
    return;
  }
  const gates = new Map((evaluation.segments || []).map((g) => [`${g.decision_type}/${g.segment}`, g]));
  const kpis = (metrics && metrics.by_segment) || {};
  const types = [...new Set(segs.map((s) => s.decision_type))];
  const cols = [...new Set(segs.map((s) => s.segment))].sort();
  const table = el('table', null, 'map');
  table.append(el('caption', 'Phase of each decision type (rows) in each segment (columns)'));
  const hr = el('tr');
  hr.append(el('th', 'decision type'));
  for (const c of cols) { const th = el('th', c); th.scope = 'col'; hr.append(th); }
  table.append(el('thead'));
  table.tHead.append(hr);
  const body = el('tbody');
  for (const t of types) {
    const tr = el('tr');
    const th = el('th');
    th.scope = 'row';
    th.append(el('span', t), el('br'), capSelect(t, (status.caps || {})[t]));
    tr.append(th);
    for (const c of cols) {
      const seg = segs.find((s) => s.decision_type === t && s.segment === c);
      tr.append(seg ? mapCell(seg, gates.get(`${t}/${c}`), kpis[`${t}/${c}`]) : el('td', '–', 'cell none'));
    }
    body.append(tr);
  }
  table.append(body);
  box.append(table);
}

function drawGate(gate) {
  const box = $('phase-gate');
  box.replaceChildren();
  const h = el('p');
  h.append(el('strong', `${gate.from} → ${gate.to || '—'}: `), el('span', gate.pass ? 'the gate passes' : 'blocked', gate.pass ? 'ok' : 'blocked'), el('span', ' — ' + whenText(gate), 'when'));
  box.append(h);
  const table = el('table', null, 'criteria');
  const hr = el('tr');
  for (const c of ['criterion', 'observed', 'required', '', 'what would pass it']) hr.append(el('th', c));
  table.append(hr);
  for (const c of gate.criteria || []) {
    const tr = el('tr', null, c.pass ? 'ok' : 'blocked');
    tr.append(el('td', c.criterion), el('td', Number(c.observed).toFixed(3)), el('td', `${c.op} ${c.required}`), el('td', c.pass ? '✓' : '✗'), el('td', c.fix || ''));
    table.append(tr);
  }
  box.append(table);
}

function drawAlerts(res) {
  const box = $('phase-alerts');
  box.replaceChildren();
  if (res instanceof Error) { box.append(el('li', 'Alerts unavailable: ' + res.message, 'error')); return; }
  if (!res.alerts.length) box.append(el('li', 'No open alert.', 'muted'));
  for (const a of res.alerts) box.append(el('li', `${a.created} ${a.severity} ${a.type}${a.scope ? ' ' + a.scope : ''}${a.detail ? ': ' + JSON.stringify(a.detail) : ''}`));
}

function drawPoints(res) {
  const box = $('phase-points');
  box.replaceChildren();
  if (res instanceof Error) { box.append(el('p', 'Rollback points unavailable: ' + res.message, 'error')); return; }
  const pts = res.points.slice().sort((a, b) => (a.id < b.id ? 1 : -1));
  if (!pts.length) { box.append(el('p', 'No rollback point yet: one is made before every workspace phase change.', 'muted')); return; }
  const ul = el('ul', null, 'points');
  for (const p of pts) {
    const li = el('li');
    li.append(el('span', `${p.id} — ${p.created}, ${PHASE_NAMES[p.phase] || p.phase}, ${p.reason}${p.by ? ' by ' + p.by : ''} `));
    const b = el('button', 'Roll back');
    b.setAttribute('aria-label', `Roll back to ${p.id}`);
    b.onclick = async () => {
      if (!window.confirm(`Roll back to ${p.id}? The configuration, segment phases and models of that point are restored (caps stay as they are).`)) return;
      try {
        const r = await api('POST', '/api/phase/rollback', { point: p.id });
        $('phase-out').textContent = `Rolled back to ${r.rollback_point}; the workspace is in ${r.phase}.`;
        showError($('phase-error'), null);
        await loadMap();
      } catch (e) { showError($('phase-error'), new Error(`rollback: ${e.message}`)); }
    };
    li.append(b);
    ul.append(li);
  }
  box.append(ul);
}

async function loadMap() {
  const soft = (p) => p.catch((e) => e);
  const [status, evaluation, metrics, alerts, points] = await Promise.all([
    api('GET', '/api/phase'),
    api('POST', '/api/phase/evaluate', {}),
    soft(api('GET', '/api/metrics')),
    soft(api('GET', '/api/alerts')),
    soft(api('GET', '/api/phase/points')),
  ]);
  $('phase-now').textContent = status.phase;
  $('phase-badge').textContent = status.phase;
  drawGate(evaluation.workspace);
  drawMap(status, evaluation, metrics instanceof Error ? null : metrics);
  drawAlerts(alerts);
  drawPoints(points);
}

pages.phase = {
  show: () => loadMap().catch((e) => showError($('phase-error'), e)),
  event: () => loadMap().catch(() => {}),
};

document.addEventListener('DOMContentLoaded', () => {
  $('btn-advance').onclick = async () => {
    try {
      const r = await api('POST', '/api/phase/advance', {});
      $('phase-out').textContent = `Advanced to ${r.phase || r.to || ''} (rollback point ${r.rollback_point || '—'}).`;
      showError($('phase-error'), null);
    } catch (e) { showError($('phase-error'), new Error(`advance: ${e.message}`)); }
    await loadMap().catch(() => {});
  };
});
