import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { getInfra, readAudit, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { spawnGateway, type GatewayProcess } from './helpers/gateway-process.ts';
import { loadMessages } from '../src/protocols/kafka/messages.ts';
import { encodeRequest } from '../src/protocols/kafka/upstream.ts';

// What an anonymous Kafka client can make the gateway hold: requests it sends without reading
// the answers (ApiVersions answers are ~30x their request; measured in this process after a
// full collection), frames larger than the pre-login limit and frames held half-sent on many
// connections (measured in a gateway process of its own, RSS from /proc).

let infra: Infra;
let gw: GatewayProcess;
let spoolDir: string;
const MiB = 1024 * 1024;

before(async () => {
  infra = await getInfra();
  const made = testConfig(infra);
  spoolDir = made.spoolDir;
  gw = await spawnGateway(made.yaml, { wait: ['kafka'] });
});

after(async () => {
  await gw?.stop();
});

function open(port = gw.kafka!): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** Peak RSS growth of the gateway while `fn` runs (sampled every 5 ms), settled for 300 ms after it. */
async function growth(fn: () => Promise<void>): Promise<number> {
  const baseline = gw.rss();
  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, gw.rss())), 5);
  try {
    await fn();
    await new Promise((r) => setTimeout(r, 300));
  } finally {
    clearInterval(sampler);
  }
  return Math.max(peak, gw.rss()) - baseline;
}

test('clients that send requests without reading the answers are not read either: each holds a few MiB of the gateway at most', async () => {
  // in this process, so that memory can be measured after a full collection (peak RSS of a
  // gateway process mostly shows garbage not yet collected)
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const retained = () => {
    gc();
    gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers + m.external;
  };
  const local = await startGateway(testConfig(infra).config);
  const reg = await loadMessages();
  const one = encodeRequest(reg, 18, 3, 1, { ClientSoftwareName: 'flood', ClientSoftwareVersion: '1' });
  const chunk = Buffer.concat(Array.from({ length: 2048 }, () => one)); // ~70 KiB of ApiVersions requests
  const flood = async (): Promise<{ socket: Socket; sent: number }> => {
    const socket = await open(local.addresses.kafka!.port);
    socket.on('error', () => {});
    socket.pause(); // never reads an answer
    let sent = 0;
    // write until the gateway stops reading (the kernel buffers fill) or 40 MiB went out
    while (sent < 40 * MiB) {
      if (!socket.write(chunk)) {
        const drained = await Promise.race([new Promise<boolean>((r) => socket.once('drain', () => r(true))), new Promise<boolean>((r) => setTimeout(() => r(false), 1500))]);
        if (!drained) break;
      }
      sent += chunk.length;
    }
    return { socket, sent };
  };
  // five such clients at once, each left holding its unread answers. (On 35ea5d7 the gateway
  // kept reading and buffered every answer: 171 MiB of RSS for the first 8.6 MiB of requests.)
  const held: Socket[] = [];
  const before = retained();
  let sent = 0;
  for (let i = 0; i < 5; i++) {
    const f = await flood();
    held.push(f.socket);
    sent += f.sent;
    assert.ok(f.sent < 40 * MiB, `the gateway stopped reading client ${i}`);
  }
  await new Promise((r) => setTimeout(r, 500));
  const perClient = (retained() - before) / 5;
  for (const s of held) s.destroy();
  await local.close();
  assert.ok(perClient < 4 * MiB, `each client holds ${(perClient / MiB).toFixed(2)} MiB of the gateway (${(sent / MiB).toFixed(1)} MiB of requests sent in all)`);
});

test('frames over the pre-login limit are refused at their size prefix; half-sent frames cost at most the limit per connection', async () => {
  // a 50 MiB frame announced, 4 MiB of it sent: closed after the four size bytes
  const big = await open();
  big.on('error', () => {});
  const closed = new Promise<void>((r) => big.once('close', () => r()));
  const header = Buffer.alloc(4);
  header.writeInt32BE(50 * MiB);
  const grownBig = await growth(async () => {
    big.write(header);
    for (let i = 0; i < 64 && !big.destroyed; i++) big.write(Buffer.alloc(64 * 1024, 7));
    await Promise.race([closed, new Promise((r) => setTimeout(r, 3000))]);
  });
  assert.equal(big.destroyed || big.readableEnded, true, 'the connection was closed');
  assert.ok(grownBig < 8 * MiB, `RSS grew ${(grownBig / MiB).toFixed(1)} MiB`);

  // 20 connections each hold a frame just under the limit, never completed
  const held: Socket[] = [];
  const grownHeld = await growth(async () => {
    for (let i = 0; i < 20; i++) {
      const s = await open();
      s.on('error', () => {});
      const h = Buffer.alloc(4);
      h.writeInt32BE(500 * 1024);
      s.write(h);
      s.write(Buffer.alloc(499 * 1024, 1));
      held.push(s);
    }
  });
  for (const s of held) s.destroy();
  assert.ok(grownHeld < 20 * 1.5 * MiB, `RSS grew ${(grownHeld / MiB).toFixed(1)} MiB for 20 half-sent 500 KiB frames`);
  assert.ok(gw.alive());
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(readAudit(spoolDir).some((r) => /exceeds the limit of 524288/.test(String(r.meta.violation ?? ''))), 'the oversized frame is audited');
});
