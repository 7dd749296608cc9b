// The inbox: every ticket from GET /api/tickets, searched (q=), filtered,
// sorted and paged by cursor; counts per view (count=1); refreshed when the
// event stream says a ticket or a review changed; keyboard navigable.
// Everything from the API goes on the page as text (el(), textContent).
'use strict';

const inbox = {
  rows: [],          // the rows on screen, in order
  next: null,        // next_cursor of the last page loaded
  sel: -1,           // index of the selected row
  seq: 0,            // the latest request; older answers are dropped
  timer: null,       // the debounced refresh
  countTimer: null,  // the throttled counts of the views
  countedAt: 0,
  typing: null,      // the debounced search while typing
  fresh: new Set(),  // tickets an event just named, marked for a moment
  categories: new Set(),
};

// The views on the left: a name and the filters it sets.
const INBOX_VIEWS = [
  ['All tickets', {}],
  ['Active', { status: 'active' }],
  ['Escalated', { status: 'escalated' }],
  ['Waiting for review', { review: 'true' }],
  ['SLA at risk', { sla: 'at_risk' }],
  ['SLA breached', { sla: 'breached' }],
  ['Decided autonomously', { autonomous: 'true' }],
  ['Resolved', { status: 'resolved' }],
];

const INBOX_FILTERS = ['status', 'priority', 'category', 'sla', 'assigned', 'review', 'autonomous'];

function inboxFilters() {
  const f = {};
  for (const k of INBOX_FILTERS) {
    const v = $('f-' + k).value.trim();
    if (v) f[k] = v;
  }
  return f;
}

function inboxQuery(extra) {
  const p = new URLSearchParams();
  const q = $('inbox-q').value.trim();
  if (q) p.set('q', q);
  for (const [k, v] of Object.entries(inboxFilters())) p.set(k, v);
  p.set('sort', $('f-sort').value);
  for (const [k, v] of Object.entries(extra || {})) p.set(k, v);
  return p;
}

function sameFilters(a, b) {
  const ka = Object.keys(a), kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => a[k] === b[k]);
}

function inboxRow(t, i) {
  const tr = el('tr');
  tr.dataset.id = t.ticket_id;
  tr.dataset.index = i;
  if (inbox.fresh.has(t.ticket_id)) tr.classList.add('fresh');
  const link = el('a', t.ticket_id, 'ticket-link');
  link.href = '#ticket/' + encodeURIComponent(t.ticket_id);
  link.addEventListener('focus', () => inboxSelect(i, false));
  const idCell = el('td');
  idCell.append(link);

  const who = el('td', null, 'who');
  who.append(el('span', t.client_name || '(no name)', 'client'));
  if (t.company_name) who.append(el('span', t.company_name, 'company'));
  if (t.subject) who.append(el('span', t.subject, 'subject'));

  const prio = el('td');
  if (t.priority) prio.append(badge(t.priority.toLowerCase(), 'prio-' + t.priority));
  else prio.textContent = '–';

  const sla = el('td');
  const state = t.sla_state || 'on_time';
  sla.append(badge(SLA_TEXT[state] || state, 'sla-' + state));
  if (t.sla_due) {
    const due = el('span', null, 'due');
    due.append(document.createTextNode(Date.parse(t.sla_due) < Date.now() ? 'was due ' : 'due '), timeEl(t.sla_due, true));
    sla.append(due);
  }

  const assigned = el('td', t.assigned_member || 'unassigned', t.assigned_member ? '' : 'muted');

  const marks = el('td', null, 'marks');
  if (t.waiting_for_review) marks.append(badge('waits for review', 'review', 'a decision of this ticket waits for a person'));
  if (t.decided_autonomously) marks.append(badge('autonomous', 'auto', 'a decision of this ticket was applied autonomously'));
  if (!t.waiting_for_review && !t.decided_autonomously) marks.append(el('span', '–', 'muted'));

  const upd = el('td');
  upd.append(timeEl(t.last_updated, true));

  tr.append(idCell, who, el('td', t.category || '–'), prio, el('td', t.conversation_status || '–'), sla,
    assigned, marks, upd);
  tr.addEventListener('click', (e) => {
    if (e.target.closest('a')) return;
    location.hash = link.getAttribute('href');
  });
  return tr;
}

function inboxRender() {
  const body = $('inbox-rows');
  body.replaceChildren(...inbox.rows.map(inboxRow));
  $('inbox-empty').hidden = inbox.rows.length > 0;
  $('inbox-more').hidden = !inbox.next;
  if (inbox.sel >= inbox.rows.length) inbox.sel = inbox.rows.length - 1;
  inboxMark();
}

function inboxMark() {
  for (const tr of $('inbox-rows').children) {
    const on = Number(tr.dataset.index) === inbox.sel;
    tr.classList.toggle('selected', on);
    if (on) tr.setAttribute('aria-current', 'true'); else tr.removeAttribute('aria-current');
  }
}

function inboxSelect(i, focus) {
  if (!inbox.rows.length) return;
  inbox.sel = Math.max(0, Math.min(inbox.rows.length - 1, i));
  inboxMark();
  const tr = $('inbox-rows').children[inbox.sel];
  if (tr) {
    const a = tr.querySelector('a');
    if (focus && document.activeElement !== a) a.focus();
    tr.scrollIntoView({ block: 'nearest' });
  }
}

// The first page (as many rows as are on screen, so a refresh does not
// take back what "load more" brought), with the total of this view.
async function inboxLoad() {
  const seq = ++inbox.seq;
  const keep = inbox.sel >= 0 && inbox.rows[inbox.sel] ? inbox.rows[inbox.sel].ticket_id : null;
  const limit = Math.min(200, Math.max(50, inbox.rows.length));
  $('inbox-table').setAttribute('aria-busy', 'true');
  try {
    const r = await api('GET', '/api/tickets?' + inboxQuery({ limit, count: 1 }));
    if (seq !== inbox.seq) return;
    inbox.rows = r.tickets;
    inbox.next = r.next_cursor;
    const at = keep ? inbox.rows.findIndex((t) => t.ticket_id === keep) : -1;
    inbox.sel = at >= 0 ? at : (inbox.rows.length ? Math.max(0, Math.min(inbox.sel, inbox.rows.length - 1)) : -1);
    for (const t of inbox.rows) if (t.category) inbox.categories.add(t.category);
    inboxCategories();
    $('inbox-count').textContent = `${r.total} ticket${r.total === 1 ? '' : 's'}`;
    const sorted = { updated: ['Last update', 'descending'], sla_due: ['SLA', 'ascending'], priority: ['Priority', 'descending'] }[r.sort] || [];
    for (const th of $('inbox-table').querySelectorAll('thead th')) {
      if (th.textContent === sorted[0]) th.setAttribute('aria-sort', sorted[1]); else th.removeAttribute('aria-sort');
    }
    // the list on screen is a view: its count is this total
    const now = inboxFilters();
    if (!$('inbox-q').value.trim()) {
      for (const b of $('inbox-views').querySelectorAll('button')) if (sameFilters(b.view, now)) b.lastChild.textContent = String(r.total);
    }
    showError($('inbox-error'), null);
    const focused = $('inbox-rows').contains(document.activeElement);
    inboxRender();
    if (inbox.sel >= 0 && focused) inboxSelect(inbox.sel, true);
  } catch (e) {
    if (seq === inbox.seq) showError($('inbox-error'), e);
  } finally {
    if (seq === inbox.seq) $('inbox-table').removeAttribute('aria-busy');
  }
}

async function inboxMore() {
  if (!inbox.next) return;
  const seq = ++inbox.seq;
  const btn = $('inbox-more');
  btn.disabled = true;
  try {
    const r = await api('GET', '/api/tickets?' + inboxQuery({ limit: 50, cursor: inbox.next }));
    if (seq !== inbox.seq) return;
    const first = inbox.rows.length;
    inbox.rows = inbox.rows.concat(r.tickets);
    inbox.next = r.next_cursor;
    showError($('inbox-error'), null);
    inboxRender();
    if (r.tickets.length) inboxSelect(first, true);
  } catch (e) {
    if (seq === inbox.seq) showError($('inbox-error'), e);
  } finally {
    btn.disabled = false;
  }
}

// The views, built once; counts per view from one count=1 request each
// (a single row), fetched on showing the inbox and after live events.
function inboxViews() {
  const ul = $('inbox-views').querySelector('ul');
  if (ul.children.length) return;
  for (const [name, f] of INBOX_VIEWS) {
    const li = el('li');
    const b = el('button', null, 'view');
    b.type = 'button';
    b.append(el('span', name), el('span', '', 'count'));
    b.onclick = () => inboxView(f);
    b.view = f;
    li.append(b);
    ul.append(li);
  }
}

function inboxMarkView() {
  const now = inboxFilters();
  for (const b of $('inbox-views').querySelectorAll('button')) {
    if (sameFilters(b.view, now)) b.setAttribute('aria-current', 'true'); else b.removeAttribute('aria-current');
  }
}

async function inboxCounts() {
  inbox.countedAt = Date.now();
  inboxViews();
  await Promise.all([...$('inbox-views').querySelectorAll('button')].map(async (b) => {
    const p = new URLSearchParams(Object.assign({ limit: 1, count: 1 }, b.view));
    try {
      const r = await api('GET', '/api/tickets?' + p);
      b.lastChild.textContent = String(r.total);
      b.title = '';
    } catch (e) {
      b.lastChild.textContent = '?';
      b.title = e.message;
    }
  }));
}

function inboxView(f) {
  $('inbox-q').value = '';
  for (const k of INBOX_FILTERS) $('f-' + k).value = f[k] || '';
  inboxRefresh();
}

// The category filter offers the categories the workspace has seen: the
// segments of its decisions (GET /api/phase) and those of loaded rows.
async function inboxLoadCategories() {
  try {
    const ph = await api('GET', '/api/phase');
    for (const s of ph.segments || []) if (s.segment && s.segment !== '-') inbox.categories.add(s.segment);
    inboxCategories();
  } catch (e) { /* the rows still bring theirs */ }
}

function inboxCategories() {
  const sel = $('f-category');
  const have = new Set([...sel.options].map((o) => o.value));
  for (const c of [...inbox.categories].sort()) {
    if (have.has(c)) continue;
    const o = el('option', c);
    o.value = c;
    sel.append(o);
  }
}

function inboxRefresh() {
  inbox.rows = [];
  inbox.sel = -1;
  inboxMarkView();
  inboxLoad();
}

// Live: a burst of events is one refresh of the page, a second after the
// last; the counts of the views (one query each) at most every 5 seconds.
function inboxLater() {
  clearTimeout(inbox.timer);
  inbox.timer = setTimeout(() => {
    inboxLoad().then(() => { inbox.fresh.clear(); });
    const wait = inbox.countedAt + 5000 - Date.now();
    clearTimeout(inbox.countTimer);
    if (wait <= 0) inboxCounts();
    else inbox.countTimer = setTimeout(inboxCounts, wait);
  }, 1000);
}

function inboxKey(e) {
  const t = e.target, tag = t.tagName;
  const typing = tag === 'INPUT' || tag === 'SELECT' || tag === 'TEXTAREA';
  if (e.key === '/' && !typing) {
    e.preventDefault();
    $('inbox-q').focus();
    $('inbox-q').select();
    return;
  }
  if (t === $('inbox-q') && (e.key === 'ArrowDown' || e.key === 'Escape')) {
    e.preventDefault();
    inboxSelect(inbox.sel < 0 ? 0 : inbox.sel, true);
    return;
  }
  if (typing) return;
  if (e.key === 'j' || e.key === 'ArrowDown') { e.preventDefault(); inboxSelect(inbox.sel + 1, true); }
  else if (e.key === 'k' || e.key === 'ArrowUp') { e.preventDefault(); inboxSelect(inbox.sel - 1, true); }
  else if (e.key === 'Enter' && tag !== 'A' && tag !== 'BUTTON' && inbox.sel >= 0 && inbox.rows[inbox.sel]) {
    e.preventDefault();
    location.hash = '#ticket/' + encodeURIComponent(inbox.rows[inbox.sel].ticket_id);
  }
}

pages.inbox = {
  show: () => {
    inboxViews();
    inboxMarkView();
    // back from a ticket: the keyboard continues where it was
    const back = inbox.sel >= 0;
    inboxLoad().then(() => { if (back && inbox.sel >= 0) inboxSelect(inbox.sel, true); });
    inboxCounts();
    inboxLoadCategories();
  },
  event: (type, data) => {
    // resync: events were missed (several nodes, docs/API.md): refresh
    if (type !== 'ticket' && type !== 'review' && type !== 'resync') return;
    if (data && data.ticket_id) inbox.fresh.add(data.ticket_id);
    inboxLater();
  },
  key: inboxKey,
};

window.addEventListener('DOMContentLoaded', () => {
  $('inbox-filters').onsubmit = (e) => { e.preventDefault(); clearTimeout(inbox.typing); inboxRefresh(); };
  $('inbox-q').addEventListener('input', () => {
    clearTimeout(inbox.typing);
    inbox.typing = setTimeout(inboxRefresh, 400);
  });
  for (const k of INBOX_FILTERS.concat(['sort'])) {
    $('f-' + k).addEventListener('change', inboxRefresh);
  }
  $('inbox-clear').onclick = () => { $('f-sort').value = 'updated'; inboxView({}); };
  $('inbox-more').onclick = inboxMore;
});
