/** Defaults of `wsup serve` that more than one module needs, in one place. */

/**
 * How long shutdown may take from the first SIGTERM/SIGINT to exit, whatever a provider call is doing
 * (Docker's stop timeout). The server's drain and the supervisor's wait share it.
 */
export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;
