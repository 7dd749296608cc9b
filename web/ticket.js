// The ticket page (#ticket/T_NO): the unified E/I timeline, the SLA clocks,
// every decision with its confidence, alternatives, threshold, phase, who
// decided and why it was or was not automated (the T document's decisions
// and their automation blocks, with their records in the audit ledger),
// the delivery state, and the actions the API has: an internal note, a
// reply to the customer, deciding the ticket's open review tasks, changing
// a decision, assigning and resolving.
// Everything from the API goes on the page as text (el(), textContent).
'use strict';

const tk = {
  id: '',
  seq: 0,
  timer: null,
  shownAt: 0,   // when the tasks were shown, for decision_ms
};

// The agents' decisions by type: where the value and its alternatives are.
const DECISION_KEYS = {
  category: { value: 'category', alts: 'alternatives' },
  priority: { value: 'priority', alts: 'priority_alternatives' },
  strategy: { value: 'strategy', alts: 'alternatives' },
  escalation: { value: 'escalation_path', alts: 'alternatives' },
};

function pctOf(x) { return typeof x === 'number' ? (100 * x).toFixed(0) + '%' : '–'; }

function clock(due, doneAt, label) {
  const dd = el('dd');
  if (doneAt) {
    dd.append(badge('met', 'sla-on_time'), document.createTextNode(` ${label} at `), timeEl(doneAt));
    return dd;
  }
  if (!due) { dd.textContent = '–'; return dd; }
  const left = Date.parse(due) - Date.now();
  if (Number.isNaN(left)) { dd.textContent = String(due); return dd; }
  dd.append(left < 0 ? badge('overdue by ' + span(left), 'sla-breached') : badge('in ' + span(left), 'sla-on_time'),
    document.createTextNode(' due '), timeEl(due));
  return dd;
}

function ticketFacts(t) {
  const w = t.workflow || {}, e = t.external_conversation || {}, i = t.internal_conversation || {};
  const cust = (e.participants || {}).customer || {};
  const cls = (w.agent_decisions || []).filter((d) => d.agent === 'classifier').pop();
  const pairs = [
    ['customer', cust.client_name || w.client_name],
    ['company', cust.company_name || w.company_name],
    ['tier', cust.subscription_tier],
    ['channel', e.platform || w.channel],
    ['status', e.conversation_status],
    ['priority', w.priority],
    ['category', cls && cls.decision ? cls.decision.category : null],
    ['stage', w.workflow_stage],
    ['assigned', w.assigned_member || 'unassigned'],
    ['resolver', (i.participants || {}).assigned_resolver],
    ['phase', w.automation_phase],
    ['resolved', w.resolved ? 'yes' : 'no'],
  ];
  const facts = $('ticket-facts');
  facts.replaceChildren();
  for (const [k, v] of pairs) {
    const dd = el('dd', v === null || v === undefined || v === '' ? '–' : v);
    facts.append(el('dt', k), dd);
  }
  facts.append(el('dt', 'created'), (() => { const d = el('dd'); d.append(timeEl(w.card_create_timestamp)); return d; })());
}

// The SLA clocks: the first response is the team's first message on the
// customer side (as the server's SLA rules count it), the resolution the
// ticket's resolved state.
function ticketSla(t) {
  const e = t.external_conversation || {};
  const s = e.sla_tracking || {};
  const m = (t.workflow || {}).sla_metrics || {};
  const box = $('ticket-sla');
  box.replaceChildren();
  const st = el('dd');
  const state = s.current_status || 'on_time';
  st.append(badge(SLA_TEXT[state] || state, 'sla-' + state));
  box.append(el('dt', 'state'), st);
  const reply = (e.messages || []).find((x) => x.sender === 'cs_agent');
  box.append(el('dt', 'first response'), clock(s.first_response_due, reply ? reply.timestamp : null, 'answered'));
  if (!reply && typeof m.first_response_time === 'number') box.append(el('dt', 'first response took'), el('dd', span(m.first_response_time * 60000)));
  const resolved = (t.workflow || {}).resolved || e.conversation_status === 'resolved';
  box.append(el('dt', 'resolution'), resolved
    ? (() => { const d = el('dd'); d.append(badge('resolved', 'sla-on_time')); return d; })()
    : clock(s.resolution_due, null, 'resolved'));
}

// The person's value, if a person decided: the review record in the
// ledger (value, by) or, without it, the decision's learning feedback.
function personOf(d, type, review) {
  if (review && review.payload) return { value: review.payload.value, by: review.payload.by, notes: review.payload.notes };
  const fb = d.learning_feedback;
  const pu = fb && Array.isArray(fb.pattern_updates) ? fb.pattern_updates.filter((p) => p.decision_type === type) : [];
  const p = pu.length ? pu[pu.length - 1] : null;
  return p ? { value: p.human_value, by: p.by, notes: fb.improvement_notes } : null;
}

// Who decided: a person, an LLM (the cascade's trace), or the model.
function decidedBy(d, type, auto, person) {
  const c = d.decision && d.decision.cascade && d.decision.cascade[type];
  let machine;
  if (c && c.decided_by === 'llm') machine = `LLM ${c.model_version || c.backend} (cascade: ${c.reason}; embedded model said ${c.embedded ? c.embedded.label : '?'})`;
  else if (c) machine = `model ${auto && auto.model ? auto.model : 'embedded'} (LLM ${c.backend} not asked: ${c.reason})`;
  else if (auto && auto.model) machine = `model ${auto.model}`;
  else machine = `agent ${d.agent}`;
  if (!person) return machine;
  const ai = auto ? auto.value : null;
  return `a person${person.by ? ' (' + person.by + ')' : ''} chose ${person.value}` +
    (ai ? (ai === person.value ? `, confirming ${machine}` : `, overriding ${ai} from ${machine}`) : '');
}

function whyAutomated(a) {
  if (!a) return 'not a tracked decision type: not automated, nothing to review';
  const conf = pctOf(a.confidence), thr = typeof a.threshold === 'number' ? pctOf(a.threshold) : null;
  if (a.autonomous) {
    const r = a.review === 'audit' ? 'sampled for a delayed review' : 'not sampled for review';
    return `applied autonomously: confidence ${conf} ≥ threshold ${thr} in ${a.phase}; ${r}`;
  }
  if (a.held) return `not automated: ${a.held}`;
  const n = parseInt(String(a.phase || '').replace('PHASE_', ''), 10);
  if (n && n < 3) return `not automated: ${a.phase} lets a person decide (autonomy starts in PHASE_3)`;
  if (!thr) return `not automated: no autonomy threshold yet for ${a.segment}`;
  if (a.confidence < a.threshold) return `not automated: confidence ${conf} below threshold ${thr}${a.critical ? ' (critical target)' : ''}`;
  return 'not automated';
}

// "Why": the terms that weighed most for the decision's label
// (T.active_learning_data.decision_patterns).
function whyOf(patterns, dec, type) {
  const p = patterns.filter((x) => x.decision_type === type && (!x.decision_id || x.decision_id === dec.decision_id)).pop();
  if (!p || !(p.features || []).length) return null;
  return p.features.map((f) => String(f.feature).replace(/^word=/, '')).join(', ');
}

function decisionCard(d, type, a, trail, patterns) {
  const dec = d.decision || {};
  const card = el('section', null, 'decision');
  card.dataset.type = type || d.agent;
  const keys = DECISION_KEYS[type] || {};
  const review = trail.filter((r) => r.type === 'review' && r.payload && r.payload.decision_id === `${dec.decision_id}#${type}`).pop();
  const person = type ? personOf(d, type, review) : null;
  const value = person ? person.value : a ? a.value : (dec[keys.value] !== undefined ? dec[keys.value] : null);
  const h = el('h4');
  h.append(el('span', type || d.agent, 'dtype'), document.createTextNode(' '));
  if (value !== null && value !== undefined) h.append(el('strong', value));
  else h.append(el('span', d.agent + ' plan', 'muted'));
  if (person) h.append(document.createTextNode(' '), badge('by a person', 'review'));
  else if (a && a.autonomous) h.append(document.createTextNode(' '), badge('autonomous', 'auto'));
  card.append(h);
  const conf = a ? a.confidence : d.confidence;
  const alts = dec[keys.alts || 'alternatives'] || [];
  const rows = [
    ['confidence', pctOf(conf)],
    ['alternatives', alts.length ? alts.map((x) => `${x.value} ${pctOf(x.confidence)}`).join(', ') : 'none'],
    ['threshold', a ? (typeof a.threshold === 'number' ? pctOf(a.threshold) : 'none yet') : '–'],
    ['phase', a ? a.phase : '–'],
    ['segment', a ? a.segment : '–'],
    ['decided by', decidedBy(d, type, a, person)],
    ['automation', whyAutomated(a)],
    ['why', (type && whyOf(patterns || [], dec, type)) || '–'],
    ['review', a ? (person ? 'done' + (person.notes ? ': ' + person.notes : '') : a.review === 'decide' ? 'waits for a person' : a.review === 'audit' ? 'sampled for a delayed review' : 'none') : '–'],
  ];
  const rec = trail.find((r) => r.type === 'decision' && r.payload && r.payload.decision_id === dec.decision_id && r.payload.decision_type === type);
  if (rec || review) rows.push(['audit record', [rec, review].filter(Boolean).map((r) => `#${r.seq} ${r.type} ${String(r.hash || '').slice(0, 12)}`).join(' · ')]);
  const list = el('dl', null, 'facts');
  for (const [k, v] of rows) if (a || v !== '–') list.append(el('dt', k), el('dd', v));
  card.append(list);
  if (dec.rationale) card.append(el('p', dec.rationale, 'rationale'));
  return card;
}

// The latest decision of each type first; those of earlier pipeline runs
// folded below.
function ticketDecisions(t, trail) {
  const box = $('ticket-decisions');
  box.replaceChildren();
  const decs = (t.workflow || {}).agent_decisions || [];
  const patterns = ((t.workflow || {}).active_learning_data || {}).decision_patterns || [];
  if (!decs.length) { box.append(el('p', 'No decision yet.', 'muted')); return; }
  const cards = [];
  for (const d of decs) {
    const autos = d.decision && d.decision.automation ? Object.entries(d.decision.automation) : [];
    for (const [type, a] of autos.length ? autos : [[null, null]]) cards.push({ key: type || d.agent, d, type, a });
  }
  const latest = new Map();
  cards.forEach((c, i) => latest.set(c.key, i));
  const earlier = el('details', null, 'earlier');
  const n = cards.length - latest.size;
  earlier.append(el('summary', `Earlier decisions (${n})`));
  cards.forEach((c, i) => {
    const card = decisionCard(c.d, c.type, c.a, trail, patterns);
    if (latest.get(c.key) === i) box.append(card);
    else { card.classList.add('old'); earlier.append(card); }
  });
  if (n) box.append(earlier);
}

// What the agents suggest: the knowledge-base article and the drafted
// reply of the latest strategy decision, the similar resolved cases of the
// latest analysis note.
function ticketSuggestions(t) {
  const box = $('ticket-suggestions');
  box.replaceChildren();
  const sel = ((t.workflow || {}).agent_decisions || []).filter((d) => d.agent === 'selector').pop();
  const params = sel && sel.decision ? sel.decision.execution_parameters || {} : {};
  const list = el('dl', null, 'facts');
  const art = params.article;
  if (art && art.id) {
    const dd = el('dd');
    dd.append(el('strong', art.title || art.id), el('span', ` (${art.id}, for ${art.strategy || 'this strategy'})`, 'muted'));
    list.append(el('dt', 'article'), dd);
  }
  const others = (params.other_articles || []).filter((a) => a && a.id);
  if (others.length) list.append(el('dt', 'also'), el('dd', others.map((a) => a.title || a.id).join(' · ')));
  const notes = ((t.internal_conversation || {}).messages || []).filter((m) => m.ai_insights && Array.isArray(m.ai_insights.similar_cases));
  const similar = notes.length ? notes[notes.length - 1].ai_insights.similar_cases : [];
  if (similar.length) {
    const dd = el('dd', null, 'similar');
    similar.forEach((id, i) => {
      const a = el('a', id);
      a.href = '#ticket/' + encodeURIComponent(id);
      if (i) dd.append(document.createTextNode(' '));
      dd.append(a);
    });
    list.append(el('dt', 'similar cases'), dd);
  }
  if (list.children.length) box.append(list);
  const draft = params.draft_reply;
  if (draft && draft.text) {
    const d = el('div', null, 'draft');
    d.append(el('p', `Drafted reply (${draft.source === 'llm' ? 'by the LLM' : 'from the article template'}):`, 'muted'), el('blockquote', draft.text));
    const use = el('button', 'Start the reply from this draft');
    use.type = 'button';
    use.onclick = () => {
      document.querySelector('#compose input[value="external"]').checked = true;
      composeLabel();
      $('compose-text').value = draft.text;
      $('compose-text').focus();
    };
    d.append(use);
    box.append(d);
  }
  if (!box.children.length) box.append(el('p', 'None for this ticket.', 'muted'));
}

function ticketTasks(tasks) {
  const box = $('ticket-tasks');
  box.replaceChildren();
  if (!tasks.length) { box.append(el('p', 'None open.', 'muted')); return; }
  for (const task of tasks) {
    const card = el('div', null, 'task');
    const head = el('p');
    head.append(el('strong', task.decision_type), document.createTextNode(` · ${task.kind === 'audit' ? 'review of an autonomous decision' : 'decision needed'}`), el('span', ` (task ${task.task_id}, ${task.decision_id})`, 'muted'));
    if (task.suggestion !== null && task.suggestion !== undefined) head.append(document.createTextNode(` · AI suggests ${task.suggestion} (${pctOf(task.confidence)})`));
    else head.append(document.createTextNode(' · no suggestion shown in PHASE_1'));
    const group = el('div', null, 'choices');
    group.setAttribute('role', 'group');
    group.setAttribute('aria-label', `decide ${task.decision_type}`);
    for (const v of task.labels || []) {
      const b = el('button', v, v === task.suggestion ? 'suggested' : '');
      b.type = 'button';
      b.onclick = () => ticketDecide(task, v, card);
      group.append(b);
    }
    const status = el('p', '', 'task-status');
    status.setAttribute('role', 'status');
    card.append(head, group, status);
    box.append(card);
  }
}

async function ticketDecide(task, value, card) {
  const status = card.querySelector('.task-status');
  for (const b of card.querySelectorAll('button')) b.disabled = true;
  try {
    const r = await api('POST', `/api/reviews/${task.task_id}/decide`, { value, decision_ms: Math.round(performance.now() - tk.shownAt) });
    status.textContent = `${r.correct ? 'Confirmed' : 'Overridden'}: ${task.decision_type} = ${value}`;
    ticketLater(300);
  } catch (e) {
    const w = e.body && e.body.winner;
    status.textContent = w ? `Already decided: ${w.value} by ${w.reviewer}` : 'Error: ' + e.message;
    status.classList.add('error');
    for (const b of card.querySelectorAll('button')) b.disabled = false;
  }
}

function ticketDeliveries(res) {
  const box = $('ticket-deliveries');
  box.replaceChildren();
  if (res instanceof Error) { box.append(el('p', 'Delivery state unavailable: ' + res.message, 'error')); return; }
  const ds = res.deliveries || [];
  if (!ds.length) { box.append(el('p', 'No outbound notice for this ticket.', 'muted')); return; }
  const table = el('table', null, 'deliveries');
  const head = el('tr');
  for (const c of ['what', 'target', 'state', 'attempts', 'last error', 'created', 'delivered / next']) { const th = el('th', c); th.scope = 'col'; head.append(th); }
  const thead = el('thead'); thead.append(head);
  const tb = el('tbody');
  for (const d of ds) {
    const tr = el('tr');
    const st = el('td'); st.append(badge(d.state, 'del-' + d.state));
    const when = el('td'); when.append(timeEl(d.delivered || d.next_attempt, true));
    const made = el('td'); made.append(timeEl(d.created, true));
    const what = d.message_id ? 'reply ' + d.message_id : String(d.key || '').startsWith('reply|') ? 'reply' : 'team notice';
    tr.append(el('td', what), el('td', d.target), st, el('td', d.attempts), el('td', d.last_error || '–'), made, when);
    tb.append(tr);
  }
  table.append(thead, tb);
  box.append(table);
}

function auditLine(r) {
  const p = r.payload || {};
  if (r.type === 'decision') return `${p.decision_type} = ${p.value} (${pctOf(p.confidence)}, threshold ${typeof p.threshold === 'number' ? pctOf(p.threshold) : 'none'}, ${p.phase}, ${p.autonomous ? 'autonomous' : 'for a person'}, review ${p.review}, ${p.model})`;
  if (r.type === 'review') return `${p.decision_type} reviewed: AI ${p.ai_value || '?'}, person ${p.value}${p.by ? ' (' + p.by + ')' : ''}, ${p.correct ? 'confirmed' : 'overridden'}${p.notes ? ': ' + p.notes : ''}`;
  return JSON.stringify(p);
}

function ticketAudit(res) {
  const box = $('audit');
  box.replaceChildren();
  if (res instanceof Error) { box.append(el('li', 'Audit trail unavailable: ' + res.message, 'error')); return; }
  if (!res.trail.length) { box.append(el('li', 'No record.', 'muted')); return; }
  for (const r of res.trail) {
    const li = el('li');
    li.append(el('span', '#' + r.seq, 'seq'), timeEl(r.timestamp), el('span', r.type, 'pill'), el('span', auditLine(r)));
    li.title = 'hash ' + r.hash;
    box.append(li);
  }
}

const soft = (p) => p.catch((e) => e);

// The customer's other tickets (by their contact address), newest first.
async function ticketEarlier(t) {
  const box = $('ticket-earlier');
  box.replaceChildren();
  const e = t.external_conversation || {};
  const email = (((e.participants || {}).customer || {}).contact_info || {}).email;
  if (!email) { box.append(el('li', 'No contact address to find other tickets by.', 'muted')); return; }
  try {
    const r = await api('GET', '/api/tickets?limit=11&customer=' + encodeURIComponent(email));
    const others = r.tickets.filter((x) => x.ticket_id !== t.ticket_id).slice(0, 10);
    if (!others.length) box.append(el('li', 'No other ticket from ' + email + '.', 'muted'));
    for (const o of others) {
      const li = el('li');
      const a = el('a', o.ticket_id);
      a.href = '#ticket/' + encodeURIComponent(o.ticket_id);
      li.append(a, el('span', ` ${o.conversation_status || ''} · ${o.category || '–'} · ${o.subject || ''}`));
      box.append(li);
    }
  } catch (err) { box.append(el('li', 'Earlier tickets unavailable: ' + err.message, 'error')); }
}

// Where the ticket stands: I.progress_updates, oldest first.
function ticketProgress(t) {
  const box = $('ticket-progress');
  box.replaceChildren();
  const ups = (t.internal_conversation || {}).progress_updates || [];
  if (!ups.length) box.append(el('li', 'No progress update yet.', 'muted'));
  for (const u of ups) {
    const blocked = (u.blockers || []).length ? ` (blocked: ${u.blockers.join('; ')})` : '';
    box.append(el('li', `${u.timestamp} ${u.status} by ${u.updater}${u.notes ? ': ' + u.notes : ''}${blocked}`));
  }
}

async function ticketLoad(id) {
  const seq = ++tk.seq;
  const enc = encodeURIComponent(id);
  const busy = $('ticket-view');
  busy.setAttribute('aria-busy', 'true');
  try {
    const [t, audit, del, reviews] = await Promise.all([
      api('GET', '/api/tickets/' + enc),
      soft(api('GET', '/api/audit/' + enc)),
      soft(api('GET', '/api/tickets/' + enc + '/deliveries')),
      soft(api('GET', '/api/reviews?status=open')),
    ]);
    if (seq !== tk.seq) return;
    showError($('ticket-error'), null);
    const w = t.workflow || {};
    $('ticket-title').textContent = `${t.ticket_id} — ${w.client_name || '(no name)'}${w.company_name ? ' (' + w.company_name + ')' : ''}`;
    document.title = `${t.ticket_id} · csa`;
    ticketFacts(t);
    ticketSla(t);
    ticketProgress(t);
    ticketEarlier(t);
    const byMessage = new Map();
    for (const d of del instanceof Error ? [] : del.deliveries || []) {
      if (!d.message_id) continue;
      if (!byMessage.has(d.message_id)) byMessage.set(d.message_id, []);
      byMessage.get(d.message_id).push(d);
    }
    timeline($('ticket-timeline'), t.unified_timeline, byMessage);
    // a reply not tried yet goes out within seconds: look again then, so
    // its delivery state shows without a reload (retries back off, so a
    // delivery that failed once is not watched)
    if ([...byMessage.values()].flat().some((d) => d.state === 'pending' && !d.attempts)) ticketLater(1500);
    ticketSuggestions(t);
    const trail = audit instanceof Error ? [] : audit.trail;
    ticketDecisions(t, trail);
    ticketAudit(audit);
    ticketDeliveries(del);
    if (reviews instanceof Error) {
      $('ticket-tasks').replaceChildren(el('p', 'Review tasks unavailable: ' + reviews.message, 'error'));
    } else {
      ticketTasks(reviews.tasks.filter((x) => x.ticket_id === t.ticket_id));
      tk.shownAt = performance.now();
    }
    $('ticket-view').hidden = false;
  } catch (e) {
    if (seq !== tk.seq) return;
    $('ticket-view').hidden = true;
    showError($('ticket-error'), e.status === 404 ? new Error(`no ticket '${id}'`) : e);
  } finally {
    busy.removeAttribute('aria-busy');
  }
}

function ticketLater(ms) {
  clearTimeout(tk.timer);
  tk.timer = setTimeout(() => { if (tk.id) ticketLoad(tk.id); }, ms);
}

function composeSide() {
  return document.querySelector('#compose input[name=side]:checked').value;
}

function composeLabel() {
  $('compose-send').textContent = composeSide() === 'external' ? 'Send reply to the customer' : 'Add internal note';
}

async function composeSend(e) {
  e.preventDefault();
  const text = $('compose-text').value;
  const status = $('compose-status');
  status.classList.remove('error');
  if (!text.trim()) { status.textContent = 'Write something first.'; return; }
  const side = composeSide();
  $('compose-send').disabled = true;
  status.textContent = 'Sending…';
  try {
    await api('POST', `/api/tickets/${encodeURIComponent(tk.id)}/messages`, { side, message: { sender: 'cs_agent', content: text } });
    $('compose-text').value = '';
    status.textContent = side === 'external' ? 'Reply added to the conversation.' : 'Internal note added.';
    await ticketLoad(tk.id);
  } catch (err) {
    status.textContent = 'Error: ' + err.message;
    status.classList.add('error');
  } finally {
    $('compose-send').disabled = false;
  }
}

// A person's change, assignment or resolution (POST .../decide, .../assign,
// .../resolve), then the ticket again as the server now has it.
async function ticketAct(path, body, done) {
  const status = $('act-status');
  status.className = '';
  status.textContent = 'Saving…';
  try {
    const r = await api('POST', `/api/tickets/${encodeURIComponent(tk.id)}/${path}`, body);
    status.textContent = done(r);
    await ticketLoad(tk.id);
  } catch (err) {
    status.textContent = 'Error: ' + err.message;
    status.className = 'error';
  }
}

function assignSubmit(e) {
  e.preventDefault();
  const member = $('assign-member').value.trim();
  if (!member) return;
  ticketAct('assign', { member }, (r) => (r.changed ? `Assigned to ${r.assigned_member}${r.over_capacity ? ' (over capacity)' : ''}.` : `Already ${r.assigned_member}'s.`));
}

// A person changes a decision (POST .../decide): the open review task of
// that type is decided, else the newest decision is corrected; either way
// the model learns from it and the audit trail records it.
let changeLabels = null; // {type: [labels]} from GET /api/phase, read once

async function changeOptions() {
  if (!changeLabels) {
    try { changeLabels = (await api('GET', '/api/phase')).labels || {}; } catch (e) { changeLabels = null; return; }
  }
  const sel = $('change-value');
  sel.replaceChildren(...(changeLabels[$('change-type').value] || []).map((v) => el('option', v)));
}

function changeSubmit(e) {
  e.preventDefault();
  const decision_type = $('change-type').value, value = $('change-value').value;
  if (!value) return;
  ticketAct('decide', { decision_type, value }, (r) => `${decision_type} is ${r.value} now (${r.task_id ? 'review task ' + r.task_id + ' decided' : 'correction recorded'}; AI said ${r.ai_value}).`);
}

function resolveSubmit(e) {
  e.preventDefault();
  const body = {};
  if ($('resolve-csat').value) body.csat = Number($('resolve-csat').value);
  if ($('resolve-notes').value.trim()) body.notes = $('resolve-notes').value.trim();
  ticketAct('resolve', body, (r) => `Resolved; ${Object.values(r.knowledge_extraction || {}).reduce((n, l) => n + l.length, 0)} knowledge entries extracted.`);
}

pages.ticket = {
  show: (arg) => {
    const id = arg.trim();
    $('ticket-id').value = id;
    if (id !== tk.id) {
      $('ticket-view').hidden = true;
      // another ticket: nothing written for the last one, and a note by default
      $('compose-status').textContent = '';
      $('act-status').textContent = '';
      $('compose-text').value = '';
      document.querySelector('#compose input[value="internal"]').checked = true;
      composeLabel();
    }
    tk.id = id;
    changeOptions();
    showError($('ticket-error'), null);
    if (!id) { $('ticket-view').hidden = true; $('ticket-id').focus(); return; }
    ticketLoad(id).then(() => { if (!$('ticket-view').hidden) $('ticket-title').focus(); });
  },
  // Escape, when not writing, goes back to the inbox (its selection kept)
  key: (e) => {
    const tag = e.target.tagName;
    if (e.key === 'Escape' && tag !== 'INPUT' && tag !== 'TEXTAREA' && tag !== 'SELECT') location.hash = '#inbox';
  },
  event: (type, data) => {
    if (!tk.id) return;
    if (type === 'review' || type === 'resync' || (type === 'ticket' && data && data.ticket_id === tk.id)) ticketLater(500);
  },
};

window.addEventListener('DOMContentLoaded', () => {
  $('ticket-form').onsubmit = (e) => {
    e.preventDefault();
    const id = $('ticket-id').value.trim();
    if (id) location.hash = '#ticket/' + encodeURIComponent(id);
  };
  $('ticket-title').tabIndex = -1;
  $('compose').onsubmit = composeSend;
  $('assign-form').onsubmit = assignSubmit;
  $('change-form').onsubmit = changeSubmit;
  $('change-type').onchange = changeOptions;
  $('resolve-form').onsubmit = resolveSubmit;
  for (const r of document.querySelectorAll('#compose input[name=side]')) r.addEventListener('change', composeLabel);
});
