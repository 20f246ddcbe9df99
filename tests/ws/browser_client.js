// A page in headless Chromium (Debian's, driven by playwright-core) against
// GET /ws: the browser cannot set Authorization, so the credential goes as
// the subprotocol "bearer.<key>" beside "switchboard.v1". Streams n
// creates, one message each, and prints {"protocol", "numbers"}.
'use strict';
const { chromium } = require('playwright-core');
const { creates } = require('./common');

(async () => {
  const [url, key, token, chat, n] = process.argv.slice(2);
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage();
    await page.setContent('<!doctype html><title>switchboard ws</title>');
    const result = await page.evaluate(async ({ url, key, cmds }) => {
      const ws = new WebSocket(url, ['switchboard.v1', `bearer.${key}`]);
      const numbers = new Array(cmds.length);
      return await new Promise((resolve, reject) => {
        let got = 0;
        setTimeout(() => reject(new Error(`timed out with ${got} replies`)), 60000);
        ws.onerror = () => reject(new Error('websocket error'));
        ws.onopen = () => { for (const c of cmds) ws.send(c); };
        ws.onmessage = (ev) => {
          for (const line of ev.data.split('\n')) {
            if (!line) continue;
            const r = JSON.parse(line);
            if (r.status !== 201) { reject(new Error(line)); return; }
            numbers[r.id - 1] = r.body.number;
            if (++got === cmds.length) { resolve({ protocol: ws.protocol, numbers }); ws.close(1000); }
          }
        };
      });
    }, { url, key, cmds: creates(token, Number(chat), Number(n)) });
    console.log(JSON.stringify(result));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
