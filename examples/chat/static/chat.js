// The chat page. Everything people type is put on the page with
// textContent, never as markup.
//
// Test mode: with ?name=N the page joins as N at once. With &say=S it sends
// S as soon as someone else (with &peer=P: P) is in the room, and with
// &expect=E&report=/path it POSTs what it shows to /path once someone else
// has said E (and its own S has come back). With &report=/path it also
// POSTs every change of the connection's status.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const statusEl = $('status'), retryEl = $('retry');
  const joinForm = $('join'), nameEl = $('name'), joinError = $('join-error');
  const room = $('room'), logEl = $('log'), membersEl = $('members');
  const sendForm = $('send'), textEl = $('text'), sendButton = $('send-button');
  const params = new URLSearchParams(location.search);

  let name = '';
  let ws = null;
  let attempt = 0; // failed connections since the last welcome
  let retryTimer = 0, tickTimer = 0;
  let lastSeq = 0;
  let roster = new Map(); // name -> how many members have it

  function setStatus(kind, text) {
    statusEl.className = 'status ' + kind;
    statusEl.textContent = text;
    retryEl.hidden = kind !== 'offline' || !name;
    testReport({kind: 'status', status: kind, text});
  }

  function connect() {
    clearTimeout(retryTimer);
    clearInterval(tickTimer);
    setStatus('connecting', attempt ? `reconnecting (attempt ${attempt + 1})…` : 'connecting…');
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    const sock = new WebSocket(scheme + location.host + '/ws?name=' + encodeURIComponent(name));
    ws = sock;
    let welcomed = false;
    sock.onmessage = (e) => {
      let ev;
      try {
        ev = JSON.parse(e.data);
      } catch {
        return;
      }
      if (ev.type === 'welcome') {
        welcomed = true;
        attempt = 0;
        welcome(ev);
      } else {
        if (ev.seq !== lastSeq + 1) {
          notice(`missed ${ev.seq - lastSeq - 1} events`, 'gap');
        }
        lastSeq = ev.seq;
        handle(ev);
      }
      testStep(ev);
    };
    sock.onclose = (e) => {
      if (ws !== sock) {
        return;
      }
      ws = null;
      setInput(false);
      if (e.code === 4000) { // the server refused the name
        showJoin(e.reason || 'that name is not allowed');
        return;
      }
      const why = e.code === 1006 ? 'connection lost' : `${e.code} ${e.reason}`.trim();
      if (welcomed) {
        notice(`disconnected: ${why}`, 'gap');
      }
      reconnectLater(why);
    };
  }

  // reconnectLater waits 1 s, 2 s, 4 s … up to 30 s, with jitter, counting
  // down in the status.
  function reconnectLater(why) {
    const delay = Math.min(30000, 1000 * 2 ** attempt) * (0.8 + 0.4 * Math.random());
    attempt++;
    const due = Date.now() + delay;
    const show = () => {
      const s = Math.max(0, Math.ceil((due - Date.now()) / 1000));
      setStatus('offline', `offline (${why}), reconnecting in ${s} s`);
    };
    show();
    tickTimer = setInterval(show, 1000);
    retryTimer = setTimeout(connect, delay);
  }

  function welcome(ev) {
    lastSeq = ev.seq;
    roster = new Map();
    for (const m of ev.members) {
      roster.set(m, (roster.get(m) || 0) + 1);
    }
    renderRoster();
    setStatus('online', `connected as ${ev.name}`);
    setInput(true);
  }

  function handle(ev) {
    switch (ev.type) {
      case 'join':
        roster.set(ev.name, (roster.get(ev.name) || 0) + 1);
        renderRoster();
        notice(ev.name === name ? `you joined as ${ev.name}` : `${ev.name} joined`, '', ev.time);
        break;
      case 'leave': {
        const n = (roster.get(ev.name) || 1) - 1;
        if (n > 0) {
          roster.set(ev.name, n);
        } else {
          roster.delete(ev.name);
        }
        renderRoster();
        notice(`${ev.name} left` + (ev.reason ? ` (${ev.reason})` : ''), '', ev.time);
        break;
      }
      case 'message':
        line(ev.time, ev.name, ev.text);
        break;
    }
  }

  function renderRoster() {
    membersEl.replaceChildren();
    for (const [m, n] of [...roster].sort((a, b) => a[0].localeCompare(b[0]))) {
      const li = document.createElement('li');
      li.textContent = n > 1 ? `${m} (×${n})` : m;
      if (m === name) {
        li.className = 'you';
      }
      membersEl.append(li);
    }
  }

  function append(div) {
    const atBottom = logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight < 40;
    logEl.append(div);
    if (atBottom) {
      logEl.scrollTop = logEl.scrollHeight;
    }
  }

  function timeEl(ms) {
    const t = document.createElement('time');
    const d = ms ? new Date(ms) : new Date();
    t.dateTime = d.toISOString();
    t.textContent = d.toLocaleTimeString();
    return t;
  }

  function line(ms, who, text) {
    const div = document.createElement('div');
    div.className = 'line msg';
    const n = document.createElement('span');
    n.className = 'name';
    n.textContent = who + ':';
    const t = document.createElement('span');
    t.className = 'text';
    t.textContent = text;
    div.append(timeEl(ms), n, t);
    append(div);
  }

  function notice(text, kind, ms) {
    const div = document.createElement('div');
    div.className = 'line notice ' + (kind || '');
    const t = document.createElement('span');
    t.className = 'text';
    t.textContent = text;
    div.append(timeEl(ms), t);
    append(div);
  }

  function setInput(on) {
    textEl.disabled = !on;
    sendButton.disabled = !on;
    if (on) {
      textEl.focus();
    }
  }

  function showJoin(error) {
    clearTimeout(retryTimer);
    clearInterval(tickTimer);
    name = '';
    room.hidden = true;
    joinForm.hidden = false;
    joinError.textContent = error || '';
    setStatus('offline', 'not connected');
    nameEl.focus();
  }

  function join(n) {
    name = n.trim();
    if (!name) {
      showJoin('pick a name');
      return;
    }
    try {
      localStorage.setItem('chat-name', name);
    } catch {}
    joinForm.hidden = true;
    room.hidden = false;
    attempt = 0;
    connect();
  }

  joinForm.addEventListener('submit', (e) => {
    e.preventDefault();
    join(nameEl.value);
  });
  sendForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = textEl.value.trim();
    if (text && ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({text}));
      textEl.value = '';
    }
  });
  retryEl.addEventListener('click', () => {
    attempt = 0;
    connect();
  });
  window.addEventListener('online', () => {
    if (name && !ws) {
      attempt = 0;
      connect();
    }
  });

  // Test mode.
  let said = false, reported = false, sawOwn = false, sawExpected = false;
  function testStep(ev) {
    const say = params.get('say'), expect = params.get('expect'), report = params.get('report');
    const peer = params.get('peer');
    const others = [...roster].reduce((sum, [m, n]) => sum + (m === name ? n - 1 : n), 0);
    if (say && !said && (peer ? roster.has(peer) : others > 0) && ws) {
      said = true;
      ws.send(JSON.stringify({text: say}));
    }
    if (ev.type === 'message') {
      sawOwn ||= ev.name === name && ev.text === say;
      sawExpected ||= ev.name !== name && ev.text === expect;
    }
    if (report && !reported && sawExpected && (sawOwn || !say)) {
      reported = true;
      const lines = [...logEl.children].map((div) => [...div.querySelectorAll('.name, .text')].map((s) => s.textContent).join(' '));
      const foreign = [...logEl.querySelectorAll('*')].filter((el) => !['DIV', 'TIME', 'SPAN'].includes(el.tagName)).length;
      testReport({kind: 'conversation', lines, foreign});
    }
  }

  let reports = 0;
  function testReport(r) {
    const report = params.get('report');
    if (report) {
      reports++;
      fetch(report, {method: 'POST', body: JSON.stringify({name, n: reports, ...r})});
    }
  }

  try {
    nameEl.value = localStorage.getItem('chat-name') || '';
  } catch {}
  if (params.get('name')) {
    join(params.get('name'));
  }
})();
