/** Pools against a real dockerd (image wsup-test:latest); a missing image is the template that cannot start. */
import { randomBytes } from 'node:crypto';
import { createDockerProvider } from '../../src/providers/docker.ts';
import { describeWith, dockerHost } from '../helpers/require.ts';
import { realPoolSuite } from './real.ts';

const IMAGE = 'wsup-test:latest';
const CMD = ['sh', '-c', 'trap "exit 0" TERM; sleep 3600 & wait'];
const host = await dockerHost(IMAGE);
const tag = randomBytes(3).toString('hex');

describeWith(host, 'pools on a real dockerd', () => {
  realPoolSuite({
    prefix: `pd${tag}`,
    provider: () => createDockerProvider({ prefix: `wsupp${tag}-`, defaultSpec: { image: IMAGE, cmd: CMD }, stopGraceSeconds: 1 }),
    good: { image: IMAGE, cmd: CMD },
    bad: { image: `wsup-missing-${tag}:none`, cmd: CMD },
    resources: async (p) => (await p.list()).filter((r) => r.status === 'running' || r.status === 'starting').map((r) => r.id),
  });
});
