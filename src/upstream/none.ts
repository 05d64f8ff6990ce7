import { GatewayError, type Operation, type Upstream, type UpstreamResult } from '../operation.ts';

/**
 * The default upstream of a gateway configured with only a Kinesis endpoint: the HTTP
 * listener has no broker to write to, so its writes are refused (never acknowledged).
 */
export class NoUpstream implements Upstream {
  async execute(op: Operation): Promise<UpstreamResult> {
    throw new GatewayError('upstream-unavailable', `no Kafka upstream is configured for ${op.protocol} operations (upstream has only kinesis)`);
  }

  async ready(): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {}
}
