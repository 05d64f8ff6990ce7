/**
 * The approvers' web page: plain HTML, one script and one style sheet served beside it
 * (the CSP allows nothing inline). The approver pastes an OIDC access token once; it stays
 * in this tab's sessionStorage and goes to the API as a bearer token. Everything shown
 * from a request is set as text, never parsed as HTML.
 */

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>streamgate approvals</title>
<link rel="stylesheet" href="/approvals/app.css">
<script src="/approvals/app.js" defer></script>
</head>
<body>
<header><h1>Pending approvals</h1></header>
<section id="auth">
  <label for="token">Approver token (OIDC access token)</label>
  <input id="token" type="password" autocomplete="off" spellcheck="false">
  <button id="save-token" type="button">Use token</button>
  <button id="forget-token" type="button">Forget</button>
</section>
<p id="status" role="status"></p>
<p id="updated"></p>
<table id="approvals">
  <thead><tr><th>Requested</th><th>Who</th><th>What</th><th>Justification</th><th>Rule</th><th>Expires</th><th>Reason</th><th>Decision</th></tr></thead>
  <tbody></tbody>
</table>
<p id="empty" hidden>No pending requests.</p>
</body>
</html>
`;

export const PAGE_CSS = `body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }
h1 { font-size: 1.3rem; }
#auth { margin-bottom: 1rem; display: flex; gap: .5rem; align-items: center; flex-wrap: wrap; }
#token { width: 28rem; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: .35rem .5rem; text-align: left; vertical-align: top; }
code { font-size: 12px; }
#status.error { color: #b00020; }
#updated { color: #777; font-size: 12px; }
button.approve { background: #1b5e20; color: #fff; border: 0; padding: .3rem .7rem; }
button.deny { background: #b00020; color: #fff; border: 0; padding: .3rem .7rem; margin-left: .3rem; }
`;

export const PAGE_JS = `'use strict';
(() => {
  const KEY = 'streamgate.approver.token';
  const $ = (id) => document.getElementById(id);
  const status = (text, error) => { $('status').textContent = text; $('status').className = error ? 'error' : ''; };
  const token = () => sessionStorage.getItem(KEY) || '';

  async function api(path, options) {
    const res = await fetch(path, { ...options, headers: { ...(options && options.headers), authorization: 'Bearer ' + token() } });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.error || ('HTTP ' + res.status));
    return body;
  }

  function cell(row, text, className) {
    const td = document.createElement('td');
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function render(approvals) {
    const body = $('approvals').tBodies[0];
    body.replaceChildren();
    $('empty').hidden = approvals.length > 0;
    for (const a of approvals) {
      const row = document.createElement('tr');
      row.dataset.id = a.id;
      cell(row, new Date(a.createdAt).toLocaleString());
      cell(row, a.subject + (a.clientId ? ' (' + a.clientId + ')' : ''));
      cell(row, a.action + ' ' + a.resource.kind + ' ' + a.resource.name + ' (' + a.records + ' records, ' + a.protocol + ')');
      cell(row, a.justification || '-');
      cell(row, a.rule);
      cell(row, new Date(a.expiresAt).toLocaleTimeString());
      const reason = document.createElement('input');
      reason.className = 'reason';
      reason.placeholder = 'reason';
      cell(row, '').appendChild(reason);
      const actions = cell(row, '');
      if (a.canDecide) {
        for (const verb of ['approve', 'deny']) {
          const button = document.createElement('button');
          button.type = 'button';
          button.className = verb;
          button.textContent = verb === 'approve' ? 'Approve' : 'Deny';
          button.addEventListener('click', () => decide(a.id, verb, reason.value));
          actions.appendChild(button);
        }
      } else {
        actions.textContent = 'your own request';
      }
      body.appendChild(row);
    }
  }

  let loading = false;
  async function refresh() {
    if (!token()) { status('Paste an approver token to see pending requests.'); render([]); return; }
    if (loading) return;
    loading = true;
    try {
      const { approvals } = await api('/v1/approvals?status=pending');
      render(approvals);
      $('updated').textContent = 'Updated ' + new Date().toLocaleTimeString();
      if ($('status').className === 'error') status('');
    } catch (err) {
      status(err.message, true);
    } finally {
      loading = false;
    }
  }

  async function decide(id, verb, reason) {
    try {
      await api('/v1/approvals/' + encodeURIComponent(id) + '/' + verb, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ reason }) });
      status((verb === 'approve' ? 'Approved ' : 'Denied ') + id);
    } catch (err) {
      status(err.message, true);
    }
    await refresh();
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('save-token').addEventListener('click', () => { sessionStorage.setItem(KEY, $('token').value.trim()); $('token').value = ''; refresh(); });
    $('forget-token').addEventListener('click', () => { sessionStorage.removeItem(KEY); refresh(); });
    refresh();
    setInterval(refresh, 3000);
  });
})();
`;
