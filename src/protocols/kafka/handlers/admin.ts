// Every other API that names resources (groups, transactional ids, configs, admin requests):
// authorized per resource; requests listing independent resources are answered per element,
// the rest all or nothing; answers cut to what the identity may see (reveal.ts).

import { GatewayError, type Operation, type Resource } from '../../../operation.ts';
import { API, authorizationError, errorResponse, requestElements, resourcesOf, type Named } from '../apis.ts';
import type { Struct } from '../codec.ts';
import type { HandlerContext, Header } from '../context.ts';
import { kafkaErrorFor } from '../errors.ts';
import { filterConsumerGroupDescribe, filterOffsetFetch, redactBrokerConfigs } from '../reveal.ts';

/**
 * APIs that name resources: a request the policy refuses in part is answered like the
 * broker's own authorizer would. Requests that list independent resources (CreateTopics,
 * DescribeConfigs, ...) forward the allowed elements and answer each refused one with its
 * error; the others (a group with its topics, a transaction with its partitions) are
 * refused whole with the API's own error codes.
 */
export async function gated(ctx: HandlerContext, frame: Buffer, h: Header, body: Struct, named: Named[], transform?: (res: Struct) => Promise<Struct>): Promise<void> {
  const up = await ctx.connectUpstream();
  const slot = ctx.slot(h);
  const ops = named.map((n) => ctx.newOp(h, n));
  /** a request that lists independent resources, split once something in it is refused */
  let split: ReturnType<typeof requestElements>;
  let response: Promise<Buffer> | undefined;
  let refusal: GatewayError | undefined;
  let refusedKind: Resource['kind'] = 'topic';
  /** split requests: the refused elements, each with why */
  const refusedElements: Array<{ element: unknown; kind: Resource['kind']; err: GatewayError }> = [];
  const { forwarded, settled } = ctx.authorize(ops, (allowed, denied) => {
    if (denied.size === 0) {
      response = ctx.send(up, frame, true)!;
      return response.then(() => new Map());
    }
    const [op, err] = denied.first()!;
    split = requestElements(h.apiKey, h.version, body);
    if (split) {
      const refusedBy = new Map<string, [Operation, GatewayError]>();
      for (const [o, e] of denied) refusedBy.set(`${o.resource.kind}\0${o.resource.name}`, [o, e]);
      const forward: unknown[] = [];
      for (const { element, named: names } of split.elements) {
        const hit = names.map((n) => refusedBy.get(`${n.kind}\0${n.name}`)).find((x) => x !== undefined);
        if (hit) refusedElements.push({ element, kind: hit[0].resource.kind, err: hit[1] });
        else forward.push(element);
      }
      if (forward.length > 0) {
        response = ctx.send(up, ctx.reencode(h, { ...body, [split.list]: forward }), true)!;
        return response.then(() => new Map());
      }
    }
    refusal = err;
    refusedKind = op.resource.kind;
    const notForwarded = new GatewayError('forbidden', `not forwarded: ${err.message}`, err.rule ? { rule: err.rule } : undefined);
    return Promise.resolve(new Map(allowed.map((o) => [o, notForwarded] as [Operation, Error])));
  });
  await forwarded;
  void settled.then(async () => {
    const codec = ctx.l.reg.responses.get(h.apiKey)!;
    if (refusal) {
      const code = refusal.kind === 'forbidden' ? authorizationError(refusedKind) : kafkaErrorFor(refusal);
      return ctx.complete(slot, ctx.encodeResponse(h, errorResponse(h.apiKey, codec.defaults(h.version), body, code, refusal.message)));
    }
    const res = await response!;
    if (!transform && refusedElements.length === 0) return ctx.complete(slot, res);
    let decoded = ctx.responseBody(h, res);
    if (transform) decoded = await transform(decoded);
    if (split && refusedElements.length > 0) {
      const answers = decoded[split.responseList] as unknown[];
      for (const { element, kind, err } of refusedElements) {
        const code = err.kind === 'forbidden' ? authorizationError(kind) : kafkaErrorFor(err);
        const part = errorResponse(h.apiKey, codec.defaults(h.version), { ...body, [split.list]: [element] }, code, err.message);
        answers.push(...(part[split.responseList] as unknown[]));
      }
    }
    ctx.complete(slot, ctx.encodeResponse(h, decoded));
  }).catch(() => ctx.destroy());
}

/** What a response may reveal, cut down to what this identity may see (reveal.ts). */
export function responseFilter(ctx: HandlerContext, apiKey: number, version: number): ((res: Struct) => Promise<Struct>) | undefined {
  const canDescribe = (topic: string) => ctx.permits('describe', { kind: 'topic', name: topic });
  switch (apiKey) {
    case API.FindCoordinator:
      return (res) => findCoordinator(ctx, res, version);
    case API.OffsetFetch:
      return async (res) => filterOffsetFetch(res, version, canDescribe);
    case API.ConsumerGroupDescribe:
      return async (res) => filterConsumerGroupDescribe(res, canDescribe);
    case API.DescribeConfigs:
      return async (res) => redactBrokerConfigs(res, ctx.l.brokerHosts());
    default:
      return undefined;
  }
}

/** Refused by the listener before the chain could name the resource (e.g. a regex): audited, answered with the API's own error. */
export function refuseHere(ctx: HandlerContext, h: Header, body: Struct, n: Named, message: string): void {
  const slot = ctx.slot(h);
  const op = ctx.newOp(h, n);
  const err = new GatewayError('forbidden', message, { rule: 'kafka.unauthorizable' });
  void ctx.l.dispatcher.refuse(op, err).catch(() => {});
  const codec = ctx.l.reg.responses.get(h.apiKey)!;
  ctx.complete(slot, ctx.encodeResponse(h, errorResponse(h.apiKey, codec.defaults(h.version), body, authorizationError(n.kind), message)));
}

async function findCoordinator(ctx: HandlerContext, res: Struct, version: number): Promise<Struct> {
  const rewrite = async (c: Struct) => {
    if (c.ErrorCode !== 0 || (c.NodeId as number) < 0) return;
    ctx.l.learn(c.NodeId as number, c.Host as string, c.Port as number);
    c.Host = ctx.l.advertisedHost;
    c.Port = await ctx.l.brokerPort(c.NodeId as number);
  };
  if (version >= 4) for (const c of res.Coordinators as Struct[]) await rewrite(c);
  else await rewrite(res);
  return res;
}

/** Every API without a handler of its own: authorized by the resources it names (apis.ts), answers filtered. */
export async function resources(ctx: HandlerContext, frame: Buffer, h: Header, body: Struct): Promise<void> {
  if (h.apiKey === API.ConsumerGroupHeartbeat) {
    const regex = body.SubscribedTopicRegex;
    // the broker resolves a regex against every topic it has: only an identity that may
    // consume every topic may subscribe by one (the gateway cannot narrow the broker's match)
    if (typeof regex === 'string' && regex !== '' && !ctx.l.dispatcher.permitsEvery?.(ctx.identity, 'consume', 'topic')) {
      return refuseHere(ctx, h, body, { kind: 'topic', name: `regex:${regex.slice(0, 200)}`, action: 'consume' }, 'a topic regex subscription needs consume on every topic; subscribe by topic name');
    }
  }
  const named = resourcesOf(h.apiKey, h.version, body);
  const transform = responseFilter(ctx, h.apiKey, h.version);
  if (named.length === 0) return ctx.forward(frame, h, transform);
  return gated(ctx, frame, h, body, named, transform);
}

/** DescribeCluster: forwarded, brokers rewritten to the gateway's ports. */
export async function describeCluster(ctx: HandlerContext, frame: Buffer, h: Header): Promise<void> {
  return ctx.forward(frame, h, async (res) => ctx.rewriteBrokers(res, 'Brokers', 'BrokerId'));
}

/** ListGroups: every group the broker has, filtered to those the identity may describe. */
export async function listGroups(ctx: HandlerContext, frame: Buffer, h: Header): Promise<void> {
  return ctx.forward(frame, h, async (res) => {
    res.Groups = (res.Groups as Struct[]).filter((g) => ctx.permits('describe', { kind: 'group', name: g.GroupId as string }));
    return res;
  });
}
