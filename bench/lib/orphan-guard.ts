// Preloaded (--import) into every process the bench starts. The bench holds the write end
// of this process's stdin; when the bench dies, even by SIGKILL, the pipe closes and this
// process stops itself (SIGTERM, so the gateway drains and --cpu-prof still writes).
// Unref'd, so it never keeps an otherwise finished process alive. Main thread only:
// --import also runs in worker threads, whose own stdin is empty and ends at once.
import { isMainThread } from 'node:worker_threads';

if (isMainThread && !process.stdin.isTTY) {
  process.stdin.on('end', () => process.kill(process.pid, 'SIGTERM'));
  process.stdin.on('error', () => process.kill(process.pid, 'SIGTERM'));
  process.stdin.resume();
  (process.stdin as unknown as { unref?: () => void }).unref?.();
}
