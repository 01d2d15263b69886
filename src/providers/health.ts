/**
 * The one health probe of the local-process provider: `GET /healthz` on the workspace's loopback port.
 * The built-in agent answers JSON with its spawn's nonce and pid; a custom command may answer plain text.
 */
import http from 'node:http';
import type { ProcessRecord } from './process-records.ts';

type Answer = { ok: false } | { ok: true; nonce?: unknown; pid?: unknown };

function probe(rec: Pick<ProcessRecord, 'host' | 'port'>): Promise<Answer> {
  return new Promise((resolve) => {
    const req = http.get({ host: rec.host, port: rec.port, path: '/healthz', agent: false, timeout: 1_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => {
        if (res.statusCode !== 200) return resolve({ ok: false });
        try {
          const b = JSON.parse(body) as { nonce?: unknown; pid?: unknown };
          resolve({ ok: true, nonce: b.nonce, pid: b.pid });
        } catch {
          resolve({ ok: true });
        }
      });
    });
    req.on('timeout', () => req.destroy()).on('error', () => resolve({ ok: false }));
  });
}

/** Healthy: 200 from /healthz and, when the body carries a nonce, this record's nonce. */
export async function probeHealth(rec: Pick<ProcessRecord, 'host' | 'port' | 'nonce'>): Promise<boolean> {
  const a = await probe(rec);
  return a.ok && (a.nonce === undefined || a.nonce === rec.nonce);
}

/** The pid the agent reports when its nonce is this record's, or null. */
export async function healthPid(rec: Pick<ProcessRecord, 'host' | 'port' | 'nonce'>): Promise<number | null> {
  const a = await probe(rec);
  return a.ok && a.nonce === rec.nonce && typeof a.pid === 'number' ? a.pid : null;
}
