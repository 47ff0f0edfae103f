// A certified OpenID provider (oidc-provider) on a loopback port, at
// LinkedIn's paths, so the daemon's LinkedIn member connector and refresh
// flow talk to an authorization server written by someone else.
//
// One confidential client (client_secret_post), the authorization code
// grant with PKCE required, refresh tokens issued with every code and
// rotated on every use. Sign-in and consent are the provider's development
// interactions: any login name is accepted and becomes the member's `sub`.
//
// Environment: OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI.
// Prints one JSON line, {"issuer": ...}, once it listens; exits when its
// standard input closes (its test ended).

import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const required = (name) => {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`${name} is required\n`);
    process.exit(2);
  }
  return value;
};

const clientId = required('OIDC_CLIENT_ID');
const clientSecret = required('OIDC_CLIENT_SECRET');
const redirectUri = required('OIDC_REDIRECT_URI');

const server = createServer();
await new Promise((resolve) => { server.listen(0, '127.0.0.1', resolve); });
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
  }],
  routes: {
    authorization: '/oauth/v2/authorization',
    token: '/oauth/v2/accessToken',
    userinfo: '/v2/userinfo',
  },
  // LinkedIn's scopes: `profile` carries the claims its userinfo answers.
  scopes: ['openid', 'offline_access', 'w_member_social'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'picture'],
  },
  pkce: { required: () => true },
  // Refresh tokens without offline_access (LinkedIn issues them to its
  // partners with the ordinary scopes), rotated on every use.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => true,
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  features: { devInteractions: { enabled: true } },
  findAccount: async (_ctx, sub) => ({
    accountId: sub,
    claims: async () => ({
      sub,
      name: `Member ${sub}`,
      picture: `${issuer}/avatars/${encodeURIComponent(sub)}.png`,
    }),
  }),
});

server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ issuer })}\n`);

process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
