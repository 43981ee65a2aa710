// oidc-provider configuration for the demo key manager: JWT access tokens (RFC 9068) for one
// resource server, client_credentials for application tokens and a password grant for user tokens.
import { randomBytes } from 'node:crypto';
import { Provider, errors } from 'oidc-provider';

const PASSWORD_GRANT = 'password';

// The resource server every token is issued for: `aud` is its identifier and the token is a JWT
// signed RS256 by the current signing key.
function resourceServerInfo(data, keys) {
  return {
    scope: data.scopes.join(' '),
    audience: data.resource,
    accessTokenFormat: 'jwt',
    accessTokenTTL: data.access_token_ttl_seconds,
    jwt: { sign: { alg: 'RS256', kid: keys.signer } },
  };
}

// ---- Opaque tokens (RFC 7662 introspection) -------------------------------------------------
// Clients marked `"access_token_format": "opaque"` in the data get opaque access tokens (a random
// handle, no JWT) for the same resource server; the gateway checks those at
// /token/introspection, authenticated as the `introspection_client` (client_secret_basic).
// Revocation (RFC 7009) lets a client revoke its own tokens, so tests can make one inactive.
function opaqueClient(data, client) {
  return data.clients.some((c) => c.client_id === client?.clientId && c.access_token_format === 'opaque');
}

function opaqueResourceServerInfo(data) {
  return {
    scope: data.scopes.join(' '),
    audience: data.resource,
    accessTokenFormat: 'opaque',
    accessTokenTTL: data.access_token_ttl_seconds,
  };
}

function introspectionFeatures(data) {
  return {
    introspection: {
      enabled: true,
      // Only the gateway's own client may read introspection answers.
      allowedPolicy: (ctx, client) => client.clientId === data.introspection_client,
    },
    revocation: {
      enabled: true,
      allowedPolicy: (ctx, client, token) => token.clientId === client.clientId,
    },
  };
}
// ---- end of opaque tokens ---------------------------------------------------------------------

function clientMetadata(client) {
  return {
    client_id: client.client_id,
    client_secret: client.client_secret,
    scope: client.scope,
    grant_types: client.grant_types ?? ['client_credentials', PASSWORD_GRANT],
    response_types: client.response_types ?? [],
    redirect_uris: client.redirect_uris ?? [],
    ...(client.application_type ? { application_type: client.application_type } : undefined),
    token_endpoint_auth_method: client.token_endpoint_auth_method ?? 'client_secret_basic',
  };
}

export function findUser(data, username, password) {
  const user = data.users.find((u) => u.username === username);
  // Demo data only: a plain comparison is fine, the passwords are published in README.md.
  return user && user.password === password ? user : undefined;
}

// Resource Owner Password Credentials (RFC 6749 §4.3): the seed product's user-token flow.
// oidc-provider has no built-in handler for it, so this issues an AccessToken for the user itself.
function passwordGrant(data, keys) {
  return async function passwordGrantHandler(ctx) {
    const { params, client } = ctx.oidc;
    const user = findUser(data, params.username, params.password);
    if (!user) {
      throw new errors.InvalidGrant('invalid username or password');
    }

    const resource = params.resource ?? data.resource;
    if (resource !== data.resource) {
      throw new errors.InvalidTarget();
    }

    const requested = (params.scope ?? '').split(' ').filter(Boolean);
    const allowed = new Set((client.scope ?? '').split(' '));
    const unknown = requested.filter((s) => !allowed.has(s));
    if (unknown.length > 0) {
      throw new errors.InvalidScope('requested scope is not allowed for this client', unknown.join(' '));
    }
    const resourceScopes = new Set(data.scopes);
    const scope = requested.filter((s) => resourceScopes.has(s)).join(' ') || undefined;

    const { AccessToken, ResourceServer } = ctx.oidc.provider;
    const token = new AccessToken({ accountId: user.username, client, scope, gty: PASSWORD_GRANT });
    const info = opaqueClient(data, client) ? opaqueResourceServerInfo(data) : resourceServerInfo(data, keys);
    token.resourceServer = new ResourceServer(resource, info);
    const accessToken = await token.save();

    ctx.body = {
      access_token: accessToken,
      token_type: token.tokenType,
      expires_in: token.expiration,
      ...(scope ? { scope } : undefined),
    };
  };
}

export function buildProvider(issuer, data, keys, cookieKeys) {
  const provider = new Provider(issuer, {
    clients: data.clients.map(clientMetadata),
    jwks: keys.privateJwks(),
    scopes: ['openid', ...data.scopes],
    // `groups` (scope and claim): the console's sign-in reads the user's groups from the ID token.
    claims: { openid: ['sub'], groups: ['groups'] },
    conformIdTokenClaims: false,
    // Sign-in pages for the authorization code flow (server.mjs serves /interaction/...).
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    cookies: { keys: cookieKeys },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      ...introspectionFeatures(data),
      // --- DPoP (RFC 9449; keygate issue 14) ---------------------------------------------------
      // A client that sends a DPoP proof to the token endpoint gets a DPoP-bound JWT access token:
      // `token_type: DPoP` and `cnf.jkt` = the RFC 7638 thumbprint of the proof's key. Without a
      // proof, tokens stay plain bearer tokens. No server nonces (proofs are checked on `iat`).
      dPoP: { enabled: true, allowReplay: false },
      // --- end DPoP ----------------------------------------------------------------------------
      resourceIndicators: {
        enabled: true,
        defaultResource: () => data.resource,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, indicator, client) => {
          if (indicator !== data.resource) {
            throw new errors.InvalidTarget();
          }
          if (opaqueClient(data, client)) return opaqueResourceServerInfo(data);
          return resourceServerInfo(data, keys);
        },
      },
    },
    // `groups` goes into user tokens only: application tokens (client_credentials) have no user.
    extraTokenClaims: (ctx, token) => {
      if (token.kind !== 'AccessToken' || !token.accountId) return undefined;
      const user = data.users.find((u) => u.username === token.accountId);
      return { groups: user ? [...user.groups] : [] };
    },
    findAccount: (ctx, sub) => {
      const user = data.users.find((u) => u.username === sub);
      return user ? { accountId: sub, claims: () => ({ sub, groups: [...user.groups] }) } : undefined;
    },
  });
  provider.registerGrantType(PASSWORD_GRANT, passwordGrant(data, keys), ['username', 'password', 'scope', 'resource']);
  return provider;
}

export function newCookieKeys() {
  return [randomBytes(32).toString('base64url')];
}
