// Issue 25's story in the operator console (GET /ops/console), in headless
// Chromium (Debian's, driven by playwright-core): the dead letters of a
// failing provider and a poisoned topic, grouped by cause; the
// notifications redriven and the poison discarded from the page; every
// consumer group's lag back at zero; a redriven notification looked up.
// Screenshots of each step go to SHOTDIR; what the page showed is printed
// as JSON (last line).
'use strict';
const path = require('path');
const { chromium } = require('playwright-core');

const WAIT = { timeout: 60000 };

(async () => {
  const [base, key, shotdir, noteId] = process.argv.slice(2);
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('dialog', (d) => d.accept()); // the confirmation before an action
    await page.goto(`${base}/ops/console`);
    await page.fill('#key', key);
    await page.click('#login button');
    await page.waitForSelector('#groups tbody tr[data-group="switchboard-notifier"]', WAIT);

    // Find with the cause filter empty: every letter nobody handled.
    async function findAll() {
      await page.fill('#dlform [name=cause]', '');
      await page.click('#dlform button');
      await page.waitForFunction(() => /match/.test(document.querySelector('#dlsummary').textContent), null, WAIT);
    }
    await findAll();
    const causes = Object.fromEntries(await page.$$eval('#causes tbody tr', (rows) => rows.map((r) =>
      [r.children[0].textContent, Number(r.children[1].textContent.replace(/\D/g, ''))])));
    await page.screenshot({ path: path.join(shotdir, 'console-story-failing.png'), fullPage: true });

    // One cause, then its action; the list is read again after it.
    async function handle(cause, button, done) {
      await findAll();
      await page.click(`#causes tbody a:text-is("${cause}")`);
      await page.waitForFunction((c) => document.querySelector('#dlform [name=cause]').value === c &&
                                        /match/.test(document.querySelector('#dlsummary').textContent) &&
                                        !document.querySelector('#actions').hidden, cause, WAIT);
      await page.click(button);
      await page.waitForFunction((w) => document.querySelector('#acted').textContent.includes(w), done, WAIT);
      const acted = await page.textContent('#acted');
      // The list is read again after an action: none of that cause is left.
      await page.waitForFunction(() => /^0 dead letters match/.test(document.querySelector('#dlsummary').textContent),
                                 null, WAIT);
      return acted;
    }
    const redriven = await handle('gave up after N attempts', '#redrive', 'redriven of');
    const discarded = await handle('malformed JSON near offset N', '#discard', 'discarded of');
    await findAll();
    const after = await page.textContent('#dlsummary');
    await page.screenshot({ path: path.join(shotdir, 'console-story-handled.png'), fullPage: true });

    // The page polls every 5 s: wait for every group's lag to show zero.
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('#groups tbody tr')];
      return rows.length > 0 && rows.every((r) => r.children[2].textContent.trim() === '0');
    }, null, WAIT);
    const lags = Object.fromEntries(await page.$$eval('#groups tbody tr', (rows) => rows.map((r) =>
      [r.dataset.group, Number(r.children[2].textContent.replace(/\D/g, ''))])));

    await page.fill('#lookform [name=note]', noteId);
    await page.click('#lookform button');
    await page.waitForFunction(() => document.querySelector('#lookout').textContent.includes('"status"'), null, WAIT);
    const lookup = await page.textContent('#lookout');
    await page.screenshot({ path: path.join(shotdir, 'console-story-recovered.png'), fullPage: true });
    console.log(JSON.stringify({ causes, redriven, discarded, after, lags, lookup, errors }));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
