/**
 * The server under test in the agent crash test: wired like `wsup serve` (store, claims loaded before
 * recovery, durable supervisor with the claim service's agent-token `prepareSpec`, control server with
 * `/agent`), over a FakeProvider, in a process the test SIGKILLs.
 *
 * Environment: `WSUP_AGENT_TEST_DIR` (PGlite data dir), `WSUP_AGENT_TEST_PORT` (0: any), 
 * `WSUP_AGENT_TEST_LATENCY_FILE` (provider latency in ms, re-read at every call, so the test can make a
 * claim build hang), `WSUP_AGENT_TEST_DIE_AFTER_COMMIT=1` (SIGKILL itself right after a claim commits).
 * Prints `READY <port>` once listening.
 */
import { readFileSync } from 'node:fs';
import { FakeProvider } from '../../src/providers/fake.ts';
import { createServer, staticTokens } from '../../src/server/index.ts';
import { WorkspaceStore } from '../../src/store/index.ts';
import { ClaimService } from '../../src/supervisor/claims.ts';
import { openDurableSupervisor } from '../../src/supervisor/durable.ts';

const latencyFile = process.env.WSUP_AGENT_TEST_LATENCY_FILE!;
const store = await WorkspaceStore.open({ dataDir: process.env.WSUP_AGENT_TEST_DIR! });
const claims = new ClaimService({
  store,
  ...(process.env.WSUP_AGENT_TEST_DIE_AFTER_COMMIT === '1' ? { afterCommit: () => void process.kill(process.pid, 'SIGKILL') } : {}),
});
await claims.load();
const provider = new FakeProvider({ fault: () => ({ latencyMs: Number(readFileSync(latencyFile, 'utf8')) }) });
const { supervisor } = await openDurableSupervisor({ store, provider, prepareSpec: claims.prepareSpec, beforeRecovery: (s) => claims.attach(s) });
await claims.reconcile();
const server = createServer({ supervisor, claims, tokens: staticTokens([{ token: 'tok-admin', role: 'admin' }]), port: Number(process.env.WSUP_AGENT_TEST_PORT ?? 0) });
const { port } = await server.listen();
process.stdout.write(`READY ${port}\n`);
