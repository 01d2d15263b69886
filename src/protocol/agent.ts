/**
 * The `/agent` channel: what a workspace's agent and the server say to each other. One JSON object
 * per WebSocket text frame. Shared by the server (src/server/agent-channel.ts) and the agent SDK (src/agent).
 *
 * server → agent: `waiting` (state read, nothing to do yet), `reinit`, `acked`, `refused` (then close 4409),
 * `warning` (a lifecycle policy will stop the workspace soon).
 * agent → server: `ack` of a reinit, by claim build id. The ack is durable: that claim is never sent again.
 * `heartbeat`: the workspace is in use (activity: pushes its idle deadline out). Unanswered; the server
 * passes on at most one per second per socket.
 *
 * A socket opened with `?activity=1` stays open for heartbeats and warnings when its workspace is not a
 * prebuild: it is told `refused` (no reinit will ever come) but not closed.
 *
 * @example
 * const frame = agentServerFrameSchema.safeParse(JSON.parse(text));
 * if (frame.success && frame.data.type === 'reinit') console.log(parseReinitPayload(frame.data.event, 'ws-1'));
 */
import { z } from 'zod';
import { unstorableString } from './jsonrpc.ts';

export const AGENT_PATH = '/agent';
/** Query parameter (`/agent?activity=1`) of a socket that carries heartbeats and warnings, prebuild or not. */
export const AGENT_ACTIVITY_PARAM = 'activity';
/** The server passes on at most one heartbeat per socket this often; the SDK sends no more often either. */
export const AGENT_HEARTBEAT_MIN_MS = 1_000;
/** Close code after `refused`: the WebSocket twin of HTTP 409 Conflict. The agent must stop for good. */
export const AGENT_REFUSED_CLOSE = 4409;
export const REINIT_REASONS = ['prebuild_claimed'] as const;
export type ReinitReason = (typeof REINIT_REASONS)[number];

/** What an agent is told when its prebuild was claimed: reinitialize as `ownerId`. */
export interface ReinitEvent {
  workspaceId: string;
  ownerId: string;
  claimBuildId: string;
  reason: ReinitReason;
}

/**
 * A reinit as the SDK yields it. A legacy publisher sent a bare reason string: it is still understood, but
 * carries no owner or build id, so it can be neither deduplicated nor acknowledged.
 */
export type ReinitNotice = (ReinitEvent & { legacy?: false }) | { workspaceId: string; ownerId: null; claimBuildId: null; reason: string; legacy: true };

export const reinitEventSchema = z.object({
  workspaceId: z.string().min(1).max(128),
  ownerId: z.string().min(1).max(256),
  claimBuildId: z.string().min(1).max(128),
  reason: z.enum(REINIT_REASONS),
});

/** Why the agent is told to wait. */
export type AgentWaitReason = 'unclaimed' | 'claim_build_running' | 'acknowledged';
/** Why the agent is refused; every refusal means "stop waiting". */
export type AgentRefusalCode = 'WSUP_NOT_PREBUILD' | 'WSUP_NOT_FOUND' | 'WSUP_DESTROYED';

/** A max-lifetime stop is coming at `stopAt` (ms since epoch); `reason` names the rule. */
export interface PolicyWarning {
  workspaceId: string;
  source: string;
  reason: string;
  stopAt: number;
  at: number;
}

export type AgentServerFrame =
  | { type: 'waiting'; workspaceId: string; why: AgentWaitReason }
  | { type: 'warning'; warning: PolicyWarning }
  | { type: 'reinit'; event: ReinitEvent | string }
  | { type: 'acked'; claimBuildId: string; ok: boolean }
  | { type: 'refused'; code: AgentRefusalCode; message: string }
  | { type: 'error'; message: string };

export const agentServerFrameSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('waiting'), workspaceId: z.string(), why: z.enum(['unclaimed', 'claim_build_running', 'acknowledged']) }),
  z.object({ type: z.literal('reinit'), event: z.unknown() }),
  z.object({ type: z.literal('acked'), claimBuildId: z.string(), ok: z.boolean() }),
  z.object({ type: z.literal('refused'), code: z.string(), message: z.string() }),
  z.object({ type: z.literal('error'), message: z.string() }),
  z.object({
    type: z.literal('warning'),
    warning: z.object({ workspaceId: z.string(), source: z.string(), reason: z.string(), stopAt: z.number(), at: z.number() }),
  }),
]);

export type AgentClientFrame = { type: 'ack'; claimBuildId: string } | { type: 'heartbeat' };
export const agentClientFrameSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('ack'),
    claimBuildId: z.string().min(1).max(128).refine((s) => !unstorableString(s), 'must not hold a NUL or a lone surrogate'),
  }),
  z.strictObject({ type: z.literal('heartbeat') }),
]);

/**
 * Read a reinit payload: the JSON event, or (rolling upgrade) a bare reason string, given either as the
 * string itself or as raw frame text that is not JSON. Null when it is neither.
 */
export function parseReinitPayload(payload: unknown, workspaceId: string): ReinitNotice | null {
  if (typeof payload === 'string') {
    const reason = payload.trim();
    return reason === '' ? null : { workspaceId, ownerId: null, claimBuildId: null, reason, legacy: true };
  }
  const parsed = reinitEventSchema.safeParse(payload);
  return parsed.success ? parsed.data : null;
}
