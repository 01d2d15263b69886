/**
 * Fencing and launch idempotency in the EC2 provider, with the real `@aws-sdk/client-ec2` over HTTP against
 * test/ec2-server: instances carry the lease's shard and epoch as tags, a call with an older epoch than any
 * of the workspace's instances (terminated ones included) acts on nothing, and RunInstances' ClientToken
 * makes a retried launch one instance, as in EC2.
 */
import { DescribeInstancesCommand, EC2Client, RunInstancesCommand, TerminateInstancesCommand, type RunInstancesCommandInput } from '@aws-sdk/client-ec2';
import { afterAll, describe, expect, it } from 'vitest';
import { FencedError } from '../../src/errors.ts';
import { createEc2Provider, launchToken, type Ec2ProviderOptions } from '../../src/providers/ec2.ts';
import { startEc2Server, type Ec2Server } from '../ec2-server/server.ts';

const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };
const region = 'us-east-1';
const defaultSpec = { ami: 'ami-0123456789abcdef0', instanceType: 't3.micro' };
const never = (): AbortSignal => new AbortController().signal;
const at = (epoch: number, shard = 7) => ({ shard, epoch });

const servers: Ec2Server[] = [];
const clients: EC2Client[] = [];
afterAll(async () => {
  for (const c of clients) c.destroy();
  await Promise.all(servers.map((s) => s.close()));
});
async function server(): Promise<Ec2Server> {
  const s = await startEc2Server({ delays: { pendingMs: 30, stoppingMs: 30, shuttingDownMs: 30 } });
  servers.push(s);
  return s;
}
const provider = (s: Ec2Server, extra: Ec2ProviderOptions = {}) =>
  createEc2Provider({ endpoint: s.url, region, credentials, defaultSpec, poll: { initialMs: 10, maxMs: 40 }, deadlineMs: 10_000, ...extra });
function raw(s: Ec2Server): EC2Client {
  const c = new EC2Client({ endpoint: s.url, region, credentials });
  clients.push(c);
  return c;
}
/** Every instance of the workspace the server has, whatever its state. */
async function instancesOf(s: Ec2Server, id: string) {
  const res = await raw(s).send(new DescribeInstancesCommand({ Filters: [{ Name: 'tag:wsup:workspace', Values: [id] }] }));
  return (res.Reservations ?? []).flatMap((r) => r.Instances ?? []).map((i) => ({
    id: i.InstanceId!,
    state: i.State?.Name,
    epoch: i.Tags?.find((t) => t.Key === 'wsup:epoch')?.Value,
    shard: i.Tags?.find((t) => t.Key === 'wsup:shard')?.Value,
    token: i.ClientToken,
  }));
}
const actions = (s: Ec2Server, from = 0) => s.calls.slice(from).map((c) => (c.error ? `${c.action}:${c.error}` : c.action));
const mutations = (s: Ec2Server, from = 0) => actions(s, from).filter((a) => !a.startsWith('DescribeInstances'));

describe('ec2 test server: RunInstances ClientToken', () => {
  const input = (token: string, extra: Partial<RunInstancesCommandInput> = {}): RunInstancesCommandInput => ({
    ImageId: defaultSpec.ami,
    InstanceType: 't3.micro',
    MinCount: 1,
    MaxCount: 1,
    ClientToken: token,
    TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'wsup:workspace', Value: 'tok' }] }],
    ...extra,
  });

  it('answers a repeated request with the same token with the first launch, even after it terminated', async () => {
    const s = await server();
    const c = raw(s);
    const first = await c.send(new RunInstancesCommand(input('tok-1')));
    const again = await c.send(new RunInstancesCommand(input('tok-1')));
    expect(again.ReservationId).toBe(first.ReservationId);
    expect(again.Instances?.map((i) => i.InstanceId)).toEqual(first.Instances?.map((i) => i.InstanceId));
    expect(await instancesOf(s, 'tok')).toEqual([expect.objectContaining({ id: first.Instances![0]!.InstanceId, token: 'tok-1' })]);
    await c.send(new TerminateInstancesCommand({ InstanceIds: [first.Instances![0]!.InstanceId!] }));
    const late = await c.send(new RunInstancesCommand(input('tok-1')));
    expect(late.Instances?.[0]).toMatchObject({ InstanceId: first.Instances![0]!.InstanceId, State: { Name: expect.stringMatching(/shutting-down|terminated/) as string } });
    expect(await instancesOf(s, 'tok')).toHaveLength(1);
    // And a new token is a new launch.
    await c.send(new RunInstancesCommand(input('tok-2')));
    expect(await instancesOf(s, 'tok')).toHaveLength(2);
  });

  it('refuses a token reused with other parameters (IdempotentParameterMismatch) and launches nothing', async () => {
    const s = await server();
    const c = raw(s);
    await c.send(new RunInstancesCommand(input('tok-m')));
    const err: unknown = await c.send(new RunInstancesCommand(input('tok-m', { InstanceType: 't3.large' }))).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'IdempotentParameterMismatch', $metadata: { httpStatusCode: 400 } });
    const tags: unknown = await c
      .send(new RunInstancesCommand(input('tok-m', { TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'wsup:workspace', Value: 'tok' }, { Key: 'wsup:epoch', Value: '2' }] }] })))
      .catch((e: unknown) => e);
    expect(tags).toMatchObject({ name: 'IdempotentParameterMismatch' });
    expect(await instancesOf(s, 'tok')).toHaveLength(1);
  });

  it('refuses a token longer than 64 characters', async () => {
    const s = await server();
    await expect(raw(s).send(new RunInstancesCommand(input('t'.repeat(65))))).rejects.toMatchObject({ name: 'InvalidParameterValue' });
    expect(await instancesOf(s, 'tok')).toEqual([]);
  });
});

describe('ec2 provider: launch idempotency', () => {
  it('a RunInstances whose reply is lost is retried by the SDK with the same token: one instance', async () => {
    const s = await server();
    s.dropNextReply('RunInstances');
    await provider(s).start({ id: 'lost-reply' }, never(), at(1));
    const runs = s.calls.filter((c) => c.action === 'RunInstances');
    expect(runs.map((c) => c.error ?? 'ok')).toEqual(['dropped', 'ok']);
    expect(runs[1]!.params.ClientToken).toBe(runs[0]!.params.ClientToken);
    expect(await instancesOf(s, 'lost-reply')).toEqual([expect.objectContaining({ state: 'running', token: runs[0]!.params.ClientToken })]);
  });

  it('gives every start call its own token, so a later start in the same epoch launches anew', async () => {
    const s = await server();
    const p = provider(s);
    await p.start({ id: 'relaunch' }, never(), at(3));
    await p.stop('relaunch', never(), at(3));
    await p.start({ id: 'relaunch' }, never(), at(3));
    const all = await instancesOf(s, 'relaunch');
    expect(all.map((i) => i.state).sort()).toEqual(['running', 'terminated']);
    expect(new Set(all.map((i) => i.token)).size).toBe(2);
  });

  it('derives the token from epoch, workspace and nonce, within EC2\'s 64 characters', () => {
    const long = 'a'.repeat(63);
    expect(launchToken(long, at(123_456_789, 63), 'f'.repeat(16)).length).toBeLessThanOrEqual(64);
    expect(launchToken('ws', at(4, 2), 'n1')).toMatch(/^wsup-2e4-[0-9a-f]{16}-n1$/);
    expect(launchToken('ws', at(5, 2), 'n1')).not.toBe(launchToken('ws', at(4, 2), 'n1'));
    expect(launchToken('ws', undefined, 'n1')).toMatch(/^wsup-x-/);
  });
});

describe('ec2 provider: fencing', () => {
  it('refuses a malformed fence before any request', async () => {
    const s = await server();
    await expect(provider(s).start({ id: 'badfence' }, never(), { shard: -1, epoch: 1 })).rejects.toMatchObject({ code: 'WSUP_INVALID_ARGUMENT' });
    expect(s.calls).toEqual([]);
  });

  it('tags what it launches with the shard and epoch', async () => {
    const s = await server();
    const p = provider(s);
    await p.start({ id: 'tagged' }, never(), at(4));
    expect(await instancesOf(s, 'tagged')).toEqual([expect.objectContaining({ state: 'running', epoch: '4', shard: '7' })]);
    expect((await p.inspect('tagged'))?.detail).toMatchObject({ shard: 7, epoch: 4 });
  });

  it('refuses a start and a stop with an older epoch than the instance\'s, and calls nothing that changes it', async () => {
    const s = await server();
    const p = provider(s);
    await p.start({ id: 'older' }, never(), at(6));
    const before = await instancesOf(s, 'older');
    const mark = s.calls.length;
    const start = await p.start({ id: 'older' }, never(), at(5)).catch((e: unknown) => e);
    expect(start).toBeInstanceOf(FencedError);
    expect(start).toMatchObject({ message: expect.stringMatching(/epoch 6, newer than this call's epoch 5/) as string });
    await expect(p.stop('older', never(), at(5))).rejects.toMatchObject({ code: 'WSUP_FENCED' });
    expect(mutations(s, mark)).toEqual([]);
    expect(await instancesOf(s, 'older')).toEqual(before);
  });

  it('adopts at the same epoch without a call, re-tags when adopting at a newer one, and a newer stop terminates', async () => {
    const s = await server();
    const p = provider(s);
    const endpoint = await p.start({ id: 'newer' }, never(), at(1));
    let mark = s.calls.length;
    await expect(p.start({ id: 'newer' }, never(), at(1))).resolves.toBe(endpoint);
    expect(mutations(s, mark)).toEqual([]);
    mark = s.calls.length;
    // A takeover keeps the instance (EC2 boots are slow) and marks it as the new owner's.
    await expect(p.start({ id: 'newer' }, never(), at(2))).resolves.toBe(endpoint);
    expect(mutations(s, mark)).toEqual(['CreateTags']);
    expect(await instancesOf(s, 'newer')).toEqual([expect.objectContaining({ state: 'running', epoch: '2' })]);
    // Now the instance refuses the epoch that launched it.
    await expect(p.stop('newer', never(), at(1))).rejects.toBeInstanceOf(FencedError);
    await p.stop('newer', never(), at(3));
    expect(await instancesOf(s, 'newer')).toEqual([expect.objectContaining({ state: 'terminated' })]);
  });

  it('a stale start after the newer owner terminated the instance launches nothing: the terminated instance still says who acted last', async () => {
    const s = await server();
    const p = provider(s);
    await p.start({ id: 'gone' }, never(), at(8));
    await p.stop('gone', never(), at(8));
    const mark = s.calls.length;
    await expect(p.start({ id: 'gone' }, never(), at(7))).rejects.toBeInstanceOf(FencedError);
    expect(mutations(s, mark)).toEqual([]);
    expect(await instancesOf(s, 'gone')).toEqual([expect.objectContaining({ state: 'terminated', epoch: '8' })]);
  });

  it('compares epochs of the same shard only; unfenced calls neither check nor re-tag', async () => {
    const s = await server();
    const p = provider(s);
    await p.start({ id: 'shards' }, never(), at(9, 1));
    await p.start({ id: 'shards' }, never(), at(2, 2)); // another shard: not comparable, adopted and re-tagged
    expect(await instancesOf(s, 'shards')).toEqual([expect.objectContaining({ epoch: '2', shard: '2' })]);
    const mark = s.calls.length;
    await p.start({ id: 'shards' }, never());
    expect(mutations(s, mark)).toEqual([]);
    await p.stop('shards', never());
    expect(await instancesOf(s, 'shards')).toEqual([expect.objectContaining({ state: 'terminated', epoch: '2' })]);
  });
});
