/**
 * A replica frozen in the middle of a start changes nothing once it wakes up, down to the real resource:
 * replica A (a process) passes its lease check for a start and is SIGSTOPped before its provider request;
 * its lease expires, replica B takes the shard over and starts the workspace itself; A is SIGCONTed and its
 * request goes out (under a signal the lease cannot abort, as one already on the wire) — and the provider
 * refuses it on the epoch the resource carries. Afterwards there is exactly one container (one instance),
 * B's, with B's epoch, untouched.
 *
 * Real components: PostgreSQL for the leases, dockerd for the docker case, and for EC2 the real SDK in the
 * replica processes over HTTP against test/ec2-server running in this process.
 */
import { randomBytes } from 'node:crypto';
import Docker from 'dockerode';
import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_SHARDS, shardOf } from '../../src/cluster/shards.ts';
import type { SqlEngine } from '../../src/store/engine.ts';
import { openPostgres } from '../../src/store/pg-engine.ts';
import { startEc2Server, type Ec2Server } from '../ec2-server/server.ts';
import { describeWith, dockerHost, postgresUrl } from '../helpers/require.ts';
import { dropSchema, ReplicaProcess } from './harness.ts';

const IMAGE = 'wsup-test:latest';
const CMD = ['sh', '-c', 'trap "exit 0" TERM; sleep 3600 & wait'];
const TTL_MS = 2000;
/** How long A's start waits after its lease check: the test freezes A inside this wait. */
const SLOW_START_MS = 8000;
/** Waiting on replica processes, the engine and the database: generous, for a busy machine. */
const poll = (ms = 60_000) => ({ timeout: ms, interval: 100 });

interface SlowStartCall {
  id: string;
  shard?: number;
  epoch?: number;
  phase: 'waiting' | 'calling' | 'done' | 'failed';
  code?: string;
  message?: string;
}

/** Replica processes on their own schema, killed and dropped afterwards. */
class Rig {
  readonly replicas: ReplicaProcess[] = [];
  private constructor(
    readonly url: string,
    readonly schema: string,
    readonly db: SqlEngine,
    private readonly env: Record<string, string>,
  ) {}

  static async create(url: string, env: Record<string, string>): Promise<Rig> {
    const schema = `wsup_frozen_${process.pid}_${randomBytes(3).toString('hex')}`;
    const db = await openPostgres({ url, schema, max: 2 });
    return new Rig(url, schema, db, { DATABASE_URL: url, WSUP_CLUSTER_SCHEMA: schema, WSUP_CLUSTER_TTL_MS: String(TTL_MS), ...env });
  }

  async spawn(name: string, env: Record<string, string> = {}): Promise<ReplicaProcess> {
    const r = new ReplicaProcess(name, { ...this.env, WSUP_CLUSTER_REPLICA: name, ...env });
    this.replicas.push(r);
    await r.ready;
    return r;
  }

  /** The current lease of a shard: owner and epoch (owner null when free or expired). */
  async lease(shard: number): Promise<{ owner: string | null; epoch: number } | undefined> {
    const { rows } = await this.db.query<{ owner: string | null; epoch: string }>(
      'SELECT CASE WHEN expires_at > now() THEN owner END AS owner, epoch FROM shard_leases WHERE shard = $1',
      [shard],
    );
    return rows[0] ? { owner: rows[0].owner, epoch: Number(rows[0].epoch) } : undefined;
  }

  async stateOf(id: string): Promise<string | undefined> {
    const { rows } = await this.db.query<{ state: string }>('SELECT state FROM workspaces WHERE id = $1', [id]);
    return rows[0]?.state;
  }

  async dispose(): Promise<void> {
    for (const r of this.replicas) {
      if (r.dead) continue;
      r.proc.kill('SIGCONT');
      await r.kill('SIGKILL');
    }
    await this.db.close();
    await dropSchema(this.url, this.schema);
  }
}

const slowCalls = async (r: ReplicaProcess): Promise<SlowStartCall[]> => ((await r.get('/provider-calls')) as { calls: SlowStartCall[] }).calls;

/**
 * The scenario, whatever the provider: returns A's frozen call as it ended, B's epoch, and the resource
 * snapshots (from `resources`) taken before A resumed and after A's call ended.
 */
async function frozenStart<T>(rig: Rig, id: string, resources: () => Promise<T[]>, isOwners: (rs: T[], epoch: number) => boolean) {
  const shard = shardOf(id, DEFAULT_SHARDS);
  const a = await rig.spawn('a', { WSUP_CLUSTER_SLOW_START_MS: String(SLOW_START_MS) });
  await expect.poll(async () => (await rig.lease(shard))?.owner, { ...poll(), message: `a owns shard ${shard}` }).toBe('a');
  // The start passes A's lease check and waits before its provider request: freeze A there.
  // Its answer does not matter (it comes, or fails, after the wake-up): what the provider did does.
  void a.call('workspace.ensure', { id }, 120_000);
  let waiting: SlowStartCall | undefined;
  await expect.poll(async () => (waiting = (await slowCalls(a)).find((c) => c.id === id))?.phase, { ...poll(), message: 'a waiting in its start' }).toBe('waiting');
  a.proc.kill('SIGSTOP');
  // The epoch A's call carries: the one of the lease it passed the check under.
  const epochA = waiting!.epoch!;
  // B comes up, takes the expired shard over and starts the workspace itself (a re-run of the start A began).
  const b = await rig.spawn('b');
  await expect.poll(() => rig.stateOf(id), { ...poll(), message: `${id} running under b` }).toBe('running');
  // B's resource carries the epoch of B's current lease (on a busy machine B may have had to take it again).
  let epochB = NaN;
  const owned = async () => {
    const lease = await rig.lease(shard);
    epochB = lease?.owner === 'b' ? lease.epoch : NaN;
    return lease?.owner === 'b' && isOwners(await resources(), epochB);
  };
  await expect.poll(owned, { ...poll(), message: "b owns the shard and the resource carries b's epoch" }).toBe(true);
  const before = await resources();
  a.proc.kill('SIGCONT');
  // A's start goes out now, under the epoch of the lease it lost.
  await expect.poll(async () => (await slowCalls(a)).find((c) => c.id === id && c.epoch === epochA)?.phase, { ...poll(), message: "a's frozen start ended" }).toMatch(/done|failed/);
  const call = (await slowCalls(a)).find((c) => c.id === id && c.epoch === epochA)!;
  const after = await resources();
  return { call, epochA, epochB, before, after, b };
}

const pg = postgresUrl();
const host = pg === null ? null : await dockerHost(IMAGE);

describeWith(pg, 'a replica frozen mid-start, resumed after a takeover', (url) => {
  let rig: Rig | null = null;
  afterEach(async () => {
    await rig?.dispose();
    rig = null;
  }, 60_000);

  describeWith(host, 'docker', () => {
    const prefix = `wsupz${randomBytes(3).toString('hex')}-`;
    const docker = new Docker();
    afterEach(async () => {
      const left = await docker.listContainers({ all: true });
      for (const c of left.filter((c) => c.Names.some((n) => n.startsWith(`/${prefix}`)))) await docker.getContainer(c.Id).remove({ force: true });
    }, 60_000);

    it('changes nothing: one container, the new owner\'s, with its epoch', async () => {
      const id = `frozen-d-${randomBytes(3).toString('hex')}`;
      rig = await Rig.create(url, {
        WSUP_CLUSTER_PROVIDER: 'docker',
        WSUP_CLUSTER_DOCKER_IMAGE: IMAGE,
        WSUP_CLUSTER_DOCKER_PREFIX: prefix,
        WSUP_CLUSTER_DOCKER_CMD: JSON.stringify(CMD),
      });
      const containers = async () =>
        (await docker.listContainers({ all: true, filters: { label: [`wsup.workspace=${id}`] } })).map((c) => ({ ref: c.Id, state: c.State, epoch: c.Labels['wsup.epoch'] }));
      const r = await frozenStart(rig, id, containers, (cs, epoch) => cs.length === 1 && cs[0]!.state === 'running' && cs[0]!.epoch === String(epoch));
      console.log(`frozen docker start: a's call at epoch ${r.epochA} ${r.call.phase} (${r.call.code ?? '-'}); b's epoch ${r.epochB}; containers before a resumed ${JSON.stringify(r.before)}, after ${JSON.stringify(r.after)}`);
      expect(r.epochB).toBeGreaterThan(r.epochA);
      expect(r.call).toMatchObject({ phase: 'failed', code: 'WSUP_FENCED', message: expect.stringMatching(new RegExp(`epoch ${r.epochB}, newer than this call's epoch ${r.epochA}`)) as string });
      expect(r.after).toEqual(r.before);
      expect(r.after).toEqual([{ ref: expect.any(String) as string, state: 'running', epoch: String(r.epochB) }]);
      // And the workspace is still served by the cluster, on b's container.
      expect(await r.b.call('workspace.get', { id })).toMatchObject({ ok: true, result: { state: 'running' } });
    }, 180_000);
  });

  describe('ec2', () => {
    let ec2: Ec2Server | null = null;
    let client: EC2Client | null = null;
    afterEach(async () => {
      client?.destroy();
      await ec2?.close();
      ec2 = client = null;
    });

    it('changes nothing: one instance, the new owner\'s, tagged with its epoch', async () => {
      ec2 = await startEc2Server({ delays: { pendingMs: 200, stoppingMs: 100, shuttingDownMs: 100 } });
      const server = ec2;
      client = new EC2Client({ endpoint: server.url, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
      const raw = client;
      const id = `frozen-e-${randomBytes(3).toString('hex')}`;
      rig = await Rig.create(url, { WSUP_CLUSTER_PROVIDER: 'ec2', WSUP_CLUSTER_EC2_ENDPOINT: server.url });
      const instances = async () => {
        const res = await raw.send(new DescribeInstancesCommand({ Filters: [{ Name: 'tag:wsup:workspace', Values: [id] }] }));
        return (res.Reservations ?? []).flatMap((r) => r.Instances ?? []).map((i) => ({
          ref: i.InstanceId!,
          state: i.State?.Name,
          epoch: i.Tags?.find((t) => t.Key === 'wsup:epoch')?.Value,
        }));
      };
      const mutations = () => server.calls.filter((c) => c.action !== 'DescribeInstances').map((c) => c.action);
      const r = await frozenStart(rig, id, instances, (is, epoch) => is.length === 1 && is[0]!.state === 'running' && is[0]!.epoch === String(epoch));
      console.log(`frozen ec2 start: a's call at epoch ${r.epochA} ${r.call.phase} (${r.call.code ?? '-'}); b's epoch ${r.epochB}; instances before a resumed ${JSON.stringify(r.before)}, after ${JSON.stringify(r.after)}; mutating calls ${JSON.stringify(mutations())}`);
      expect(r.epochB).toBeGreaterThan(r.epochA);
      expect(r.call).toMatchObject({ phase: 'failed', code: 'WSUP_FENCED' });
      expect(r.after).toEqual(r.before);
      expect(r.after).toEqual([{ ref: expect.any(String) as string, state: 'running', epoch: String(r.epochB) }]);
      // One launch in all (b's); a's wake-up sent nothing that changes an instance (an adopting start would re-tag).
      expect(mutations()).toEqual(['RunInstances']);
    }, 180_000);
  });
});
