// Produce: one operation per topic (and the transactional id); refused topics are cut out of
// the forwarded request and answered with their error; records of topics with rules go to
// the inspect control still encoded (decoded where the topic is recorded) and are put back
// rebuilt before forwarding. A Produce whose records are in the pool is detached: the
// connection goes on with the next requests while their sends wait behind its place.

import { GatewayError, Refusals, type Operation, type StreamRecord, type UpstreamResult } from '../../../operation.ts';
import { decodeRecords, encodeRecords, streamRecords, type DecodedRecords } from '../../../formats/kafka-batch.ts';
import { ERR, errorResponse } from '../apis.ts';
import type { Struct } from '../codec.ts';
import type { HandlerContext, Header } from '../context.ts';
import { kafkaErrorFor, recordErrors } from '../errors.ts';
import { countParts, encodedParts, hashParts, rebuilt } from '../parts.ts';

export async function produce(ctx: HandlerContext, frame: Buffer, h: Header, body: Struct): Promise<void> {
  const up = await ctx.connectUpstream();
  const acks = body.Acks as number;
  const slot = acks === 0 ? undefined : ctx.slot(h);
  const topics = body.TopicData as Struct[];
  const byOp = new Map<Operation, Struct[]>();
  const ops: Operation[] = [];
  const txnId = body.TransactionalId as string | null;
  let txnOp: Operation | undefined;
  if (txnId !== null && txnId !== undefined) {
    txnOp = ctx.newOp(h, { kind: 'transactional-id', name: txnId, action: 'produce' });
    ops.push(txnOp);
  }
  // one operation per topic, even where a topic is listed more than once
  const entries = new Map<string, Struct[]>();
  for (const t of topics) {
    const list = entries.get(t.Name as string);
    if (list) list.push(t);
    else entries.set(t.Name as string, [t]);
  }
  // Hashing is deferred until the request is on its way to the broker (it costs about as
  // much as the forwarding itself) unless a refusal's (or a hold's) row may need it before.
  const plainlyGoes = (n: { mayGo: boolean; mayHold: boolean }) => n.mayGo && !n.mayHold;
  const hashNow = txnOp !== undefined && !plainlyGoes(ctx.needs('produce', txnOp.resource));
  const hashPending: Array<[Operation, Struct[]]> = [];
  // topics with produce rules: records decoded here, inspected in the chain, re-encoded before forwarding
  const decodedByOp = new Map<Operation, DecodedRecords[]>();
  for (const [name, list] of entries) {
    const parts = list.flatMap((t) => t.PartitionData as Struct[]);
    const op = ctx.newOp(h, { kind: 'topic', name, action: 'produce', ...(parts.length === 1 ? { partition: parts[0]!.Index as number } : {}) });
    op.batch = { ...countParts(parts), hash: '' };
    // what the controls will read: nothing (bytes pass through), the values still encoded
    // (inspection), or every record decoded (session recording); records that cannot go are not opened
    const needs = ctx.needs('produce', op.resource);
    if (needs.records === 'encoded' && needs.mayGo) {
      // the engine decodes, masks and re-encodes them in one task
      op.encoded = encodedParts(parts, 'Index');
      op.batch.hash = hashParts(parts);
    } else if (needs.records === 'decoded' && needs.mayGo) {
      const decoded = parts.map((p) => decodeRecords(p.Records as Uint8Array | null));
      const records: StreamRecord[] = [];
      parts.forEach((p, k) => streamRecords(decoded[k]!, p.Index as number, records));
      op.records = records;
      decodedByOp.set(op, decoded);
      // the original bytes: they are replaced by the masked ones before forwarding
      op.batch.hash = hashParts(parts);
    } else if (hashNow || !plainlyGoes(needs)) op.batch.hash = hashParts(parts);
    else hashPending.push([op, parts]);
    op.meta.partitions = parts.map((p) => p.Index as number).join(',');
    op.meta.acks = acks;
    // how long the client waits for the answer: bounds how long an approval may hold it
    if (needs.mayHold) op.answerWithinMs = answerWithin(body.TimeoutMs as number);
    byOp.set(op, list);
    ops.push(op);
  }
  const hashRest = () => {
    for (const [op, parts] of hashPending.splice(0)) op.batch!.hash = hashParts(parts);
  };
  // Records inspected in the pool: the connection goes on with the next requests while
  // they are there (their own sends wait behind this one's place). Approvals stay in line.
  const detach = ctx.canDetach() && ops.some((o) => o.encoded) && !ops.some((o) => (o.answerWithinMs ?? 0) > 0);
  const place = detach ? ctx.reserveSend() : undefined;
  let response: Promise<Buffer> | undefined;
  // the broker's answer, decoded once: for the audit rows, then (when it must change) for the client
  let answer: Struct | undefined;
  let denied = new Refusals<Operation>();
  const { forwarded, settled } = ctx.authorize(ops, (allowed, refused) => {
    denied = refused;
    // a refused transactional id refuses the whole request
    const txnDenied = txnOp !== undefined && refused.has(txnOp);
    const send = txnDenied ? [] : allowed.filter((o) => byOp.has(o));
    if (send.length === 0) {
      if (place) ctx.cancelSend(place);
      hashRest();
      const notForwarded = new GatewayError('forbidden', `not forwarded: ${refused.get(txnOp!)?.message ?? 'refused'}`);
      return txnDenied ? Promise.resolve(new Map(allowed.map((o) => [o, notForwarded] as [Operation, Error]))) : undefined;
    }
    let rewritten = false;
    for (const o of send) {
      if (o.encoded) {
        if (rebuilt(byOp.get(o)!.flatMap((t) => t.PartitionData as Struct[]), o.encoded)) rewritten = true;
        continue;
      }
      const decoded = decodedByOp.get(o);
      if (!decoded || !o.records) continue;
      let at = 0;
      (byOp.get(o)!.flatMap((t) => t.PartitionData as Struct[])).forEach((p, k) => {
        const r = encodeRecords(decoded[k]!, o.records!, at);
        at += r.used;
        if (r.changed) {
          p.Records = r.blob;
          rewritten = true;
        }
      });
    }
    const out = send.length === byOp.size && !rewritten ? frame : ctx.reencode(h, { ...body, TopicData: send.flatMap((o) => byOp.get(o)!) });
    response = ctx.send(up, out, acks !== 0, undefined, place);
    // still this tick: the frame's memory is only reused after the socket write completes
    hashRest();
    if (!response) return undefined;
    return response.then((res) => {
      const results = new Map<Operation, UpstreamResult | Error>();
      const decoded = (answer = ctx.responseBody(h, res));
      for (const tr of decoded.Responses as Struct[]) {
        const op = send.find((o) => o.resource.name === tr.Name);
        if (!op) continue;
        const prior = results.get(op);
        if (prior instanceof Error) continue;
        const records = prior?.records ?? [];
        let failed: Error | undefined;
        for (const p of tr.PartitionResponses as Struct[]) {
          if (p.ErrorCode !== 0) failed = new GatewayError('upstream-error', `the broker refused partition ${String(p.Index)}: error ${String(p.ErrorCode)}`);
          else records.push({ partition: p.Index as number, offset: String(p.BaseOffset), timestamp: Number(p.LogAppendTimeMs) });
        }
        results.set(op, failed ?? { records });
      }
      return results;
    });
  });
  // whatever did not reach decide (a failure) gives its place up
  if (place) ctx.detach(place, forwarded);
  else await forwarded;
  const done = settled.then(async () => {
    if (acks === 0) {
      // Kafka's own answer to a refused acks=0 produce: close, so the client notices
      if (denied.size > 0) ctx.destroy();
      return;
    }
    const refusedTopics = [...denied].filter(([op]) => byOp.has(op));
    const txnRefusal = txnOp ? denied.get(txnOp) : undefined;
    if (!response) {
      const codec = ctx.l.reg.responses.get(h.apiKey)!;
      const first = txnRefusal ?? refusedTopics[0]?.[1];
      const code = txnRefusal ? ERR.TRANSACTIONAL_ID_AUTHORIZATION_FAILED : first?.kind === 'forbidden' ? ERR.TOPIC_AUTHORIZATION_FAILED : kafkaErrorFor(first);
      const refusal = errorResponse(h.apiKey, codec.defaults(h.version), body, code, first?.message ?? 'refused');
      if (!txnRefusal) recordErrors(refusal, refusedTopics);
      return ctx.complete(slot!, ctx.encodeResponse(h, refusal));
    }
    const res = await response;
    let decoded: Struct | undefined;
    if (refusedTopics.length > 0) {
      decoded = answer ?? ctx.responseBody(h, res);
      const codec = ctx.l.reg.responses.get(h.apiKey)!;
      for (const [op, err] of refusedTopics) {
        const part = errorResponse(h.apiKey, codec.defaults(h.version), { TopicData: byOp.get(op)! }, err.kind === 'forbidden' ? ERR.TOPIC_AUTHORIZATION_FAILED : kafkaErrorFor(err), err.message);
        (decoded.Responses as Struct[]).push(...(part.Responses as Struct[]));
      }
      recordErrors(decoded, refusedTopics);
    }
    if (h.version >= 10) {
      decoded ??= answer ?? ctx.responseBody(h, res);
      if ((decoded.NodeEndpoints as Struct[] | undefined)?.length) await ctx.rewriteBrokers(decoded, 'NodeEndpoints', 'NodeId');
      else if (refusedTopics.length === 0) decoded = undefined;
    }
    ctx.complete(slot!, decoded ? ctx.encodeResponse(h, decoded) : res);
  });
  done.catch(() => ctx.destroy());
}

/** A Kafka client gives up on its produce after its timeout: an approval may hold it up to a margin before that. */
const ANSWER_MARGIN_MS = 1000;

function answerWithin(timeoutMs: number): number {
  return timeoutMs > 0 ? Math.max(0, timeoutMs - Math.max(ANSWER_MARGIN_MS, timeoutMs / 10)) : 0;
}
