/* SilverLine Orchestrator dashboard.
 *
 * Plain JavaScript: no framework, no build step, nothing fetched from outside the
 * orchestrator itself.
 *
 * How it stays current: it opens GET /api/events (Server-Sent Events, read through
 * fetch() so that a bearer token can be sent), and once that stream is attached it
 * loads the full state from the REST lists. Every event carries the changed record,
 * so it is applied to the state in memory; events that arrive while the full state is
 * loading are applied again on top of it, so nothing is lost or stale. The page is
 * then updated once per animation frame, touching only the runtimes and modules that
 * changed. Reconnects send Last-Event-ID; a `resync` event means "reload everything".
 * Keepalives produce no events, so the full state is re-read every so often (only
 * while the tab is visible) to keep last-seen times honest.
 *
 * Text from the API is user data: it is only ever set with textContent or as an
 * attribute value, never parsed as HTML.
 */
'use strict';

(function () {
  const TOKEN_KEY = 'silverline.orchestrator.token';
  const PREFS_KEY = 'silverline.orchestrator.prefs';
  const FEED_MAX = 200;          // entries kept in the event feed
  const CLIP_AT = 12;            // modules shown per runtime before "Show N more"
  const STALL_MS = 45000;        // no byte for this long (pings come every 15 s): reconnect
  const REFRESH_MIN_MS = 300000; // full re-read (a safety net: the stream has it all) ...
  const REFRESH_FACTOR = 30;     // ... and at most 1/30 of the time spent on it
  const SEEN_MS = 5000;          // keepalives are not events: re-read last-seen times
  const QUEUE = '';              // group of modules that have no known runtime
  const FLASH_MAX = 12;          // more new things than this in one frame: no highlight
  const FEED_EVERY_MS = 250;     // the feed is redrawn at most this often

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------------------------
  // state: what the orchestrator told us, with nothing of the page in it

  const runtimes = new Map();    // uuid -> runtime detail (without children)
  const modules = new Map();     // uuid -> module detail (dead modules are removed)
  const byParent = new Map();    // runtime uuid, or QUEUE -> Set of module uuids

  const dirtyRt = new Set();     // runtimes whose record changed, appeared or went
  const dirtyMod = new Set();    // same for modules
  const freshMods = new Set();   // modules that arrived by a live event (highlighted once)
  const freshRts = new Set();
  let statsDirty = true;
  let filterDirty = false;

  function parentKey(m) { return m.parent || QUEUE; }

  function indexAdd(m) {
    const k = parentKey(m);
    let set = byParent.get(k);
    if (!set) byParent.set(k, set = new Set());
    set.add(m.uuid);
  }

  function indexDelete(m) {
    const k = parentKey(m);
    const set = byParent.get(k);
    if (set) {
      set.delete(m.uuid);
      if (!set.size) byParent.delete(k);
    }
  }

  function isoMs(s) { return s ? Date.parse(s) : NaN; }

  function later(a, b) {
    if (!a) return b || null;
    if (!b) return a;
    return isoMs(b) >= isoMs(a) ? b : a;
  }

  const RT_SHOWN = ['name', 'status', 'runtime_type', 'apis', 'max_nmodules', 'dead_reason',
    'last_seen', 'registered_at', 'platform', 'drained'];
  const MOD_SHOWN = ['name', 'status', 'parent', 'filename', 'fault_crash', 'acked_at',
    'created_at', 'waiting'];

  function same(a, b, keys) {
    for (const k of keys) {
      const x = a[k], y = b[k];
      if (x === y) continue;
      if (typeof x === 'object' && typeof y === 'object' && JSON.stringify(x) === JSON.stringify(y)) continue;
      return false;
    }
    return true;
  }

  function putRuntime(r, live) {
    const old = runtimes.get(r.uuid);
    const rec = {};
    for (const k of Object.keys(r)) if (k !== 'children') rec[k] = r[k];
    // keepalives are not events: the newest last_seen we ever heard of wins
    if (old) rec.last_seen = later(old.last_seen, rec.last_seen);
    runtimes.set(r.uuid, rec);
    if (old && same(old, rec, RT_SHOWN)) return;
    if (!old && live) freshRts.add(r.uuid);
    dirtyRt.add(r.uuid);
    statsDirty = true;
    schedule();
  }

  function dropRuntime(uuid) {
    if (!runtimes.delete(uuid)) return;
    dirtyRt.add(uuid);
    statsDirty = true;
    schedule();
  }

  function putModule(m, live) {
    if (m.status === 'dead' || m.status === 'failed') { dropModule(m.uuid); return; }
    const old = modules.get(m.uuid);
    if (old && same(old, m, MOD_SHOWN)) { modules.set(m.uuid, m); return; }
    if (old) indexDelete(old);
    indexAdd(m);
    modules.set(m.uuid, m);
    if (!old && live) freshMods.add(m.uuid);
    dirtyMod.add(m.uuid);
    statsDirty = true;
    schedule();
  }

  function dropModule(uuid) {
    const old = modules.get(uuid);
    if (!old) return;
    indexDelete(old);
    modules.delete(uuid);
    dirtyMod.add(uuid);
    statsDirty = true;
    schedule();
  }

  /** A full read of the lists: make the state exactly that. */
  function replaceState(rtList, extraModules) {
    const seenRt = new Set();
    const seenMod = new Set();
    for (const r of rtList) {
      seenRt.add(r.uuid);
      putRuntime(r, false);
      for (const m of r.children || []) { seenMod.add(m.uuid); putModule(m, false); }
    }
    for (const m of extraModules) { seenMod.add(m.uuid); putModule(m, false); }
    for (const uuid of Array.from(runtimes.keys())) if (!seenRt.has(uuid)) dropRuntime(uuid);
    for (const uuid of Array.from(modules.keys())) if (!seenMod.has(uuid)) dropModule(uuid);
  }

  /** One change from the event stream. */
  function applyEvent(ev, live) {
    if (live) feedAdd(ev);          // described before the change, with today's names
    const type = ev.type || '';
    if (ev.runtime && ev.runtime.uuid) {
      if (type === 'runtime.dropped' || type === 'runtime.forgotten') dropRuntime(ev.runtime.uuid);
      else putRuntime(ev.runtime, live);
    }
    if (ev.module && ev.module.uuid) {
      if (type === 'module.dropped') dropModule(ev.module.uuid);
      else putModule(ev.module, live);
    }
  }

  // ---------------------------------------------------------------------------------
  // talking to the orchestrator

  class AuthNeeded extends Error {}

  function storedToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
  }

  function authHeaders() {
    const token = storedToken();
    return token ? { Authorization: 'Bearer ' + token } : {};
  }

  let skewMs = 0;                // local clock minus the server's, when clearly off

  function noteServerClock(res) {
    const server = Date.parse(res.headers.get('Date') || '');
    if (isNaN(server)) return;
    const off = Date.now() - server - 500;      // the header has whole seconds
    skewMs = Math.abs(off) > 2000 ? off : 0;
  }

  async function getJSON(path) {
    const res = await fetch(path, { headers: authHeaders(), cache: 'no-store' });
    if (res.status === 401) throw new AuthNeeded();
    if (!res.ok) throw new Error(path + ': HTTP ' + res.status);
    noteServerClock(res);
    return res.json();
  }

  async function getAll(base, key, limit) {
    const items = [];
    let cursor = null;
    do {
      const body = await getJSON(base + '&limit=' + limit +
        (cursor ? '&cursor=' + encodeURIComponent(cursor) : ''));
      for (const item of body[key] || []) items.push(item);
      cursor = body.next || null;
    } while (cursor);
    return items;
  }

  let loading = null;            // the full read in progress
  let loadAgain = false;         // a resync came while it ran
  let replay = null;             // events received while it runs
  let loadedAt = 0;
  let loadCostMs = 0;
  let needFullLoad = true;

  function loadState() {
    if (loading) { loadAgain = true; return loading; }
    loading = (async () => {
      try {
        do {
          loadAgain = false;
          await loadOnce();
        } while (loadAgain);
      } finally {
        loading = null;
      }
    })();
    return loading;
  }

  async function loadOnce() {
    const started = performance.now();
    replay = [];
    try {
      const [rtList, extra] = await Promise.all([
        // every runtime, with its alive and queued modules ...
        getAll('/api/runtimes/?status=all', 'runtimes', 200),
        // ... and the modules that are in none of those lists
        getAll('/api/modules/?status=queued,exiting,killed', 'modules', 1000),
      ]);
      replaceState(rtList, extra);
      // what changed while we read: those events are at least as new as the lists
      for (const ev of replay) applyEvent(ev, false);
      needFullLoad = false;
      loadedAt = Date.now();
      loadCostMs = performance.now() - started;
    } finally {
      replay = null;
    }
  }

  /** A minimal Server-Sent Events parser (the WHATWG rules that matter here). */
  function sseParser(dispatch) {
    let buffer = '';
    let data = [];
    let type = '';
    let id = null;

    function line(text) {
      if (text === '') {
        const eventId = id;
        id = null;
        if (data.length) {
          const payload = data.join('\n');
          const kind = type || 'message';
          data = [];
          type = '';
          dispatch(kind, payload, eventId);
        } else {
          type = '';
          if (eventId !== null) dispatch(null, null, eventId);
        }
        return;
      }
      if (text.charCodeAt(0) === 58) return;     // ':' starts a comment (": ping")
      const colon = text.indexOf(':');
      const field = colon < 0 ? text : text.slice(0, colon);
      let value = colon < 0 ? '' : text.slice(colon + 1);
      if (value.charCodeAt(0) === 32) value = value.slice(1);
      if (field === 'data') data.push(value);
      else if (field === 'event') type = value;
      else if (field === 'id') { if (value.indexOf('\u0000') < 0) id = value; }
      else if (field === 'retry') { if (/^\d+$/.test(value)) retryMs = Number(value); }
    }

    return function push(chunk) {
      buffer += chunk;
      if (buffer.indexOf('\r') >= 0) {
        // keep a final CR: its LF may come with the next chunk
        const tail = buffer.endsWith('\r') ? '\r' : '';
        buffer = (tail ? buffer.slice(0, -1) : buffer).replace(/\r\n?/g, '\n') + tail;
      }
      let start = 0;
      let end;
      while ((end = buffer.indexOf('\n', start)) >= 0) {
        line(buffer.slice(start, end));
        start = end + 1;
      }
      buffer = buffer.slice(start);
    };
  }

  let lastEventId = null;
  let retryMs = 2000;
  let lastByteAt = 0;
  let stream = null;             // AbortController of the open stream
  let authNeeded = false;
  let running = false;

  // the first connection asks for recent history (?history=): those events, up to the
  // id the server had when we attached (X-Latest-Event-Id), go to the feed only (the
  // full read gives the state), and wait until that read has the names they mention
  let historyUpto = -1;
  let historyHeld = [];          // history events seen before the first full read ended

  function onStreamEvent(kind, payload, id) {
    if (id !== null && id !== undefined) lastEventId = id;
    if (kind === 'resync') {
      needFullLoad = true;
      loadState().catch(loadFailed);
      return;
    }
    if (kind !== 'message') return;
    let ev;
    try { ev = JSON.parse(payload); } catch (e) { return; }
    if (!ev || typeof ev !== 'object') return;
    if (Number(id) <= historyUpto) {
      if (historyHeld) historyHeld.push(ev); else feedAdd(ev);
      return;
    }
    if (replay) replay.push(ev);
    applyEvent(ev, true);
  }

  function releaseHistory() {
    const held = historyHeld;
    historyHeld = null;
    if (held) for (const ev of held) feedAdd(ev);
  }

  async function readStream(body) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    const push = sseParser(onStreamEvent);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      lastByteAt = Date.now();
      push(decoder.decode(value, { stream: true }));
    }
  }

  function loadFailed(err) {
    if (err instanceof AuthNeeded) { askForToken(); return; }
    console.warn('dashboard: reading the state failed:', err);
    needFullLoad = true;
    if (stream) stream.abort();                 // the stream loop reconnects and reloads
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function run() {
    if (running) return;
    running = true;
    let failures = 0;
    try {
      while (!authNeeded) {
        const ctl = new AbortController();
        stream = ctl;
        try {
          const headers = authHeaders();
          // resuming needs the id of the last event seen; without one, only a full read
          // after the stream is attached can tell what happened meanwhile
          if (lastEventId !== null) headers['Last-Event-ID'] = lastEventId;
          else needFullLoad = true;
          const first = lastEventId === null && historyHeld !== null;
          const url = first ? '/api/events?history=' + FEED_MAX : '/api/events';
          if (first) historyHeld = [];
          const res = await fetch(url, { headers, cache: 'no-store', signal: ctl.signal });
          if (res.status === 401) throw new AuthNeeded();
          if (!res.ok || !res.body) throw new Error('/api/events: HTTP ' + res.status);
          if (first) historyUpto = Number(res.headers.get('X-Latest-Event-Id') || -1);
          // the reply's headers come with the stream's first bytes: it is attached now,
          // so a full read from here on misses nothing
          lastByteAt = Date.now();
          const reading = readStream(res.body);
          reading.catch(() => {});
          if (needFullLoad) await loadState();
          releaseHistory();
          setConnection('live');
          failures = 0;
          await reading;
        } catch (err) {
          if (err instanceof AuthNeeded) {
            ctl.abort();
            askForToken();
            return;
          }
          if (!(err && err.name === 'AbortError')) console.warn('dashboard: event stream:', err);
        }
        ctl.abort();
        if (authNeeded) return;
        setConnection('reconnecting');
        failures += 1;
        const delay = Math.min(10000, retryMs * Math.pow(1.6, failures - 1));
        await sleep(delay * (0.8 + 0.4 * Math.random()));
      }
    } finally {
      running = false;
      stream = null;
    }
  }

  // last-seen times, without the modules: a small reply even at hundreds of runtimes
  let seenAt = 0;
  let seenBusy = false;
  async function refreshSeen() {
    seenBusy = true;
    try {
      for (const r of await getAll('/api/runtimes/?status=all&children=false', 'runtimes', 1000)) {
        const old = runtimes.get(r.uuid);
        if (old && old.last_seen !== r.last_seen) putRuntime({ ...old, last_seen: r.last_seen }, false);
      }
    } finally {
      seenAt = Date.now();
      seenBusy = false;
    }
  }

  // active/standby (postgres): which role this orchestrator has, from /healthz
  const ROLE_MS = 5000;
  async function refreshRole() {
    let body;
    try {
      const res = await fetch('/healthz', { cache: 'no-store' });
      body = res.ok ? await res.json() : {};
    } catch (err) { return; }
    showLink(body);
    const badge = $('role');
    if (!body.role) { badge.hidden = true; return; }
    badge.hidden = false;
    badge.dataset.role = body.role;
    const epoch = body.epoch != null ? ' · epoch ' + body.epoch : '';
    badge.textContent = body.role === 'standby'
      ? 'Standby (read-only copy)' + epoch + ' · ' + (body.lag_batches || 0) + ' behind' +
        (body.leader ? ' · leader ' + body.leader : '')
      : body.role.charAt(0).toUpperCase() + body.role.slice(1) + epoch;
  }
  // the broker in use (several may be configured) and a partition hold
  function showLink(body) {
    const link = $('link');
    if (!body.broker) { link.hidden = true; return; }
    link.hidden = false;
    link.dataset.held = body.liveness_hold ? 'yes' : 'no';
    link.dataset.connected = body.broker.connected ? 'yes' : 'no';
    link.textContent = (body.broker.connected ? 'Broker ' : 'Trying broker ') +
      body.broker.address + ' · MQTT ' + body.broker.protocol +
      (body.liveness_hold ? ' · verdicts held: ' + body.liveness_hold : '');
  }
  refreshRole();
  setInterval(refreshRole, ROLE_MS);

  // every second: a stalled stream is reopened, last-seen times re-read every few
  // seconds, and the full state (now and then) as a safety net
  setInterval(() => {
    if (authNeeded || document.body.dataset.conn !== 'live') return;
    if (Date.now() - lastByteAt > STALL_MS && stream) { stream.abort(); return; }
    if (loading || document.visibilityState !== 'visible') return;
    const every = Math.max(REFRESH_MIN_MS, loadCostMs * REFRESH_FACTOR);
    if (Date.now() - loadedAt > every) {
      loadState().catch(loadFailed);
    } else if (!seenBusy && Date.now() - seenAt > SEEN_MS) {
      refreshSeen().catch(() => {});
    }
  }, 1000);

  // ---------------------------------------------------------------------------------
  // connection state and the token prompt

  const connText = {
    connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…', auth: 'Token needed',
  };

  function setConnection(state) {
    if (document.body.dataset.conn === state) return;
    document.body.dataset.conn = state;
    $('conn-text').textContent = connText[state] || state;
    $('conn').title = state === 'live' ? 'Receiving changes as they happen' : '';
  }

  function askForToken() {
    const hadToken = storedToken() !== '';
    authNeeded = true;
    if (stream) stream.abort();
    setConnection('auth');
    $('auth').hidden = false;
    $('forget-token').hidden = true;
    const error = $('auth-error');
    error.hidden = !hadToken;
    error.textContent = hadToken ? 'That token was not accepted. Check it and try again.' : '';
    const input = $('auth-token');
    input.value = '';
    input.focus();
  }

  $('auth-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const value = $('auth-token').value.trim();
    const error = $('auth-error');
    if (!/^[\x21-\x7e]+$/.test(value)) {
      error.hidden = false;
      error.textContent = value ? 'A token is made of printable ASCII characters, without spaces.'
        : 'Enter the token.';
      $('auth-token').focus();
      return;
    }
    try { sessionStorage.setItem(TOKEN_KEY, value); } catch (err) { /* private mode: kept nowhere */ }
    $('auth').hidden = true;
    $('forget-token').hidden = false;
    authNeeded = false;
    needFullLoad = true;
    setConnection('connecting');
    run();
  });

  $('forget-token').addEventListener('click', () => {
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (err) { /* nothing kept */ }
    location.reload();
  });

  // ---------------------------------------------------------------------------------
  // formatting

  /** The short id: the uuid's last 8 characters, what REST lookups (and the CLI) match. */
  function shortId(uuid) { return String(uuid).slice(-8); }

  function listText(value) {
    if (Array.isArray(value)) return value.join(', ');
    if (typeof value === 'string') {
      try {
        const parsed = JSON.parse(value.replace(/'/g, '"'));
        if (Array.isArray(parsed)) return parsed.join(', ');
      } catch (e) { /* shown as sent */ }
      return value;
    }
    return value == null ? '' : JSON.stringify(value);
  }

  function baseName(path) {
    const s = String(path || '');
    const i = s.lastIndexOf('/');
    return i >= 0 && i < s.length - 1 ? s.slice(i + 1) : s;
  }

  function pad(n) { return n < 10 ? '0' + n : String(n); }

  function clock(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return '--:--:--';
    return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }

  const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

  function localTime(iso) {
    const d = new Date(iso);
    return isNaN(d) ? '' : dateFormat.format(d);
  }

  function ageText(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min';
    const h = Math.floor(m / 60);
    if (h < 48) return h + ' h ' + (m % 60) + ' min';
    return Math.floor(h / 24) + ' d';
  }

  function plural(n, word) { return n + ' ' + word + (n === 1 ? '' : 's'); }

  function setText(el, text) { if (el.textContent !== text) el.textContent = text; }

  function setAttr(el, name, value) {
    if (el.getAttribute(name) !== value) el.setAttribute(name, value);
  }

  function badge(el, status) {
    setText(el, status);
    const cls = 'badge s-' + status;
    if (el.className !== cls) el.className = cls;
  }

  // ---------------------------------------------------------------------------------
  // the page: one view per runtime and per module, updated only when they changed

  const rtTemplate = $('tpl-runtime').content.firstElementChild;
  const modTemplate = $('tpl-module').content.firstElementChild;
  const aliveGrid = $('alive-grid');
  const deadGrid = $('dead-grid');
  const queueList = $('queue-list');
  const feedList = $('feed');

  const rtViews = new Map();     // runtime uuid -> view
  const modViews = new Map();    // module uuid -> view
  const order = { alive: [], dead: [] };   // sorted [key, view] per grid
  let viewSeq = 0;

  function makeRuntimeView(uuid) {
    const card = rtTemplate.cloneNode(true);
    const v = {
      uuid, card,
      name: card.querySelector('.rt-name'),
      badge: card.querySelector('.badge'),
      id: card.querySelector('.uuid'),
      type: card.querySelector('.rt-type'),
      seen: card.querySelector('.seen'),
      cap: card.querySelector('.cap'),
      capText: card.querySelector('.cap-text'),
      capFill: card.querySelector('.cap-fill'),
      reason: card.querySelector('.rt-reason'),
      list: card.querySelector('.mods'),
      more: card.querySelector('.more'),
      grid: null, key: null, expanded: false, seenText: '',
    };
    card.dataset.runtime = uuid;
    const headingId = 'rt-' + (++viewSeq);
    v.name.id = headingId;
    card.setAttribute('aria-labelledby', headingId);
    v.id.textContent = shortId(uuid);
    v.id.title = uuid;
    v.more.addEventListener('click', () => {
      v.expanded = !v.expanded;
      renderGroup(uuid);
    });
    return v;
  }

  function place(v, r) {
    const grid = r.status === 'dead' ? 'dead' : 'alive';
    const key = String(r.name).toLowerCase() + '\u0000' + r.uuid;
    if (v.grid === grid && v.key === key) return;
    if (v.grid) {
      const list = order[v.grid];
      const at = search(list, v.key);
      if (list[at] && list[at][1] === v) list.splice(at, 1);
    }
    const list = order[grid];
    const at = search(list, key);
    list.splice(at, 0, [key, v]);
    const next = list[at + 1];
    (grid === 'dead' ? deadGrid : aliveGrid).insertBefore(v.card, next ? next[1].card : null);
    v.grid = grid;
    v.key = key;
  }

  function search(list, key) {
    let lo = 0, hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (list[mid][0] < key) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  function unplace(v) {
    if (v.grid) {
      const list = order[v.grid];
      const at = search(list, v.key);
      if (list[at] && list[at][1] === v) list.splice(at, 1);
    }
    v.card.remove();
  }

  function renderRuntime(v, r) {
    setText(v.name, String(r.name));
    setAttr(v.name, 'title', String(r.name));
    badge(v.badge, r.status);
    setAttr(v.card, 'data-status', r.status);
    const apis = listText(r.apis);
    setText(v.type, [r.runtime_type, apis].filter(Boolean).join(' · '));
    setAttr(v.type, 'title', 'type: ' + r.runtime_type + '\napis: ' + apis +
      (r.platform ? '\nplatform: ' + JSON.stringify(r.platform) : ''));
    if (r.status === 'dead') {
      v.reason.hidden = false;
      setText(v.reason, 'Died' + (r.dead_reason ? ': ' + r.dead_reason : '') +
        (r.drained ? ' · drained' : ''));
    } else if (r.drained) {
      v.reason.hidden = false;
      v.reason.classList.add('drained');
      setText(v.reason, 'Drained: nothing new is placed here');
    } else {
      v.reason.hidden = true;
    }
    if (r.status === 'dead' || !r.drained) v.reason.classList.remove('drained');
    place(v, r);
    renderAge(v, r, Date.now() - skewMs);
  }

  function renderAge(v, r, now) {
    const seen = r.last_seen || r.registered_at;
    let text = '';
    if (seen) {
      const age = ageText(now - isoMs(seen));
      text = (r.last_seen ? (r.status === 'dead' ? 'last seen ' : 'seen ') : 'registered ') + age + ' ago';
    }
    if (text !== v.seenText) {
      v.seenText = text;
      v.seen.textContent = text;
    }
    const title = seen ? localTime(seen) : '';
    if (v.seenTitle !== title) { v.seenTitle = title; v.seen.title = title; }
  }

  function makeModuleView(uuid) {
    const li = modTemplate.cloneNode(true);
    const v = {
      li,
      badge: li.querySelector('.badge'),
      name: li.querySelector('.m-name'),
      file: li.querySelector('.m-file'),
      id: li.querySelector('.uuid'),
      why: li.querySelector('.m-why'),
      group: null,
    };
    li.dataset.module = uuid;
    v.id.textContent = shortId(uuid);
    v.id.title = uuid;
    return v;
  }

  function renderModule(v, m) {
    badge(v.badge, m.status);
    const why = (m.status === 'queued' || m.status === 'killed') && m.waiting ? String(m.waiting) : '';
    v.why.hidden = !why;
    setText(v.why, why);
    setAttr(v.li, 'data-status', m.status);
    setText(v.name, String(m.name));
    setText(v.file, baseName(m.filename));
    setAttr(v.li, 'data-restart', m.fault_crash === 'restart' ? 'true' : 'false');
    const lines = [String(m.name) + ' (' + m.status + ')', 'file: ' + (m.filename || '—')];
    if (m.created_at) lines.push('created ' + localTime(m.created_at));
    if (m.acked_at) lines.push('confirmed by its runtime ' + localTime(m.acked_at));
    else if (m.status === 'alive') lines.push('not yet confirmed by its runtime');
    if (m.fault_crash === 'restart') lines.push('moves to another runtime if this one dies');
    if (why) lines.push(why);
    lines.push('click: its output');
    setAttr(v.li, 'title', lines.join('\n'));
  }

  function groupList(key) {
    return key === QUEUE ? queueList : rtViews.get(key).list;
  }

  /** Counts, capacity bar and "show more" of one runtime (or of the queue). */
  function renderGroup(key) {
    if (key === QUEUE) {
      const n = queueList.childElementCount;
      $('queue').hidden = n === 0;
      setText($('queue-count'), n ? '(' + n + ')' : '');
      return;
    }
    const v = rtViews.get(key);
    const r = runtimes.get(key);
    if (!v || !r) return;
    const counts = { alive: 0, queued: 0, exiting: 0, killed: 0 };
    for (const uuid of byParent.get(key) || []) {
      const m = modules.get(uuid);
      if (m && counts[m.status] !== undefined) counts[m.status] += 1;
    }
    const max = Number(r.max_nmodules) || 0;
    let text = max ? counts.alive + ' / ' + max + ' modules' : plural(counts.alive, 'module') + ' · no limit';
    for (const s of ['queued', 'exiting', 'killed']) if (counts[s]) text += ' · ' + counts[s] + ' ' + s;
    setText(v.capText, text);
    const level = !max ? 'none' : counts.alive >= max ? 'full' : 'ok';
    setAttr(v.cap, 'data-level', level);
    const width = max ? Math.min(100, (100 * counts.alive) / max).toFixed(1) + '%' : '0%';
    if (v.capFill.style.width !== width) v.capFill.style.width = width;
    const n = v.list.childElementCount;
    if (n > CLIP_AT) {
      v.more.hidden = false;
      setText(v.more, v.expanded ? 'Show fewer' : 'Show ' + (n - CLIP_AT) + ' more');
      setAttr(v.more, 'aria-expanded', String(v.expanded));
      v.list.classList.toggle('clipped', !v.expanded);
    } else {
      v.more.hidden = true;
      v.list.classList.remove('clipped');
    }
  }

  // -- filter ------------------------------------------------------------------------

  let query = '';

  function has(value, q) { return value != null && String(value).toLowerCase().indexOf(q) >= 0; }

  function moduleMatches(m, q) { return has(m.name, q) || has(m.uuid, q) || has(m.filename, q); }

  /** Show or hide one runtime card (or the queue's rows) for the current filter. */
  function filterGroup(key) {
    const q = query;
    if (key === QUEUE) {
      for (const li of queueList.children) {
        const m = modules.get(li.dataset.module);
        li.classList.toggle('nomatch', !!q && !(m && moduleMatches(m, q)));
      }
      return;
    }
    const v = rtViews.get(key);
    const r = runtimes.get(key);
    if (!v || !r) return;
    if (!q) { v.card.hidden = false; return; }
    const self = has(r.name, q) || has(r.uuid, q) || has(r.runtime_type, q);
    let any = false;
    for (const li of v.list.children) {
      const m = modules.get(li.dataset.module);
      const ok = self || !!(m && moduleMatches(m, q));
      li.classList.toggle('nomatch', !ok);
      any = any || ok;
    }
    v.card.hidden = !(self || any);
  }

  let deadOpenedByFilter = false;

  function filterSummary(filterChanged) {
    let alive = 0, dead = 0, shownAlive = 0, shownDead = 0;
    for (const v of rtViews.values()) {
      if (v.grid === 'dead') { dead++; if (!v.card.hidden) shownDead++; } else { alive++; if (!v.card.hidden) shownAlive++; }
    }
    const queued = query ? queueList.querySelectorAll('.mod:not(.nomatch)').length : queueList.childElementCount;
    setText($('alive-count'), query ? '(' + shownAlive + ' of ' + alive + ')' : '(' + alive + ')');
    setText($('dead-count'), query ? '(' + shownDead + ' of ' + dead + ')' : '(' + dead + ')');
    $('dead-section').hidden = dead === 0;
    $('empty').hidden = alive > 0 || !!query;
    const nothing = !!query && shownAlive + shownDead + queued === 0;
    $('no-match').hidden = !nothing;
    setText($('match-count'), query ? plural(shownAlive + shownDead, 'runtime') + ' shown' : '');
    if (query) $('queue').hidden = queued === 0;
    // a search that finds dead runtimes shows them; clearing it puts things back
    const deadSection = $('dead-section');
    if (filterChanged && query && shownDead > 0 && !deadSection.open) {
      deadSection.open = true;
      deadOpenedByFilter = true;
    } else if (filterChanged && !query && deadOpenedByFilter) {
      deadSection.open = false;
      deadOpenedByFilter = false;
    }
  }

  // -- stats -------------------------------------------------------------------------

  function renderStats() {
    let alive = 0, dead = 0;
    for (const r of runtimes.values()) { if (r.status === 'dead') dead++; else alive++; }
    const m = { alive: 0, queued: 0, exiting: 0, killed: 0 };
    for (const mod of modules.values()) if (m[mod.status] !== undefined) m[mod.status]++;
    setText($('n-rt-alive'), String(alive));
    setText($('n-rt-dead'), String(dead));
    for (const s of Object.keys(m)) setText($('n-m-' + s), String(m[s]));
    const title = 'SilverLine Orchestrator · ' + alive + ' alive' + (dead ? ', ' + dead + ' dead' : '');
    if (document.title !== title) document.title = title;
  }

  // -- the frame: everything that changed since the last one -------------------------

  let frame = 0;

  function schedule() {
    if (!frame) frame = requestAnimationFrame(flush);
  }

  function flash(el, cls) {
    el.classList.remove(cls);
    el.classList.add(cls);
    el.addEventListener('animationend', () => el.classList.remove(cls), { once: true });
  }

  function flush() {
    frame = 0;
    const touched = new Set();
    // highlights help the eye when a few things change, not during a burst
    const highlight = freshRts.size + freshMods.size <= FLASH_MAX;

    for (const uuid of dirtyRt) {
      const r = runtimes.get(uuid);
      let v = rtViews.get(uuid);
      if (!r) {
        if (v) { unplace(v); rtViews.delete(uuid); }
        for (const m of byParent.get(uuid) || []) dirtyMod.add(m);   // to the queue group
        continue;
      }
      if (!v) {
        v = makeRuntimeView(uuid);
        rtViews.set(uuid, v);
        for (const m of byParent.get(uuid) || []) dirtyMod.add(m);   // from the queue group
        if (highlight && freshRts.has(uuid)) flash(v.card, 'flash');
      }
      renderRuntime(v, r);
      touched.add(uuid);
    }
    dirtyRt.clear();
    freshRts.clear();

    for (const uuid of dirtyMod) {
      const m = modules.get(uuid);
      let v = modViews.get(uuid);
      if (!m) {
        if (v) { v.li.remove(); modViews.delete(uuid); touched.add(v.group); }
        continue;
      }
      if (!v) { v = makeModuleView(uuid); modViews.set(uuid, v); }
      renderModule(v, m);
      const group = m.parent && rtViews.has(m.parent) ? m.parent : QUEUE;
      if (v.group !== group || !v.li.parentNode) {
        if (v.group !== null) touched.add(v.group);
        groupList(group).appendChild(v.li);
        v.group = group;
        if (highlight && freshMods.has(uuid)) flash(v.li, 'fresh');
      }
      touched.add(group);
    }
    dirtyMod.clear();
    freshMods.clear();

    for (const key of touched) renderGroup(key);
    const filterChanged = filterDirty;
    if (filterDirty) {
      filterDirty = false;
      document.body.classList.toggle('filtering', !!query);
      for (const key of rtViews.keys()) filterGroup(key);
      filterGroup(QUEUE);
      renderGroup(QUEUE);
    } else if (query) {
      for (const key of touched) filterGroup(key);
    }
    if (touched.size || statsDirty || filterChanged) filterSummary(filterChanged);
    if (statsDirty) { statsDirty = false; renderStats(); }
    renderFeed();
  }

  // every second: the last-seen ages
  setInterval(() => {
    const now = Date.now() - skewMs;
    for (const [uuid, v] of rtViews) {
      const r = runtimes.get(uuid);
      if (r) renderAge(v, r, now);
    }
  }, 1000);

  // ---------------------------------------------------------------------------------
  // the event feed

  const feedPending = [];        // entries not yet on the page, oldest first
  let feedPaused = false;
  let feedMissed = 0;
  let feedDrawnAt = 0;
  let feedTimer = 0;

  function runtimeName(uuid) {
    if (!uuid) return null;
    const r = runtimes.get(uuid);
    return r ? String(r.name) : shortId(uuid);
  }

  /** An event as a short sentence: [kind, parts], a part being text or {b: text}. */
  function describe(ev) {
    const r = ev.runtime || {};
    const m = ev.module || {};
    const rt = (uuid) => ({ b: runtimeName(uuid) || '?' });
    const mod = { b: String(m.name != null ? m.name : shortId(m.uuid || '?')) };
    const rtSelf = { b: String(r.name != null ? r.name : shortId(r.uuid || '?')) };
    switch (ev.type) {
      case 'runtime.registered': return ['good', [rtSelf, ' registered']];
      case 'runtime.reregistered':
        return ['good', [rtSelf, ev.was === 'dead' ? ' is back (registered again)' : ' registered again']];
      case 'runtime.dead': return ['bad', [rtSelf, ' died' + (ev.reason ? ': ' + ev.reason : '')]];
      case 'runtime.revived':
        return ['good', [rtSelf, ' alive again (keepalives after ' + String(ev.reason || 'death') + ')']];
      case 'runtime.dropped': return ['info', [rtSelf, ' forgotten (dead past the retention period)']];
      case 'runtime.drained': return ['wait', [rtSelf, ' drained: nothing new is placed there']];
      case 'runtime.undrained': return ['good', [rtSelf, ' takes placements again']];
      case 'runtime.forgotten': return ['info', [rtSelf, ' forgotten by an operator']];
      case 'module.created': return ['good', [mod, ' created on ', rt(m.parent)]];
      case 'module.queued':
        return ['wait', (m.parent ? [mod, ' queued for ', rt(m.parent)] : [mod, ' queued for any runtime'])
          .concat(m.waiting ? [' (' + String(m.waiting).replace(/^waiting: /, '') + ')'] : [])];
      case 'module.started': return ['good', [mod, ' started on ', rt(m.parent), ' (was queued)']];
      case 'module.respawned': return ['good', [mod, ' created again on ', rt(m.parent)]];
      case 'module.rescheduled': return ['move', [mod, ' moved from ', rt(ev.previous), ' to ', rt(m.parent)]];
      case 'module.acked': return ['info', [rt(m.parent), ' confirmed ', mod]];
      case 'module.exiting': return ['wait', [mod, ' stopping on ', rt(m.parent)]];
      case 'module.exited': return ['info', [mod, ' exited' + (m.parent ? ' on ' : ''), m.parent ? rt(m.parent) : '']];
      case 'module.killed':
        return ['bad', [mod, ' killed: ', rt(m.parent), ' died' + (ev.reason ? '; ' + String(ev.reason) : '')]];
      case 'module.revived': return ['good', [mod, ' running again on ', rt(m.parent)]];
      case 'module.deleted': return ['info', [mod, ' deleted' + (ev.reason ? ': ' + String(ev.reason) : '')]];
      case 'module.dropped': return ['info', [mod, ' forgotten']];
      case 'module.failed':
        return ['bad', [mod, ' failed on ', rt(m.parent), m.reason ? ': ' + String(m.reason) : '']];
      default: return ['info', [ev.module ? mod : rtSelf, ' ' + String(ev.type || 'changed')]];
    }
  }

  function feedAdd(ev) {
    const [kind, parts] = describe(ev);
    feedPending.push({ id: ev.id, type: String(ev.type || ''), time: ev.time, kind, parts });
    if (feedPending.length > FEED_MAX) feedPending.splice(0, feedPending.length - FEED_MAX);
    if (feedPaused) feedMissed++;
    schedule();
  }

  function feedEntry(e) {
    const li = document.createElement('li');
    li.className = 'ev k-' + e.kind;
    li.dataset.type = e.type;
    li.title = '#' + e.id + ' ' + e.type + (e.time ? ' at ' + e.time : '');
    const time = document.createElement('time');
    if (e.time) time.dateTime = e.time;
    time.textContent = clock(e.time);
    const msg = document.createElement('span');
    msg.className = 'ev-msg';
    for (const part of e.parts) {
      if (part === '' || part == null) continue;
      if (typeof part === 'string') msg.appendChild(document.createTextNode(part));
      else {
        const b = document.createElement('b');
        b.textContent = part.b;
        msg.appendChild(b);
      }
    }
    li.append(time, msg);
    return li;
  }

  function renderFeed() {
    const note = $('feed-note');
    if (feedPaused) {
      note.hidden = feedMissed === 0;
      setText(note, 'Paused · ' + plural(feedMissed, 'new event') + ' waiting');
      return;
    }
    note.hidden = true;
    if (!feedPending.length) return;
    const wait = feedDrawnAt + FEED_EVERY_MS - performance.now();
    if (wait > 0) {                 // a busy stream: gather more, draw them together
      if (!feedTimer) feedTimer = setTimeout(() => { feedTimer = 0; schedule(); }, wait);
      return;
    }
    feedDrawnAt = performance.now();
    const fragment = document.createDocumentFragment();
    for (let i = feedPending.length - 1; i >= 0; i--) {
      const li = feedEntry(feedPending[i]);
      if (feedPending.length <= 3) li.classList.add('fresh');
      fragment.appendChild(li);
    }
    feedPending.length = 0;
    feedList.prepend(fragment);
    while (feedList.childElementCount > FEED_MAX) feedList.lastElementChild.remove();
    $('feed-empty').hidden = true;
  }

  $('feed-pause').addEventListener('click', (e) => {
    feedPaused = !feedPaused;
    feedMissed = 0;
    e.currentTarget.setAttribute('aria-pressed', String(feedPaused));
    e.currentTarget.textContent = feedPaused ? 'Resume' : 'Pause';
    schedule();
  });

  // ---------------------------------------------------------------------------------
  // a module's output: one click on its row; read from /api/modules/{uuid}/logs?follow=1

  const OUTPUT_MAX = 2000;       // lines kept on the page
  const outputDialog = $('output');
  const outputLines = $('output-lines');
  let outputCtl = null;

  function outputNote(text) { setText($('output-note'), text); }

  function outputAppend(text) {
    const atEnd = outputLines.scrollTop + outputLines.clientHeight >= outputLines.scrollHeight - 4;
    outputLines.appendChild(document.createTextNode(text + '\n'));
    while (outputLines.childNodes.length > OUTPUT_MAX) outputLines.firstChild.remove();
    if (atEnd) outputLines.scrollTop = outputLines.scrollHeight;
    outputNote('');
  }

  async function followOutput(uuid, ctl) {
    let last = null;
    while (!ctl.signal.aborted) {
      try {
        const headers = authHeaders();
        if (last !== null) headers['Last-Event-ID'] = last;
        const url = '/api/modules/' + encodeURIComponent(uuid) + '/logs?follow=1' + (last === null ? '&tail=500' : '');
        const res = await fetch(url, { headers, cache: 'no-store', signal: ctl.signal });
        if (res.status === 404) { outputNote('This module is not known any more.'); return; }
        if (!res.ok || !res.body) throw new Error('HTTP ' + res.status);
        const push = sseParser((kind, payload, id) => {
          if (id !== null && id !== undefined) last = id;
          if (kind === 'truncated') outputAppend('… (older lines were let go)');
          if (kind !== 'message') return;
          let line;
          try { line = JSON.parse(payload); } catch (e) { return; }
          outputAppend(String(line.text));
        });
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          push(decoder.decode(value, { stream: true }));
        }
      } catch (err) {
        if (err && err.name === 'AbortError') return;
        outputNote('Connection lost; reconnecting…');
      }
      await sleep(2000);
    }
  }

  function openOutput(uuid) {
    if (outputCtl) outputCtl.abort();
    const m = modules.get(uuid);
    setText($('output-title'), 'Output of ' + (m ? String(m.name) : shortId(uuid)));
    setText($('output-id'), shortId(uuid));
    outputLines.textContent = '';
    outputNote('Nothing printed yet: lines appear here as its runtime publishes them.');
    outputDialog.dataset.module = uuid;
    if (!outputDialog.open) outputDialog.showModal();
    outputCtl = new AbortController();
    followOutput(uuid, outputCtl);
  }

  outputDialog.addEventListener('close', () => {
    if (outputCtl) outputCtl.abort();
    outputCtl = null;
    delete outputDialog.dataset.module;
  });
  $('layout').addEventListener('click', (e) => {
    const row = e.target.closest && e.target.closest('li.mod');
    if (row && row.dataset.module) openOutput(row.dataset.module);
  });

  // ---------------------------------------------------------------------------------
  // filter box, module toggle, keyboard

  const filterInput = $('filter');
  function filterChanged() {
    const q = filterInput.value.trim().toLowerCase();
    if (q === query) return;
    query = q;
    filterDirty = true;
    schedule();
  }
  for (const type of ['input', 'change', 'search']) filterInput.addEventListener(type, filterChanged);
  filterInput.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && filterInput.value) {
      e.preventDefault();
      filterInput.value = '';
      filterChanged();
    }
  });
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    const typing = t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable);
    if (e.key === '/' && !typing && !e.ctrlKey && !e.metaKey && !e.altKey) {
      e.preventDefault();
      filterInput.focus();
    }
  });

  function loadPrefs() {
    try { return JSON.parse(localStorage.getItem(PREFS_KEY) || '{}') || {}; } catch (e) { return {}; }
  }

  $('dead-section').addEventListener('toggle', (e) => {
    if (e.target.open && !query) deadOpenedByFilter = false;   // opened by hand: stays open
  });

  const showModules = $('show-modules');
  showModules.checked = loadPrefs().modules !== false;
  document.body.classList.toggle('compact', !showModules.checked);
  showModules.addEventListener('change', () => {
    document.body.classList.toggle('compact', !showModules.checked);
    try {
      localStorage.setItem(PREFS_KEY, JSON.stringify(Object.assign(loadPrefs(), { modules: showModules.checked })));
    } catch (e) { /* not kept */ }
  });

  // ---------------------------------------------------------------------------------

  $('forget-token').hidden = storedToken() === '';
  schedule();
  run();
})();
