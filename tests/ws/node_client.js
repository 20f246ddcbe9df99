// Node's ws client against GET /ws (test_ws_commands.py): the admin key in
// Authorization, n creates 25 to a message, every reply read; prints
// {"numbers": [...]} (the number each command got, in id order).
'use strict';
const WebSocket = require('ws');
const { creates } = require('./common');

const [url, key, token, chat, n] = process.argv.slice(2);
const total = Number(n);
const ws = new WebSocket(url, { headers: { Authorization: `Bearer ${key}` } });
const numbers = new Array(total);
let got = 0;
const timer = setTimeout(() => { console.error(`timed out with ${got} replies`); process.exit(1); }, 60000);

ws.on('open', () => {
  const cmds = creates(token, Number(chat), total);
  for (let i = 0; i < cmds.length; i += 25)
    ws.send(cmds.slice(i, i + 25).join('\n'));
});
ws.on('message', (data) => {
  for (const line of data.toString().split('\n')) {
    if (!line) continue;
    const r = JSON.parse(line);
    if (r.status !== 201) { console.error(line); process.exit(1); }
    numbers[r.id - 1] = r.body.number;
    if (++got === total) {
      clearTimeout(timer);
      console.log(JSON.stringify({ numbers }));
      ws.close(1000);
    }
  }
});
ws.on('error', (e) => { console.error(e.message); process.exit(1); });
