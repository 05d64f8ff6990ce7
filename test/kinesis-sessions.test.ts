import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KinesisSessions } from '../src/protocols/kinesis/sessions.ts';
import type { Dispatcher } from '../src/dispatcher.ts';
import type { Session } from '../src/operation.ts';

/** Only the session calls of a Dispatcher, recording what was started and ended. */
function recorder() {
  const started: Session[] = [];
  const ended: Session[] = [];
  let n = 0;
  const dispatcher = {
    newSession: (protocol: 'kinesis', client: Session['client']) => {
      const s: Session = { id: `s${n++}`, protocol, client, startedAt: Date.now() };
      started.push(s);
      return s;
    },
    endSession: (s: Session) => void ended.push(s),
  } as unknown as Dispatcher;
  return { dispatcher, started, ended };
}

const client = { address: '127.0.0.1' };

test('one session per credential; a new one once the credential expired', async () => {
  const r = recorder();
  const sessions = new KinesisSessions(r.dispatcher, { idleMs: 60_000 });
  const a = sessions.for('SGJAAA', client);
  assert.equal(sessions.for('SGJAAA', client), a);
  assert.notEqual(sessions.for('SGJBBB', client), a);
  sessions.expires(a, Math.floor(Date.now() / 1000) - 1);
  const again = sessions.for('SGJAAA', client);
  assert.notEqual(again, a);
  assert.deepEqual(r.ended, [a]);
  sessions.close();
  assert.equal(r.ended.length, 3, 'close ends the rest');
});

test('idle sessions end; the map is bounded (oldest ended first)', async () => {
  const r = recorder();
  const sessions = new KinesisSessions(r.dispatcher, { idleMs: 50, max: 2 });
  const a = sessions.for('SGJA', client);
  sessions.for('SGJB', client);
  sessions.for('SGJC', client);
  assert.deepEqual(r.ended, [a], 'over the bound: the least recently used ends');
  await new Promise((done) => setTimeout(done, 200));
  assert.equal(r.ended.length, 3, 'idle ones end on the sweep');
  sessions.close();
});
