/**
 * Prebuild claims and the `/agent` channel's state as any replica of a cluster sees them. Every claim is
 * run by the owner of the prebuild's shard (its ClaimService, see services.ts): a claim by id is routed
 * there; a claim by pool picks a free prebuild from the store, routes the id-claim to its owner and, if it
 * lost the race for that one, tries another. What an agent is told is read from the store (the durable
 * decision), and its ack is one conditional UPDATE there, so an agent may connect to any replica. Claim
 * changes wake the agent channels of every replica through one NOTIFY channel; a listener that was down
 * wakes every watcher once it is back (a wake-up only causes a re-read of the durable state).
 *
 * @example
 * const claims = await ClusterClaims.start({ url, store, route });
 * await claims.claim({ pool: 'python', userId: 'alice' });       // whichever replica owns the prebuild
 * createAgentChannel({ backend: claims, logger });               // reinit once, whichever replica it is on
 */
import { randomInt } from 'node:crypto';
import { ClaimConflictError, errorMessage, WsupError } from '../errors.ts';
import type { WorkspaceStore } from '../store/store.ts';
import { SYSTEM_OWNER } from '../store/types.ts';
import { claimBuildIdFor, ClaimWatchers, decide, type AgentDecision, type ClaimRequest, type ClaimResult } from '../supervisor/claims.ts';
import type { WorkspaceView } from '../supervisor/types.ts';
import { Listener } from './notify.ts';
import type { ShardMethod, ShardMethodParams } from './services.ts';

/** Run a routed method on the owner of `params.id`'s shard. */
export type RouteCall = <M extends ShardMethod | 'workspace.ensure' | 'workspace.destroy' | 'workspace.get'>(
  method: M,
  params: { id: string; requester?: string; requestId?: string } & (M extends ShardMethod ? ShardMethodParams[M] : object),
) => Promise<unknown>;

export interface ClusterClaimsOptions {
  /** PostgreSQL url, for the LISTEN connection. */
  url: string;
  store: WorkspaceStore;
  route: RouteCall;
  /** Claim rounds (candidates re-read) before a pool claim gives up. Default 5. */
  rounds?: number;
  onError?: (err: unknown, what: string) => void;
}

/** Candidates read per round of a pool claim; a claimer starts at a random one of the running ones. */
const CANDIDATES = 16;

export class ClusterClaims {
  private readonly watchers: ClaimWatchers;
  private readonly listener: Listener;

  private constructor(
    private readonly opts: ClusterClaimsOptions,
    private readonly channel: string,
  ) {
    this.watchers = new ClaimWatchers((err, id) => opts.onError?.(err, `an agent watcher of ${id} failed: ${errorMessage(err)}`));
    this.listener = new Listener({
      url: opts.url,
      channels: [channel],
      onNotify: (_ch, id) => this.watchers.wake(id),
      // Wake-ups may have been lost while the connection was down: every watcher reads again.
      onResync: () => {
        for (const id of this.watchers.ids()) this.watchers.wake(id);
      },
      onError: (err) => opts.onError?.(err, 'claim listener connection failed'),
    });
  }

  static async start(opts: ClusterClaimsOptions): Promise<ClusterClaims> {
    // Channels are per database, schemas are not: name it after the schema, like the replica's channels.
    const { rows } = await opts.store.engine.query<{ schema: string }>('SELECT current_schema() AS schema');
    const c = new ClusterClaims(opts, `wsup_${rows[0]?.schema ?? 'public'}_claims`);
    await c.listener.start();
    return c;
  }

  /** A claim of `id` changed durably (on this replica's shard): wake every replica's watchers of it. */
  changed(id: string): void {
    this.watchers.wake(id);
    this.opts.store.engine.query('SELECT pg_notify($1, $2)', [this.channel, id]).catch((err: unknown) => this.opts.onError?.(err, `announcing a claim change of ${id} failed`));
  }

  createPrebuild(id: string, spec: Record<string, unknown>, pool: string | null): Promise<WorkspaceView> {
    return this.opts.route('prebuild.create', { id, spec, pool }) as Promise<WorkspaceView>;
  }

  /** Views come labelled from their owner; nothing to add here. */
  label<V extends WorkspaceView>(view: V): V {
    return view;
  }

  async claim(req: ClaimRequest): Promise<ClaimResult> {
    if ((req.id === undefined) === (req.pool === undefined)) throw new WsupError('WSUP_INVALID_ARGUMENT', 'claim: pass exactly one of id and pool');
    if (req.userId === SYSTEM_OWNER) throw new WsupError('WSUP_INVALID_ARGUMENT', `claim: ${SYSTEM_OWNER} owns unclaimed prebuilds and cannot claim one`);
    // Under a request id the label is the same on every re-send, and so is the build id the owner gives the claim.
    const who = req.requestId !== undefined && req.requester !== undefined ? { requester: req.requester, requestId: req.requestId } : {};
    if (req.id !== undefined) return (await this.opts.route('workspace.claim', { id: req.id, userId: req.userId, ...who })) as ClaimResult;
    if (who.requester !== undefined) {
      // Sent again after the first made its claim (the answer was lost with a replica): that claim, not another.
      const done = await this.opts.store.claims.byBuildId(claimBuildIdFor(who.requester));
      if (done) return { id: done.workspaceId, ownerId: done.ownerId, claimBuildId: done.claimBuildId };
    }
    const pool = req.pool!;
    const rounds = this.opts.rounds ?? 5;
    for (let round = 0; round < rounds; round++) {
      const candidates = await this.candidates(pool);
      if (candidates.length === 0) break;
      for (const id of candidates) {
        try {
          return (await this.opts.route('workspace.claim', { id, userId: req.userId, ...who })) as ClaimResult;
        } catch (err) {
          // Another claimer (or the pool retiring it) took this one first: try the next.
          if (!(err instanceof WsupError) || err.code !== 'WSUP_CLAIM_CONFLICT') throw err;
        }
      }
    }
    throw new ClaimConflictError(`pool ${pool} has no unclaimed prebuild: create more prebuilds or retry later`);
  }

  /**
   * Unclaimed prebuilds of the pool, running ones first (the claimer gets a workspace that is up), then the
   * oldest; each claimer starts at a random running one, so concurrent claimers spread over the pool
   * instead of all racing for the first.
   */
  private async candidates(pool: string): Promise<string[]> {
    const { rows } = await this.opts.store.engine.query<{ id: string; running: boolean }>(
      `SELECT id, state = 'running' AS running FROM workspaces WHERE pool = $1 AND prebuild AND owner = $2 AND destroyed_at IS NULL
       ORDER BY state = 'running' DESC, created_at, id LIMIT ${CANDIDATES}`,
      [pool, SYSTEM_OWNER],
    );
    const running = rows.filter((r) => r.running).map((r) => r.id);
    const rest = rows.filter((r) => !r.running).map((r) => r.id);
    const from = running.length > 0 ? randomInt(running.length) : 0;
    return [...running.slice(from), ...running.slice(0, from), ...rest];
  }

  // --- the agent channel's backend ----------------------------------------------------------------

  agentWorkspace(token: string): Promise<string | null> {
    return this.opts.store.tokens.agentTokenWorkspace(token);
  }

  async decision(id: string): Promise<AgentDecision> {
    return decide(await this.opts.store.claims.agentView(id));
  }

  async ack(id: string, claimBuildId: string): Promise<boolean> {
    const ok = await this.opts.store.claims.ack(id, claimBuildId);
    if (ok) this.changed(id);
    return ok;
  }

  watch(id: string, fn: () => void): () => void {
    return this.watchers.add(id, fn);
  }


  async close(): Promise<void> {
    this.watchers.clear();
    await this.listener.close();
  }

}
