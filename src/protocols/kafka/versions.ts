// The API versions the gateway offers clients: what the brokers serve, cut to the APIs in
// apis.ts (and passthroughApis) and to the versions both the message definitions and the
// gateway serve. Before login the answer comes from the brokers' versions the gateway
// learned on its own connection, or from its own table until it has them.

import { API, MAX_VERSION, SUPPORTED } from './apis.ts';
import type { Struct } from './codec.ts';
import type { MessageRegistry } from './messages.ts';

/** The gateway's own table, for a client whose ApiVersions is newer than ours or before the brokers' versions are known. */
export function gatewayVersions(reg: MessageRegistry, res: Struct): Struct {
  res.ApiKeys = [...SUPPORTED].map((k) => {
    const [min, max] = reg.requests.get(k)!.validVersions;
    return { ApiKey: k, MinVersion: min, MaxVersion: Math.min(max, MAX_VERSION[k] ?? max) };
  });
  return res;
}

/** A broker's ApiVersions answer cut to what the gateway serves. */
export function offeredVersions(reg: MessageRegistry, passthrough: ReadonlySet<number>, res: Struct): Struct {
  if (res.ErrorCode !== 0) return res;
  const out: Struct[] = [];
  for (const a of res.ApiKeys as Struct[]) {
    const key = a.ApiKey as number;
    const codec = reg.requests.get(key);
    if (!codec || (!SUPPORTED.has(key) && !passthrough.has(key))) continue;
    const [min, max] = codec.validVersions;
    const ceiling = Math.min(max, MAX_VERSION[key] ?? max, a.MaxVersion as number);
    // versions the broker still lists but the definitions (and so the gateway) no longer serve are not offered
    const floor = Math.max(min, a.MinVersion as number);
    if (ceiling < floor) continue;
    a.MinVersion = floor;
    a.MaxVersion = ceiling;
    out.push(a);
  }
  // v0 handshakes (unframed SASL) are refused when used, but librdkafka wants v0 listed
  for (const [key, min, max] of [[API.SaslHandshake, 0, 1], [API.SaslAuthenticate, 0, 2]] as const) {
    if (!out.some((a) => a.ApiKey === key)) out.push({ ApiKey: key, MinVersion: min, MaxVersion: max });
  }
  res.ApiKeys = out;
  return res;
}

/** The answer to an ApiVersions before login, at the client's `version`. */
export function preLoginVersions(reg: MessageRegistry, passthrough: ReadonlySet<number>, known: Struct | undefined, version: number): Struct {
  const res = reg.responses.get(API.ApiVersions)!.defaults(version);
  if (!known) return gatewayVersions(reg, { ...res, ErrorCode: 0, ApiKeys: [] });
  return offeredVersions(reg, passthrough, { ...res, ...known, ThrottleTimeMs: 0, ApiKeys: (known.ApiKeys as Struct[]).map((a) => ({ ...a })) });
}

/** Where the answers before login come from: the brokers' versions once learned, cached per version. */
export interface VersionsSource {
  readonly reg: MessageRegistry;
  readonly passthrough: ReadonlySet<number>;
  readonly brokerVersions: Struct | undefined;
  readonly preLoginAnswers: Map<number, Struct>;
}

/** The answer to an ApiVersions before login: the brokers' versions the gateway learned, else its own table. */
export function answerBeforeLogin(source: VersionsSource, version: number): Struct {
  const cached = source.preLoginAnswers.get(version);
  if (cached) return cached;
  const answer = preLoginVersions(source.reg, source.passthrough, source.brokerVersions, version);
  // the gateway's own table stands in only until the brokers' versions are known
  if (source.brokerVersions) source.preLoginAnswers.set(version, answer);
  return answer;
}
