/**
 * The wsup agent SDK: what runs inside a workspace to learn that its prebuild was claimed (`waitForReinit`),
 * to say it is in use and hear of a coming policy stop (`openAgent`). Depends only on the protocol types.
 *
 * @example
 * import WebSocket from 'ws';
 * import { waitForReinit } from 'wsup/agent';
 * for await (const ev of waitForReinit({ url, token: process.env.WSUP_AGENT_TOKEN!, WebSocket, stateFile: '.reinit.json' })) {
 *   await reinitializeAs(ev.ownerId);
 * }
 */
export {
  waitForReinit,
  realScheduler,
  Backoff,
  AgentTokenError,
  type AgentScheduler,
  type AgentStatus,
  type WaitEnd,
  type WaitForReinitOptions,
} from './wait-for-reinit.ts';
export { openAgent, type AgentLink, type AgentLinkEnd, type AgentLinkStatus, type OpenAgentOptions } from './activity.ts';
export { fileLedger, memoryLedger, type ReinitLedger } from './ledger.ts';
export { agentUrl, type AgentSocket, type AgentSocketConstructor } from './connection.ts';
export { parseReinitPayload, AGENT_PATH, type PolicyWarning, type ReinitEvent, type ReinitNotice } from '../protocol/index.ts';
