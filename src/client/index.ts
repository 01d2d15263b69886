/**
 * The wsup client SDK. Depends only on the protocol types.
 *
 * @example
 * import WebSocket from 'ws';
 * import { WsupClient } from 'wsup/client';
 * const client = new WsupClient({ url: 'http://127.0.0.1:7070', token: process.env.WSUP_TOKEN, WebSocket });
 * console.log(await client.call('workspace.list', {}));
 */
export { WsupClient, type ClientOptions, type ClientState, type ReconnectOptions, type SubscribeHandlers } from './client.ts';
export { WsupRpcError, WsupTimeoutError, WsupConnectionError } from './errors.ts';
export type { SocketConstructor, SocketLike } from './socket.ts';
export * from '../protocol/index.ts';
export { ClusterClient, type ClusterClientOptions, type RoutingStats } from './cluster.ts';
