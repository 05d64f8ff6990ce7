// Preloaded (--import) into the bench's gateway: times the stages of one Produce at a time
// from the Kafka listener's diagnostics channels. SIGUSR2 starts a window; the next SIGUSR2
// ends it and writes the window's requests to $STREAMGATE_STAGES_FILE. Outside a window
// nothing is subscribed, so the throughput phases pay nothing.
//
// The probe sends one Produce at a time, so the four events of a request arrive in order and
// need no correlation: request read -> written to the broker -> broker answer -> client answer.
// A request whose events do not come in that order is dropped. Times are CLOCK_MONOTONIC in
// microseconds (process.hrtime), the same clock in every process, so the bench can line them
// up with the client's own send and receive times.
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { writeFileSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';

const PRODUCE = 0;
const file = process.env.STREAMGATE_STAGES_FILE;
const nowUs = () => Number(process.hrtime.bigint()) / 1000;
const apiKeyOf = (frame: Buffer) => frame.readInt16BE(4);

if (isMainThread && file) {
  /** per request: [read, to broker, broker answer, answer written] */
  let requests: number[][] = [];
  let at: number[] = [];
  let on = false;
  const channels: Array<[string, (m: unknown) => void]> = [
    ['streamgate:kafka:request', (m) => void (at = apiKeyOf((m as { frame: Buffer }).frame) === PRODUCE ? [nowUs()] : [])],
    [
      'streamgate:kafka:upstream',
      (m) => {
        const frame = (m as { frame?: Buffer }).frame;
        if (!frame || at.length !== 1 || apiKeyOf(frame) !== PRODUCE) at = [];
        else at.push(nowUs());
      },
    ],
    ['streamgate:kafka:broker-answer', () => void (at.length === 2 ? at.push(nowUs()) : (at = []))],
    [
      'streamgate:kafka:response',
      (m) => {
        if (at.length === 3 && (m as { apiKey: number }).apiKey === PRODUCE) requests.push([...at, nowUs()]);
        at = [];
      },
    ],
  ];
  process.on('SIGUSR2', () => {
    on = !on;
    if (on) {
      requests = [];
      for (const [name, fn] of channels) subscribe(name, fn);
      return;
    }
    for (const [name, fn] of channels) unsubscribe(name, fn);
    writeFileSync(file, JSON.stringify(requests));
  });
}
