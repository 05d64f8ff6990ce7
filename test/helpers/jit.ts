import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { request } from 'undici';
import { SignedXml } from 'xml-crypto';
import { runKcat } from './kcat.ts';

export const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
export const SAML2_TYPE = 'urn:ietf:params:oauth:token-type:saml2';

export interface TokenResponse {
  status: number;
  json: {
    access_token: string;
    credential_id: string;
    scope: string;
    expires_in: number;
    token_type: string;
    issued_token_type: string;
    aws: { accessKeyId: string; secretAccessKey: string; sessionToken: string };
    kafka: { sasl_plain: { username: string; password: string } };
    error?: string;
    error_description?: string;
  };
}

/** POST /v1/token (RFC 8693) on a gateway's HTTP listener. */
export async function exchange(httpBase: string, params: Record<string, string>): Promise<TokenResponse> {
  const res = await request(`${httpBase}/v1/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token_type: JWT_TYPE, ...params }).toString(),
  });
  return { status: res.statusCode, json: (await res.body.json()) as TokenResponse['json'] };
}

/** One record through the REST produce API, with `token` as bearer. */
export async function httpProduce(httpBase: string, token: string, topic: string, value: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await request(`${httpBase}/v3/clusters/local/topics/${topic}/records`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ value: { type: 'JSON', data: value } }),
  });
  return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
}

/** A throwaway SAML IdP signing key and self-signed certificate (openssl, as the TLS tests do). */
export function samlIdpKeys(): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'sg-saml-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'idp.key', '-out', 'idp.crt', '-days', '1', '-subj', '/CN=streamgate test SAML IdP'], { cwd: dir, stdio: 'ignore' });
  return { key: readFileSync(join(dir, 'idp.key'), 'utf8'), cert: readFileSync(join(dir, 'idp.crt'), 'utf8') };
}

/** A SAML 2.0 assertion as an IdP would issue it, signed (enveloped, exclusive c14n, RSA-SHA256) with `key`. */
export function signedAssertion(o: { key: string; issuer: string; audience: string; nameId: string; groups: string[]; validSeconds?: number }): string {
  const now = Date.now();
  const iso = (ms: number) => new Date(ms).toISOString();
  const until = iso(now + (o.validSeconds ?? 300) * 1000);
  const id = `_${randomUUID()}`;
  const groups = o.groups.map((g) => `<saml:AttributeValue>${g}</saml:AttributeValue>`).join('');
  const xml =
    `<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="${id}" Version="2.0" IssueInstant="${iso(now)}">` +
    `<saml:Issuer>${o.issuer}</saml:Issuer>` +
    `<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified">${o.nameId}</saml:NameID>` +
    `<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="${until}"/></saml:SubjectConfirmation></saml:Subject>` +
    `<saml:Conditions NotBefore="${iso(now - 60_000)}" NotOnOrAfter="${until}"><saml:AudienceRestriction><saml:Audience>${o.audience}</saml:Audience></saml:AudienceRestriction></saml:Conditions>` +
    `<saml:AuthnStatement AuthnInstant="${iso(now)}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>` +
    `<saml:AttributeStatement><saml:Attribute Name="groups">${groups}</saml:Attribute></saml:AttributeStatement>` +
    `</saml:Assertion>`;
  const sig = new SignedXml({
    privateKey: o.key,
    canonicalizationAlgorithm: 'http://www.w3.org/2001/10/xml-exc-c14n#',
    signatureAlgorithm: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
  });
  sig.addReference({
    xpath: "/*[local-name(.)='Assertion']",
    digestAlgorithm: 'http://www.w3.org/2001/04/xmlenc#sha256',
    transforms: ['http://www.w3.org/2000/09/xmldsig#enveloped-signature', 'http://www.w3.org/2001/10/xml-exc-c14n#'],
  });
  sig.computeSignature(xml, { location: { reference: "/*[local-name(.)='Assertion']/*[local-name(.)='Issuer']", action: 'after' } });
  return sig.getSignedXml();
}

export interface LiveConsumer {
  /** resolves once kcat printed a line matching `re` on stdout (records) or stderr (errors); rejects after timeoutMs */
  waitFor(stream: 'stdout' | 'stderr', re: RegExp, timeoutMs: number): Promise<string>;
  output(): { stdout: string; stderr: string };
  stop(): Promise<void>;
}

/**
 * A long-running kcat consumer (assign mode, from the end): one Kafka connection that stays
 * open, fetching. kcat's producer mode reads stdin to EOF before sending, so a live
 * connection is a consumer's.
 */
export function liveKcatConsumer(bootstrap: string, auth: string[], topic: string): LiveConsumer {
  const child = spawn('kcat', ['-b', bootstrap, ...auth, '-u', '-C', '-t', topic, '-o', 'end'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '' };
  const waiters = new Set<() => void>();
  for (const stream of ['stdout', 'stderr'] as const) {
    child[stream].on('data', (d: Buffer) => {
      out[stream] += d.toString();
      for (const w of waiters) w();
    });
  }
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  return {
    output: () => ({ ...out }),
    waitFor: (stream, re, timeoutMs) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const m = re.exec(out[stream]);
          if (!m) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(m[0]);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`kcat did not print ${re} on ${stream} within ${timeoutMs} ms; stdout:\n${out.stdout}\nstderr:\n${out.stderr}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      }),
    stop: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Resolves once `live` is connected and fetching: a record written straight to the broker now reaches it. */
export async function untilFetching(live: LiveConsumer, broker: string, topic: string, value: string): Promise<void> {
  for (let i = 0; i < 20 && !live.output().stdout.includes(value); i++) {
    await runKcat(broker, [], ['-P', '-t', topic], `${value}\n`);
    await live.waitFor('stdout', new RegExp(value), 1000).catch(() => {});
  }
  await live.waitFor('stdout', new RegExp(value), 1000);
}
