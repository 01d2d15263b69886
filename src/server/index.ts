/**
 * src/server public surface.
 *
 * @example
 * import http from 'node:http';
 * import { createServer, TokenFile } from './server/index.ts';
 * const app = http.createServer((req, res) => wsup.handleRequest(req, res) || res.end('mine'));
 * const wsup = createServer({ supervisor, tokens: TokenFile.in('.wsup') });
 * wsup.attach(app);
 * app.listen(8080);
 */
export { createServer, CONTROL_PATH, type ServerOptions, type WsupServer, type ServerLifecycle } from './server.ts';
export { DbTokens, issueDbToken, rotateDbAdmin, type DbTokensOptions } from './db-tokens.ts';
export { TokenFile, staticTokens, hashToken, newToken, principalName, tokenIdOf, type Principal, type TokenVerifier, type TokenEntry } from './auth.ts';
export { ProviderCallTap, type ProviderCallListener } from './metrics.ts';
export { DEFAULT_LIMITS, type Limits, type ServerClock } from './limits.ts';
export { silentLogger, type Logger } from './logger.ts';
export type { FilesWrittenHook, HistoryFn } from './handlers.ts';
