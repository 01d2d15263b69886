/**
 * The package's public entry points resolve by name (package self-reference through `exports`) and carry
 * what the README shows.
 */
import { describe, expect, it } from 'vitest';

describe('package exports', () => {
  it('exposes the library, the client SDK and the agent SDK under their documented names', async () => {
    const lib = await import('wsup');
    const client = await import('wsup/client');
    const agent = await import('wsup/agent');
    for (const name of ['Supervisor', 'FakeProvider', 'WorkspaceStore', 'openDurableSupervisor', 'createServer', 'createBus', 'ClaimService', 'ClaimConflictError'] as const) {
      expect(typeof lib[name], name).toBe('function');
    }
    expect(typeof client.WsupClient).toBe('function');
    expect(typeof agent.waitForReinit).toBe('function');
    expect(agent.AGENT_PATH).toBe('/agent');
  });
});
