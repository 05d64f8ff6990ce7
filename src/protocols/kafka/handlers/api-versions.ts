// ApiVersions after login: the broker's answer, narrowed to the APIs and versions the gateway
// serves (before login the connection answers it itself, nothing forwarded). A v3+ answer
// also teaches the listener the brokers' versions for the next pre-login answers.

import type { Struct } from '../codec.ts';
import type { Handler } from '../context.ts';
import { offeredVersions } from '../versions.ts';

export const apiVersions: Handler = (ctx, frame, h) =>
  ctx.forward(frame, h, async (res) => {
    if (res.ErrorCode === 0 && h.version >= 3) ctx.l.brokerVersions = { ...res, ApiKeys: (res.ApiKeys as Struct[]).map((a) => ({ ...a })) };
    return offeredVersions(ctx.l.reg, ctx.l.passthrough, res);
  });

/** APIs configured as passthrough (`listeners.kafka.passthroughApis`) that the gateway has no handler for: forwarded unchanged. */
export const passthrough: Handler = (ctx, frame, h) => ctx.forward(frame, h);
