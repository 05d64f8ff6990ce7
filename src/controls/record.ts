import type { Control, Intent, Next, Operation, RecordNeeds, UpstreamResult } from '../operation.ts';
import type { Recorder } from '../recording/recorder.ts';

/**
 * Session recording: keeps the records of produce and consume operations the recording
 * policy selects, as they passed the gateway (after masking), with where the upstream
 * stored them. It sits just around inspect: after authorize (the identity is known and
 * allowed), before masking (raw recording needs the originals) and before the request is
 * forwarded (Kafka frame memory is reused once written, so payloads are copied here). Its
 * rows are written after the audit control has hashed the records, so each recorded record
 * carries its audit hash. Refused and failed operations are not recorded (their audit rows
 * tell). The write is never awaited: recording cannot slow or fail an operation.
 */
export class Recording implements Control {
  readonly name = 'record';
  readonly #recorder: () => Recorder | undefined;

  constructor(recorder: () => Recorder | undefined) {
    this.#recorder = recorder;
  }

  /** a recorded operation's records are kept one by one, with their positions */
  needs(intent: Intent, needs: RecordNeeds): void {
    const side = intent.action;
    if ((side === 'produce' || side === 'consume') && this.#recorder()?.applies(intent.resource.name, side, intent.identity)) needs.records = 'decoded';
  }

  async handle(op: Operation, next: Next): Promise<UpstreamResult> {
    const recorder = this.#recorder();
    const capture = recorder?.capture(op);
    if (!capture) return next(op);
    let result: UpstreamResult;
    try {
      result = await next(op);
    } catch (err) {
      recorder!.abandon(capture);
      throw err;
    }
    recorder!.complete(capture, op, result);
    return result;
  }
}
