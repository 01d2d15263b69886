/**
 * A reproduction, not provider code: stop, remove and create under the same name with no single flight,
 * as a supervisor without per-workspace serialization would. Two of these racing for one workspace make
 * the engine answer 409 (name conflict); the docker test shows the provider converges where this fails.
 */
import type Docker from 'dockerode';
import { statusCode } from '../../src/providers/docker.ts';

const absent = (...codes: number[]) => (err: unknown) => {
  if (!codes.includes(statusCode(err) ?? -1)) throw err;
};

export async function naiveStopStart(docker: Docker, id: string, opts: { prefix?: string; image: string; cmd: string[] }): Promise<void> {
  const name = `${opts.prefix ?? 'wsup-'}${id}`;
  const old = docker.getContainer(name);
  await old.stop({ t: 0 }).catch(absent(304, 404));
  await old.remove({ force: true }).catch(absent(404));
  const created = await docker.createContainer({
    name,
    Image: opts.image,
    Cmd: opts.cmd,
    HostConfig: { NetworkMode: 'none' },
    Labels: { wsup: '1', 'wsup.workspace': id },
  });
  await created.start();
}
