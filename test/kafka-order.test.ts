import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import type { Inflight } from '../src/protocols/kafka/context.ts';
import { ResponseOrder, SendQueue } from '../src/protocols/kafka/order.ts';

// Unit level: responses leave in request order; requests leave for the broker in the
// client's order even while one of them waits (for the inspection pool) at its place.

test('responses leave in request order, whenever each is ready', () => {
  const out: string[] = [];
  const order = new ResponseOrder((s) => out.push(String(s.data)));
  const a = order.slot({ apiKey: 0, version: 9 });
  const b = order.slot({ apiKey: 1, version: 12 });
  const c = order.slot({ apiKey: 3, version: 12 });
  assert.equal(order.head, a);
  order.complete(c, Buffer.from('c'));
  order.complete(b, Buffer.from('b'));
  assert.deepEqual(out, [], 'nothing before the first is done');
  order.complete(a, Buffer.from('a'));
  assert.deepEqual(out, ['a', 'b', 'c']);
  assert.equal(order.head, undefined);
  // an answer that needs no data (acks=0 style) still keeps its place
  const d = order.slot({ apiKey: 0, version: 9 });
  const e = order.slot({ apiKey: 0, version: 9 });
  order.complete(e, Buffer.from('e'));
  order.complete(d, undefined);
  assert.deepEqual(out, ['a', 'b', 'c', 'undefined', 'e']);
});

const up = {} as Socket;
const waiter = (): Inflight => ({ resolve: () => {}, reject: () => {} });

test('requests leave in the client order: a reserved place holds back the ones behind it until filled or cancelled', () => {
  const written: string[] = [];
  let closed = false;
  const q = new SendQueue((_up, frame) => written.push(frame.toString()), () => closed, () => new Error('gone'));
  q.send(up, Buffer.from('1'), waiter());
  assert.deepEqual(written, ['1'], 'nothing ahead: sent at once');
  const produce = q.reserve();
  q.send(up, Buffer.from('3'), waiter());
  q.send(up, Buffer.from('4'), waiter());
  assert.deepEqual(written, ['1'], 'behind a reserved place');
  q.send(up, Buffer.from('2'), waiter(), produce);
  assert.deepEqual(written, ['1', '2', '3', '4'], 'the place filled: everything goes in order');
  const refused = q.reserve();
  q.send(up, Buffer.from('6'), waiter());
  q.cancel(refused);
  assert.deepEqual(written.slice(4), ['6'], 'a cancelled place lets the rest go');
  q.cancel(refused);
  assert.equal(written.length, 5, 'cancelling twice changes nothing');

  // closed while waiting: the waiters are rejected, nothing is written
  const late = q.reserve();
  const rejected: string[] = [];
  q.send(up, Buffer.from('8'), { resolve: () => {}, reject: (e) => rejected.push(e.message) });
  closed = true;
  q.send(up, Buffer.from('7'), { resolve: () => {}, reject: (e) => rejected.push(e.message) }, late);
  assert.deepEqual(rejected, ['gone'], 'a request finishing after the close is answered at once');
  q.rejectAll(new Error('closed'));
  assert.equal(written.length, 5);
});

test('fan-in: every operation runs through the chain; the request is decided once, with the allowed and the refused', async () => {
  const { fanIn } = await import('../src/protocols/kafka/fan-in.ts');
  const { GatewayError } = await import('../src/operation.ts');
  const op = (name: string) => ({ resource: { kind: 'topic', name } }) as unknown as import('../src/operation.ts').Operation;
  const [a, b, c] = [op('a'), op('secret'), op('c')];
  const rows: string[] = [];
  // a chain that refuses "secret" and otherwise ends in the terminal; it records what it settled with
  const run = async (o: import('../src/operation.ts').Operation, terminal: (o: import('../src/operation.ts').Operation) => Promise<import('../src/operation.ts').UpstreamResult>) => {
    await new Promise((r) => setImmediate(r));
    if (o.resource.name === 'secret') {
      rows.push('deny secret');
      throw new GatewayError('forbidden', 'no', { rule: 'default-deny' });
    }
    const r = await terminal(o).catch((err: Error) => {
      rows.push(`error ${o.resource.name}: ${err.message}`);
      throw err;
    });
    rows.push(`allow ${o.resource.name} offset ${String(r.records?.[0]?.offset ?? '-')}`);
    return r;
  };
  let decided = 0;
  const { forwarded, settled } = fanIn(run, [a, b, c], (allowed, denied) => {
    decided++;
    assert.deepEqual(allowed.map((o) => o.resource.name).sort(), ['a', 'c']);
    assert.deepEqual([...denied].map(([o]) => o.resource.name), ['secret']);
    return Promise.resolve(new Map<import('../src/operation.ts').Operation, import('../src/operation.ts').UpstreamResult | Error>([[a, { records: [{ partition: 0, offset: '7', timestamp: 0 }] }], [c, new Error('broker said no')]]));
  });
  await forwarded;
  await settled;
  assert.equal(decided, 1);
  assert.deepEqual(rows.sort(), ['allow a offset 7', 'deny secret', 'error c: broker said no']);
  // nothing named: decided at once with nothing
  let empty = 0;
  await fanIn(run, [], (allowed, denied) => {
    empty = allowed.length + denied.size + 1;
    return undefined;
  }).forwarded;
  assert.equal(empty, 1);
});
