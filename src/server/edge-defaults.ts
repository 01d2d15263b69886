/**
 * The control plane's edge defaults, in one place: the server applies them and `wsup serve --help` shows
 * them. No imports, so the CLI can read them without loading the server.
 */
export const EDGE_DEFAULTS = {
  /** How often open sockets' tokens are checked again (rotation, removal, expiry close them with 4401). */
  recheckMs: 500,
  /** A client must finish its request headers (an upgrade's included) within this, or is cut off. */
  headersTimeoutMs: 10_000,
  /** A whole plain HTTP request must arrive within this. */
  requestTimeoutMs: 30_000,
  /** From the upgrade request to the WebSocket handshake (or refusal), on wsup's own and on attached servers. */
  upgradeTimeoutMs: 10_000,
  /** Upgrades in progress from one remote address; more are refused with 429. */
  maxPendingUpgradesPerAddress: 64,
  /** TCP connections from one remote address to the server wsup listens on; more are closed at once. */
  maxConnectionsPerAddress: 1024,
} as const;
export type EdgeOptions = { -readonly [K in keyof typeof EDGE_DEFAULTS]: number };
