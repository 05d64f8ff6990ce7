// Metadata: explicitly requested topics are authorized (describe) and audited, listings are
// filtered to what the identity may describe, auto-creation needs admin on every named topic
// (v0-v3, which auto-create by default, are forwarded as v4), brokers are rewritten.

import { GatewayError, Refusals, type Operation } from '../../../operation.ts';
import { ERR } from '../apis.ts';
import type { Struct } from '../codec.ts';
import type { HandlerContext, Header } from '../context.ts';
import { kafkaErrorFor } from '../errors.ts';

export async function metadata(ctx: HandlerContext, frame: Buffer, h: Header, body: Struct): Promise<void> {
  const up = await ctx.connectUpstream();
  const slot = ctx.slot(h);
  // Metadata before v4 has no AllowAutoTopicCreation and the broker takes it as true: an
  // identity without the admin action could create topics by asking for them. Old versions
  // are forwarded as v4 (v0's empty list, "every topic", becomes v4's null) and answered
  // in the client's version, so creation is decided below like for every other version.
  const legacy = h.version < 4;
  const forward: Header = legacy ? { ...h, version: 4 } : h;
  const requested = legacy && h.version === 0 && (body.Topics as Struct[]).length === 0 ? null : (body.Topics as Struct[] | null);
  const autoCreate = legacy ? true : body.AllowAutoTopicCreation === true;
  const ops = (requested ?? []).map((t) => ctx.newOp(h, { kind: 'topic', name: (t.Name as string | null) ?? '<topic-id>', action: 'describe' }));
  let response: Promise<Buffer> | undefined;
  let denied = new Refusals<Operation>();
  const { forwarded, settled } = ctx.authorize(ops, (allowed, refused) => {
    denied = refused;
    let out = frame;
    // (a request whose every topic was refused creates nothing: `every` of nothing is true)
    const mayCreate = autoCreate && allowed.length > 0 && allowed.every((o) => ctx.permits('admin', o.resource));
    if (legacy || refused.size > 0 || (autoCreate && !mayCreate)) {
      const keep = requested === null ? null : requested.filter((_t, i) => !refused.has(ops[i]!));
      out = ctx.reencode(forward, { ...body, Topics: keep, AllowAutoTopicCreation: mayCreate });
    }
    response = ctx.send(up, out, true)!;
    return response.then(() => new Map());
  });
  await forwarded;
  settled
    .then(async () => {
      const res = ctx.responseBody(forward, await response!);
      const deniedNames = new Set([...denied].map(([o]) => o.resource.name));
      res.Topics = (res.Topics as Struct[]).filter((t) => typeof t.Name === 'string' && !deniedNames.has(t.Name) && ctx.permits('describe', { kind: 'topic', name: t.Name }));
      const codec = ctx.l.reg.responses.get(h.apiKey)!;
      for (const [op, err] of denied) {
        const t = (codec.defaults(h.version) as Struct & { __proto_Topics: () => Struct }).__proto_Topics();
        t.Name = op.resource.name;
        t.ErrorCode = err.kind === 'forbidden' ? ERR.TOPIC_AUTHORIZATION_FAILED : kafkaErrorFor(err);
        (res.Topics as Struct[]).push(t);
      }
      await ctx.rewriteBrokers(res, 'Brokers', 'NodeId');
      ctx.complete(slot, ctx.encodeResponse(h, res));
    })
    .catch(() => ctx.destroy());
}
