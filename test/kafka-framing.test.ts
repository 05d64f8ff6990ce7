// The framer in both of its modes: chunks pushed from 'data' events, and `onread` reads that
// land in the frame's own buffer. Random frame sizes and random read sizes; every frame must
// come out whole and in order, cut-through parts must add up to their frame, and pooled frame
// memory must not be reused while a hold is outstanding. One run over a real socket pair.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo } from 'node:net';
import { test } from 'node:test';
import fc from 'fast-check';
import { FrameError, Framer } from '../src/protocols/kafka/framing.ts';
import { fuzzRuns } from './helpers/fuzz.ts';

function frameOf(size: number, seed: number): Buffer {
  const f = Buffer.allocUnsafe(4 + size);
  f.writeInt32BE(size, 0);
  for (let i = 4; i < f.length; i++) f[i] = (seed + i * 31) & 0xff;
  return f;
}

/**
 * Feeds `stream` to a reader the way Node does: the buffer of the next read is asked for once
 * at the start and right after each callback, and kept; each read fills at most that buffer.
 * A stopped framer is resumed (go()) between reads, after the buffer was handed out.
 */
function feedReader(framer: Framer, stream: Buffer, readSizes: number[]): void {
  const reader = framer.reader((err) => {
    throw err;
  });
  let at = 0;
  let k = 0;
  let target = reader.buffer();
  while (at < stream.length) {
    if (framer.stopped) framer.go();
    assert.ok(target.length > 0, 'the reader always offers room');
    const n = Math.min(target.length, readSizes[k++ % readSizes.length]!, stream.length - at);
    stream.copy(target, 0, at, at + n);
    at += n;
    reader.callback(n, target);
    target = reader.buffer();
  }
  while (framer.stopped) framer.go();
}

const sizes = fc.array(fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 60_000, max: 300_000 })), { minLength: 1, maxLength: 12 });
const reads = fc.array(fc.integer({ min: 1, max: 200_000 }), { minLength: 1, maxLength: 8 });

for (const mode of ['push', 'reader'] as const) {
  test(`framer (${mode}): frames come out whole and in order, cut-through parts add up`, () => {
    fc.assert(
      fc.property(sizes, reads, fc.boolean(), fc.integer({ min: 0, max: 3 }), (frameSizes, readSizes, cutThrough, stopEvery) => {
        const frames = frameSizes.map((s, i) => frameOf(s, i));
        const stream = Buffer.concat(frames);
        // at most ~20,000 reads per run: 1-byte reads over megabytes of frames took minutes on
        // unlucky seeds (146 s in one CI run) and prove nothing 20,000 reads do not
        const floor = Math.ceil(stream.length / 20_000);
        const readPlan = readSizes.map((r) => Math.max(r, floor));
        const got: Buffer[] = [];
        const parts = new Map<number, Buffer[]>();
        const framer = new Framer(1 << 30, (f) => {
          // copied: pooled memory may be reused for the next frame once released
          got.push(Buffer.from(f));
          framer.release(f);
          // backpressure: the intake stops the framer now and then (reader mode: resumed between reads)
          if (mode === 'reader' && stopEvery > 0 && got.length % stopEvery === 0) framer.stop();
        });
        if (cutThrough) {
          framer.onStart = () => {
            const list: Buffer[] = [];
            parts.set(got.length, list);
            return (p) => list.push(Buffer.from(p));
          };
        }
        if (mode === 'push') {
          let at = 0;
          let k = 0;
          while (at < stream.length) {
            const n = Math.min(readPlan[k++ % readPlan.length]!, stream.length - at);
            framer.push(stream.subarray(at, at + n));
            at += n;
          }
        } else feedReader(framer, stream, readPlan);
        assert.equal(got.length, frames.length);
        got.forEach((f, i) => assert.ok(f.equals(frames[i]!), `frame ${i}`));
        for (const [i, list] of parts) assert.ok(Buffer.concat(list).equals(frames[i]!), `cut-through parts of frame ${i}`);
        assert.equal(framer.buffered, 0);
      }),
      { numRuns: fuzzRuns(200) },
    );
  });
}

test('framer (reader): a held frame is not reused until every hold is released', () => {
  const held: Buffer[] = [];
  const framer = new Framer(1 << 30, (f) => held.push(f));
  const big = [frameOf(100_000, 1), frameOf(100_000, 2), frameOf(100_000, 3)];
  feedReader(framer, big[0]!, [65_536]);
  const first = held[0]!;
  framer.hold(first);
  framer.release(first); // the consumer is done, a write still holds it
  feedReader(framer, big[1]!, [65_536]);
  assert.notEqual(held[1]!.buffer, first.buffer, 'a held frame was reused');
  assert.ok(first.equals(big[0]!), 'a held frame was overwritten');
  framer.release(first); // the write completed
  feedReader(framer, big[2]!, [65_536]);
  assert.equal(held[2]!.buffer, first.buffer, 'a released frame is reused');
});

test('framer: sizes outside the limits are FrameErrors, in both modes', () => {
  const tooBig = frameOf(10, 0);
  tooBig.writeInt32BE(2000, 0);
  assert.throws(() => new Framer(1000, () => {}).push(tooBig), FrameError);
  const errors: unknown[] = [];
  const reader = new Framer(1000, () => {}).reader((err) => errors.push(err));
  const target = reader.buffer();
  tooBig.copy(target);
  assert.equal(reader.callback(tooBig.length, target), false, 'the read stops');
  assert.ok(errors[0] instanceof FrameError);
  assert.throws(() => new Framer(1000, () => {}, 8).push(frameOf(2, 0)), /too small/);
});

test('framer (reader): a real socket delivers every frame of a large stream', async () => {
  const frames = Array.from({ length: 64 }, (_, i) => frameOf(i % 3 === 0 ? 1_000_000 + i : i * 7, i));
  const server = createServer((s) => {
    for (const f of frames) s.write(f);
    s.end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const got: Buffer[] = [];
  const framer = new Framer(1 << 30, (f) => {
    got.push(Buffer.from(f));
    framer.release(f);
  });
  const socket = connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', onread: framer.reader((err) => socket.destroy(err as Error)) });
  await once(socket, 'close');
  server.close();
  assert.equal(got.length, frames.length);
  got.forEach((f, i) => assert.ok(f.equals(frames[i]!), `frame ${i}`));
});

test('framer (reader): after stop() the read pauses and whole frames wait in the scratch buffer until go()', () => {
  const got: number[] = [];
  const framer = new Framer(1 << 20, (f) => {
    got.push(f.readInt32BE(0));
    if (got.length === 2) framer.stop();
  });
  const reader = framer.reader((err) => {
    throw err;
  });
  // five small frames in one read
  const stream = Buffer.concat([10, 11, 12, 13, 14].map((s, i) => frameOf(s, i)));
  const target = reader.buffer();
  stream.copy(target);
  assert.equal(reader.callback(stream.length, target), false, 'the socket is paused');
  assert.deepEqual(got, [10, 11], 'nothing is handed on while stopped');
  framer.go();
  assert.deepEqual(got, [10, 11, 12, 13, 14], 'go() hands on what the read left');
  // and reading goes on where it stopped
  const next = frameOf(20, 9);
  const t2 = reader.buffer();
  next.copy(t2);
  assert.equal(reader.callback(next.length, t2), true);
  assert.deepEqual(got.at(-1), 20);
});

test('intake: an accepted plain connection is read in place, a paused one holds its frames; TLS stays on data events', async () => {
  const { accept } = await import('../src/protocols/kafka/intake.ts');
  const frames = Array.from({ length: 200 }, (_, i) => frameOf(i % 5 === 0 ? 300_000 : 40 + i, i));
  const got: Buffer[] = [];
  let inPlace: boolean | undefined;
  const done = new Promise<void>((resolve) => {
    const server = createServer({ pauseOnConnect: true }, (raw) => {
      const accepted = accept(raw, 1 << 30, true);
      inPlace = accepted.inPlace;
      const { socket, framer } = accepted;
      framer.onFrame = (f) => {
        got.push(Buffer.from(f));
        framer.release(f);
        // backpressure now and then, as the intake applies it
        if (got.length % 17 === 0) {
          framer.stop();
          socket.pause();
          setTimeout(() => {
            framer.go();
            if (!framer.stopped) socket.resume();
          }, 5);
        }
      };
      socket.on('close', () => {
        server.close();
        resolve();
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const c = connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1' }, () => {
        for (const f of frames) c.write(f);
        c.end();
      });
    });
  });
  await done;
  assert.equal(inPlace, true);
  assert.equal(got.length, frames.length);
  got.forEach((f, i) => assert.ok(f.equals(frames[i]!), `frame ${i}`));
  const { Socket } = await import('node:net');
  assert.equal(accept(new Socket(), 1000, false).inPlace, false, 'not asked (TLS): data events');
});
