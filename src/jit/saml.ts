import { existsSync, readFileSync } from 'node:fs';
import { SAML } from '@node-saml/node-saml';
import type { VerifiedToken } from '../identity/oidc.ts';
import type { StateStore } from '../state/store.ts';
import type { CredentialsConfig } from './schema.ts';

type SamlConfig = NonNullable<CredentialsConfig['saml']>;

/** Why a SAML subject token was refused (the token endpoint answers invalid_grant). */
export class SamlRefused extends Error {}

const USED = 'jit:saml-used:';
/** how long a used assertion id is remembered when the assertion names no end of validity */
const DEFAULT_REPLAY_WINDOW_MS = 10 * 60_000;

/**
 * Verifies a SAML 2.0 assertion presented as an RFC 8693 subject token (base64url XML):
 * signature against the configured IdP certificate, validity window, audience and issuer,
 * all by @node-saml/node-saml. The library validates Responses, so a bare Assertion is
 * placed in an unsigned Response envelope first; only the Assertion's own signature counts
 * (wantAssertionsSigned). Each assertion is exchanged at most once (its ID is remembered in
 * the state store until it expires), so a captured assertion cannot mint credentials again.
 */
export class SamlVerifier {
  readonly #config: SamlConfig;
  readonly #saml: SAML;
  readonly #store: StateStore;

  constructor(config: SamlConfig, store: StateStore) {
    this.#config = config;
    this.#store = store;
    const cert = config.idpCert.includes('-----BEGIN') || !existsSync(config.idpCert) ? config.idpCert : readFileSync(config.idpCert, 'utf8');
    this.#saml = new SAML({
      idpCert: cert,
      issuer: config.audience,
      audience: config.audience,
      // required by the library for browser flows; nothing is redirected here
      callbackUrl: 'urn:streamgate:token-exchange',
      wantAssertionsSigned: true,
      wantAuthnResponseSigned: false,
      validateInResponseTo: 'never' as never,
      acceptedClockSkewMs: config.clockToleranceSeconds * 1000,
    });
  }

  async verify(subjectToken: string): Promise<VerifiedToken> {
    const xml = Buffer.from(subjectToken, 'base64url').toString('utf8').replace(/^\s*<\?xml[^>]*\?>\s*/, '');
    if (!xml.startsWith('<')) throw new SamlRefused('the subject token is not base64url-encoded SAML XML');
    const response = /^<(?:[A-Za-z_][\w.-]*:)?Assertion[\s>]/.test(xml) ? envelope(xml) : xml;
    let profile: Record<string, unknown> | null;
    try {
      ({ profile } = (await this.#saml.validatePostResponseAsync({ SAMLResponse: Buffer.from(response).toString('base64') })) as { profile: Record<string, unknown> | null });
    } catch (err) {
      throw new SamlRefused(`the SAML assertion was refused: ${(err as Error).message}`);
    }
    if (!profile || typeof profile.nameID !== 'string' || profile.nameID === '') throw new SamlRefused('the SAML assertion names no subject (NameID)');
    const issuer = typeof profile.issuer === 'string' ? profile.issuer : '';
    // the library checks idpIssuer only on logout messages: the assertion's Issuer is checked here
    if (this.#config.idpIssuer !== undefined && issuer !== this.#config.idpIssuer) throw new SamlRefused(`the SAML assertion is from issuer ${JSON.stringify(issuer)}, not ${JSON.stringify(this.#config.idpIssuer)}`);
    const assertionXml = (profile.getAssertionXml as () => string)();
    const id = /^<[^>]*?\sID="([^"]+)"/.exec(assertionXml)?.[1];
    if (!id) throw new SamlRefused('the SAML assertion has no ID');
    const notOnOrAfter = /NotOnOrAfter="([^"]+)"/.exec(assertionXml)?.[1];
    const until = notOnOrAfter ? Date.parse(notOnOrAfter) : NaN;
    const window = Number.isFinite(until) ? Math.max(1000, until - Date.now() + this.#config.clockToleranceSeconds * 1000) : DEFAULT_REPLAY_WINDOW_MS;
    if (!(await this.#store.setIfAbsent(`${USED}${issuer}:${id}`, '1', window))) throw new SamlRefused('this SAML assertion was already exchanged');

    const attributes = (profile.attributes ?? {}) as Record<string, unknown>;
    const groupsValue = attributes[this.#config.groupsAttribute];
    const groups = (Array.isArray(groupsValue) ? groupsValue : groupsValue === undefined ? [] : [groupsValue]).filter((g): g is string => typeof g === 'string');
    const claims: Record<string, unknown> = { sub: profile.nameID, iss: this.#config.issuerName, saml_issuer: issuer };
    for (const [name, value] of Object.entries(attributes)) if (name !== this.#config.groupsAttribute) claims[name] = value;
    claims.groups = groups;
    return { subject: profile.nameID, issuer: this.#config.issuerName, groups, scopes: [], expiresAt: Number.isFinite(until) ? Math.floor(until / 1000) : undefined, claims };
  }
}

/** An unsigned Response around an assertion, byte for byte unchanged (its signature covers only itself). */
function envelope(assertion: string): string {
  const now = new Date().toISOString();
  return `<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_streamgate-exchange" Version="2.0" IssueInstant="${now}"><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>${assertion}</samlp:Response>`;
}
