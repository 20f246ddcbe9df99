// The operator console (GET /ops/console) in headless Chromium (Debian's,
// driven by playwright-core), as an operator uses it: types the admin key,
// reads the consumer groups, finds the dead letters, narrows them to the
// biggest cause, looks a notification up, then connects with a read-only
// key (no actions offered). Takes a screenshot of each view
// into SHOTDIR and prints what the page showed as JSON.
'use strict';
const path = require('path');
const { chromium } = require('playwright-core');

(async () => {
  const [base, key, shotdir, noteId, readKey] = process.argv.slice(2);
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    await page.goto(`${base}/ops/console`);
    await page.fill('#key', key);
    await page.click('#login button');
    await page.waitForSelector('#groups tbody tr[data-group="switchboard-persister"]', { timeout: 20000 });
    await page.waitForSelector('#deps .chip');
    // A second poll, so that the throughput column has a rate.
    await page.waitForFunction(() => !/…/.test(document.querySelector('#topics tbody').textContent), null,
                               { timeout: 20000 });
    const groups = await page.$$eval('#groups tbody tr', (rows) => rows.map((r) => ({
      group: r.children[0].textContent, state: r.children[1].textContent,
      lag: Number(r.children[2].textContent.replace(/\D/g, '')) })));
    const deps = await page.$$eval('#deps .chip', (c) => c.map((x) => ({ text: x.textContent, ok: x.classList.contains('ok') })));
    await page.screenshot({ path: path.join(shotdir, 'console-overview.png'), fullPage: true });

    await page.click('#dlform button');
    await page.waitForFunction(() => /match/.test(document.querySelector('#dlsummary').textContent), null,
                               { timeout: 30000 });
    const summary = await page.textContent('#dlsummary');
    const causes = await page.$$eval('#causes tbody tr', (rows) => rows.map((r) => ({
      cause: r.children[0].textContent, count: Number(r.children[1].textContent.replace(/\D/g, '')) })));
    const letters = await page.$$eval('#letters tbody tr', (rows) => rows.length);
    await page.screenshot({ path: path.join(shotdir, 'console-dead-letters.png'), fullPage: true });

    // The biggest cause, clicked: the list narrows to it.
    await page.click('#causes tbody tr:first-child a');
    await page.waitForFunction((c) => document.querySelector('#dlform [name=cause]').value === c &&
                                      /match/.test(document.querySelector('#dlsummary').textContent),
                               causes[0].cause, { timeout: 30000 });
    const narrowed = await page.textContent('#dlsummary');

    // Those discarded from the page (the confirmation accepted): the list of
    // letters nobody handled no longer has them.
    page.on('dialog', (d) => d.accept());
    await page.click('#discard');
    await page.waitForFunction(() => /discarded of/.test(document.querySelector('#acted').textContent), null,
                               { timeout: 30000 });
    const acted = await page.textContent('#acted');
    await page.waitForFunction(() => /^0 dead letters match/.test(document.querySelector('#dlsummary').textContent),
                               null, { timeout: 30000 });
    const after = await page.textContent('#dlsummary');

    await page.fill('#lookform [name=note]', noteId);
    await page.click('#lookform button');
    await page.waitForFunction(() => document.querySelector('#lookout').textContent.length > 0, null, { timeout: 20000 });
    const lookup = await page.textContent('#lookout');
    await page.screenshot({ path: path.join(shotdir, 'console-lookup.png'), fullPage: true });

    // A read-only key: the page says so and offers no redrive or discard,
    // even for a list of letters nobody handled.
    await page.fill('#key', readKey);
    await page.click('#login button');
    await page.waitForFunction(() => /read-only/.test(document.querySelector('#conn').textContent), null,
                               { timeout: 20000 });
    await page.selectOption('#dlform [name=state]', 'new');
    await page.fill('#dlform [name=cause]', '');
    await page.click('#dlform button');
    await page.waitForFunction(() => /match/.test(document.querySelector('#dlsummary').textContent), null,
                               { timeout: 30000 });
    const readOnly = { conn: await page.textContent('#conn'), summary: await page.textContent('#dlsummary'),
                       actionsHidden: await page.$eval('#actions', (a) => a.hidden) };
    console.log(JSON.stringify({ groups, deps, summary, causes, letters, narrowed, acted, after, lookup, readOnly,
                                 errors }));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
