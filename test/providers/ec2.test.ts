/**
 * The EC2 provider against the real `@aws-sdk/client-ec2` over HTTP, talking to test/ec2-server: a Query-API
 * server that models instance states with short real delays and answers with EC2's XML and error codes.
 * Waiting here is the real protocol's polling, kept to tens of milliseconds per transition. Tests of long
 * transitions, deadlines and aborts share a `TestClock` between the server and the provider instead, so no
 * real time passes for them.
 */
import {
  CreateTagsCommand,
  DescribeInstancesCommand,
  EC2Client,
  EC2ServiceException,
  RunInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
  type Tag,
} from '@aws-sdk/client-ec2';
import { afterAll, describe, expect, it } from 'vitest';
import { createEc2Provider, Ec2InstanceLostError, Ec2SpecError, type Ec2Clock, type Ec2ProviderOptions } from '../../src/providers/ec2.ts';
import type { Ec2Delays } from '../ec2-server/model.ts';
import { startEc2Server, type Ec2Server } from '../ec2-server/server.ts';
import { describeProviderConformance } from './conformance.ts';

const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };
const region = 'us-east-1';
const defaultSpec = { ami: 'ami-0123456789abcdef0', instanceType: 't3.micro' };
const never = (): AbortSignal => new AbortController().signal;

/**
 * Virtual time for the server's state transitions and the provider's poll sleeps. While `auto` is on, a
 * sleep moves time forward by its own length on the next turn of the event loop; while it is off, sleeps
 * stay pending until `run()`, so a test can act while the provider is known to be waiting.
 */
class TestClock implements Ec2Clock {
  private t = Date.UTC(2026, 0, 1);
  private seq = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();
  constructor(private auto = true) {}
  now = (): number => this.t;
  setTimeout = (fn: () => void, ms: number): unknown => {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + ms, fn });
    if (this.auto) setImmediate(() => this.fire(id));
    return id;
  };
  clearTimeout = (id: unknown): void => void this.timers.delete(id as number);
  /** Provider sleeps waiting for the clock. */
  get pending(): number {
    return this.timers.size;
  }
  /** Turn `auto` off: sleeps stay pending until `run()`. */
  hold(): void {
    this.auto = false;
  }
  /** Turn `auto` on and end every pending sleep. */
  run(): void {
    this.auto = true;
    for (const id of [...this.timers.keys()]) this.fire(id);
  }
  private fire(id: number): void {
    const timer = this.timers.get(id);
    if (!timer) return;
    this.timers.delete(id);
    this.t = Math.max(this.t, timer.at);
    timer.fn();
  }
}

const servers: Ec2Server[] = [];
async function server(opts: { delays?: Partial<Ec2Delays>; clock?: TestClock } = {}): Promise<Ec2Server> {
  const s = await startEc2Server({ delays: { pendingMs: 40, stoppingMs: 40, shuttingDownMs: 40, ...opts.delays }, ...(opts.clock && { now: opts.clock.now }) });
  servers.push(s);
  return s;
}
afterAll(() => Promise.all(servers.map((s) => s.close())));

const provider = (s: Ec2Server, extra: Ec2ProviderOptions = {}) =>
  createEc2Provider({ endpoint: s.url, region, credentials, defaultSpec, poll: { initialMs: 10, maxMs: 40 }, deadlineMs: 5000, ...extra });
/** The SDK used directly, as naive code or another tool would: one client per server. */
const rawClients = new WeakMap<Ec2Server, EC2Client>();
function rawClient(s: Ec2Server): EC2Client {
  if (!rawClients.has(s)) rawClients.set(s, new EC2Client({ endpoint: s.url, region, credentials }));
  return rawClients.get(s)!;
}

async function rawRun(s: Ec2Server, tags: Tag[]): Promise<string> {
  const res = await rawClient(s).send(
    new RunInstancesCommand({ ImageId: defaultSpec.ami, MinCount: 1, MaxCount: 1, TagSpecifications: [{ ResourceType: 'instance', Tags: tags }] }),
  );
  return res.Instances![0]!.InstanceId!;
}
async function stateOf(s: Ec2Server, instanceId: string): Promise<string | undefined> {
  const res = await rawClient(s).send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
  return res.Reservations?.[0]?.Instances?.[0]?.State?.Name;
}
const actions = (s: Ec2Server, from = 0) => s.calls.slice(from).map((c) => (c.error ? `${c.action}:${c.error}` : c.action));

// Top-level await: the conformance suite needs the endpoint when it builds the provider.
const shared = await server();
describeProviderConformance('ec2', () => provider(shared), {
  idPrefix: 'c',
  timeoutMs: 10_000,
  // Foreign: one untagged instance and one that claims the workspace tag without `wsup=1`.
  createForeign: async (id) => {
    const ids = [await rawRun(shared, []), await rawRun(shared, [{ Key: 'wsup:workspace', Value: id }])];
    return { cleanup: async () => void (await rawClient(shared).send(new TerminateInstancesCommand({ InstanceIds: ids }))) };
  },
  afterSuite: async (p) => expect(await p.list()).toEqual([]),
});

describe('ec2 test server', () => {
  it('speaks EC2 errors: the raw SDK sees IncorrectInstanceState when starting a stopping instance', async () => {
    const s = await server({ delays: { stoppingMs: 500 } });
    const id = await rawRun(s, []);
    await expect.poll(() => stateOf(s, id), { interval: 10 }).toBe('running');
    await rawClient(s).send(new StopInstancesCommand({ InstanceIds: [id] }));
    const err: unknown = await rawClient(s).send(new StartInstancesCommand({ InstanceIds: [id] })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EC2ServiceException);
    expect(err).toMatchObject({ name: 'IncorrectInstanceState', $metadata: { httpStatusCode: 400 } });
    await expect(stateOf(s, 'i-00000000deadbeef')).rejects.toMatchObject({ name: 'InvalidInstanceID.NotFound' });
  });

  it('filters by tag-key, tag:<key> with wildcards and instance-state-name, and applies CreateTags', async () => {
    const s = await server({ delays: { pendingMs: 5000 } });
    const [tagged, plain] = [await rawRun(s, [{ Key: 'team', Value: 'blue-1' }]), await rawRun(s, [])];
    const ids = async (Filters: { Name: string; Values: string[] }[]) =>
      ((await rawClient(s).send(new DescribeInstancesCommand({ Filters }))).Reservations ?? []).flatMap((r) => r.Instances!.map((i) => i.InstanceId));
    expect(await ids([{ Name: 'tag-key', Values: ['team'] }])).toEqual([tagged]);
    expect(await ids([{ Name: 'tag:team', Values: ['blue-*'] }])).toEqual([tagged]);
    expect(await ids([{ Name: 'instance-state-name', Values: ['running'] }])).toEqual([]);
    expect(await ids([{ Name: 'instance-state-name', Values: ['pending'] }])).toHaveLength(2);
    await rawClient(s).send(new CreateTagsCommand({ Resources: [plain], Tags: [{ Key: 'team', Value: 'red' }] }));
    expect(await ids([{ Name: 'tag:team', Values: ['red', 'green'] }])).toEqual([plain]);
  });

  it('refuses requests without an Authorization header', async () => {
    const s = await server();
    const res = await fetch(s.url, { method: 'POST', body: 'Action=DescribeInstances&Version=2016-11-15' });
    expect(res.status).toBe(401);
    expect(await res.text()).toContain('<Code>AuthFailure</Code>');
  });
});

describe('ec2 provider', () => {
  describe('restart requested while the instance is still stopping (a save burst mid-stop)', () => {
    it('waits for stopped and starts the same instance instead of surfacing IncorrectInstanceState', async () => {
      const s = await server({ delays: { stoppingMs: 500 } });
      const p = provider(s, { stopMode: 'stop' });
      const endpoint = await p.start({ id: 'seed3' }, never());
      const instanceId = (await p.inspect('seed3'))!.ref!;
      await rawClient(s).send(new StopInstancesCommand({ InstanceIds: [instanceId] })); // a stop that did not wait
      expect(await p.inspect('seed3')).toMatchObject({ status: 'stopping' });
      const mark = s.calls.length;
      await expect(p.start({ id: 'seed3' }, never())).resolves.toBe(endpoint);
      // It waited for `stopped` rather than racing: one StartInstances, no EC2 error on the wire at all.
      expect(actions(s, mark).filter((a) => a.startsWith('StartInstances'))).toEqual(['StartInstances']);
      expect(s.calls.slice(mark).filter((c) => c.error !== undefined)).toEqual([]);
      expect(actions(s, mark)).not.toContain('RunInstances');
      expect(await p.inspect('seed3')).toMatchObject({ status: 'running', ref: instanceId });
      await p.stop('seed3', never());
      expect(await p.inspect('seed3')).toMatchObject({ status: 'stopped', ref: instanceId });
    });

    it('starts right after an aborted stop left the instance stopping', async () => {
      const clock = new TestClock();
      const s = await server({ delays: { stoppingMs: 500 }, clock });
      const p = provider(s, { stopMode: 'stop', clock });
      const endpoint = await p.start({ id: 'seed3b' }, never());
      const ac = new AbortController();
      clock.hold();
      const stopping = p.stop('seed3b', ac.signal);
      await expect.poll(() => actions(s), { interval: 5 }).toContain('StopInstances');
      ac.abort(new Error('superseded by a restart'));
      await expect(stopping).rejects.toThrow('superseded by a restart');
      expect(await p.inspect('seed3b')).toMatchObject({ status: 'stopping' });
      clock.run();
      await expect(p.start({ id: 'seed3b' }, never())).resolves.toBe(endpoint);
    });

    it('treats an IncorrectInstanceState race on StartInstances as a reason to look again', async () => {
      const s = await server();
      const p = provider(s, { stopMode: 'stop' });
      await p.start({ id: 'race' }, never());
      await p.stop('race', never());
      s.failNext('StartInstances', 'IncorrectInstanceState');
      const mark = s.calls.length;
      await p.start({ id: 'race' }, never());
      expect(actions(s, mark).filter((a) => a.startsWith('StartInstances'))).toEqual(['StartInstances:IncorrectInstanceState', 'StartInstances']);
    });
  });

  describe('stop', () => {
    it('terminates by default and returns once the instance is terminated', async () => {
      const s = await server();
      const p = provider(s);
      await p.start({ id: 'term' }, never());
      const instanceId = (await p.inspect('term'))!.ref!;
      await p.stop('term', never());
      expect(await stateOf(s, instanceId)).toBe('terminated');
      expect(await p.inspect('term')).toBeNull();
    });

    it('counts InvalidInstanceID.NotFound from TerminateInstances as success', async () => {
      const s = await server();
      const p = provider(s);
      await p.start({ id: 'reaped' }, never());
      s.failNext('TerminateInstances', 'InvalidInstanceID.NotFound');
      await expect(p.stop('reaped', never())).resolves.toBeUndefined();
      expect(actions(s)).toContain('TerminateInstances:InvalidInstanceID.NotFound');
      await p.stop('reaped', never()); // the injected error left the instance alive: clean it up
    });
  });

  describe('start', () => {
    it('keeps one instance when earlier crashed calls left duplicates', async () => {
      const s = await server();
      const tags = [{ Key: 'wsup', Value: '1' }, { Key: 'wsup:workspace', Value: 'dup' }];
      await rawRun(s, tags);
      await rawRun(s, tags);
      const p = provider(s);
      await p.start({ id: 'dup' }, never());
      // The extra goes shutting-down → terminated on the server's clock.
      await expect.poll(async () => (await p.list()).filter((r) => r.id === 'dup'), { interval: 20 }).toHaveLength(1);
    });

    it('stops waiting as soon as the signal aborts', async () => {
      const clock = new TestClock(false);
      const s = await server({ delays: { pendingMs: 5000 }, clock });
      const p = provider(s, { clock });
      const ac = new AbortController();
      const t0 = clock.now();
      const starting = p.start({ id: 'slow' }, ac.signal);
      await expect.poll(() => clock.pending, { interval: 5 }).toBe(1); // launched, sleeping before it looks again
      ac.abort(new Error('caller gave up'));
      await expect(starting).rejects.toThrow('caller gave up');
      // It gave up in the middle of its sleep: no time had to pass, and no sleep is left behind.
      expect(clock.now()).toBe(t0);
      expect(clock.pending).toBe(0);
      expect(await p.inspect('slow')).toMatchObject({ status: 'starting' });
    });

    it('fails with Ec2InstanceLostError when its launched instance is terminated out of band', async () => {
      const clock = new TestClock(false);
      const s = await server({ delays: { pendingMs: 2000 }, clock });
      const p = provider(s, { clock });
      const starting = p.start({ id: 'lost' }, never());
      await expect.poll(() => clock.pending, { interval: 5 }).toBe(1); // launched, sleeping before it looks again
      expect(actions(s)).toContain('RunInstances');
      const instanceId = (await p.inspect('lost'))!.ref!;
      await rawClient(s).send(new TerminateInstancesCommand({ InstanceIds: [instanceId] }));
      clock.run();
      await expect(starting).rejects.toBeInstanceOf(Ec2InstanceLostError);
      expect(actions(s).filter((a) => a === 'RunInstances')).toHaveLength(1);
    });

    it('fails with WSUP_PROVIDER_TIMEOUT at the deadline', async () => {
      const clock = new TestClock();
      const s = await server({ delays: { pendingMs: 5000 }, clock });
      const p = provider(s, { deadlineMs: 150, clock });
      const t0 = clock.now();
      await expect(p.start({ id: 'late' }, never())).rejects.toMatchObject({ code: 'WSUP_PROVIDER_TIMEOUT' });
      expect(clock.now() - t0).toBe(150); // the last sleep is cut to end at the deadline
    });

    it('names the missing AMI instead of calling RunInstances', async () => {
      const s = await server();
      const p = provider(s, { defaultSpec: { instanceType: 't3.micro' } });
      await expect(p.start({ id: 'noami' }, never())).rejects.toBeInstanceOf(Ec2SpecError);
      expect(actions(s)).not.toContain('RunInstances');
    });

    it('launches tagged instances with a private IP in the endpoint', async () => {
      const s = await server();
      const endpoint = await provider(s).start({ id: 'tags' }, never());
      expect(endpoint).toMatch(/^ec2:\/\/i-[0-9a-f]+\?ip=10\.0\.\d+\.\d+$/);
      const run = s.calls.find((c) => c.action === 'RunInstances')!;
      expect(run.params).toMatchObject({
        'TagSpecification.1.ResourceType': 'instance',
        'TagSpecification.1.Tag.1.Key': 'wsup',
        'TagSpecification.1.Tag.2.Value': 'tags',
        'TagSpecification.1.Tag.3.Value': 'wsup-tags',
      });
    });
  });

  describe('security groups', () => {
    it("launch into the spec's security groups, and into none the spec does not name", async () => {
      const s = await server();
      await provider(s).start({ id: 'sg', securityGroupIds: ['sg-0a', 'sg-0b'] }, never());
      await provider(s).start({ id: 'nosg' }, never());
      const runs = s.calls.filter((c) => c.action === 'RunInstances');
      expect(runs[0]!.params).toMatchObject({ 'SecurityGroupId.1': 'sg-0a', 'SecurityGroupId.2': 'sg-0b' });
      expect(Object.keys(runs[1]!.params).filter((k) => k.startsWith('SecurityGroup'))).toEqual([]);
    });
  });

  describe('configuration from the standard AWS environment', () => {
    // Cleared first so a developer's own AWS settings cannot make this pass or fail.
    const vars = ['AWS_ENDPOINT_URL_EC2', 'AWS_ENDPOINT_URL', 'AWS_IGNORE_CONFIGURED_ENDPOINT_URLS', 'AWS_PROFILE', 'AWS_REGION', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN'];
    async function withEnv(env: Record<string, string>, fn: () => Promise<void>): Promise<void> {
      const saved = Object.fromEntries(vars.map((k) => [k, process.env[k]]));
      for (const k of vars) delete process.env[k];
      Object.assign(process.env, env);
      try {
        await fn();
      } finally {
        for (const k of vars) if (saved[k] === undefined) delete process.env[k];
        Object.assign(process.env, Object.fromEntries(Object.entries(saved).filter(([, v]) => v !== undefined)));
      }
    }
    const envCreds = { AWS_REGION: region, AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' };

    it.each(['AWS_ENDPOINT_URL_EC2', 'AWS_ENDPOINT_URL'])('honours %s when no endpoint option is given', async (name) => {
      const s = await server();
      await withEnv({ ...envCreds, [name]: s.url }, async () => {
        const p = createEc2Provider({ defaultSpec, poll: { initialMs: 10, maxMs: 40 } });
        await p.start({ id: 'env' }, never());
        await p.stop('env', never());
        await p.close?.();
      });
      expect(actions(s)).toContain('RunInstances');
    });
  });
});
