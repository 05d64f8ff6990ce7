import { Counter, Gauge, type Registry } from 'prom-client';
import type { Recorder } from './recorder.ts';

/**
 * Prometheus series of session recording, read from the recorder at scrape time (the data
 * path pays nothing for them). A stopped recording also leaves a `spool-gap` audit row.
 */
export function registerRecordingMetrics(registry: Registry, recorder: () => Recorder['stats']): void {
  const registers = [registry];
  const monotonic = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  monotonic('streamgate_recording_records_total', 'Records written to the recording since start', () => recorder().recorded);
  monotonic('streamgate_recording_stops_total', 'Times recording stopped at a bound (a session past maxSessionBytes or maxQueueBytes, or the disk past maxTotalBytes) since start', () => recorder().dropped);
  monotonic('streamgate_recording_write_failures_total', 'Recording batches that could not be written since start', () => recorder().writeFailures);
  monotonic('streamgate_recording_clickhouse_dropped_total', 'Recorded rows not copied to ClickHouse after retries (they stay in the local segments)', () => recorder().clickhouse?.dropped ?? 0);
  new Gauge({ name: 'streamgate_recording_queued_bytes', help: 'Recorded payload bytes waiting to be written', registers, collect() { this.set(recorder().queuedBytes); } });
  new Gauge({ name: 'streamgate_recording_disk_bytes', help: 'Bytes of the recording segment files (recording stops at recording.maxTotalBytes)', registers, collect() { this.set(recorder().totalBytes); } });
}
