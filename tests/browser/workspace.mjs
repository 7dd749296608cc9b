// The agent's workspace in a real browser: the inbox lists tickets, a word
// finds its ticket, a filter narrows the list, the keyboard moves and opens,
// new tickets arrive live; the ticket page shows both sides of the timeline
// and the decisions, takes an internal note and a reply (one by e-mail to a
// local SMTP server), decides a review
// task; hostile customer text is shown literally and runs nothing; no
// console errors; axe-core finds no serious or critical violation on any
// page (inbox, ticket, review, metrics, phase); the
// screenshots go to the artifacts directory.
import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { start, smtpSink, browserArgs } from './server.mjs';

const [csa, artifacts] = process.argv.slice(2);
// team notices go to a webhook nobody listens on: they wait in the outbox;
// e-mail replies go to a local SMTP server that keeps them
const smtp = await smtpSink();
const { base, token, api, stop } = await start(csa, 400,
  { CSA_WEBHOOK_URL: 'http://127.0.0.1:9/csa-test-hook', CSA_SMTP_URL: `smtp://127.0.0.1:${smtp.port}` },
  { channels: { email: { from: 'support@csa.test', from_name: 'Acme Support' } } });
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

const step = (s) => console.log('workspace: ' + s);
const rowIds = (page) => page.$$eval('#inbox-rows tr', (trs) => trs.map((tr) => tr.dataset.id));

// axe-core on the page as it is: no serious or critical violation.
async function accessible(page, name) {
  await page.evaluate(axeSource); // through the DevTools protocol: the page's CSP stays on
  const r = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  const text = bad.map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')})`);
  assert.deepEqual(text, [], `axe-core on the ${name}`);
  step(`axe-core: ${name} has no serious or critical violation (${r.violations.length} minor)`);
}

let browser;
try {
  const evil = '<img src=x onerror=alert(1)>';
  const made = [
    { ticket_id: 'WEB-QUOKKA', client_name: 'Ada Park', company_name: 'Northwind', platform: 'email',
      customer: { subscription_tier: 'PREMIUM', contact_info: { email: 'ada@northwind.test' } },
      messages: [{ content: 'The quokka export fails with error 500 since this morning' }] },
    { ticket_id: 'WEB-INVOICE', client_name: 'Bo Lind', company_name: 'Initech', platform: 'web_chat',
      messages: [{ content: 'I was charged twice on my last invoice, please refund one' }] },
    { ticket_id: 'XSS-2', client_name: evil, company_name: '<b>Evil Corp</b>',
      messages: [{ content: `${evil} <script>window.__xss=1</script> hello` }] },
  ];
  for (const t of made) assert.equal((await api('POST', '/api/tickets', t)).status, 201, t.ticket_id);

  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: browserArgs });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [];
  let expectErrors = false; // while the page is shown a ticket that does not exist
  const dialogs = [];
  page.on('pageerror', (e) => errors.push('pageerror: ' + e.message));
  page.on('console', (m) => { if (m.type() === 'error' && !expectErrors) errors.push('console: ' + m.text()); });
  let confirmNext = false; // the rollback's confirmation, accepted when the test asks for it
  page.on('dialog', (d) => {
    if (confirmNext && d.type() === 'confirm') { confirmNext = false; d.accept(); return; }
    dialogs.push(d.message());
    d.dismiss();
  });

  // sign in: the inbox is the landing page
  await page.goto(base + '/');
  await page.fill('#token', token);
  await page.click('#login-form button');
  await page.waitForSelector('#inbox-rows tr');
  assert.ok(!(await page.isHidden('#page-inbox')), 'the inbox is the landing page');
  await page.waitForFunction(() => /^\d+ tickets?$/.test(document.getElementById('inbox-count').textContent));
  const total = parseInt(await page.textContent('#inbox-count'), 10);
  assert.equal(total, 403, 'the count of all tickets (count=1)');
  assert.equal((await rowIds(page)).length, 50, 'the first page');
  // counts per view
  await page.waitForFunction(() => [...document.querySelectorAll('#inbox-views .count')].every((c) => /^\d+$/.test(c.textContent)));
  const views = await page.$$eval('#inbox-views button', (bs) => Object.fromEntries(bs.map((b) => [b.firstChild.textContent, Number(b.lastChild.textContent)])));
  assert.equal(views['All tickets'], 403);
  assert.equal(views.Resolved, 400, 'the imported history is resolved');
  // the hostile client name, literally, in its row
  const xssRow = await page.textContent('#inbox-rows tr[data-id="XSS-2"]');
  assert.ok(xssRow.includes(evil) && xssRow.includes('<b>Evil Corp</b>'), 'hostile names shown as text in the inbox');
  assert.equal(await page.locator('#page-inbox img').count(), 0);
  step(`inbox lists ${total} tickets, views ${JSON.stringify(views)}`);
  await page.screenshot({ path: join(artifacts, 'workspace-inbox.png') });

  // load more, by cursor
  await page.click('#inbox-more');
  await page.waitForFunction(() => document.querySelectorAll('#inbox-rows tr').length === 100);
  const ids = await rowIds(page);
  assert.equal(new Set(ids).size, 100, 'the second page continues the first');
  step('load more brings the next 50');

  await accessible(page, 'inbox');

  // search by a word
  await page.fill('#inbox-q', 'quokka');
  await page.press('#inbox-q', 'Enter');
  await page.waitForFunction(() => document.getElementById('inbox-count').textContent === '1 ticket');
  assert.deepEqual(await rowIds(page), ['WEB-QUOKKA']);
  await page.fill('#inbox-q', 'invoice refund');
  await page.press('#inbox-q', 'Enter');
  await page.waitForFunction(() => [...document.querySelectorAll('#inbox-rows tr')].some((tr) => tr.dataset.id === 'WEB-INVOICE'));
  assert.ok(!(await rowIds(page)).includes('WEB-QUOKKA'));
  step('search finds the ticket by its words');

  // a filter narrows the list
  await page.click('#inbox-clear');
  await page.waitForFunction((n) => document.getElementById('inbox-count').textContent === n + ' tickets', total);
  // sort: by priority, critical first
  await page.selectOption('#f-sort', 'priority');
  await page.waitForFunction(() => document.querySelector('#inbox-rows tr td:nth-child(4)').textContent === 'critical');
  const prios = await page.$$eval('#inbox-rows tr td:nth-child(4)', (tds) => tds.map((td) => td.textContent));
  const rank = { critical: 0, high: 1, medium: 2, low: 3 };
  assert.ok(prios.every((p, i) => i === 0 || rank[prios[i - 1]] <= rank[p]), 'priorities in order: ' + prios.join(','));
  await page.selectOption('#f-sort', 'updated');
  await page.selectOption('#f-status', 'active');
  await page.waitForFunction(() => document.getElementById('inbox-count').textContent === '3 tickets');
  const active = await rowIds(page);
  assert.deepEqual([...active].sort(), ['WEB-INVOICE', 'WEB-QUOKKA', 'XSS-2']);
  const statuses = await page.$$eval('#inbox-rows tr td:nth-child(5)', (tds) => tds.map((td) => td.textContent));
  assert.deepEqual(statuses, ['active', 'active', 'active']);
  assert.equal(await page.getAttribute('#inbox-views button:has-text("Active")', 'aria-current'), 'true', 'the view of the filter is marked');
  await page.selectOption('#f-review', 'false');
  await page.waitForFunction(() => document.getElementById('inbox-count').textContent === '0 tickets');
  assert.ok(await page.isVisible('#inbox-empty'));
  await page.selectOption('#f-review', '');
  await page.waitForFunction(() => document.getElementById('inbox-count').textContent === '3 tickets');
  step('the status filter narrows 403 to 3; waiting-for-review=false to 0');

  // keyboard: / focuses the search, Escape goes to the list, j/k move, Enter opens
  await page.focus('body');
  await page.keyboard.press('/');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'inbox-q');
  await page.keyboard.press('Escape');
  await page.keyboard.press('j');
  await page.keyboard.press('j');
  await page.keyboard.press('k');
  const sel = await page.$eval('#inbox-rows tr.selected', (tr) => tr.dataset.id);
  assert.equal(sel, active[1], 'two down and one up is the second row');
  assert.equal(await page.evaluate(() => document.activeElement.closest('tr').dataset.id), sel, 'focus follows the selection');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('ArrowUp');
  await page.keyboard.press('Enter');
  await page.waitForFunction((id) => location.hash === '#ticket/' + id, sel);
  await page.waitForSelector('#ticket-view:not([hidden])');
  assert.equal((await page.textContent('#ticket-title')).split(' ')[0], sel);
  await page.keyboard.press('Escape');
  await page.waitForFunction((id) => location.hash === '#inbox' && document.activeElement.closest('tr') && document.activeElement.closest('tr').dataset.id === id, sel);
  step(`keyboard: moved to ${sel}, opened it, Escape came back to it`);

  // live: a ticket created elsewhere appears in the inbox without a reload
  await page.goto(base + '/#inbox');
  await page.waitForSelector('#inbox-rows tr');
  await page.waitForFunction(() => document.getElementById('live-state').textContent.includes('live'));
  await page.focus('body');
  await page.keyboard.press('j');
  const focusedId = await page.evaluate(() => document.activeElement.closest('tr').dataset.id);
  assert.equal((await api('POST', '/api/tickets', { ticket_id: 'WEB-LIVE', client_name: 'Cy Live', messages: [{ content: 'Password reset link does not arrive' }] })).status, 201);
  await page.waitForSelector('#inbox-rows tr[data-id="WEB-LIVE"]', { timeout: 10000 });
  await page.waitForFunction(() => document.getElementById('inbox-count').textContent === '4 tickets');
  assert.equal(await page.evaluate(() => document.activeElement.closest('tr') && document.activeElement.closest('tr').dataset.id), focusedId,
    'the refresh keeps the focused ticket');
  await page.screenshot({ path: join(artifacts, 'workspace-inbox-active.png') });
  step('a new ticket arrived over the event stream');

  // suggestions: the article, similar cases, and a reply started from the draft
  const live = (await api('GET', '/api/tickets/WEB-LIVE')).json;
  const selector = live.workflow.agent_decisions.find((d) => d.agent === 'selector').decision;
  const draft = selector.execution_parameters.draft_reply;
  assert.ok(draft && draft.text, `a drafted reply for a password reset (strategy ${selector.strategy})`);
  await page.goto(base + '/#ticket/WEB-LIVE');
  await page.waitForSelector('#ticket-view:not([hidden]) #ticket-suggestions .draft');
  const sugg = await page.textContent('#ticket-suggestions');
  assert.ok(sugg.includes(selector.execution_parameters.article.title), 'the suggested article');
  assert.ok(await page.locator('#ticket-suggestions .similar a').count() >= 1, 'similar resolved cases');
  await page.click('#ticket-suggestions .draft button');
  assert.equal(await page.inputValue('#compose-text'), draft.text);
  assert.ok(await page.isChecked('#compose input[value="external"]'));
  assert.equal(await page.textContent('#compose-send'), 'Send reply to the customer');
  const similar = await page.getAttribute('#ticket-suggestions .similar a', 'href');
  await page.click('#ticket-suggestions .similar a');
  await page.waitForFunction((h) => location.hash === h, similar);
  await page.waitForFunction((id) => document.getElementById('ticket-title').textContent.startsWith(id + ' '), decodeURIComponent(similar.slice('#ticket/'.length)));
  assert.equal(await page.inputValue('#compose-text'), '', 'another ticket starts with an empty reply');
  assert.ok(await page.isChecked('#compose input[value="internal"]'), 'and with an internal note');
  step(`suggestions: article, similar case ${similar}, a reply started from the ${draft.source} draft`);
  // the customer's other tickets, as the API finds them by address
  const simId = decodeURIComponent(similar.slice('#ticket/'.length));
  const email = (await api('GET', '/api/tickets/' + encodeURIComponent(simId))).json.external_conversation.participants.customer.contact_info.email;
  const same = (await api('GET', '/api/tickets?limit=50&customer=' + encodeURIComponent(email))).json.tickets.filter((x) => x.ticket_id !== simId);
  await page.waitForSelector('#ticket-earlier li');
  if (same.length) {
    await page.waitForSelector('#ticket-earlier li a');
    assert.equal(await page.locator('#ticket-earlier li a').count(), Math.min(10, same.length));
  } else {
    assert.match(await page.textContent('#ticket-earlier'), /No other ticket from/);
  }
  step(`the customer's other tickets: ${same.length} by ${email}`);

  // the ticket page: both sides, the decisions
  await page.goto(base + '/#ticket/WEB-QUOKKA');
  await page.waitForSelector('#ticket-view:not([hidden]) #ticket-timeline li');
  assert.ok(await page.locator('#ticket-timeline li[data-side="external"]').count() >= 1, 'the customer side');
  assert.ok(await page.locator('#ticket-timeline li[data-side="internal"]').count() >= 1, 'the internal side');
  assert.ok((await page.textContent('#ticket-timeline li[data-side="external"]')).includes('quokka export fails'));
  const decisions = await page.$$eval('#ticket-decisions .decision', (ds) => ds.map((d) => d.dataset.type));
  for (const t of ['category', 'priority', 'strategy', 'escalation']) assert.ok(decisions.includes(t), 'decision ' + t);
  const cat = await page.textContent('#ticket-decisions .decision[data-type="category"]');
  for (const w of ['confidence', 'alternatives', 'threshold', 'phase', 'decided by', 'model embedded', 'automation', 'audit record#1 decision'])
    assert.ok(cat.includes(w), `the category decision shows ${w}`);
  assert.match(await page.textContent('#ticket-sla'), /first response.*due/s);
  await page.waitForSelector('#ticket-deliveries table');
  const del = await page.textContent('#ticket-deliveries tbody');
  assert.match(del, /webhook/, 'the escalation notice for the webhook');
  assert.match(del, /pending|failed/, 'not delivered: nobody listens');
  step(`ticket page: both sides, decisions ${decisions.join(', ')}, deliveries of its notices`);

  // an internal note
  const note = 'Checked the export logs: quota exceeded on shard 7';
  await page.fill('#compose-text', note);
  await page.click('#compose-send');
  await page.waitForFunction((n) => [...document.querySelectorAll('#ticket-timeline li[data-side="internal"]')].some((li) => li.textContent.includes(n)), note);
  assert.match(await page.textContent('#compose-status'), /Internal note added/);
  const inside = (await api('GET', '/api/tickets/WEB-QUOKKA')).json.internal_conversation.messages;
  assert.ok(inside.some((m) => m.content === note && m.sender === 'cs_agent'), 'the note is in the I file');
  step('an internal note appears in the timeline');

  // the golden path: the ticket the search found by "quokka" answered by
  // e-mail, and the reply reaches the customer's mailbox (the local SMTP
  // server) threaded under the ticket's tag, delivered on the page
  const reply = 'We found the cause and are raising your export quota now.';
  await page.check('#compose input[value="external"]');
  assert.equal(await page.textContent('#compose-send'), 'Send reply to the customer');
  await page.fill('#compose-text', reply);
  await page.click('#compose-send');
  await page.waitForFunction(() => /Reply added/.test(document.getElementById('compose-status').textContent));
  for (let k = 0; k < 200 && !smtp.messages.length; k++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(smtp.messages.length, 1, 'the reply reached the SMTP server');
  const mail = smtp.messages[0];
  assert.deepEqual(mail.to, ['<ada@northwind.test>']);
  assert.match(mail.data, /^Subject: \[WEB-QUOKKA\] /m);
  assert.match(mail.data, /^From: "Acme Support" <support@csa\.test>/m);
  assert.ok(mail.data.includes('We found the cause and are raising your export quota now.'), 'the body');
  await page.waitForFunction(() => /email: delivered/.test(document.getElementById('ticket-timeline').textContent), null, { timeout: 15000 });
  step('a reply by e-mail reached the local SMTP server and shows as delivered');

  // a reply on web chat (the generic webhook): on the customer side with its
  // delivery state, and the first response clock is met
  await page.goto(base + '/#ticket/WEB-INVOICE');
  await page.waitForSelector('#ticket-view:not([hidden]) #ticket-timeline li');
  await page.check('#compose input[value="external"]');
  const answer = 'We refunded the second charge; it shows on your card within 3 days.';
  await page.fill('#compose-text', answer);
  await page.click('#compose-send');
  await page.waitForFunction((n) => [...document.querySelectorAll('#ticket-timeline li[data-side="external"]')].some((li) => li.textContent.includes(n)), answer);
  assert.match(await page.textContent('#compose-status'), /Reply added/);
  const sentLi = page.locator('#ticket-timeline li[data-side="external"]', { hasText: answer });
  assert.match(await sentLi.textContent(), /cs_agent/);
  await page.waitForFunction((n) => [...document.querySelectorAll('#ticket-timeline li')].some((li) => li.textContent.includes(n) && li.querySelector('.delivery')), answer);
  assert.match(await sentLi.locator('.delivery').textContent(), /webhook: (pending|failed)/, 'nobody listens on the webhook');
  assert.match(await page.textContent('#ticket-deliveries tbody'), /reply /);
  assert.match(await page.textContent('#ticket-sla'), /met answered at/);
  step('a reply appears on the customer side with its delivery state; the first response clock is met');

  // decide an open review task from the ticket page
  const before = await page.locator('#ticket-tasks .task').count();
  assert.ok(before >= 1, 'the ticket has open review tasks');
  await page.click('#ticket-tasks .task >> nth=0 >> button >> nth=0');
  await page.waitForFunction((n) => document.querySelectorAll('#ticket-tasks .task').length === n - 1, before);
  await page.waitForFunction(() => /a person \(tk_[0-9a-f]+\) chose/.test(document.getElementById('ticket-decisions').textContent));
  assert.match(await page.textContent('#audit'), /reviewed: AI .*, person /);
  step(`decided a review task (${before} → ${before - 1} open)`);

  await accessible(page, 'ticket page');
  await page.screenshot({ path: join(artifacts, 'workspace-ticket.png'), fullPage: true });

  // hostile customer text, literally, and nothing runs
  await page.goto(base + '/#ticket/XSS-2');
  await page.waitForSelector('#ticket-view:not([hidden]) #ticket-timeline li');
  const shown = await page.textContent('#ticket-timeline');
  assert.ok(shown.includes(evil), 'the img tag is shown as text');
  assert.ok(shown.includes('<script>window.__xss=1</script>'), 'the script tag is shown as text');
  assert.ok((await page.textContent('#ticket-title')).includes(evil));
  assert.equal(await page.locator('#page-ticket img, #page-ticket script, #page-ticket b').count(), 0);
  await page.waitForTimeout(300);
  assert.equal(await page.evaluate(() => window.__xss), undefined, 'no injected code ran');
  assert.deepEqual(dialogs, [], 'no alert');
  step('hostile text is shown literally and runs nothing');

  // the other pages pass axe-core too
  for (const [hash, ready] of [['review', '#task:not([hidden]), #task-empty:not([hidden])'], ['metrics', '#kpis div'], ['phase', '#phase-now:not(:empty)']]) {
    await page.goto(base + '/#' + hash);
    await page.waitForSelector(ready);
    await accessible(page, hash + ' page');
  }

  // the autonomy map: a cell per decision type and segment with what
  // blocks it and when it would pass; a cap set from the map shows on it;
  // a rollback point restored after a confirmation
  assert.equal((await api('POST', '/api/phase/advance', { force: true })).status, 200);
  await page.goto(base + '/#inbox');
  await page.goto(base + '/#phase');
  await page.waitForFunction(() => /PHASE_2 → PHASE_3/.test(document.querySelector('#phase-gate').textContent));
  await page.waitForSelector('#phase-map table.map td.cell');
  const cell = page.locator('#phase-map td.cell').first();
  const scope = await cell.getAttribute('data-scope');
  assert.match(await cell.textContent(), /readiness.*threshold.*— (passes|held|in |not by waiting|no pace)/s, 'a cell says what blocks it and when');
  assert.match(await page.textContent('#phase-gate'), /PHASE_2 → PHASE_3/);
  await cell.locator('select').selectOption('2');
  await page.waitForSelector(`#phase-map td.cell[data-scope="${scope}"] .badge.cap`);
  assert.equal((await api('GET', '/api/phase')).json.caps[scope], 2, 'the cap is the controller\'s');
  await page.locator(`#phase-map td.cell[data-scope="${scope}"] select`).selectOption('none');
  await page.waitForFunction((sc) => !document.querySelector(`#phase-map td.cell[data-scope="${sc}"] .badge.cap`), scope);
  step(`the autonomy map shows ${await page.locator('#phase-map td.cell').count()} cells; a cap set and lifted from it`);
  await accessible(page, 'autonomy map');
  await page.screenshot({ path: join(artifacts, 'workspace-phase.png'), fullPage: true });
  confirmNext = true;
  await page.locator('#phase-points button').first().click();
  await page.waitForFunction(() => /Rolled back to rp-/.test(document.querySelector('#phase-out').textContent));
  assert.equal((await api('GET', '/api/phase')).json.phase, 'PHASE_1', 'the point before the advance');
  step('a rollback point is restored from the page after a confirmation');

  // change, assign and resolve from the ticket page: a member outside the
  // roster is refused with the server's reason; a resolution with CSAT
  // closes it
  await page.goto(base + '/#ticket/XSS-2');
  await page.waitForSelector('#ticket-view:not([hidden]) #ticket-timeline li');
  // a person changes the priority: the ticket takes it, the trail records it
  await page.selectOption('#change-type', 'priority');
  await page.waitForFunction(() => [...document.querySelectorAll('#change-value option')].some((o) => o.value === 'LOW'));
  await page.selectOption('#change-value', 'LOW');
  await page.click('#change-form button');
  await page.waitForFunction(() => /^priority is LOW now \((review task \d+ decided|correction recorded); AI said /.test(document.querySelector('#act-status').textContent));
  assert.equal((await api('GET', '/api/tickets/XSS-2')).json.workflow.priority, 'LOW');
  const trail = (await api('GET', '/api/audit/XSS-2')).json.trail;
  assert.ok(trail.some((r) => ['review', 'correction'].includes(r.type) && r.payload.decision_type === 'priority' && r.payload.value === 'LOW'), 'the change is in the audit trail');
  step('the priority changed from the page: ' + await page.textContent('#act-status'));
  await page.fill('#assign-member', 'nobody-here');
  expectErrors = true; // the browser logs the 400 it was answered
  await page.click('#assign-form button');
  await page.waitForFunction(() => /^Error: /.test(document.querySelector('#act-status').textContent));
  expectErrors = false;
  assert.match(await page.textContent('#act-status'), /roster|member/);
  await page.selectOption('#resolve-csat', '4');
  await page.fill('#resolve-notes', 'Restarted the export job; it runs again.');
  await page.click('#resolve-form button');
  await page.waitForFunction(() => /^Resolved; /.test(document.querySelector('#act-status').textContent));
  const closed = (await api('GET', '/api/tickets/XSS-2')).json.workflow;
  assert.equal(closed.resolved, true);
  assert.equal(closed.sla_metrics.customer_satisfaction, 4);
  await page.waitForFunction(() => /resolvedyes/.test(document.querySelector('#ticket-facts').textContent));
  step('assign refused for a member outside the roster; resolved from the page with CSAT 4');

  // knowledge gaps: the groups the API reports, a draft accepted from the page
  const gaps = (await api('GET', '/api/kb/gaps')).json;
  await page.goto(base + '/#knowledge');
  await page.waitForFunction(() => document.querySelector('#gaps-summary').textContent.length > 0);
  assert.match(await page.textContent('#gaps-summary'), new RegExp(`^${gaps.weak} of ${gaps.tickets} tickets`));
  assert.equal(await page.locator('#gaps section.gap').count(), gaps.groups.length);
  await accessible(page, 'knowledge page');
  if (gaps.groups.length) {
    await page.locator('#gaps section.gap button').first().click();
    await page.waitForFunction(() => /Accepted as kb\//.test(document.querySelector('#gaps section.gap p[role=status]').textContent));
    step(`knowledge gaps: ${gaps.groups.length} groups, the first draft accepted into kb/`);
  } else {
    step('knowledge gaps: none in this history');
  }
  await page.screenshot({ path: join(artifacts, 'workspace-knowledge.png'), fullPage: true });

  // a failing call says so on the page
  expectErrors = true;
  await page.goto(base + '/#inbox');
  await page.waitForSelector('#inbox-rows tr');
  await page.route('**/api/tickets?*', (r) => r.abort());
  await page.selectOption('#f-priority', 'LOW');
  await page.waitForSelector('#inbox-error:not([hidden])');
  assert.match(await page.textContent('#inbox-error'), /Error: cannot reach the server \(GET \/api\/tickets/);
  await page.unroute('**/api/tickets?*');
  await page.selectOption('#f-priority', 'HIGH');
  await page.waitForSelector('#inbox-error', { state: 'hidden' });
  step('an inbox that cannot reach the server says so, and recovers');
  await page.goto(base + '/#ticket/NO-SUCH-TICKET');
  await page.waitForSelector('#ticket-error:not([hidden])');
  assert.match(await page.textContent('#ticket-error'), /no ticket 'NO-SUCH-TICKET'/);
  assert.ok(await page.isHidden('#ticket-view'));
  expectErrors = false;
  step('an unknown ticket is named in an error message');

  assert.deepEqual(errors, [], 'no console errors');
  console.log('workspace browser test passed; screenshots workspace-inbox.png, workspace-inbox-active.png, workspace-ticket.png, workspace-phase.png, workspace-knowledge.png in ' + artifacts);
} finally {
  if (browser) await browser.close();
  const code = await stop();
  await smtp.close();
  if (code !== 0) { console.error('csa serve exited with ' + code); process.exitCode = 1; }
}
