/**
 * A fake-but-real-protocol EC2 endpoint for tests: the real `@aws-sdk/client-ec2` talks to it over HTTP
 * with the Query API (form-encoded `Action=...&Version=2016-11-15`), and it answers with EC2's XML bodies
 * and error codes. Instance states move with modelled delays (see model.ts).
 *
 * @example
 * const ec2 = await startEc2Server({ delays: { pendingMs: 50 } });
 * const client = new EC2Client({ endpoint: ec2.url, region: 'us-east-1', credentials });
 * ...
 * expect(ec2.calls.map((c) => c.action)).toContain('RunInstances');
 * await ec2.close();
 *
 * Signatures are not verified (any SigV4 passes), but a request without an Authorization header is
 * refused the way EC2 refuses it, so an unsigned client cannot pass by accident.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Ec2ApiError, Ec2Model, type Ec2Delays, type Instance, type InstanceStateName } from './model.ts';
import { filters, instanceTags, list, matches, parseForm, plainTags, required, type Params } from './query.ts';
import { envelope, errorBody, reservationSetXml, reservationXml, stateChangeXml, textElement } from './xml.ts';

export const API_VERSION = '2016-11-15';

/** One recorded API call: what was asked, and the EC2 error code if it failed. */
export interface Ec2Call {
  action: string;
  params: Record<string, string>;
  at: number;
  error?: string;
}

export interface Ec2ServerOptions {
  delays?: Partial<Ec2Delays>;
  /** Time source for state transitions. Default `Date.now`. */
  now?: () => number;
}

export interface Ec2Server {
  /** `http://127.0.0.1:<port>`, for the SDK's `endpoint` option or AWS_ENDPOINT_URL_EC2. */
  readonly url: string;
  readonly model: Ec2Model;
  /** Mutable: change a delay mid-test to hold an instance in a transient state. */
  readonly delays: Ec2Delays;
  readonly calls: Ec2Call[];
  /** Fail the next call of `action` with EC2 error `code` (once), before it touches the model. */
  failNext(action: string, code: string, message?: string): void;
  /**
   * Carry out the next call of `action` (once), then drop the connection instead of answering: the caller
   * cannot tell whether it happened, and the SDK retries it.
   */
  dropNextReply(action: string): void;
  close(): Promise<void>;
}

type Handler = (p: Params, model: Ec2Model) => string;

const changeState =
  (op: (model: Ec2Model, inst: Instance) => void): Handler =>
  (p, model) => {
    const targets = model.get(list(p, 'InstanceId'));
    if (targets.length === 0) throw new Ec2ApiError('MissingParameter', 'The request must contain the parameter InstanceId');
    // EC2 validates every instance before changing any, so a refused call changes nothing.
    const previous: InstanceStateName[] = targets.map((t) => t.state);
    const snapshot = targets.map((t) => ({ state: t.state, settlesAt: t.settlesAt }));
    try {
      for (const t of targets) op(model, t);
    } catch (err) {
      targets.forEach((t, i) => Object.assign(t, snapshot[i]));
      throw err;
    }
    return stateChangeXml(targets.map((inst, i) => ({ inst, previous: previous[i]! })));
  };

const handlers: Record<string, Handler> = {
  RunInstances: (p, model) => {
    const min = Number(required(p, 'MinCount'));
    const max = Number(required(p, 'MaxCount'));
    if (!(min >= 1 && max >= min)) throw new Ec2ApiError('InvalidParameterValue', 'MinCount and MaxCount must be >= 1 and MinCount <= MaxCount');
    const imageId = required(p, 'ImageId');
    if (!/^ami-[0-9a-z]+$/.test(imageId)) throw new Ec2ApiError('InvalidAMIID.Malformed', `Invalid id: "${imageId}" (expecting "ami-...")`);
    const token = p.get('ClientToken');
    return reservationXml(model.launch(imageId, p.get('InstanceType') ?? 'm1.small', max, instanceTags(p), token === '' ? undefined : token, canonical(p)));
  },
  DescribeInstances: (p, model) => {
    const ids = list(p, 'InstanceId');
    const fs = filters(p);
    const pool = ids.length > 0 ? model.get(ids) : model.all();
    return reservationSetXml(pool.filter((inst) => matches(inst, fs)));
  },
  StartInstances: changeState((m, i) => m.start(i)),
  StopInstances: changeState((m, i) => m.stop(i)),
  TerminateInstances: changeState((m, i) => m.terminate(i)),
  CreateTags: (p, model) => {
    const tags = plainTags(p);
    for (const inst of model.get(list(p, 'ResourceId'))) for (const [k, v] of tags) inst.tags.set(k, v);
    return textElement('return', true);
  },
};

/** A request's parameters without its token, in a stable order: what "the same request" means for a retry. */
const canonical = (p: Params): string =>
  JSON.stringify([...p].filter(([k]) => k !== 'ClientToken').sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function startEc2Server(opts: Ec2ServerOptions = {}): Promise<Ec2Server> {
  const delays: Ec2Delays = { pendingMs: 50, stoppingMs: 50, shuttingDownMs: 50, terminatedRetentionMs: 60_000, ...opts.delays };
  const now = opts.now ?? Date.now;
  const model = new Ec2Model(delays, now);
  const calls: Ec2Call[] = [];
  const faults: { action: string; code: string; message: string }[] = [];
  const drops: string[] = [];

  const reply = (res: ServerResponse, status: number, xml: string, requestId: string): void => {
    res.writeHead(status, { 'content-type': 'text/xml;charset=UTF-8', 'x-amzn-requestid': requestId }).end(xml);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const requestId = randomUUID();
    const p = parseForm(await readBody(req));
    const action = p.get('Action') ?? '';
    const call: Ec2Call = { action, params: Object.fromEntries(p), at: now() };
    calls.push(call);
    try {
      if (req.method !== 'POST') throw new Ec2ApiError('InvalidAction', 'This server accepts POST Query-API requests only');
      if (req.headers.authorization === undefined) throw new Ec2ApiError('AuthFailure', 'AWS was not able to validate the provided access credentials', 401);
      if (p.get('Version') !== API_VERSION) throw new Ec2ApiError('InvalidAction', `Unsupported API version ${p.get('Version') ?? '(none)'}`);
      const handler = handlers[action];
      if (handler === undefined) throw new Ec2ApiError('InvalidAction', `The action ${action} is not valid for this web service.`);
      const fault = faults.findIndex((f) => f.action === action);
      if (fault >= 0) {
        const [f] = faults.splice(fault, 1);
        throw new Ec2ApiError(f!.code, f!.message);
      }
      const body = envelope(action, requestId, handler(p, model));
      const drop = drops.indexOf(action);
      if (drop >= 0) {
        drops.splice(drop, 1);
        call.error = 'dropped';
        res.socket?.destroy();
        return;
      }
      reply(res, 200, body, requestId);
    } catch (err) {
      const e = err instanceof Ec2ApiError ? err : new Ec2ApiError('InternalError', String(err), 500);
      call.error = e.code;
      reply(res, e.status, errorBody(e.code, e.message, requestId), requestId);
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;

  return {
    url: `http://127.0.0.1:${port}`,
    model,
    delays,
    calls,
    failNext: (action, code, message = `injected ${code}`) => void faults.push({ action, code, message }),
    dropNextReply: (action) => void drops.push(action),
    close: () =>
      (closed ??= new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      })),
  };
}
