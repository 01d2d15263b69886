// Worker threads on Node 20 do not inherit the parent's `--import tsx` hooks: register tsx, then load the
// TypeScript worker named in workerData.entry.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);
