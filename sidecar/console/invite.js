// Redeems a one-time invite link: the token travels in the URL fragment
// (never sent to a server or a Referer) and is dropped from the address bar
// at once, so the link cannot be replayed from the history.
'use strict';

const token = location.hash.slice(1);
history.replaceState(null, '', location.pathname);

document.addEventListener('DOMContentLoaded', () => {
  const form = document.getElementById('redeem-form');
  const error = document.getElementById('redeem-error');
  if (!token) {
    error.textContent = 'This link has no invite token: open the whole link you were sent.';
    form.querySelector('button').disabled = true;
    return;
  }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    const button = form.querySelector('button');
    button.disabled = true;
    try {
      const name = form.elements.name.value.trim();
      const r = await fetch('/console/invite/redeem', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(name ? { token, name } : { token }),
        cache: 'no-store',
      });
      const body = await r.json();
      if (!r.ok) throw new Error(body.error ? body.error.message : `${r.status} ${r.statusText}`);
      form.hidden = true;
      document.getElementById('redeemed-key').textContent = body.key;
      const models = body.models.length ? body.models.join(', ') : 'any model your team allows';
      const expiry = body.expires_at ? `, until ${new Date(body.expires_at * 1000).toISOString().slice(0, 10)}` : '';
      document.getElementById('redeemed-scope').textContent = `Team ${body.team}, user ${body.user}: ${models}${expiry}.`;
      document.getElementById('redeemed').hidden = false;
    } catch (e) {
      error.textContent = e.message;
      button.disabled = false;
    }
  });
});
