// The dashboard in a real browser: hostile customer text is shown as text
// and never runs, a reviewer decides a task with one click, the metrics
// move, and the page carries its Content-Security-Policy.
import { chromium } from 'playwright-core';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { start, browserArgs } from './server.mjs';

const [csa, artifacts] = process.argv.slice(2);
const { base, token, api, stop } = await start(csa);

let browser;
try {
  const evil = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2"> my card was charged twice';
  const created = await api('POST', '/api/tickets', { ticket_id: 'XSS-1', client_name: '<b>Mallory</b>', messages: [{ content: evil }] });
  assert.equal(created.status, 201);

  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: browserArgs,
  });
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const resp = await page.goto(base + '/');
  assert.match(resp.headers()['content-security-policy'], /script-src 'self'/);

  await page.fill('#token', token);
  await page.click('#login-form button');
  await page.waitForSelector('#inbox-rows tr');

  // the hostile ticket, shown literally
  await page.goto(base + '/#ticket');
  await page.fill('#ticket-id', 'XSS-1');
  await page.click('#ticket-form button');
  await page.waitForSelector('#ticket-view .timeline li');
  const shown = await page.textContent('#ticket-view .timeline');
  assert.ok(shown.includes('<script>window.__xss=1</script>'), 'the script tag is shown as text');
  assert.ok(shown.includes('onerror="window.__xss=2"'), 'the img tag is shown as text');
  assert.equal(await page.evaluate(() => window.__xss), undefined, 'no injected code ran');
  assert.equal(await page.locator('#ticket-view img').count(), 0);
  assert.ok((await page.textContent('#ticket-view')).includes('<b>Mallory</b>'));
  // why: the decisions' heaviest terms, words of the hostile text as text
  const cat = await page.textContent('#ticket-decisions section.decision[data-type="category"]');
  assert.ok(/why[^–]/.test(cat), 'the category decision says why: ' + cat);

  // metrics before
  const before = (await api('GET', '/api/metrics')).json.overall.reviewed;

  // decide the next review task with one click
  await page.goto(base + '/#review');
  await page.waitForSelector('#task:not([hidden])');
  await page.waitForTimeout(300);
  await page.click('#choices button >> nth=0');
  await page.waitForFunction(() => /Confirmed|Overridden/.test(document.getElementById('review-status').textContent));

  // the metrics moved, on the page too
  const after = (await api('GET', '/api/metrics')).json.overall.reviewed;
  assert.equal(after, before + 1);
  await page.goto(base + '/#metrics');
  await page.waitForSelector('#kpis div');
  const kpis = await page.textContent('#kpis');
  assert.ok(kpis.includes(String(after) + 'reviewed'), 'the reviewed count is on the metrics page');
  // the chart over time has the decision log's past at the first look
  assert.ok((await page.locator('#trend polyline').count()) === 2 && (await page.locator('#trend rect').count()) > 1,
    'the trend chart draws the decision log');
  assert.match(await page.textContent('#trend-note'), /hours? with decisions/);
  await page.screenshot({ path: join(artifacts, 'dashboard-metrics.png'), fullPage: true });
  await page.goto(base + '/#review');
  await page.waitForSelector('#task:not([hidden]), #task-empty:not([hidden])');
  await page.screenshot({ path: join(artifacts, 'dashboard-review.png'), fullPage: true });
  assert.deepEqual(errors, []);
  console.log('browser test passed; screenshots in ' + artifacts);
} finally {
  if (browser) await browser.close();
  const code = await stop();
  if (code !== 0) { console.error('csa serve exited with ' + code); process.exitCode = 1; }
}
