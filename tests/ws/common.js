// The commands both Node clients stream, and how their replies are read:
// n message creates on one chat, ids 1..n; the numbers come back in id order.
'use strict';

function creates(token, chat, n) {
  const out = [];
  for (let i = 1; i <= n; i++)
    out.push(JSON.stringify({ id: i, op: 'message.create', token, chat, body: { body: `m${i}` } }));
  return out;
}

module.exports = { creates };
