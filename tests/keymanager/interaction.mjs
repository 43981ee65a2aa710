// Sign-in pages of the demo key manager for the authorization code flow (the console's sign-in):
// GET /interaction/:uid shows a login form (Username, Password, "Sign in"); POST
// /interaction/:uid/login checks the demo user and finishes the login prompt. The consent prompt
// is granted without a page: the only client using this flow is the console, a first-party client.
import { findUser } from './provider.mjs';

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function loginPage(uid, error) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign in - demo key manager</title></head>
<body style="font-family:system-ui,sans-serif;max-width:24rem;margin:3rem auto">
<h1>Demo key manager</h1>
${error ? `<p role="alert" style="color:#a00">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<p><label for="username">Username</label><br><input id="username" name="username" autocomplete="username" required></p>
<p><label for="password">Password</label><br><input id="password" name="password" type="password" autocomplete="current-password" required></p>
<p><button type="submit" id="login">Sign in</button></p>
</form></body></html>`;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (chunk) => {
      body += chunk;
      if (body.length > 65536) reject(new Error('body too large'));
    });
    req.on('end', () => resolve(new URLSearchParams(body)));
    req.on('error', reject);
  });
}

async function consent(provider, req, res, details) {
  const { params, session } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = details.prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

// Handles /interaction/... requests; returns false for any other path.
export async function interaction(provider, data, req, res) {
  const path = req.url.split('?')[0];
  const match = path.match(/^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/);
  if (!match) return false;
  const details = await provider.interactionDetails(req, res);
  if (req.method === 'GET' && !match[2]) {
    if (details.prompt.name === 'consent') {
      await consent(provider, req, res, details);
      return true;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(loginPage(details.uid));
    return true;
  }
  if (req.method === 'POST' && match[2]) {
    const form = await readBody(req);
    const user = findUser(data, form.get('username'), form.get('password'));
    if (!user) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(loginPage(details.uid, 'Wrong username or password.'));
      return true;
    }
    await provider.interactionFinished(req, res, { login: { accountId: user.username } }, { mergeWithLastSubmission: false });
    return true;
  }
  res.writeHead(405);
  res.end();
  return true;
}
