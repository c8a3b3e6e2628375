// The ticker page: it keeps one WebSocket open to /ws, updates the table on
// every tick, and reconnects with exponential backoff when the connection
// drops. Everything from the server goes on the page with textContent.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const statusEl = $('status'), quotesEl = $('quotes'), statsEl = $('stats');
  const rows = new Map(); // symbol -> {tr, price, change}
  let attempt = 0, lastSeq = 0, missed = 0;

  function setStatus(kind, text) {
    statusEl.className = 'status ' + kind;
    statusEl.textContent = text;
  }

  function connect() {
    setStatus('connecting', attempt ? `reconnecting (attempt ${attempt + 1})…` : 'connecting…');
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    const ws = new WebSocket(scheme + location.host + '/ws');
    ws.onopen = () => {
      attempt = 0;
      lastSeq = 0;
      setStatus('online', 'live');
    };
    ws.onmessage = (e) => {
      const tick = JSON.parse(e.data);
      if (lastSeq && tick.seq > lastSeq + 1) {
        missed += tick.seq - lastSeq - 1;
      }
      lastSeq = tick.seq;
      // Both clocks are this machine's when the page and server share it;
      // otherwise the latency includes the clocks' difference.
      const latency = Date.now() - tick.t / 1000;
      for (const q of tick.quotes) {
        update(q);
      }
      statsEl.textContent = `tick ${tick.seq} · ${tick.clients} connected · ` +
        `latency ${latency.toFixed(1)} ms · ${missed} ticks missed`;
    };
    ws.onclose = (e) => {
      const why = e.code === 1006 ? 'connection lost' : `${e.code} ${e.reason}`.trim();
      const delay = Math.min(30000, 1000 * 2 ** attempt) * (0.8 + 0.4 * Math.random());
      attempt++;
      const due = Date.now() + delay;
      const show = () => setStatus('offline',
        `offline (${why}), reconnecting in ${Math.max(0, Math.ceil((due - Date.now()) / 1000))} s`);
      show();
      const countdown = setInterval(show, 1000);
      setTimeout(() => {
        clearInterval(countdown);
        connect();
      }, delay);
    };
  }

  function update(q) {
    let row = rows.get(q.s);
    if (!row) {
      const tr = document.createElement('tr');
      const cells = [0, 1, 2].map(() => document.createElement('td'));
      cells[0].textContent = q.s;
      tr.append(...cells);
      quotesEl.append(tr);
      row = {tr, price: cells[1], change: cells[2]};
      rows.set(q.s, row);
    }
    row.price.textContent = q.p.toFixed(2);
    row.change.textContent = (q.c > 0 ? '+' : '') + q.c.toFixed(2);
    row.change.className = q.c > 0 ? 'up' : q.c < 0 ? 'down' : '';
    row.tr.className = q.c > 0 ? 'flash-up' : q.c < 0 ? 'flash-down' : '';
  }

  connect();
})();
