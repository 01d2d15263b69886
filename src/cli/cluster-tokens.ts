/**
 * The API tokens of `wsup serve --cluster`: verified against the cluster's database (src/server/db-tokens.ts),
 * reloaded on every replica when a token is issued, rotated or revoked anywhere (LISTEN on the tokens'
 * channel, reconnecting; a poll underneath), and bootstrapped on first start: a single node's tokens.json in
 * the data dir is imported, and exactly one admin token is minted cluster-wide, into this data dir.
 *
 * @example
 * const tokens = await clusterTokens({ url, dataDir: '.wsup', logger });
 * createServer({ ..., tokens: tokens.verifier });
 * await tokens.close();
 */
import { errorMessage } from '../errors.ts';
import { Listener } from '../cluster/notify.ts';
import { DbTokens } from '../server/db-tokens.ts';
import type { TokenVerifier } from '../server/auth.ts';
import type { Logger } from '../server/logger.ts';
import { migrate, openEngine } from '../store/index.ts';

/** What `wsup serve` verifies with, and the admin token it can show (null: not in this data dir). */
export interface ServeTokens {
  verifier: TokenVerifier;
  admin: { token: string | null; created: boolean; path: string };
  close(): Promise<void>;
}

export async function clusterTokens(o: { url: string; dataDir: string; logger: Logger }): Promise<ServeTokens> {
  const engine = await openEngine({ url: o.url, maxConnections: 2 });
  let tokens: DbTokens | null = null;
  let listener: Listener | null = null;
  try {
    await migrate(engine);
    const t = (tokens = await DbTokens.open({ engine, onError: (err, what) => o.logger.error({ err: errorMessage(err) }, what) }));
    const reload = () => void t.refresh().catch((err: unknown) => o.logger.error({ err: errorMessage(err) }, 'reloading the API tokens failed: the tokens loaded last stay in force'));
    listener = new Listener({
      url: o.url,
      channels: [await t.channel()],
      onNotify: reload,
      onResync: reload,
      onError: (err) => o.logger.warn({ err: errorMessage(err) }, 'token listener connection failed: reconnecting (tokens are polled meanwhile)'),
    });
    await listener.start();
    const b = await t.bootstrap(o.dataDir);
    if (b.imported > 0) o.logger.info({ imported: b.imported }, 'imported the data dir\'s tokens.json into the cluster');
    const l = listener;
    return {
      verifier: t,
      admin: { token: b.admin, created: b.created, path: b.adminPath },
      async close() {
        t.close();
        await l.close();
        await engine.close();
      },
    };
  } catch (err) {
    tokens?.close();
    await listener?.close();
    await engine.close();
    throw err;
  }
}
