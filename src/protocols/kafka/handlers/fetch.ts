// Fetch: one operation per named topic; fetch sessions (KIP-227) are this connection's own
// (fetch-sessions.ts) and every topic they serve is authorized again per request; topics with
// consume rules for the reader are masked per role before delivery; an answer with nothing to
// merge or mask may be cut through to the client as it arrives.

import { GatewayError, Refusals, type Operation, type RecordNeeds, type StreamRecord, type UpstreamResult } from '../../../operation.ts';
import { decodeRecords, encodeRecords, streamRecords, type DecodedRecords } from '../../../formats/kafka-batch.ts';
import { ERR, errorResponse } from '../apis.ts';
import type { Struct } from '../codec.ts';
import type { HandlerContext, Header } from '../context.ts';
import { kafkaErrorFor } from '../errors.ts';
import { FETCH_SESSION_ID_NOT_FOUND } from '../fetch-sessions.ts';
import { countParts, encodedParts, fetchedSummary, hasRecords, rebuilt, sessionPartitions } from '../parts.ts';

export async function fetch(ctx: HandlerContext, frame: Buffer, h: Header, body: Struct): Promise<void> {
  if ((body.ReplicaId as number | undefined) !== undefined && (body.ReplicaId as number) >= 0) {
    return ctx.violation('follower fetches are not served by the gateway', h);
  }
  // fetch sessions are this connection's own: another's id is refused before anything leaves
  const plan = ctx.fetchSessions.plan(body.SessionId as number | undefined, body.SessionEpoch as number | undefined);
  if (plan.kind === 'foreign') return foreignFetchSession(ctx, h, plan.id);
  const up = await ctx.connectUpstream();
  const slot = ctx.slot(h);
  const topics = body.Topics as Struct[];
  // one operation per topic, even where a client lists a topic once per partition
  const entries = new Map<string, Struct[]>();
  for (const t of topics) {
    const list = entries.get(t.Topic as string);
    if (list) list.push(t);
    else entries.set(t.Topic as string, [t]);
  }
  const byOp = new Map<Operation, Struct[]>();
  const byName = new Set(entries.keys());
  for (const [name, list] of entries) {
    const parts = list.flatMap((t) => t.Partitions as Struct[]);
    const op = ctx.newOp(h, { kind: 'topic', name, action: 'consume', ...(parts.length === 1 ? { partition: parts[0]!.Partition as number } : {}) });
    op.meta.partitions = parts.map((p) => p.Partition as number).join(',');
    byOp.set(op, list);
  }
  // Topics the session serves without this request naming them are authorized again now,
  // before the request leaves: one no longer allowed is dropped from the broker's session
  // (ForgottenTopicsData) and answered with an authorization error per partition.
  const sessionOnly = ctx.fetchSessions.topics(plan).filter((t) => !byName.has(t));
  const sessionRefused = sessionOnly.filter((t) => !ctx.permits('consume', { kind: 'topic', name: t }));
  const sessionRefusals = sessionRefused.map((t) => ({ topic: t, partitions: ctx.fetchSessions.partitions(plan, t) }));
  for (const t of sessionRefused) refuseSessionTopic(ctx, h, t, plan.kind === 'incremental' ? plan.id : 0);
  let response: Promise<Buffer> | undefined;
  let denied = new Refusals<Operation>();
  // Consume-side rules for this reader: such topics are decoded, masked and re-encoded,
  // so their responses are never cut through. (recorded topics take the same path: their
  // records are decoded with their offsets.) The session's topics count as named.
  const needs = new Map<string, RecordNeeds['records']>();
  const recordsNeeded = (topic: string) => {
    let n = needs.get(topic);
    if (n === undefined) needs.set(topic, (n = ctx.needs('consume', { kind: 'topic', name: topic }).records));
    return n;
  };
  const recorded = (topic: string) => recordsNeeded(topic) === 'decoded';
  const inspected = (topic: string) => recordsNeeded(topic) !== 'none';
  const servesInspected = [...byName, ...sessionOnly].some(inspected);
  const { forwarded, settled } = ctx.authorize([...byOp.keys()], (allowed, refused) => {
    denied = refused;
    // an incremental fetch (session) may name no topic at all: still forwarded
    if (allowed.length === 0 && topics.length > 0) return undefined;
    const forwardedTopics = allowed.flatMap((o) => byOp.get(o)!);
    const forgotten = [...((body.ForgottenTopicsData as Struct[] | undefined) ?? []), ...sessionRefusals.map((r) => ({ Topic: r.topic, Partitions: r.partitions }))];
    const rewrite = refused.size > 0 || sessionRefusals.length > 0 || plan.forwardId !== (body.SessionId ?? 0);
    const out = rewrite
      ? ctx.reencode(h, { ...body, Topics: forwardedTopics, ...(body.SessionId !== undefined ? { SessionId: plan.forwardId, ForgottenTopicsData: forgotten } : {}) })
      : frame;
    // nothing to merge into the answer and nothing to mask: it may go to the client as it arrives
    const cutThrough = refused.size === 0 && sessionRefusals.length === 0 && !servesInspected;
    response = ctx.send(up, out, true, cutThrough ? slot : undefined)!;
    return response.then((res) => {
      const results = new Map<Operation, UpstreamResult>();
      decodedRes = ctx.responseBody(h, res);
      ctx.fetchSessions.settle(plan, forwardedTopics.map(sessionPartitions), forgotten.map(sessionPartitions), decodedRes.ErrorCode as number ?? 0, decodedRes.SessionId as number ?? 0);
      const toInspect = (decodedRes.Responses as Struct[]).some((tr) => inspected(tr.Topic as string) && hasRecords(tr));
      // Reads are delivered first and audited right after (hashing a large fetch costs about
      // as much as the broker's answer): every topic was authorized before the request left.
      // A topic the request and its session did not cover is never delivered unchecked.
      const covered = (t: string) => byName.has(t) || sessionOnly.includes(t);
      if (slot.streamed || (!toInspect && refused.size === 0 && sessionRefusals.length === 0 && sessionTopics(topics, decodedRes).every((t) => covered(t.Topic as string) && ctx.permits('consume', { kind: 'topic', name: t.Topic as string })))) {
        delivered = true;
        ctx.complete(slot, res);
      }
      // summaries now, in this tick: a delivered frame's memory is reused once written
      for (const tr of decodedRes.Responses as Struct[]) summaries.set(tr.Topic as string, fetchedSummary(tr));
      for (const op of allowed) {
        const sum = summaries.get(op.resource.name);
        // inspected topics: the records are counted by their inspection operation
        if (sum && (delivered || !inspected(op.resource.name))) op.batch = sum;
        results.set(op, {});
      }
      return results;
    });
  });
  let decodedRes: Struct | undefined;
  let delivered = false;
  const summaries = new Map<string, { records: number; bytes: number; hash: string }>();
  await forwarded;
  settled
    .then(async () => {
      const refused = [...denied];
      const codec = ctx.l.reg.responses.get(h.apiKey)!;
      if (!response) {
        const err = refused[0]?.[1];
        const answer = errorResponse(h.apiKey, codec.defaults(h.version), body, err?.kind === 'forbidden' ? ERR.TOPIC_AUTHORIZATION_FAILED : kafkaErrorFor(err), err?.message ?? 'refused');
        // the session stays as it was: keep its id in the answer so the client does not start over
        if (plan.kind === 'incremental') answer.SessionId = plan.id;
        return ctx.complete(slot, ctx.encodeResponse(h, answer));
      }
      const res = await response;
      const decoded = (decodedRes ??= ctx.responseBody(h, res));
      let changed = refused.length > 0 || sessionRefusals.length > 0;
      // incremental fetch sessions (KIP-227) return partitions the request did not name:
      // their records are authorized and audited here, and withheld if no longer allowed
      const unnamed = delivered ? (decoded.Responses as Struct[]).filter((t) => !byName.has(t.Topic as string) && (summaries.get(t.Topic as string)?.bytes ?? 0) > 0) : sessionTopics(topics, decoded);
      // topics with consume rules for this reader, named or not: one operation each whose
      // records the inspect control masks (audited with hashes and the reader's roles)
      if (!delivered) for (const tr of decoded.Responses as Struct[]) if (byName.has(tr.Topic as string) && inspected(tr.Topic as string) && hasRecords(tr)) unnamed.push(tr);
      if (unnamed.length > 0) {
        const decodedParts = new Map<Struct, DecodedRecords[]>();
        const ops = unnamed.map((tr) => {
          const op = ctx.newOp(h, { kind: 'topic', name: tr.Topic as string, action: 'consume' });
          const parts = tr.Partitions as Struct[];
          op.meta.partitions = parts.map((p) => p.PartitionIndex as number).join(',');
          op.meta.fetch_session = String(body.SessionId ?? 0);
          if (!delivered && inspected(tr.Topic as string) && !recorded(tr.Topic as string)) {
            // masked only: the engine decodes, masks and re-encodes the batches in one task
            op.encoded = encodedParts(parts, 'PartitionIndex');
            op.meta.inspect_roles = ctx.identity.roles.join(',');
            // counted from the batch headers until the engine has read them (then hashed per record)
            op.batch = { ...countParts(parts), hash: '' };
          } else if (!delivered && inspected(tr.Topic as string)) {
            const dec = parts.map((p) => decodeRecords(p.Records as Uint8Array | null));
            const records: StreamRecord[] = [];
            parts.forEach((p, k) => streamRecords(dec[k]!, p.PartitionIndex as number, records, true));
            op.records = records;
            op.meta.inspect_roles = ctx.identity.roles.join(',');
            decodedParts.set(tr, dec);
          } else op.batch = summaries.get(tr.Topic as string) ?? fetchedSummary(tr);
          return op;
        });
        const checks = await Promise.allSettled(ops.map((op) => ctx.l.dispatcher.run(op, () => Promise.resolve({}))));
        unnamed.forEach((tr, i) => {
          if (checks[i]!.status === 'rejected') return;
          const encoded = ops[i]!.encoded;
          if (encoded) {
            if (rebuilt(tr.Partitions as Struct[], encoded)) changed = true;
            return;
          }
          const dec = decodedParts.get(tr);
          if (!dec) return;
          let at = 0;
          (tr.Partitions as Struct[]).forEach((p, k) => {
            const r = encodeRecords(dec[k]!, ops[i]!.records!, at);
            at += r.used;
            if (r.changed) {
              p.Records = r.blob;
              changed = true;
            }
          });
        });
        // fail closed: records whose inspection (or authorization) failed are not delivered
        const withheld = new Set(unnamed.filter((_t, i) => checks[i]!.status === 'rejected').map((t) => t.Topic));
        if (withheld.size > 0 && !delivered) {
          decoded.Responses = (decoded.Responses as Struct[]).filter((t) => !withheld.has(t.Topic));
          changed = true;
        }
      }
      if (delivered) return;
      if (!changed) return ctx.complete(slot, res);
      for (const [op, err] of refused) {
        const part = errorResponse(h.apiKey, codec.defaults(h.version), { Topics: byOp.get(op)! }, err.kind === 'forbidden' ? ERR.TOPIC_AUTHORIZATION_FAILED : kafkaErrorFor(err), err.message);
        (decoded.Responses as Struct[]).push(...(part.Responses as Struct[]));
      }
      for (const r of sessionRefusals) {
        const request = { Topics: [{ Topic: r.topic, Partitions: r.partitions.map((p) => ({ Partition: p })) }] };
        const part = errorResponse(h.apiKey, codec.defaults(h.version), request, ERR.TOPIC_AUTHORIZATION_FAILED, `consume on ${r.topic} is no longer allowed`);
        (decoded.Responses as Struct[]).push(...(part.Responses as Struct[]));
      }
      ctx.complete(slot, ctx.encodeResponse(h, decoded));
    })
    .catch(() => ctx.destroy());
}

/** A Fetch naming a session another connection opened (or none): FETCH_SESSION_ID_NOT_FOUND, audited; the client starts a new session. */
function foreignFetchSession(ctx: HandlerContext, h: Header, id: number): void {
  const slot = ctx.slot(h);
  const op = ctx.newOp(h, { kind: 'cluster', name: 'fetch-session', action: 'consume' });
  op.meta.fetch_session = String(id);
  const message = `fetch session ${id} was not opened on this connection`;
  void ctx.l.dispatcher.refuse(op, new GatewayError('forbidden', message, { rule: 'kafka.fetch-session' })).catch(() => {});
  const codec = ctx.l.reg.responses.get(h.apiKey)!;
  const answer = codec.defaults(h.version);
  answer.ErrorCode = FETCH_SESSION_ID_NOT_FOUND;
  answer.SessionId = 0;
  answer.Responses = [];
  ctx.complete(slot, ctx.encodeResponse(h, answer));
}

/**
 * A topic the session serves that the reader may no longer consume: run through the chain
 * so the refusal is audited with its rule; the caller drops it from the session.
 */
function refuseSessionTopic(ctx: HandlerContext, h: Header, topic: string, sessionId: number): void {
  const op = ctx.newOp(h, { kind: 'topic', name: topic, action: 'consume' });
  op.meta.fetch_session = String(sessionId);
  void ctx.l.dispatcher.run(op, () => Promise.resolve({})).catch(() => {});
}

/** Topics with records in a Fetch response that the request did not name (incremental fetch sessions). */
function sessionTopics(requested: Struct[], response: Struct): Struct[] {
  // (the caller may append to the returned list)
  const named = new Set(requested.map((t) => t.Topic as string));
  return (response.Responses as Struct[]).filter(
    (tr) => !named.has(tr.Topic as string) && (tr.Partitions as Struct[]).some((p) => ((p.Records as Uint8Array | null)?.byteLength ?? 0) > 0),
  );
}
