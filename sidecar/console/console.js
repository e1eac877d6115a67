// Tollgate console: a client of the sidecar's admin API. Everything shown is
// built with DOM calls and text nodes (never parsed as HTML), the master key
// lives in this tab's sessionStorage only, and a new key's secret is put on
// screen once and kept nowhere else.
'use strict';

const MASTER = 'tollgate.master';
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const SVG = 'http://www.w3.org/2000/svg';
const DAY = 86400;

// ---- helpers -------------------------------------------------------------

/** An element with attributes (`on*` are listeners) and text or node children. */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'value') e.value = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) e.append(c instanceof Node ? c : String(c ?? ''));
  return e;
}

function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function notice(message, kind = 'ok') {
  const n = $('#notice');
  n.textContent = message;
  n.className = kind;
  n.hidden = !message;
}

const fail = (e) => notice(e.message || String(e), 'error');

/** `YYYY-MM-DD HH:MM` in UTC, or `never`. */
function when(ts) {
  if (ts === null || ts === undefined) return 'never';
  return new Date(ts * 1000).toISOString().slice(0, 16).replace('T', ' ');
}

const day = (ts) => new Date(ts * 1000).toISOString().slice(0, 10);
const list = (text) => text.split(',').map((s) => s.trim()).filter(Boolean);
const usd = (v) => '$' + (v >= 0.01 || v === 0 ? v.toFixed(2) : v.toPrecision(2));
const num = (v) => Number(v).toLocaleString('en-US');

function formFields(form) {
  return Object.fromEntries(new FormData(form).entries());
}

/** Fills the `expires_at`/`expires_in` fields of a request from one input:
 * a duration (30d), a UTC date, or empty (never; `clear` sends null). */
function expiry(text, body, clear) {
  const t = text.trim();
  if (/^\d+[dhms]$/.test(t)) body.expires_in = t;
  else if (/^\d{4}-\d{2}-\d{2}$/.test(t)) body.expires_at = Date.parse(t + 'T00:00:00Z') / 1000;
  else if (t === '') { if (clear) body.expires_at = null; }
  else throw new Error(`expiry ${JSON.stringify(t)}: use 30d, 12h, 45m, a date YYYY-MM-DD or nothing`);
}

function metadata(text) {
  if (!text.trim()) return {};
  let value;
  try { value = JSON.parse(text); } catch (e) { throw new Error('metadata is not valid JSON: ' + e.message); }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('metadata must be a JSON object');
  return value;
}

/** Calls the admin API with the master key: the parsed JSON answer, or the
 * text with `asText` (CSV). Errors carry the API's message. */
async function api(method, path, body, asText = false) {
  const headers = { authorization: 'Bearer ' + sessionStorage.getItem(MASTER) };
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (r.status === 401) {
    signOut('The master key was refused; sign in again.');
    throw new Error('unauthorized');
  }
  const text = await r.text();
  if (!r.ok) {
    let message = r.status + ' ' + r.statusText;
    try { message = JSON.parse(text).error.message; } catch (_) { /* not our JSON */ }
    throw new Error(message);
  }
  if (asText) return text;
  return text ? JSON.parse(text) : null;
}

// ---- sign in and tabs ----------------------------------------------------

function signOut(message) {
  sessionStorage.removeItem(MASTER);
  forgetSecrets();
  $('#nav').hidden = true;
  $$('.tab').forEach((t) => { t.hidden = true; });
  $('#login').hidden = false;
  $('#login-error').textContent = message || '';
  notice('');
}

async function signIn(key) {
  sessionStorage.setItem(MASTER, key);
  try {
    await api('GET', '/admin/teams');
  } catch (e) {
    if (e.message !== 'unauthorized') signOut(e.message);
    return;
  }
  $('#login').hidden = true;
  $('#nav').hidden = false;
  show(location.hash.slice(1) || 'keys');
}

const loaders = {};

async function show(tab) {
  if (!loaders[tab]) tab = 'keys';
  forgetSecrets();
  notice('');
  $$('.tab').forEach((t) => { t.hidden = t.id !== 'tab-' + tab; });
  $$('#nav a').forEach((a) => a.classList.toggle('active', a.dataset.tab === tab));
  try { await loaders[tab](); } catch (e) { fail(e); }
}

/** Secrets on screen go when the admin moves on. */
function forgetSecrets() {
  for (const [box, value] of [['#secret-box', '#secret-value'], ['#invite-box', '#invite-link']]) {
    $(value).textContent = '';
    $(box).hidden = true;
  }
}

async function copyFrom(sel) {
  try {
    await navigator.clipboard.writeText($(sel).textContent);
    notice('Copied.');
  } catch (_) {
    // Clipboard access needs a secure context; select the text for a manual copy.
    const range = document.createRange();
    range.selectNodeContents($(sel));
    const s = getSelection();
    s.removeAllRanges();
    s.addRange(range);
    notice('Selected: copy it with Ctrl+C.');
  }
}

// ---- teams (shared by several tabs) --------------------------------------

let teams = [];

async function loadTeams() {
  teams = (await api('GET', '/admin/teams')).teams;
  const names = teams.map((t) => t.name);
  $('#team-names').replaceChildren(...names.map((n) => el('option', { value: n })));
  for (const select of $$('select.team-select')) {
    const keep = select.value;
    const any = select.closest('#key-search') ? [el('option', { value: '' }, 'any team')] : [];
    select.replaceChildren(...any, ...names.map((n) => el('option', { value: n }, n)));
    if (names.includes(keep)) select.value = keep;
  }
}

// ---- keys ----------------------------------------------------------------

let editing = null;

loaders.keys = async () => {
  await loadTeams();
  await searchKeys();
};

async function searchKeys() {
  const q = new URLSearchParams(formFields($('#key-search')));
  const { keys } = await api('GET', '/admin/keys?' + q);
  const rows = keys.map((k) => {
    const actions = [el('button', { type: 'button', 'data-action': 'edit', onclick: () => editKey(k) }, 'Edit')];
    if (k.status === 'active') actions.push(el('button', { type: 'button', 'data-action': 'deactivate', onclick: () => setStatus(k, 'deactivate') }, 'Deactivate'));
    if (k.status === 'inactive') actions.push(el('button', { type: 'button', 'data-action': 'activate', onclick: () => setStatus(k, 'activate') }, 'Activate'));
    if (k.status !== 'revoked') actions.push(el('button', { type: 'button', class: 'danger', 'data-action': 'revoke', onclick: () => setStatus(k, 'revoke') }, 'Revoke'));
    return el('tr', { 'data-id': k.id },
      el('td', { class: 'mono' }, k.id), el('td', {}, k.name || ''), el('td', { class: 'mono' }, k.key_prefix + '…'),
      el('td', {}, k.team || ''), el('td', {}, k.user || ''), el('td', { class: 'mono' }, k.models.join(', ') || 'any'),
      el('td', {}, el('span', { class: 'status ' + k.status }, k.status)),
      el('td', { class: 'expires' }, when(k.expires_at)), el('td', { class: 'actions' }, ...actions));
  });
  if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: 9, class: 'empty' }, 'No keys match.')));
  $('#keys-table tbody').replaceChildren(...rows);
}

async function createKey(form) {
  const f = formFields(form);
  const body = { models: list(f.models), metadata: metadata(f.metadata) };
  for (const field of ['name', 'team', 'user']) if (f[field].trim()) body[field] = f[field].trim();
  expiry(f.expires, body, false);
  const created = await api('POST', '/admin/keys', body);
  form.reset();
  await loadTeams();
  await searchKeys();
  $('#secret-value').textContent = created.key;
  $('#secret-box').hidden = false;
  notice(`Key ${created.id} created.`);
}

async function setStatus(k, change) {
  if (change === 'revoke' && !confirm(`Revoke ${k.id}? Revocation is permanent.`)) return;
  await api('POST', `/admin/keys/${encodeURIComponent(k.id)}/${change}`);
  notice(`Key ${k.id}: ${change}d.`);
  await searchKeys();
}

function editKey(k) {
  editing = k;
  const form = $('#key-edit');
  $('#key-edit-id').textContent = k.id;
  form.elements.name.value = k.name || '';
  form.elements.team.value = k.team || '';
  form.elements.user.value = k.user || '';
  form.elements.models.value = k.models.join(', ');
  form.elements.expires.value = k.expires_at ? day(k.expires_at) : '';
  form.elements.metadata.value = Object.keys(k.metadata).length ? JSON.stringify(k.metadata) : '';
  form.hidden = false;
  form.elements.models.focus();
}

async function saveKey(form) {
  const f = formFields(form);
  const body = { models: list(f.models), metadata: metadata(f.metadata) };
  for (const field of ['name', 'team', 'user']) body[field] = f[field].trim() || null;
  // An unchanged date keeps the exact expiry instead of rounding it to midnight.
  const unchanged = editing.expires_at && f.expires.trim() === day(editing.expires_at);
  if (!unchanged) expiry(f.expires, body, true);
  const saved = await api('PATCH', `/admin/keys/${encodeURIComponent(editing.id)}`, body);
  form.hidden = true;
  editing = null;
  notice(`Key ${saved.id} saved.`);
  await loadTeams();
  await searchKeys();
}

// ---- teams, invites and users --------------------------------------------

loaders.teams = async () => {
  await loadTeams();
  $('#teams-table tbody').replaceChildren(...teams.map((t) => {
    const models = el('input', { value: t.models.join(', '), 'aria-label': `models of ${t.name}`, placeholder: 'any' });
    const save = async () => {
      await api('PATCH', `/admin/teams/${encodeURIComponent(t.name)}`, { models: list(models.value) });
      notice(`Team ${t.name} saved.`);
    };
    return el('tr', { 'data-id': t.name }, el('td', {}, t.name), el('td', {}, models),
      el('td', {}, when(t.created_at)),
      el('td', { class: 'actions' }, el('button', { type: 'button', onclick: () => save().catch(fail) }, 'Save models')));
  }));
  const { invites } = await api('GET', '/admin/invites');
  $('#invites-table tbody').replaceChildren(...invites.map((i) => el('tr', { 'data-id': i.id },
    el('td', { class: 'mono' }, i.id), el('td', {}, i.team), el('td', {}, i.user),
    el('td', {}, el('span', { class: 'status ' + i.status }, i.status)), el('td', {}, when(i.expires_at)),
    el('td', { class: 'mono' }, i.key_id || ''),
    el('td', { class: 'actions' }, i.status === 'pending'
      ? el('button', { type: 'button', class: 'danger', onclick: () => withdraw(i).catch(fail) }, 'Withdraw') : ''))));
  const { users } = await api('GET', '/admin/users');
  $('#users-table tbody').replaceChildren(...users.map((u) => el('tr', {},
    el('td', {}, u.user), el('td', {}, u.teams.join(', ')), el('td', {}, u.keys), el('td', {}, u.active_keys))));
};

async function createTeam(form) {
  const f = formFields(form);
  await api('POST', '/admin/teams', { name: f.name.trim(), models: list(f.models) });
  form.reset();
  notice(`Team ${f.name.trim()} created.`);
  await loaders.teams();
}

async function createInvite(form) {
  const f = formFields(form);
  const body = { team: f.team, user: f.user.trim(), models: list(f.models), expires_in: f.expires_in.trim() || '7d' };
  if (f.key_expires_in.trim()) body.key_expires_in = f.key_expires_in.trim();
  const created = await api('POST', '/admin/invites', body);
  form.elements.user.value = '';
  await loaders.teams();
  // The token rides in the fragment, which browsers never send to a server.
  $('#invite-link').textContent = `${location.origin}/console/invite#${created.token}`;
  $('#invite-box').hidden = false;
  notice(`Invite for ${created.user} created.`);
}

async function withdraw(i) {
  await api('DELETE', `/admin/invites/${encodeURIComponent(i.id)}`);
  notice(`Invite ${i.id} withdrawn.`);
  await loaders.teams();
}

// ---- budgets -------------------------------------------------------------

function amount(kind, v) {
  return kind === 'spend' ? usd(v) : num(v);
}

loaders.budgets = async () => {
  const { budgets } = await api('GET', '/admin/budgets');
  const rows = budgets.map((b) => {
    const limit = el('input', { type: 'number', min: 0, step: 'any', value: b.limit, 'aria-label': `limit of ${b.id}`, name: 'limit' });
    const mode = el('select', { name: 'mode', 'aria-label': `mode of ${b.id}` }, el('option', {}, 'hard'), el('option', {}, 'tracking'));
    mode.value = b.mode;
    const save = async () => {
      const saved = await api('PATCH', `/admin/budgets/${encodeURIComponent(b.id)}`, { limit: Number(limit.value), mode: mode.value });
      notice(`Budget ${saved.id}: limit ${amount(saved.kind, saved.limit)}, ${saved.mode}.`);
      await loaders.budgets();
    };
    const remove = async () => {
      if (!confirm(`Delete budget ${b.id}?`)) return;
      await api('DELETE', `/admin/budgets/${encodeURIComponent(b.id)}`);
      notice(`Budget ${b.id} deleted.`);
      await loaders.budgets();
    };
    const meter = el('meter', { min: 0, max: b.limit || 1, value: Math.min(b.used + b.reserved, b.limit || 1), high: (b.limit || 1) * 0.8, optimum: 0, title: `${amount(b.kind, b.used + b.reserved)} of ${amount(b.kind, b.limit)}` });
    return el('tr', { 'data-id': b.id },
      el('td', { class: 'mono' }, b.id), el('td', {}, `${b.scope} ${b.scope_id}`), el('td', {}, b.kind), el('td', {}, b.period),
      el('td', {}, mode), el('td', { class: 'used' }, amount(b.kind, b.used)), el('td', { class: 'reserved' }, amount(b.kind, b.reserved)),
      el('td', {}, limit), el('td', {}, meter), el('td', { class: 'reset' }, b.resets_at ? when(b.resets_at) : 'never (lifetime)'),
      el('td', { class: 'actions' },
        el('button', { type: 'button', 'data-action': 'save', onclick: () => save().catch(fail) }, 'Save'),
        el('button', { type: 'button', class: 'danger', 'data-action': 'delete', onclick: () => remove().catch(fail) }, 'Delete')));
  });
  if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: 11, class: 'empty' }, 'No budgets yet.')));
  $('#budgets-table tbody').replaceChildren(...rows);
};

async function createBudget(form) {
  const f = formFields(form);
  const b = await api('POST', '/admin/budgets', { ...f, scope_id: f.scope_id.trim(), limit: Number(f.limit) });
  form.reset();
  notice(`Budget ${b.id} created.`);
  await loaders.budgets();
}

// ---- usage ---------------------------------------------------------------

/** The range a date form asks for; the last 30 days (UTC) when empty. */
function range(form) {
  const now = Math.floor(Date.now() / 1000);
  if (!form.elements.from.value) form.elements.from.value = day(now - 29 * DAY);
  if (!form.elements.to.value) form.elements.to.value = day(now);
  return { from: form.elements.from.value, to: form.elements.to.value };
}

function daysBetween(from, to) {
  const out = [];
  for (let t = Date.parse(from + 'T00:00:00Z') / 1000, end = Date.parse(to + 'T00:00:00Z') / 1000; t <= end && out.length < 400; t += DAY) out.push(day(t));
  return out;
}

const SERIES = 8;

/** The groups the charts show, largest spend first: the top ones, then
 * "other". One list for every chart, so a group keeps its colour. */
function seriesOf(rows, group) {
  const totals = new Map();
  for (const r of rows) {
    const name = r[group] ?? '(none)';
    const t = totals.get(name) || [0, 0];
    totals.set(name, [t[0] + r.cost_usd, t[1] + r.requests]);
  }
  const names = [...totals.keys()].sort((a, b) => totals.get(b)[0] - totals.get(a)[0] || totals.get(b)[1] - totals.get(a)[1]);
  return names.length > SERIES ? [...names.slice(0, SERIES - 1), 'other'] : names;
}

/** Stacked bars per day, one colour per series. */
function barChart(title, days, rows, group, names, value, format) {
  const slot = (name) => (names.includes(name) ? name : 'other');
  const cells = new Map(days.map((d) => [d, new Map()]));
  for (const r of rows) {
    const byName = cells.get(r.day);
    if (!byName) continue;
    const n = slot(r[group] ?? '(none)');
    byName.set(n, (byName.get(n) || 0) + value(r));
  }
  const max = Math.max(0, ...[...cells.values()].map((m) => [...m.values()].reduce((a, b) => a + b, 0))) || 1;
  const W = 1200, H = 190, L = 70, R = 8, T = 8, B = 22;
  const bw = (W - L - R) / Math.max(days.length, 1);
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title });
  for (let i = 0; i <= 4; i++) {
    const y = T + (H - T - B) * (1 - i / 4);
    chart.append(svg('line', { x1: L, x2: W - R, y1: y, y2: y, class: 'grid' }));
    chart.append(svg('text', { x: L - 6, y: y + 4, class: 'axis', 'text-anchor': 'end' }, format((max * i) / 4)));
  }
  days.forEach((d, i) => {
    let y = H - B;
    const x = L + i * bw;
    names.forEach((n, s) => {
      const v = cells.get(d).get(n) || 0;
      if (v <= 0) return;
      const h = ((H - T - B) * v) / max;
      y -= h;
      const bar = svg('rect', { x: x + bw * 0.1, y, width: Math.max(bw * 0.8, 1), height: h, class: 's' + s });
      bar.append(svg('title', {}, `${d} ${n}: ${format(v)}`));
      chart.append(bar);
    });
    if (days.length <= 10 || i % Math.ceil(days.length / 10) === 0) {
      chart.append(svg('text', { x: x + bw / 2, y: H - 8, class: 'axis', 'text-anchor': 'middle' }, d.slice(5)));
    }
  });
  const legend = el('ul', { class: 'legend' }, ...names.map((n, s) => el('li', {}, el('span', { class: 'sw s' + s }), n)));
  return el('figure', { class: 'card' }, el('figcaption', {}, title), chart, legend);
}

loaders.usage = async () => {
  const form = $('#usage-form');
  const { from, to } = range(form);
  const group = form.elements.group_by.value;
  const q = new URLSearchParams({ group_by: group, from, to });
  const [{ rows }, summary] = await Promise.all([api('GET', '/admin/usage/daily?' + q), api('GET', '/admin/usage?' + q)]);
  const days = daysBetween(from, to);
  const names = seriesOf(rows, group);
  const count = (v) => num(Math.round(v));
  $('#usage-charts').replaceChildren(
    barChart('Spend per day (USD)', days, rows, group, names, (r) => r.cost_usd, usd),
    barChart('Tokens per day (input + output)', days, rows, group, names, (r) => r.input_tokens + r.output_tokens, count),
    barChart('Requests per day', days, rows, group, names, (r) => r.requests, count));
  $('#usage-group-head').textContent = group[0].toUpperCase() + group.slice(1);
  const lines = summary.rows.map((r) => el('tr', {},
    el('td', {}, r[group] ?? '(none)'), el('td', {}, num(r.requests)), el('td', {}, num(r.input_tokens)),
    el('td', {}, num(r.output_tokens)), el('td', {}, usd(r.cost_usd)), el('td', {}, num(r.estimated_requests)),
    el('td', {}, num(r.unpriced_requests))));
  if (!lines.length) lines.push(el('tr', {}, el('td', { colspan: 7, class: 'empty' }, 'No usage in this range.')));
  $('#usage-table tbody').replaceChildren(...lines);
};

async function downloadCsv() {
  const form = $('#usage-form');
  const { from, to } = range(form);
  const group = form.elements.group_by.value;
  const q = new URLSearchParams({ group_by: group, from, to, format: 'csv' });
  const csv = await api('GET', '/admin/usage/daily?' + q, undefined, true);
  const a = el('a', { download: `tollgate-usage-${group}-${from}-${to}.csv` });
  a.href = URL.createObjectURL(new Blob([csv], { type: 'text/csv' }));
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60000);
  notice('CSV downloaded.');
}

// ---- guardrails ----------------------------------------------------------

loaders.guardrails = async () => {
  const form = $('#guardrails-form');
  const { from, to } = range(form);
  const { events } = await api('GET', '/admin/guardrails?' + new URLSearchParams({ from, to }));
  $('#guardrails-table tbody').replaceChildren(...(events.length ? events.map((e) => el('tr', {},
    el('td', {}, e.guardrail), el('td', {}, e.kind), el('td', {}, e.direction), el('td', {}, e.action),
    el('td', {}, num(e.count)))) : [el('tr', {}, el('td', { colspan: 5, class: 'empty' }, 'No guardrail events in this range.'))]));
  // One bar per kind, split by direction.
  const kinds = new Map();
  for (const e of events) {
    const k = kinds.get(e.kind) || { input: 0, output: 0 };
    k[e.direction === 'output' ? 'output' : 'input'] += e.count;
    kinds.set(e.kind, k);
  }
  const names = [...kinds.keys()].sort((a, b) => (kinds.get(b).input + kinds.get(b).output) - (kinds.get(a).input + kinds.get(a).output));
  const max = Math.max(1, ...names.map((n) => kinds.get(n).input + kinds.get(n).output));
  const W = 1200, L = 160, R = 60, rowH = 24;
  const chart = svg('svg', { viewBox: `0 0 ${W} ${Math.max(names.length, 1) * rowH + 8}`, class: 'chart', role: 'img', 'aria-label': 'Guardrail events by kind and direction' });
  names.forEach((n, i) => {
    const y = 4 + i * rowH;
    const k = kinds.get(n);
    chart.append(svg('text', { x: L - 6, y: y + 15, class: 'axis', 'text-anchor': 'end' }, n));
    let x = L;
    for (const [dir, s] of [['input', 0], ['output', 1]]) {
      const w = ((W - L - R) * k[dir]) / max;
      if (w > 0) {
        const bar = svg('rect', { x, y, width: w, height: rowH - 6, class: 's' + s });
        bar.append(svg('title', {}, `${n} ${dir}: ${num(k[dir])}`));
        chart.append(bar);
      }
      x += w;
    }
    chart.append(svg('text', { x: x + 4, y: y + 15, class: 'axis' }, num(k.input + k.output)));
  });
  const legend = el('ul', { class: 'legend' }, el('li', {}, el('span', { class: 'sw s0' }), 'input'), el('li', {}, el('span', { class: 'sw s1' }), 'output'));
  $('#guardrails-chart').replaceChildren(el('figure', { class: 'card' }, el('figcaption', {}, 'Events by kind'), chart, legend));
};

// ---- wiring --------------------------------------------------------------

/** Runs a form's action on submit, reporting errors instead of reloading. */
function onSubmit(sel, action) {
  $(sel).addEventListener('submit', (ev) => {
    ev.preventDefault();
    action(ev.target).catch(fail);
  });
}

document.addEventListener('DOMContentLoaded', () => {
  onSubmit('#login-form', async () => {
    const input = $('#login-key');
    const key = input.value.trim();
    input.value = '';
    await signIn(key);
  });
  $('#logout').addEventListener('click', () => signOut('Signed out.'));
  window.addEventListener('hashchange', () => {
    if (sessionStorage.getItem(MASTER)) show(location.hash.slice(1));
  });
  onSubmit('#key-form', createKey);
  onSubmit('#key-search', searchKeys);
  onSubmit('#key-edit', saveKey);
  $('#key-edit-cancel').addEventListener('click', () => { $('#key-edit').hidden = true; editing = null; });
  $('#secret-copy').addEventListener('click', () => copyFrom('#secret-value'));
  $('#secret-done').addEventListener('click', forgetSecrets);
  onSubmit('#team-form', createTeam);
  onSubmit('#invite-form', createInvite);
  $('#invite-copy').addEventListener('click', () => copyFrom('#invite-link'));
  $('#invite-done').addEventListener('click', forgetSecrets);
  onSubmit('#budget-form', createBudget);
  onSubmit('#usage-form', loaders.usage);
  $('#usage-csv').addEventListener('click', () => downloadCsv().catch(fail));
  onSubmit('#guardrails-form', loaders.guardrails);
  const key = sessionStorage.getItem(MASTER);
  if (key) signIn(key); else signOut();
});
